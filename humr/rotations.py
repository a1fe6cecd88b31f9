"""Rotation representations, batched over any leading dimensions, all through ``roma``.

6D layout (Zhou et al. 2019, as in ProHMR and the reference implementation): the 6D
vector is the first two *columns* of the rotation matrix, stored row by row, i.e.
``x.reshape(..., 3, 2) == R[..., :, :2]``. Decoding applies Gram-Schmidt to those two
columns, so every finite 6D vector decodes to a proper rotation (degenerate ones to a fixed,
documented one: see :func:`rot6d_to_matrix`).

Example:
    >>> import torch
    >>> R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 1.0]]))
    >>> torch.allclose(rot6d_to_matrix(matrix_to_rot6d(R)), R, atol=1e-6)
    True
"""

from __future__ import annotations

import roma
import torch
from torch import Tensor

__all__ = [
    "rot6d_to_matrix",
    "matrix_to_rot6d",
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "check_rotation_matrices",
]


def _check_last(name: str, x: Tensor, shape: tuple[int, ...]) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, found {type(x).__name__}")
    if tuple(x.shape[x.dim() - len(shape) :]) != shape or x.dim() < len(shape):
        raise ValueError(
            f"{name}: expected shape (..., {', '.join(map(str, shape))}), found {tuple(x.shape)}"
        )


def _orthogonal_unit(b1: Tensor) -> Tensor:
    """A unit vector ``(..., 3)`` orthogonal to the unit vectors ``b1 (..., 3)``: the basis axis on
    which ``b1`` is smallest (the first of ties), minus its ``b1`` part, normalised."""
    axis = torch.zeros_like(b1).scatter_(-1, b1.abs().argmin(dim=-1, keepdim=True), 1.0)
    v = axis - (b1 * axis).sum(-1, keepdim=True) * b1  # |v|^2 = 1 - min_k b1_k^2 >= 2/3
    return v / torch.linalg.vector_norm(v, dim=-1, keepdim=True)


def rot6d_to_matrix(rot6d: Tensor) -> Tensor:
    """6D representation ``(..., 6)`` -> rotation matrices ``(..., 3, 3)`` (Gram-Schmidt).

    With the columns ``a1, a2`` of ``rot6d.reshape(..., 3, 2)``: ``b1 = a1 / |a1|``, ``b2`` the
    normalised part of ``a2`` orthogonal to ``b1``, ``b3 = b1 x b2``; ``R = [b1 b2 b3]``. The
    projection runs twice, so that nearly parallel columns still give ``R^T R = I`` to rounding.

    Degenerate input has no rotation of its own; it gets a fixed one, with finite values and
    finite gradients (no check, no host sync): a zero ``a1`` (norm at most ``finfo.tiny``) gives
    ``b1 = e_x``; an ``a2`` parallel to ``b1`` (its orthogonal part at most ``8 eps |a2|``, a zero
    ``a2`` included) gives ``b2`` = the unit vector orthogonal to ``b1`` nearest the basis axis on
    which ``b1`` is smallest. The all-zero vector thus decodes to the identity. NaN or infinite
    input gives NaN output.

    Example:
        >>> rot6d_to_matrix(torch.zeros(6))
        tensor([[1., 0., 0.],
                [0., 1., 0.],
                [0., 0., 1.]])
    """
    _check_last("rot6d", rot6d, (6,))
    if not rot6d.is_floating_point():
        raise ValueError(f"rot6d: expected a floating tensor, found {rot6d.dtype}")
    columns = rot6d.reshape(*rot6d.shape[:-1], 3, 2)
    a1, a2 = columns[..., 0], columns[..., 1]
    info = torch.finfo(rot6d.dtype)
    n1 = torch.linalg.vector_norm(a1, dim=-1, keepdim=True)
    e_x = torch.zeros_like(a1)
    e_x[..., 0] = 1.0
    # Comparisons with NaN are False: NaN input takes the regular branch and stays NaN.
    b1 = torch.where(n1 <= info.tiny, e_x, a1 / n1.clamp_min(info.tiny))
    u2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    u2 = u2 - (b1 * u2).sum(-1, keepdim=True) * b1  # "twice is enough" (Kahan)
    n2 = torch.linalg.vector_norm(u2, dim=-1, keepdim=True)
    parallel = n2 <= 8 * info.eps * torch.linalg.vector_norm(a2, dim=-1, keepdim=True)
    b2 = torch.where(parallel, _orthogonal_unit(b1), u2 / n2.clamp_min(info.tiny))
    return torch.stack([b1, b2, torch.linalg.cross(b1, b2, dim=-1)], dim=-1)


def matrix_to_rot6d(matrix: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> 6D ``(..., 6)``: the first two columns, row-major."""
    _check_last("matrix", matrix, (3, 3))
    return matrix[..., :, :2].reshape(*matrix.shape[:-2], 6)


def axis_angle_to_matrix(axis_angle: Tensor) -> Tensor:
    """Axis-angle (rotation vectors) ``(..., 3)`` -> rotation matrices ``(..., 3, 3)``."""
    _check_last("axis_angle", axis_angle, (3,))
    return roma.rotvec_to_rotmat(axis_angle)


def matrix_to_axis_angle(matrix: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` -> axis-angle ``(..., 3)`` with angle in [0, pi]."""
    _check_last("matrix", matrix, (3, 3))
    return roma.rotmat_to_rotvec(matrix)


def check_rotation_matrices(name: str, matrix: Tensor, atol: float = 1e-3) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``matrix (..., 3, 3)`` holds finite rotations.

    Checks ``R^T R = I`` and ``det R = 1`` to ``atol`` (float32 Gram-Schmidt output passes).
    """
    _check_last(name, matrix, (3, 3))
    if not torch.isfinite(matrix).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    m = matrix.detach()
    eye = torch.eye(3, dtype=m.dtype, device=m.device)
    ortho_err = (m.transpose(-1, -2) @ m - eye).abs().amax() if m.numel() else m.new_zeros(())
    det_err = (torch.linalg.det(m) - 1).abs().amax() if m.numel() else m.new_zeros(())
    if float(ortho_err) > atol or float(det_err) > atol:
        raise ValueError(
            f"{name}: expected rotation matrices (R^T R = I, det R = 1 to {atol}), "
            f"found max |R^T R - I| = {float(ortho_err):.3g}, max |det R - 1| = {float(det_err):.3g}"
        )
