"""SMPL-X -> SMPL mesh conversion and the H36M joint regressor used for evaluation.

- ``smplx2smpl.pkl`` (distributed with BEDLAM-CLIFF): a pickled dict whose key ``"matrix"``
  holds a ``(6890, 10475)`` array; SMPL vertex ``i`` is ``sum_j matrix[i, j] * smplx_vertex[j]``
  (each row a barycentric combination of a few SMPL-X vertices). It is loaded as a sparse tensor
  (the dense float32 matrix would take 289 MB).
- ``J_regressor_h36m.npy`` (distributed with SPIN and its successors): ``(17, 6890)`` weights of
  the 17 Human3.6M joints over SMPL vertices. The 14 evaluation joints in LSP order
  (:data:`humr.bodies.base.H36M14_NAMES`) are its rows :data:`H36M17_TO_LSP14`
  (``6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10``), the selection every method that
  reports 3DPW MPJPE / PA-MPJPE uses.

Example:
    >>> import torch
    >>> m = torch.eye(3).to_sparse()
    >>> v = torch.randn(2, 3, 3)
    >>> torch.allclose(smplx_to_smpl_vertices(v, m, num_smplx_vertices=3), v)
    True
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "H36M17_TO_LSP14",
    "NUM_SMPL_VERTICES",
    "NUM_SMPLX_VERTICES",
    "load_smplx_to_smpl",
    "smplx_to_smpl_vertices",
    "load_h36m_regressor",
]

#: Rows of the 17-joint H36M regressor giving the 14 LSP-ordered evaluation joints.
H36M17_TO_LSP14: tuple[int, ...] = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
NUM_SMPL_VERTICES = 6890
NUM_SMPLX_VERTICES = 10475

_SMPLX2SMPL_SOURCE = (
    "it is distributed with BEDLAM-CLIFF's evaluation data (https://github.com/pixelite1201/BEDLAM, "
    "registration at https://bedlam.is.tue.mpg.de)"
)
_H36M_SOURCE = (
    "it is distributed with SPIN's data archive (https://github.com/nkolot/SPIN, data/J_regressor_h36m.npy) "
    "and the methods built on it"
)


def _existing(path: str | Path, what: str, source: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no file at {path.resolve()}; {source}")
    return path


def _to_sparse(matrix, name: str, dtype: torch.dtype) -> Tensor:
    if isinstance(matrix, Tensor):
        t = matrix
    elif hasattr(matrix, "tocoo"):  # scipy.sparse, without importing scipy here
        coo = matrix.tocoo()
        idx = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
        t = torch.sparse_coo_tensor(
            idx, torch.from_numpy(np.asarray(coo.data)), coo.shape, check_invariants=True
        )
    else:
        try:
            arr = np.asarray(matrix)
        except Exception as exc:  # noqa: BLE001 - any unreadable object is a format error here
            raise ValueError(f"{name}: expected an array, found {type(matrix).__name__}") from exc
        if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"{name}: expected a numeric array, found dtype {arr.dtype}")
        t = torch.from_numpy(arr)
    if t.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D matrix, found shape {tuple(t.shape)}")
    t = t.to(dtype)
    t = t.coalesce() if t.is_sparse else t.to_sparse()
    if not torch.isfinite(t.values()).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return t


def _unpickle(path: Path):
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as exc:  # noqa: BLE001 - report any unpickling failure with the file name
        error = exc
    try:  # some copies were written with joblib.dump, which plain pickle cannot read back
        import joblib

        return joblib.load(path)
    except Exception:  # noqa: BLE001 - the first error is the informative one
        pass
    raise ValueError(
        f"path: could not unpickle {path} ({type(error).__name__}: {error}); {_SMPLX2SMPL_SOURCE}"
    ) from error


def load_smplx_to_smpl(
    path: str | Path,
    num_smpl_vertices: int = NUM_SMPL_VERTICES,
    num_smplx_vertices: int = NUM_SMPLX_VERTICES,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Read ``smplx2smpl.pkl`` -> sparse COO tensor ``(num_smpl_vertices, num_smplx_vertices)``.

    The pickle holds a dict with key ``"matrix"`` (a numpy array, or a scipy sparse matrix).
    Raises ``FileNotFoundError`` naming the path and the file's origin, ``ValueError`` for a
    wrong key, type or shape.
    """
    path = _existing(path, "smplx2smpl matrix", _SMPLX2SMPL_SOURCE)
    data = _unpickle(path)
    if not isinstance(data, dict) or "matrix" not in data:
        found = sorted(map(str, data)) if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"path: {path} should hold a dict with key 'matrix', found {found}")
    m = _to_sparse(data["matrix"], f"matrix in {path}", dtype)
    expected = (num_smpl_vertices, num_smplx_vertices)
    if tuple(m.shape) != expected:
        raise ValueError(f"matrix in {path}: expected shape {expected}, found {tuple(m.shape)}")
    return m


def smplx_to_smpl_vertices(vertices: Tensor, matrix: Tensor, num_smplx_vertices: int | None = None) -> Tensor:
    """SMPL-X vertices ``(..., 10475, 3)`` -> SMPL vertices ``(..., 6890, 3)``.

    Args:
        vertices: ``(..., Vx, 3)``.
        matrix: ``(Vs, Vx)`` dense or sparse (from :func:`load_smplx_to_smpl`); moved to the
            vertices' device and dtype.
        num_smplx_vertices: expected ``Vx`` (default: the matrix's column count).

    Differentiable in ``vertices``.
    """
    if not isinstance(matrix, Tensor) or matrix.dim() != 2:
        found = tuple(matrix.shape) if isinstance(matrix, Tensor) else type(matrix).__name__
        raise ValueError(f"matrix: expected a 2-D tensor (Vs, Vx), found {found}")
    vx = matrix.shape[1] if num_smplx_vertices is None else num_smplx_vertices
    if matrix.shape[1] != vx:
        raise ValueError(f"matrix: expected {vx} columns, found shape {tuple(matrix.shape)}")
    if vertices.dim() < 2 or tuple(vertices.shape[-2:]) != (vx, 3):
        raise ValueError(f"vertices: expected shape (..., {vx}, 3), found {tuple(vertices.shape)}")
    m = matrix.to(dtype=vertices.dtype, device=vertices.device)
    batch = vertices.shape[:-2]
    x = vertices.reshape(-1, vx, 3).permute(1, 0, 2).reshape(vx, -1)  # (Vx, B * 3)
    out = torch.sparse.mm(m, x) if m.is_sparse else m @ x
    return out.reshape(m.shape[0], -1, 3).permute(1, 0, 2).reshape(*batch, m.shape[0], 3)


def load_h36m_regressor(
    path: str | Path, num_vertices: int = NUM_SMPL_VERTICES, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Read ``J_regressor_h36m.npy`` -> dense ``(17, num_vertices)`` tensor (H36M-17 row order).

    Select the evaluation joints with :data:`H36M17_TO_LSP14`. Raises ``FileNotFoundError``
    naming the path and the file's origin, ``ValueError`` for a wrong shape or non-finite values.
    """
    path = _existing(path, "J_regressor_h36m", _H36M_SOURCE)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - report any read failure with the file name
        raise ValueError(
            f"path: could not read {path} as a .npy array ({type(exc).__name__}: {exc})"
        ) from exc
    if arr.shape != (17, num_vertices):
        raise ValueError(
            f"J_regressor_h36m in {path}: expected shape (17, {num_vertices}), found {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise ValueError(f"J_regressor_h36m in {path}: expected finite numbers, found dtype {arr.dtype}")
    return torch.from_numpy(np.asarray(arr, dtype=np.float64)).to(dtype)
