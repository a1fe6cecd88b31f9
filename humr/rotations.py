"""Rotation representations, batched over any leading dimensions, all through ``roma``.

6D layout (Zhou et al. 2019, as in ProHMR and the reference implementation): the 6D
vector is the first two *columns* of the rotation matrix, stored row by row, i.e.
``x.reshape(..., 3, 2) == R[..., :, :2]``. Decoding applies Gram-Schmidt to those two
columns (``roma.special_gramschmidt``), so any non-degenerate 6D vector decodes to a
proper rotation.

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


def rot6d_to_matrix(rot6d: Tensor) -> Tensor:
    """6D representation ``(..., 6)`` -> rotation matrices ``(..., 3, 3)`` (Gram-Schmidt)."""
    _check_last("rot6d", rot6d, (6,))
    return roma.special_gramschmidt(rot6d.reshape(*rot6d.shape[:-1], 3, 2))


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
