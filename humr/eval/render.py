"""Orthographic mesh pictures (Fig. 5 style front and side views): flat shading, no OpenGL.

Enough for looking at mesh hypotheses on a machine without a GPU or display. The triangles go
through humr's one rasterizer, :func:`humr.data.render.rasterize` (batched z-buffer, depth
interpolated linearly for an orthographic view); a 27k-triangle body mesh at 256 x 256 takes a
few tens of milliseconds.

Pixel convention: pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)`` in image coordinates
``(u, v)`` (the image spans ``[0, W] x [0, H]``) and is sampled at its centre
``(j + 0.5, i + 0.5)``; :func:`render_mesh` hands the rasterizer ``u - 0.5, v - 0.5``, its
centres-at-integers convention.

Example:
    >>> import numpy as np
    >>> verts = np.array([[-1.0, -1.0, 0.0], [1.0, -1.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 1.0, 0.0]])
    >>> faces = np.array([[0, 1, 2], [0, 2, 3]])
    >>> img = render_mesh(verts, faces, height=8, width=8, scale=4.0)   # a square filling the frame
    >>> bool((img < 1.0).all())
    True
"""

from __future__ import annotations

import numpy as np
import torch

from humr.data.render import face_normals, rasterize

__all__ = ["view_vertices", "fit_view", "render_mesh"]


def _np(x, name: str, shape_tail: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != len(shape_tail) or any(t is not None and s != t for s, t in zip(arr.shape, shape_tail)):
        expected = "(" + ", ".join("N" if t is None else str(t) for t in shape_tail) + ")"
        raise ValueError(f"{name}: expected shape {expected}, found {arr.shape}")
    return arr


def view_vertices(vertices: np.ndarray, frame: str = "camera", yaw_degrees: float = 0.0,
                  pivot: np.ndarray | None = None) -> np.ndarray:
    """Vertices ``(..., V, 3)`` -> view space ``(x right, y down, z away from the viewer)``.

    ``frame="camera"``: OpenCV camera axes (x right, y down, z forward), the front view is
    the camera's. ``frame="body"``: SMPL axes (+y up, the body faces +z), the front view
    looks at the body's front. ``yaw_degrees`` then turns the mesh about the vertical axis
    through ``pivot (3,)`` (view space; default the centre of the bounding box): 90 is a
    side view.
    """
    if frame == "camera":
        out = np.array(vertices, dtype=np.float64, copy=True)
    elif frame == "body":
        out = np.asarray(vertices, dtype=np.float64) * np.array([1.0, -1.0, -1.0])
    else:
        raise ValueError(f"frame: expected 'camera' or 'body', found {frame!r}")
    if yaw_degrees:
        flat = out.reshape(-1, 3)
        c = (flat.min(0) + flat.max(0)) / 2 if pivot is None else np.asarray(pivot, dtype=np.float64)
        t = np.deg2rad(yaw_degrees)
        rot = np.array([[np.cos(t), 0.0, np.sin(t)], [0.0, 1.0, 0.0], [-np.sin(t), 0.0, np.cos(t)]])
        out = (out - c) @ rot.T + c
    return out


def fit_view(view: np.ndarray, height: int, width: int, margin: float = 0.05) -> tuple[np.ndarray, float]:
    """Centre ``(2,)`` and scale (pixels per unit) that fit view-space points ``(..., 3)`` in an image."""
    flat = np.asarray(view).reshape(-1, 3)[:, :2]
    lo, hi = flat.min(0), flat.max(0)
    ext = np.maximum(hi - lo, 1e-9)
    scale = float(min(width / ext[0], height / ext[1]) * (1.0 - 2.0 * margin))
    return (lo + hi) / 2.0, scale


def render_mesh(
    vertices,
    faces,
    height: int,
    width: int,
    center: np.ndarray | None = None,
    scale: float | None = None,
    color: tuple[float, float, float] = (0.65, 0.74, 0.86),
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    ambient: float = 0.35,
    light: tuple[float, float, float] = (0.3, -0.4, -1.0),
) -> np.ndarray:
    """Flat-shaded orthographic render of a mesh given in view space.

    Args:
        vertices: ``(V, 3)`` view-space vertices (x right, y down, z away; see
            :func:`view_vertices`), numpy or torch.
        faces: ``(F, 3)`` vertex indices.
        height, width: image size in pixels.
        center: ``(2,)`` view-space point drawn at the image centre (default: the mesh's
            bounding-box centre).
        scale: pixels per view-space unit (default: fit the mesh, see :func:`fit_view`).
        color: base RGB in [0, 1]; each face gets ``color * (ambient + (1 - ambient) |n . l|)``.
        background: RGB of empty pixels.
        ambient: share of light independent of the face's orientation.
        light: direction towards the light, view space (two-sided).

    Returns:
        ``(H, W, 3)`` float32 image in [0, 1].
    """
    verts = _np(vertices, "vertices", (None, 3))
    faces = _np(faces, "faces", (None, 3), dtype=np.int64)
    if center is None or scale is None:
        c, s = fit_view(verts, height, width)
        center = c if center is None else np.asarray(center, dtype=np.float64)
        scale = s if scale is None else float(scale)
    # Image coordinates u, v minus half a pixel: the rasterizer's pixel centres sit at integers.
    pixels = np.stack([(verts[:, 0] - center[0]) * scale + (width - 1) / 2.0,
                       (verts[:, 1] - center[1]) * scale + (height - 1) / 2.0], -1)
    depth = verts[:, 2] - verts[:, 2].min() + 1.0  # orthographic: any shift keeps the order; > 0
    points, faces_t = torch.from_numpy(pixels)[None], torch.from_numpy(faces)
    face_idx = rasterize(points, torch.from_numpy(depth)[None], faces_t, (height, width), perspective=False)
    face_idx = face_idx[0].numpy()
    normals = face_normals(torch.from_numpy(verts)[None], faces_t)[0][0]  # (F, 3)
    unit = (normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12)).numpy()  # 0 if degenerate
    l_dir = np.asarray(light, dtype=np.float64)
    l_dir = l_dir / np.linalg.norm(l_dir)
    shade = ambient + (1.0 - ambient) * np.abs(unit @ l_dir)  # (F,)
    face_rgb = shade[:, None] * np.asarray(color, dtype=np.float64)[None]
    img = np.empty((height, width, 3), dtype=np.float32)
    img[:] = np.asarray(background, dtype=np.float32)
    hit = face_idx >= 0
    img[hit] = face_rgb[face_idx[hit]]
    return np.clip(img, 0.0, 1.0)
