"""The deterministic baseline (Table 1's BEDLAM-CLIFF reference point): the main job's model with
a pose regressor instead of the flow, trained at the same budget on the same data.

    python recipes/regressor_baseline.py                    # compare with recipes/paper_full.py
    python recipes/regressor_baseline.py --steps 3000
"""

from humr.ablations import regressor_baseline
from humr.experiment.recipe import main_full

if __name__ == "__main__":
    main_full(config_fn=regressor_baseline, output_dir="runs/regressor_baseline")
