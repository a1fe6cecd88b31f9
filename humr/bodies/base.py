"""The one body-model interface every body (SMPL-X, SMPL, Anny) implements.

Conventions shared by all bodies:
- Axes are SMPL's: metres, +y up, the body in its rest pose faces +z, body-left is +x.
- ``pose`` is ``(..., J, 3, 3)`` rotation matrices for the ``J = num_pose_joints``
  articulated joints the flow models, root (global orientation) first, each relative to
  its parent, in the order of :data:`BODY_JOINT_NAMES` (the first 22 SMPL-X joints).
  Joints the body has beyond those (hands, jaw, eyes, ...) stay at rest.
- ``shape`` is ``(..., num_shape)``.
- Outputs carry no global translation: the root joint sits where the shaped rest root is.
- ``keypoints(pose, shape, names)`` returns only the requested keypoints without skinning
  the whole mesh, and equals the keypoints of the full :meth:`BodyModel.forward` to 1e-5.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "BODY_JOINT_NAMES",
    "BODY_JOINT_PARENTS",
    "COCO17_NAMES",
    "NUM_COCO17",
    "ARTICULATED_COCO17",
    "SMPL24_NAMES",
    "H36M14_NAMES",
    "KEYPOINT_SETS",
    "BodyOutput",
    "BodyModel",
    "resolve_keypoint_names",
]

#: The 22 articulated body joints of SMPL-X (and the first 22 of SMPL), root first.
BODY_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1",  # 0-3
    "left_knee", "right_knee", "spine2",  # 4-6
    "left_ankle", "right_ankle", "spine3",  # 7-9
    "left_foot", "right_foot", "neck",  # 10-12
    "left_collar", "right_collar", "head",  # 13-15
    "left_shoulder", "right_shoulder",  # 16-17
    "left_elbow", "right_elbow",  # 18-19
    "left_wrist", "right_wrist",  # 20-21
)
#: Parent index of each of :data:`BODY_JOINT_NAMES` (-1 for the root), row by row as the names.
BODY_JOINT_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0,
    1, 2, 3,
    4, 5, 6,
    7, 8, 9,
    9, 9, 12,
    13, 14,
    16, 17,
    18, 19,
)
#: COCO-17 keypoints in the COCO order (nose first); prefixed so that e.g. the COCO shoulder
#: (a detector's definition) is never confused with the kinematic shoulder joint.
COCO17_NAMES: tuple[str, ...] = tuple(
    "coco_" + n
    for n in (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear",
        "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
        "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    )
)
#: Number of COCO-17 keypoints (a detector's pose is ``(NUM_COCO17, 3)``: x, y, confidence).
NUM_COCO17: int = len(COCO17_NAMES)
#: Indices into :data:`COCO17_NAMES` of the highly articulated keypoints (elbows, wrists, knees,
#: ankles): the joints whose heatmap samples supervise the flow (paper Sec. 4.5).
ARTICULATED_COCO17: tuple[int, ...] = (7, 8, 9, 10, 13, 14, 15, 16)
#: SMPL's 24 joints: the 22 body joints plus the two hand joints.
SMPL24_NAMES: tuple[str, ...] = BODY_JOINT_NAMES + ("left_hand", "right_hand")
#: The H36M-14 evaluation joints (LSP order), regressed from mesh vertices.
H36M14_NAMES: tuple[str, ...] = (
    "h36m_right_ankle",
    "h36m_right_knee",
    "h36m_right_hip",
    "h36m_left_hip",
    "h36m_left_knee",
    "h36m_left_ankle",
    "h36m_right_wrist",
    "h36m_right_elbow",
    "h36m_right_shoulder",
    "h36m_left_shoulder",
    "h36m_left_elbow",
    "h36m_left_wrist",
    "h36m_neck",
    "h36m_head_top",
)

#: Named keypoint sets accepted wherever a body takes ``names``.
KEYPOINT_SETS: dict[str, tuple[str, ...]] = {
    "coco17": COCO17_NAMES,
    "body_joints": BODY_JOINT_NAMES,
    "smpl24": SMPL24_NAMES,
    "h36m14": H36M14_NAMES,
}


def resolve_keypoint_names(names: str | Sequence[str]) -> tuple[str, ...]:
    """A set name from :data:`KEYPOINT_SETS` or an explicit list -> a tuple of keypoint names."""
    if isinstance(names, str):
        if names not in KEYPOINT_SETS:
            raise ValueError(
                f"names: unknown keypoint set {names!r}; expected one of {sorted(KEYPOINT_SETS)} "
                "or a list of keypoint names"
            )
        return KEYPOINT_SETS[names]
    names = tuple(names)
    if not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"names: expected a non-empty list of keypoint names, found {names!r}")
    return names


@dataclass
class BodyOutput:
    """Full forward of a body model.

    vertices: ``(..., V, 3)`` posed mesh vertices.
    joints: ``(..., J, 3)`` posed kinematic joints, in :data:`BODY_JOINT_NAMES` order first
        (a body may append more joints after those).
    """

    vertices: Tensor
    joints: Tensor


class BodyModel(nn.Module, ABC):
    """Abstract body model: rotations and shape in, mesh, joints or selected keypoints out."""

    #: Number of articulated joints in ``pose`` (22 for the SMPL-X body).
    num_pose_joints: int
    #: Number of shape coefficients in ``shape``.
    num_shape: int
    #: Valid range of every shape coefficient, or None when unbounded (SMPL-X betas).
    shape_range: tuple[float, float] | None = None

    @property
    @abstractmethod
    def faces(self) -> Tensor:
        """Mesh triangles ``(F, 3)`` int64."""

    @property
    def parents(self) -> tuple[int, ...]:
        """Parent index of each of the ``num_pose_joints`` modelled joints (-1 for the root)."""
        return BODY_JOINT_PARENTS[: self.num_pose_joints]

    @property
    @abstractmethod
    def keypoint_names(self) -> tuple[str, ...]:
        """Every keypoint name this body can return from :meth:`keypoints`."""

    @abstractmethod
    def forward(self, pose: Tensor, shape: Tensor) -> BodyOutput:
        """Full forward: pose ``(..., J, 3, 3)``, shape ``(..., num_shape)`` -> :class:`BodyOutput`."""

    @abstractmethod
    def keypoints(self, pose: Tensor, shape: Tensor, names: str | Sequence[str] = "coco17") -> Tensor:
        """Only the named keypoints ``(..., K, 3)``, without skinning the whole mesh."""

    @abstractmethod
    def keypoints_from_output(self, output: BodyOutput, names: str | Sequence[str] = "coco17") -> Tensor:
        """The named keypoints ``(..., K, 3)`` read from a full forward's output (reference path)."""

    def mean_shape(self, *batch: int, dtype: torch.dtype | None = None, device=None) -> Tensor:
        """The body's neutral shape vector ``(*batch, num_shape)`` (zeros unless a body says otherwise)."""
        return torch.zeros(*batch, self.num_shape, dtype=dtype, device=device)

    def constrain_shape(self, shape: Tensor) -> Tensor:
        """Clamp a regressed shape ``(..., num_shape)`` into :attr:`shape_range` (identity when unbounded)."""
        if self.shape_range is None:
            return shape
        return shape.clamp(*self.shape_range)

    def check_inputs(self, pose: Tensor, shape: Tensor) -> None:
        """Raise ``ValueError`` naming the argument for wrong shapes, NaNs or mismatched batches."""
        if pose.dim() < 3 or tuple(pose.shape[-3:]) != (self.num_pose_joints, 3, 3):
            raise ValueError(
                f"pose: expected shape (..., {self.num_pose_joints}, 3, 3), found {tuple(pose.shape)}"
            )
        if shape.dim() < 1 or shape.shape[-1] != self.num_shape:
            raise ValueError(f"shape: expected shape (..., {self.num_shape}), found {tuple(shape.shape)}")
        if pose.shape[:-3] != shape.shape[:-1]:
            raise ValueError(
                f"pose and shape: batch shapes differ, {tuple(pose.shape[:-3])} vs {tuple(shape.shape[:-1])}"
            )
        if not torch.isfinite(pose).all():
            raise ValueError("pose: contains NaN or infinite values")
        if not torch.isfinite(shape).all():
            raise ValueError("shape: contains NaN or infinite values")
