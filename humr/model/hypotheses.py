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
    regressed_camera: ``(B, 3)`` the head's raw camera before the scale clamp (what the camera-scale
        regulariser sees; ``camera`` is clamped as a numerical guard), or None.
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
    regressed_camera: Tensor | None = None

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

    # ------------------------------------------------------------------ uncertainty
    # Spread = mean distance of the S hypotheses (the mode included) to their mean, as the
    # diversity metric of Sec. 5.1; see humr.eval.uncertainty.

    def joint_spread(self, body: BodyModel | None = None, names: str | Sequence[str] | None = None) -> Tensor:
        """Per-joint 3D spread ``(B, K)`` in mm: the COCO-17 ``keypoints_3d``, or ``names`` of ``body``."""
        from humr.eval.uncertainty import joint_spread

        if names is None:
            return joint_spread(self.keypoints_3d) * 1000.0
        if body is None:
            raise ValueError(f"body: names={names!r} are computed by a body model; pass body=")
        return joint_spread(self.keypoints(body, names)) * 1000.0

    def joint_spread_2d(self) -> Tensor:
        """Per-joint 2D spread ``(B, 17)`` of the projected COCO-17 keypoints, in crop units."""
        from humr.eval.uncertainty import joint_spread

        return joint_spread(self.keypoints_2d)

    def vertex_spread(self, body: BodyModel, chunk: int = 2048) -> Tensor:
        """Per-vertex 3D spread ``(B, V)`` in mm, skinning about ``chunk`` meshes at a time."""
        from humr.eval.uncertainty import chunked_spread

        batch, samples = self.rotmat.shape[:2]
        shape = self._expanded_shape()
        meshes = lambda i: body(self.rotmat[i], shape[i]).vertices  # noqa: E731 - images i's (b, S, V, 3)
        return chunked_spread(meshes, batch, samples, chunk) * 1000.0

    def uncertain_joints(
        self, threshold_mm: float, body: BodyModel | None = None, names: str | Sequence[str] | None = None
    ) -> Tensor:
        """``(B, K)`` bool: joints whose :meth:`joint_spread` exceeds ``threshold_mm``."""
        from humr.eval.uncertainty import uncertain

        return uncertain(self.joint_spread(body, names), threshold_mm)
