"""Evaluate a checkpoint on its data set's test split: Tables 1 and 2 style metrics and pictures.

python recipes/evaluate.py runs/paper_full/checkpoints/last.ckpt
python recipes/evaluate.py CKPT --eval.num_hypotheses 1000 --eval.max_images 50
"""

from humr.experiment.recipe import main_evaluate

if __name__ == "__main__":
    main_evaluate(description=__doc__)
