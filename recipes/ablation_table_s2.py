"""Table S2: how to supervise random hypotheses (none, L_2D on all or visible joints at three
weights, or L_MMD); L_mask is off in every row.

    python recipes/ablation_table_s2.py
"""

from humr.ablations import table_s2_rows
from humr.experiment.recipe import main_rows

if __name__ == "__main__":
    main_rows(table_s2_rows, "Table S2: supervising random hypotheses", "runs/table_s2")
