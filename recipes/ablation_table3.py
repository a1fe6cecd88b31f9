"""Table 3: from the ProHMR baseline, add bbox info, the 2D pose condition, RealNVP, L_MMD and
L_mask one after the other; one training run per row, one table.

    python recipes/ablation_table3.py            # synthetic set, short budget per row
    python recipes/ablation_table3.py --steps 3000 --output-dir runs/table3
"""

from humr.ablations import table3_rows
from humr.training.recipe import main_rows

if __name__ == "__main__":
    main_rows(table3_rows, "Table 3: successive components", "runs/table3")
