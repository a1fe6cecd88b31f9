"""A simple, documented prior over the 22 body-joint rotations (no licensed motion data).

Convention: :mod:`humr.bodies.base` (SMPL axes, +y up, rest pose = T-pose facing +z,
body-left +x; ``pose[j]`` rotates joint ``j`` relative to its parent, ``G_j = G_parent R_j``).
Each non-root joint's rotation vector ``(x, y, z)`` (axis-angle in the parent-aligned rest axes)
has three independent components, each a normal ``N(mean, std)`` truncated to ``[low, high]``
and drawn by inverse CDF (no mass piles up on the bounds). Values are written for the body-left
joints; a body-right joint is the mirror image in the x = 0 plane, ``R -> M R M`` with
``M = diag(-1, 1, 1)``, i.e. its rotation vector is ``(x, -y, -z)``, so its y and z ranges are
negated. The ranges are rough anatomical limits; the means put the arms down and the knees
slightly bent so that typical draws look like people standing, walking or reaching.

Sign reading in the T-pose (left side): hip flexion (thigh forward, +z) is x < 0, knee
flexion x > 0, hip abduction z > 0; the arm lies along +x, lowering it is z < 0 at the
shoulder, swinging it forward is y < 0; elbow flexion (palm down in the rest pose) is y < 0.

The root (``pose[0]``) is left to the caller: it is a global orientation, which the synthetic
data set draws from its camera set-up (:func:`upright_orientation`).

Example:
    >>> import torch
    >>> pose = sample_body_pose(4, generator=torch.Generator().manual_seed(0))
    >>> pose.shape
    torch.Size([4, 22, 3, 3])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from humr.bodies.base import BODY_JOINT_NAMES
from humr.rotations import axis_angle_to_matrix

__all__ = [
    "LEFT_JOINT_LIMITS",
    "prior_table",
    "sample_rotation_vectors",
    "sample_body_pose",
    "upright_orientation",
]

#: Left-side (and central) joints: per rotation-vector component ``(mean, std, low, high)`` in
#: degrees, for the components (x, y, z). Joints not listed stay at the identity.
LEFT_JOINT_LIMITS: dict[str, tuple[tuple[float, float, float, float], ...]] = {
    "left_hip": ((-25, 30, -100, 30), (0, 12, -35, 35), (5, 10, -15, 45)),
    "spine1": ((4, 8, -15, 30), (0, 7, -20, 20), (0, 5, -15, 15)),
    "left_knee": ((35, 35, 0, 130), (0, 3, -6, 6), (0, 3, -6, 6)),
    "spine2": ((3, 6, -10, 20), (0, 6, -15, 15), (0, 4, -10, 10)),
    "left_ankle": ((5, 12, -30, 40), (0, 6, -15, 15), (0, 6, -15, 15)),
    "spine3": ((3, 6, -10, 20), (0, 6, -15, 15), (0, 4, -10, 10)),
    "left_foot": ((0, 6, -15, 15), (0, 2, -5, 5), (0, 2, -5, 5)),
    "neck": ((3, 10, -25, 30), (0, 12, -35, 35), (0, 6, -15, 15)),
    "left_collar": ((0, 3, -8, 8), (0, 5, -12, 12), (0, 6, -12, 20)),
    "head": ((0, 10, -25, 30), (0, 15, -45, 45), (0, 6, -15, 15)),
    "left_shoulder": ((0, 15, -45, 45), (-15, 35, -95, 45), (-50, 30, -85, 60)),
    "left_elbow": ((0, 4, -10, 10), (-40, 40, -140, 0), (0, 4, -10, 10)),
    "left_wrist": ((0, 15, -45, 45), (0, 10, -30, 30), (0, 15, -45, 45)),
}


def prior_table(dtype: torch.dtype = torch.float32, device=None) -> Tensor:
    """The prior as a ``(22, 3, 4)`` tensor of ``(mean, std, low, high)`` in radians per joint and component.

    Body-right joints mirror their left twin (y and z negated, bounds swapped); the root and
    unlisted joints are ``(0, 0, 0, 0)`` (identity).
    """
    table = torch.zeros(len(BODY_JOINT_NAMES), 3, 4, dtype=torch.float64)
    for j, name in enumerate(BODY_JOINT_NAMES):
        if name in LEFT_JOINT_LIMITS:
            table[j] = torch.tensor(LEFT_JOINT_LIMITS[name], dtype=torch.float64)
        elif name.startswith("right_") and "left_" + name[6:] in LEFT_JOINT_LIMITS:
            left = torch.tensor(LEFT_JOINT_LIMITS["left_" + name[6:]], dtype=torch.float64)
            mirrored = left.clone()
            # (x, y, z) -> (x, -y, -z): negate mean, swap and negate the bounds of y and z
            mirrored[1:, 0] = -left[1:, 0]
            mirrored[1:, 2] = -left[1:, 3]
            mirrored[1:, 3] = -left[1:, 2]
            table[j] = mirrored
    return (table * (math.pi / 180.0)).to(dtype=dtype, device=device)


def sample_rotation_vectors(
    batch_shape: tuple[int, ...] | int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> Tensor:
    """Draw rotation vectors ``(*batch_shape, 22, 3)`` from the truncated-normal prior.

    Inverse-CDF sampling: ``u ~ U(Phi(a), Phi(b))``, ``x = mean + std Phi^-1(u)`` with
    ``a, b`` the standardized bounds; components with ``std = 0`` are their mean. The root
    (joint 0) is zero.
    """
    if isinstance(batch_shape, int):
        batch_shape = (batch_shape,)
    batch_shape = tuple(int(b) for b in batch_shape)
    if any(b < 0 for b in batch_shape):
        raise ValueError(f"batch_shape: expected non-negative sizes, found {batch_shape}")
    table = prior_table(torch.float64, device)
    mean, std, low, high = table.unbind(-1)
    safe = torch.where(std > 0, std, torch.ones_like(std))
    lo_cdf = torch.special.ndtr((low - mean) / safe)
    hi_cdf = torch.special.ndtr((high - mean) / safe)
    u = torch.rand(*batch_shape, *mean.shape, generator=generator, dtype=torch.float64, device=device)
    # keep u strictly inside (0, 1) so ndtri stays finite
    cdf = (lo_cdf + u * (hi_cdf - lo_cdf)).clamp(1e-12, 1 - 1e-12)
    x = mean + std * torch.special.ndtri(cdf)
    x = torch.minimum(torch.maximum(x, low), high)
    return x.to(dtype)


def sample_body_pose(
    n: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> Tensor:
    """Draw ``n`` body poses ``(n, 22, 3, 3)`` (root = identity) from the prior."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected an int >= 0, found {n!r}")
    return axis_angle_to_matrix(sample_rotation_vectors(n, generator, dtype, device))


def _rot(axis: int, angle: Tensor) -> Tensor:
    """Rotations ``(..., 3, 3)`` about a coordinate axis by ``angle (...)`` (right-handed)."""
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = ((one, zero, zero), (zero, c, -s), (zero, s, c))
    elif axis == 1:
        rows = ((c, zero, s), (zero, one, zero), (-s, zero, c))
    else:
        rows = ((c, -s, zero), (s, c, zero), (zero, zero, one))
    return torch.stack([torch.stack(r, dim=-1) for r in rows], dim=-2)


def upright_orientation(yaw: Tensor, pitch: Tensor, roll: Tensor) -> Tensor:
    """Global orientations ``(..., 3, 3)`` of an upright body seen by an OpenCV camera.

    ``Rx(pi) @ Ry(yaw) @ Rx(pitch) @ Rz(roll)``: the body turns by ``yaw`` about its vertical
    axis (0 = facing the camera), leans by ``pitch`` (forward/backward) and ``roll`` (sideways),
    all in SMPL axes; ``Rx(pi)`` then maps SMPL axes (+y up, facing +z) to the camera frame
    (x right, y down, z forward), so a zero-angle body stands upright facing the camera.
    Angles ``(...)`` in radians.
    """
    yaw, pitch, roll = torch.broadcast_tensors(yaw, pitch, roll)
    flip = _rot(0, torch.full_like(yaw, math.pi))
    return flip @ _rot(1, yaw) @ _rot(0, pitch) @ _rot(2, roll)
