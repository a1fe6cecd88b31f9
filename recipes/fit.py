"""Fit a checkpoint's synthetic test split to the detector keypoints with the flow as the prior.

Prints MPJPE / PA-MPJPE / PVE / 2DKP before and after fitting, for the mode and for K fitted
hypotheses, next to fitting without the flow prior (the 6D pose optimised directly).

python recipes/fit.py runs/paper_full/checkpoints/last.ckpt --eval.max_images 100
python recipes/fit.py CKPT --split train --fit.latent_weight 0.1 --fit.steps 200   # tune on train
"""

from humr.experiment.fit_eval import main_fit

if __name__ == "__main__":
    main_fit(description=__doc__)
