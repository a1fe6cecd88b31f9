"""Table 3: from the ProHMR baseline, add bbox info, the 2D pose condition, RealNVP, L_MMD and
L_mask one after the other, and the deterministic regressor for context; one training run per
row (and seed), one table, one picture (rows.png).

    python recipes/ablation_table3.py                       # synthetic set, one seed per row
    python recipes/ablation_table3.py --seeds 0,1,2         # mean±std over three training seeds
    python recipes/ablation_table3.py --seeds 0,1,2 --data.seed 1 --output-dir runs/table3_data1
"""

from humr.ablations import table3_rows_with_regressor
from humr.experiment.recipe import main_rows

if __name__ == "__main__":
    main_rows(table3_rows_with_regressor, "Table 3: successive components", "runs/table3")
