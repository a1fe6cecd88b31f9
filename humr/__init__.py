"""humr: probabilistic 3D human mesh recovery.

A normalizing flow over body-joint rotations, conditioned on image features, the
highest-likelihood 2D detector pose and CLIFF bounding-box information, supervised by
the distributions encoded in 2D detector heatmaps (joint-wise MMD) and by person masks.
"""

__version__ = "0.1.0"
