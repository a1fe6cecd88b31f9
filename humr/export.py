"""Hypotheses out to files: one ``.npz`` of arrays, and meshes (OBJ, GLB) coloured by their spread.

:func:`save_npz` writes, for ``B`` persons with ``S`` hypotheses each (index 0 = the mode, the
flow's z = 0), ``J`` body joints and the 17 COCO keypoints:

==================  ==================  ==========================================================
key                 shape               meaning
==================  ==================  ==========================================================
``format``          () str              ``"humr.hypotheses/1"``
``body``            () str              the body model (``"anny"``, ``"smplx"``, ``"smpl"``)
``joint_names``     (J,) str            order of the joints in ``rotmat``
``keypoint_names``  (17,) str           order of the keypoints (COCO-17, ``coco_`` prefixed)
``rotmat``          (B, S, J, 3, 3)     joint rotations, parent-relative; the root's is the body's
                                        orientation in the camera frame
``shape``           (B, num_shape)      body shape coefficients (one per person)
``camera``          (B, 3)              weak-perspective ``[s, tx, ty]`` of the crop
``translation``     (B, 3)              root translation in the camera frame (metres)
``focal``           (B,)                focal length (pixels); principal point = image centre
``center``          (B, 2)              person box centre (pixels)
``box_size``        (B,)                square person box side (pixels)
``image_size``      (B, 2)              image ``(W, H)`` (pixels)
``keypoints_3d``    (B, S, 17, 3)       keypoints in the camera frame (metres; x right, y down,
                                        z forward)
``keypoints_2d``    (B, S, 17, 2)       their projections in image pixels
``log_likelihood``  (B, S)              flow log-density of each hypothesis (NaN: not computed)
``joint_spread``    (B, 17)             per-keypoint 3D spread (mm): mean distance of the S
                                        hypotheses (mode included) to their mean
``mode_index``      (B,) int            index of the mode (0)
``selected_index``  (B,) int            the hypothesis :func:`humr.eval.select.select_hypotheses`
                                        chooses without ground truth
==================  ==================  ==========================================================

:func:`load_npz` reads it back (the same arrays, strings as ``str``). :func:`save_meshes`
writes chosen hypotheses as meshes with the body's own faces (needs ``trimesh``, the ``export``
extra), each vertex coloured by the per-vertex spread of the person's hypotheses so that a
viewer shows where the body is uncertain.

Example:
    >>> from humr.export import mesh_colors
    >>> import torch
    >>> mesh_colors(torch.tensor([0.0, 75.0, 1000.0]), (0.0, 150.0))[:, :3].tolist()
    [[38, 77, 217], [242, 217, 51], [230, 25, 26]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from humr.bodies.base import BODY_JOINT_NAMES, COCO17_NAMES, BodyModel
from humr.cameras import crop_to_image
from humr.model.hypotheses import Hypotheses

__all__ = [
    "FORMAT",
    "NPZ_KEYS",
    "body_name",
    "body_joint_names",
    "concat_hypotheses",
    "save_npz",
    "load_npz",
    "mesh_colors",
    "save_meshes",
]

FORMAT = "humr.hypotheses/1"
#: Every key :func:`save_npz` writes (see the module table).
NPZ_KEYS: tuple[str, ...] = (
    "format", "body", "joint_names", "keypoint_names", "rotmat", "shape", "camera", "translation", "focal",
    "center", "box_size", "image_size", "keypoints_3d", "keypoints_2d", "log_likelihood", "joint_spread",
    "mode_index", "selected_index",
)
_STRING_KEYS = ("format", "body")
_BODY_NAMES = {"AnnyBody": "anny", "SMPLXBody": "smplx", "SMPLBody": "smpl"}
_CAMERA_KEYS = ("center", "box_size", "focal", "image_size")
#: Colour ramp of the spread: low (blue), middle (yellow), high (red); RGB in [0, 1].
_RAMP = np.array([[0.15, 0.30, 0.85], [0.95, 0.85, 0.20], [0.90, 0.10, 0.10]])


def body_name(body: BodyModel) -> str:
    """The name :func:`humr.bodies.factory.build_body` knows the body by (else its class name)."""
    return _BODY_NAMES.get(type(body).__name__, type(body).__name__)


def body_joint_names(body: BodyModel) -> tuple[str, ...]:
    """Names of the body's ``num_pose_joints`` modelled joints, in the order of ``rotmat``."""
    names = getattr(body, "joint_names", None)
    names = tuple(names) if names is not None else BODY_JOINT_NAMES
    return tuple(names[: body.num_pose_joints])


def concat_hypotheses(parts: Sequence[Hypotheses]) -> Hypotheses:
    """Hypotheses of several batches as one (fields concatenated along the person axis)."""
    if not parts:
        raise ValueError("parts: expected at least one Hypotheses, found none")
    values = {}
    for f in fields(Hypotheses):
        items = [getattr(p, f.name) for p in parts]
        if all(x is None for x in items):
            values[f.name] = None
        elif any(x is None for x in items):
            raise ValueError(f"parts: field {f.name!r} is set in some parts and None in others")
        else:
            values[f.name] = torch.cat(items)
    return Hypotheses(**values)


def _camera(batch: Mapping[str, Tensor], b: int, like: Tensor) -> dict[str, Tensor]:
    missing = [k for k in _CAMERA_KEYS if k not in batch]
    if missing:
        raise ValueError(f"batch: expected the model batch's {list(_CAMERA_KEYS)}, missing {missing}")
    out = {k: torch.as_tensor(batch[k]).to(like) for k in _CAMERA_KEYS}
    for k, shape in (("center", (b, 2)), ("box_size", (b,)), ("focal", (b,)), ("image_size", (b, 2))):
        if tuple(out[k].shape) != shape:
            raise ValueError(f"batch[{k!r}]: expected shape {shape}, found {tuple(out[k].shape)}")
    return out


def _selected(hyps: Hypotheses, batch: Mapping[str, Tensor], selected: Tensor | None) -> Tensor:
    b, s = hyps.keypoints_2d.shape[:2]
    if selected is None:
        from humr.eval.select import select_hypotheses

        if "detector_keypoints" not in batch:
            raise ValueError("selected: give the selected indices, or a batch with 'detector_keypoints'")
        return select_hypotheses(hyps, batch).index
    selected = torch.as_tensor(selected)
    bad_shape = tuple(selected.shape) != (b,) or selected.is_floating_point()
    if bad_shape or ((selected < 0) | (selected >= s)).any():
        raise ValueError(f"selected: expected ({b},) integer indices in [0, {s}), found {selected}")
    return selected


def save_npz(
    path: str | Path,
    hyps: Hypotheses, body: BodyModel,
    batch: Mapping[str, Tensor],
    selected: Tensor | None = None,
    name: str | None = None,
) -> Path:
    """Write ``hyps`` with the keys of the module table to ``path`` (``.npz``); returns the path.

    Args:
        hyps: the model's hypotheses for ``B`` persons.
        body: the model's body (joint names and its name).
        batch: the model's input batch: ``center``, ``box_size``, ``focal``, ``image_size`` (and
            ``detector_keypoints`` etc. to choose the selected hypothesis when ``selected`` is None).
        selected: ``(B,)`` indices of the selected hypotheses (default: chosen by
            :func:`humr.eval.select.select_hypotheses` from ``batch``).
        name: the body's name (default :func:`body_name`).
    """
    kp = hyps.keypoints_3d.detach()
    b, s = kp.shape[:2]
    cam = _camera(batch, b, kp)
    chosen = _selected(hyps, batch, selected)
    log_prob = hyps.log_prob if hyps.log_prob is not None else torch.full((b, s), float("nan"))
    c = lambda t: t.detach().cpu().float().numpy()  # noqa: E731
    arrays = {
        "format": np.array(FORMAT),
        "body": np.array(name or body_name(body)),
        "joint_names": np.array(body_joint_names(body)),
        "keypoint_names": np.array(COCO17_NAMES),
        "rotmat": c(hyps.rotmat),
        "shape": c(hyps.shape),
        "camera": c(hyps.camera),
        "translation": c(hyps.translation),
        **{k: c(v) for k, v in cam.items()},
        "keypoints_3d": c(kp + hyps.translation.to(kp)[:, None, None]),
        "keypoints_2d": c(
            crop_to_image(hyps.keypoints_2d.detach(), cam["center"][:, None], cam["box_size"][:, None])
        ),
        "log_likelihood": c(log_prob),
        "joint_spread": c(hyps.joint_spread()),
        "mode_index": np.zeros(b, np.int64),
        "selected_index": chosen.detach().cpu().numpy().astype(np.int64),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **arrays)
    return path


def load_npz(path: str | Path) -> dict[str, np.ndarray | str]:
    """Read a :func:`save_npz` file: the module table's arrays (``format`` and ``body`` as ``str``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path: no file at {path} (written by humr.export.save_npz or "
                                "recipes/predict.py --export npz)")
    with np.load(path, allow_pickle=False) as data:
        out: dict[str, np.ndarray | str] = {k: data[k] for k in data.files}
    missing = [k for k in NPZ_KEYS if k not in out]
    if missing or str(out.get("format")) != FORMAT:
        raise ValueError(f"path: {path} is not a {FORMAT} file (missing {missing}, format "
                         f"{out.get('format')!s})")
    for k in _STRING_KEYS:
        out[k] = str(out[k])
    return out


def mesh_colors(
    spread: Tensor | np.ndarray, spread_range_mm: tuple[float, float] = (0.0, 150.0)
) -> np.ndarray:
    """RGBA ``uint8`` colours ``(V, 4)`` of per-vertex spreads ``(V,)`` (mm) on a blue-yellow-red ramp.

    ``spread_range_mm = (low, high)``: spreads at or below ``low`` are blue, at or above ``high`` red.
    """
    low, high = (float(v) for v in spread_range_mm)
    if not (math.isfinite(low) and math.isfinite(high) and high > low):
        raise ValueError(
            f"spread_range_mm: expected finite (low, high) with low < high, found {spread_range_mm}"
        )
    x = np.asarray(spread.detach().cpu() if isinstance(spread, Tensor) else spread, np.float64)
    t = np.clip((x - low) / (high - low), 0.0, 1.0) * (len(_RAMP) - 1)
    i = np.minimum(t.astype(np.int64), len(_RAMP) - 2)
    rgb = _RAMP[i] + (t - i)[:, None] * (_RAMP[i + 1] - _RAMP[i])
    rgba = np.concatenate([rgb, np.ones((len(x), 1))], 1)
    return (rgba * 255 + 0.5).astype(np.uint8)


def _which(which: str, k: int, s: int) -> list[str]:
    parts = [p for p in which.split("+") if p]
    bad = [p for p in parts if p not in ("mode", "selected", "samples")]
    if bad or not parts:
        raise ValueError(f"which: expected '+'-joined 'mode', 'selected', 'samples', found {which!r}")
    if "samples" in parts and k < 0:
        raise ValueError(f"k: expected >= 0 samples, found {k}")
    return parts


def save_meshes(
    folder: str | Path,
    hyps: Hypotheses, body: BodyModel,
    which: str = "mode+selected+samples",
    k: int = 4,
    selected: Tensor | None = None,
    batch: Mapping[str, Tensor] | None = None,
    formats: Sequence[str] = ("obj", "glb"),
    frame: str = "camera",
    names: Sequence[str] | None = None,
    spread_range_mm: tuple[float, float] = (0.0, 150.0),
) -> list[Path]:
    """Write hypotheses as meshes with the body's faces, coloured by the per-vertex spread.

    Files: ``folder/{name}_{tag}.{format}`` with ``tag`` = ``mode``, ``selected`` or
    ``sample01 .. sampleK`` (hypotheses 1 .. k, the first random draws) for each person.

    Args:
        hyps: ``B`` persons' hypotheses.
        body: the model's body (its ``faces`` are the meshes' topology).
        which: ``'+'``-joined subset of ``mode``, ``selected``, ``samples``.
        k: random samples per person for ``samples`` (at most ``S - 1``).
        selected: ``(B,)`` selected indices (default chosen from ``batch``, see :func:`save_npz`).
        batch: the model's batch (needed for ``selected`` without indices).
        formats: ``"obj"`` and / or ``"glb"``.
        frame: ``"camera"`` (vertices + translation: x right, y down, z forward, so that several
            persons keep their places) or ``"body"`` (SMPL axes, +y up, root at the origin).
        names: file stem per person (default ``person0000``, ...).
        spread_range_mm: colour ramp range of :func:`mesh_colors`.

    Returns:
        The written paths.
    """
    try:
        import trimesh
    except ImportError as err:
        raise ImportError("save_meshes needs trimesh: pip install 'humr[export]'") from err
    b, s = hyps.rotmat.shape[:2]
    parts = _which(which, k, s)
    bad = [f for f in formats if f not in ("obj", "glb")]
    if bad or not formats:
        raise ValueError(f"formats: expected 'obj' and / or 'glb', found {list(formats)}")
    if frame not in ("camera", "body"):
        raise ValueError(f"frame: expected 'camera' or 'body', found {frame!r}")
    names = [f"person{i:04d}" for i in range(b)] if names is None else list(names)
    if len(names) != b:
        raise ValueError(f"names: expected {b} file stems, found {len(names)}")
    chosen = _selected(hyps, batch or {}, selected) if "selected" in parts else None
    tags: list[tuple[str, Tensor]] = []  # (tag, (B,) hypothesis index)
    if "mode" in parts:
        tags.append(("mode", torch.zeros(b, dtype=torch.long)))
    if chosen is not None:
        tags.append(("selected", chosen.cpu().long()))
    if "samples" in parts:
        tags += [(f"sample{i:02d}", torch.full((b,), i)) for i in range(1, min(k, s - 1) + 1)]
    with torch.no_grad():
        colors = [mesh_colors(v) for v in hyps.vertex_spread(body).cpu()]
        faces = body.faces.cpu().numpy()
        rows = torch.arange(b)
        out_dir = Path(folder)
        out_dir.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        for tag, index in tags:  # a handful of meshes per person
            verts = body(hyps.rotmat[rows, index.to(hyps.rotmat.device)], hyps.shape).vertices
            if frame == "camera":
                verts = verts + hyps.translation[:, None].to(verts)
            for i in range(b):
                mesh = trimesh.Trimesh(verts[i].cpu().numpy(), faces, vertex_colors=colors[i], process=False)
                for fmt in formats:
                    path = out_dir / f"{names[i]}_{tag}.{fmt}"
                    mesh.export(path, file_type=fmt)
                    written.append(path)
    return written
