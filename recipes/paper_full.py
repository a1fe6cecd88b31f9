r"""The full paper model (Table 1 / Table 2 "Ours").

With no argument: builds (or reuses) the embedded synthetic data set, trains the full model
with the free Anny body on the CPU, evaluates it, prints the metrics table and writes plots,
a checkpoint, the config and metrics.json to runs/paper_full. ``--help`` lists every field.

    python recipes/paper_full.py                     # embedded default, under 10 min on 2 cores
    python recipes/paper_full.py --tiny              # a smoke run in well under a minute
    python recipes/paper_full.py --data bedlam+agora+3dpw --body smplx --body-model-dir DIR \
        --accelerator gpu --devices 4                # the paper's run (real data, SMPL-X, DDP)
"""

from humr.experiment.recipe import main_full

if __name__ == "__main__":
    main_full(description=__doc__)
