"""Deterministic shape and weak-perspective camera head (HMR-style iterative error feedback)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ShapeCameraHead"]


class ShapeCameraHead(nn.Module):
    """Regress shape ``(B, num_shape)`` and camera ``[s, tx, ty]`` ``(B, 3)`` from the condition.

    Starts from the mean shape and ``[0.9, 0, 0]`` and adds ``iterations`` refinements, each
    predicted from ``[condition, current shape, current camera]`` (HMR / ProHMR IEF).
    """

    def __init__(
        self,
        context_features: int,
        mean_shape: Tensor,
        hidden: int = 1024,
        iterations: int = 3,
        init_camera: tuple[float, float, float] = (0.9, 0.0, 0.0),
    ) -> None:
        super().__init__()
        num_shape = mean_shape.shape[-1]
        self.iterations = iterations
        self.register_buffer("init_shape", mean_shape.reshape(1, num_shape).float().clone())
        self.register_buffer("init_camera", torch.tensor([init_camera], dtype=torch.float32))
        self.mlp = nn.Sequential(
            nn.Linear(context_features + num_shape + 3, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(0.1),
        )
        self.shape_out = nn.Linear(hidden, num_shape)
        self.camera_out = nn.Linear(hidden, 3)
        # Small initial updates keep the first iterations near the mean parameters.
        for layer in (self.shape_out, self.camera_out):
            nn.init.xavier_uniform_(layer.weight, gain=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """``context (B, C)`` -> ``(shape (B, num_shape), camera (B, 3))``."""
        batch = context.shape[0]
        shape = self.init_shape.expand(batch, -1).to(context.dtype)
        camera = self.init_camera.expand(batch, -1).to(context.dtype)
        for _ in range(self.iterations):
            hidden = self.mlp(torch.cat([context, shape, camera], dim=-1))
            shape = shape + self.shape_out(hidden)
            camera = camera + self.camera_out(hidden)
        return shape, camera
