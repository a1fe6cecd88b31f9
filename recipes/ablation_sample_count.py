"""Fig. S2: the number n of heatmap samples per joint in L_MMD.

python recipes/ablation_sample_count.py
"""

from humr.ablations import sample_count_rows
from humr.experiment.recipe import main_rows

if __name__ == "__main__":
    main_rows(sample_count_rows, "Fig. S2: heatmap samples per joint for L_MMD", "runs/sample_count")
