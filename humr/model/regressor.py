"""A deterministic pose head: the BEDLAM-CLIFF way of predicting one body per image.

The same condition ``c = [c_I, c_P, c_B]`` as the flow, an MLP with iterative error feedback
(HMR / CLIFF) that refines a 6D pose from the rest pose. It is the paper's Table 1 reference
point (BEDLAM-CLIFF, "trained on the same data with the same backbone"): a probabilistic model's
mode should be at least as accurate as a regressor trained for the same time.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["PoseRegressor"]


class PoseRegressor(nn.Module):
    """``context (B, C)`` -> 6D pose offsets ``(B, D)`` from the rest pose, by IEF.

    Args:
        context_features: ``C``.
        features: ``D = 6 J``.
        hidden: width of the two hidden layers.
        iterations: refinement steps, each predicted from ``[context, current pose]``.
    """

    def __init__(self, context_features: int, features: int, hidden: int = 1024, iterations: int = 3) -> None:
        super().__init__()
        if iterations < 1:
            raise ValueError(f"iterations: expected >= 1, found {iterations}")
        self.features = features
        self.iterations = iterations
        self.mlp = nn.Sequential(
            nn.Linear(context_features + features, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, features),
        )
        # small first updates: the head starts at the rest pose, like the zero-initialised flow
        nn.init.xavier_uniform_(self.mlp[-1].weight, gain=0.01)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, context: Tensor) -> Tensor:
        pose = context.new_zeros(context.shape[0], self.features)
        for _ in range(self.iterations):
            pose = pose + self.mlp(torch.cat([context, pose], dim=-1))
        return pose
