"""Writers of stand-in body-model files: the real keys, shapes and kinematic trees, random values.

The SMPL-X and SMPL model files need a licence (https://smpl-x.is.tue.mpg.de,
https://smpl.is.tue.mpg.de) and cannot be downloaded by tests or benchmarks. These writers
produce files that ``smplx`` and :mod:`humr.bodies` read exactly like the released ones, with
random but well-formed contents (rows of regressors and skinning weights are convex
combinations, faces are valid triangles), so code paths, shapes and costs are the real ones.
They are *not* bodies: never train or evaluate with them.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> p = write_smplx_npz(d / "SMPLX_NEUTRAL.npz", num_vertices=200)
    >>> import numpy as np; np.load(p)["J_regressor"].shape
    (55, 200)
"""

from __future__ import annotations

import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

__all__ = [
    "SMPLX_PARENTS",
    "SMPL_PARENTS",
    "write_smplx_npz",
    "write_smpl_npz",
    "write_smplx_to_smpl_pkl",
    "write_h36m_regressor",
    "write_damaged_copy",
    "random_convex_rows",
]

# fmt: off
#: The SMPL-X kinematic tree (55 joints): 22 body joints, jaw, two eyes, 15 joints per hand.
SMPLX_PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19,
    15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)
#: The SMPL kinematic tree (24 joints): the 22 body joints and the two hands.
SMPL_PARENTS: tuple[int, ...] = SMPLX_PARENTS[:22] + (20, 21)
# fmt: on

_SMPLX_FACES = 20908
_SMPL_FACES = 13776


def random_convex_rows(rows: int, cols: int, support: int, rng: np.random.Generator) -> np.ndarray:
    """``(rows, cols)`` float32 matrix whose rows hold ``support`` positive entries summing to 1."""
    support = min(support, cols)
    out = np.zeros((rows, cols), dtype=np.float32)
    # Distinct indices per row without a (rows, cols) sort: sorted draws from [0, cols - support]
    # plus 0, 1, ..., support - 1 are strictly increasing.
    idx = np.sort(rng.integers(0, cols - support + 1, (rows, support)), axis=1) + np.arange(support)
    vals = rng.dirichlet(np.ones(support), size=rows).astype(np.float32)
    np.put_along_axis(out, idx, vals, axis=1)
    return out


def _faces(num_vertices: int, num_faces: int, rng: np.random.Generator) -> np.ndarray:
    # Three distinct vertices per triangle.
    a = rng.integers(0, num_vertices, num_faces)
    b = (a + 1 + rng.integers(0, num_vertices - 2, num_faces)) % num_vertices
    c = (b + 1 + rng.integers(0, num_vertices - 2, num_faces)) % num_vertices
    c = np.where(c == a, (c + 1) % num_vertices, c)
    c = np.where(c == b, (c + 1) % num_vertices, c)
    return np.stack([a, b, c], 1).astype(np.int64)


def _lbs_arrays(
    num_vertices: int,
    parents: tuple[int, ...],
    num_shape: int,
    real_size: tuple[int, int],
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The arrays every linear-blend-skinning model file holds; ``real_size`` is the released
    model's ``(vertices, faces)``: its face count at its vertex count, ``2 V`` faces otherwise."""
    if num_vertices < 4:
        raise ValueError(f"num_vertices: expected at least 4, found {num_vertices}")
    num_faces = real_size[1] if num_vertices == real_size[0] else 2 * num_vertices
    n_joints = len(parents)
    # A body-sized box (metres); blend shapes at a plausible scale (cm per unit coefficient).
    v_template = (rng.random((num_vertices, 3), dtype=np.float32) - 0.5) * np.array(
        [0.8, 1.7, 0.3], np.float32
    )
    return {
        "v_template": v_template,
        "f": _faces(num_vertices, num_faces, rng),
        "shapedirs": rng.standard_normal((num_vertices, 3, num_shape), dtype=np.float32) * 0.01,
        "posedirs": rng.standard_normal((num_vertices, 3, 9 * (n_joints - 1)), dtype=np.float32) * 0.01,
        "J_regressor": random_convex_rows(n_joints, num_vertices, 12, rng),
        "weights": random_convex_rows(num_vertices, n_joints, 3, rng),
        "kintree_table": np.stack([np.array(parents, np.int64), np.arange(n_joints, dtype=np.int64)]),
    }


def _save_npz(path: str | Path, arrays: dict[str, np.ndarray],
              edit: Callable[[dict[str, np.ndarray]], None] | None) -> Path:
    if edit is not None:
        edit(arrays)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def write_smplx_npz(
    path: str | Path,
    num_vertices: int = 10475,
    seed: int = 0,
    num_shape_components: int = 400,
    edit: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> Path:
    """Write a SMPL-X-format ``.npz`` (``SMPLX_NEUTRAL.npz`` layout) with random values.

    Keys and shapes as released: ``v_template (V, 3)``, ``f (F, 3)``, ``shapedirs (V, 3, 400)``
    (300 shape + 100 expression), ``posedirs (V, 3, 486)``, ``J_regressor (55, V)``,
    ``weights (V, 55)``, ``kintree_table (2, 55)``, ``hands_components{l,r} (45, 45)``,
    ``hands_mean{l,r} (45,)``, ``lmk_faces_idx (51,)``, ``lmk_bary_coords (51, 3)``.
    ``F`` is 20,908 at the real vertex count, about ``2 V`` otherwise. ``edit`` may change the
    arrays (in place) before they are written, e.g. put a NaN in one.
    """
    rng = np.random.default_rng(seed)
    arrays = _lbs_arrays(num_vertices, SMPLX_PARENTS, num_shape_components, (10475, _SMPLX_FACES), rng)
    eye = np.eye(45, dtype=np.float32)
    arrays.update(
        hands_componentsl=eye,
        hands_componentsr=eye,
        hands_meanl=np.zeros(45, np.float32),
        hands_meanr=np.zeros(45, np.float32),
        lmk_faces_idx=rng.integers(0, len(arrays["f"]), 51).astype(np.int64),
        lmk_bary_coords=rng.dirichlet(np.ones(3), 51).astype(np.float32),
    )
    return _save_npz(path, arrays, edit)


# The writers share one argument layout on purpose (path, sizes, seed, then options).
def write_smpl_npz(
    path: str | Path,
    num_vertices: int = 6890,
    seed: int = 0,
    num_shape_components: int = 10,
    edit: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> Path:
    """Write a SMPL-format ``.npz`` with random values.

    Keys and shapes of the released SMPL model: ``v_template (V, 3)``, ``f (F, 3)``,
    ``shapedirs (V, 3, 10)``, ``posedirs (V, 3, 207)``, ``J_regressor (24, V)`` (dense here),
    ``weights (V, 24)``, ``kintree_table (2, 24)``; ``F`` is 13,776 at the real vertex count.
    ``edit`` may change the arrays (in place) before they are written.
    """
    rng = np.random.default_rng(seed)
    arrays = _lbs_arrays(num_vertices, SMPL_PARENTS, num_shape_components, (6890, _SMPL_FACES), rng)
    return _save_npz(path, arrays, edit)


def write_smplx_to_smpl_pkl(
    path: str | Path,
    num_smpl_vertices: int = 6890,
    num_smplx_vertices: int = 10475,
    seed: int = 0,
    matrix: np.ndarray | None = None,
) -> Path:
    """Write a BEDLAM-CLIFF-format ``smplx2smpl.pkl``: a pickled dict ``{"matrix": (6890, 10475)}``.

    By default each SMPL vertex is a random barycentric combination of three SMPL-X vertices
    (the structure of the released matrix); pass ``matrix`` to write a given one.
    """
    if matrix is None:
        rng = np.random.default_rng(seed)
        matrix = random_convex_rows(num_smpl_vertices, num_smplx_vertices, 3, rng)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"matrix": np.asarray(matrix)}, f)
    return path


def write_h36m_regressor(
    path: str | Path, num_vertices: int = 6890, seed: int = 0, support: int = 400
) -> Path:
    """Write a ``J_regressor_h36m.npy``: ``(17, V)`` float32, each row a convex combination of
    ``support`` vertices (the released one regresses each H36M joint from many vertices)."""
    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, random_convex_rows(17, num_vertices, support, rng))
    return path


def write_damaged_copy(source: str | Path, path: str | Path, how: Literal["truncated", "corrupted"]) -> Path:
    """Copy a model file (an ``.npz``) to ``path``, damaged as downloads and disks damage files.

    ``"truncated"``: the first half of its bytes. ``"corrupted"``: 16 bytes overwritten in the
    middle of its largest archive member's data; the archive still opens, that member fails its
    CRC check when read.
    """
    data = bytearray(Path(source).read_bytes())
    if how == "truncated":
        data = data[: len(data) // 2]
    elif how == "corrupted":
        with zipfile.ZipFile(source) as archive:
            member = max(archive.infolist(), key=lambda m: m.compress_size)
        header = member.header_offset  # local header: 30 bytes, then the name and extra field
        name_len, extra_len = (int.from_bytes(data[header + i : header + i + 2], "little") for i in (26, 28))
        middle = header + 30 + name_len + extra_len + member.compress_size // 2
        data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    else:
        raise ValueError(f"how: expected 'truncated' or 'corrupted', found {how!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))
    return path
