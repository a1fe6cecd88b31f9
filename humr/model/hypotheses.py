"""The model's output: S hypotheses per image, the approximated mode at index 0."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from humr.bodies.base import BodyModel

__all__ = ["Hypotheses"]


@dataclass
class Hypotheses:
    """Per image: S pose hypotheses (index 0 = the mode, z = 0), one shape and one camera.

    pose6d: ``(B, S, J * 6)`` flow outputs (6D rotations, the layout of :mod:`humr.rotations`).
    rotmat: ``(B, S, J, 3, 3)`` their Gram-Schmidt rotation matrices.
    log_prob: ``(B, S)`` log-likelihood of each hypothesis under the flow, or None.
    shape: ``(B, num_shape)`` inside the body's shape range; regressed_shape: the head's raw output
        (what the shape loss compares); camera: ``(B, 3)`` weak-perspective ``[s, tx, ty]``.
    translation: ``(B, 3)`` the camera converted to a full-image perspective root translation (CLIFF).
    keypoints_3d: ``(B, S, 17, 3)`` COCO-17 keypoints in the body frame (add ``translation`` for
        the camera frame) through the fast keypoint path.
    keypoints_2d: ``(B, S, 17, 2)`` their projections in crop coordinates.
    """

    pose6d: Tensor
    rotmat: Tensor
    log_prob: Tensor | None
    shape: Tensor
    regressed_shape: Tensor
    camera: Tensor
    translation: Tensor
    keypoints_3d: Tensor
    keypoints_2d: Tensor

    @property
    def num_hypotheses(self) -> int:
        return self.pose6d.shape[1]

    def _expanded_shape(self) -> Tensor:
        return self.shape[:, None].expand(-1, self.num_hypotheses, -1)

    def keypoints(self, body: BodyModel, names: str | Sequence[str]) -> Tensor:
        """Other keypoints of every hypothesis ``(B, S, K, 3)`` (body frame), without full meshes."""
        return body.keypoints(self.rotmat, self._expanded_shape(), names)

    def vertices(self, body: BodyModel, chunk: int = 2048) -> Tensor:
        """Full meshes ``(B, S, V, 3)`` (body frame), skinned ``chunk`` bodies at a time."""
        batch, samples = self.rotmat.shape[:2]
        rot = self.rotmat.reshape(batch * samples, *self.rotmat.shape[2:])
        shape = self._expanded_shape().reshape(batch * samples, -1)
        parts = [
            body(rot[i : i + chunk], shape[i : i + chunk]).vertices for i in range(0, rot.shape[0], chunk)
        ]
        return torch.cat(parts).reshape(batch, samples, *parts[0].shape[1:])
