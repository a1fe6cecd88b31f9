"""A small orthographic triangle renderer in numpy: z-buffer, flat shading, no OpenGL.

Enough for looking at mesh hypotheses (Fig. 5 style front and side views) on a machine
without a GPU or display. Every triangle is rasterized at once: each triangle's bounding
box of pixel centres is enumerated as (triangle, pixel) candidates, barycentric
coordinates keep the covered ones, and the nearest candidate per pixel wins (one sort).
A 27k-triangle body mesh at 256 x 256 takes a few tens of milliseconds.

Pixel convention: pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)`` in image coordinates
``(u, v)`` and is sampled at its centre ``(j + 0.5, i + 0.5)``.

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

__all__ = ["rasterize", "face_normals", "view_vertices", "fit_view", "render_mesh"]


def _np(x, name: str, shape_tail: tuple[int, ...], dtype=np.float64) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != len(shape_tail) or any(t is not None and s != t for s, t in zip(arr.shape, shape_tail)):
        expected = "(" + ", ".join("N" if t is None else str(t) for t in shape_tail) + ")"
        raise ValueError(f"{name}: expected shape {expected}, found {arr.shape}")
    return arr


def rasterize(screen: np.ndarray, faces: np.ndarray, height: int, width: int,
              max_candidates: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer rasterization of triangles given in screen space.

    Args:
        screen: ``(V, 3)`` vertices as ``(u, v, depth)``: pixel coordinates and a depth that
            grows away from the viewer.
        faces: ``(F, 3)`` vertex indices.
        height, width: image size in pixels.
        max_candidates: (triangle, pixel) candidates processed per chunk (bounds memory).

    Returns:
        ``(face_index (H, W) int64, -1 where empty; depth (H, W) float64, inf where empty)``.
        A pixel whose centre lies in (or on an edge of) several triangles takes the nearest.
    """
    screen = _np(screen, "screen", (None, 3))
    faces = _np(faces, "faces", (None, 3), dtype=np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= len(screen)):
        raise ValueError(f"faces: expected indices in [0, {len(screen)}), "
                         f"found [{faces.min()}, {faces.max()}]")
    tri = screen[faces]  # (F, 3, 3)
    u, v = tri[..., 0], tri[..., 1]
    # Pixel centres j + 0.5 inside [min u, max u]: j in [ceil(min u - 0.5), floor(max u - 0.5)].
    j0 = np.clip(np.ceil(u.min(1) - 0.5), 0, width).astype(np.int64)
    j1 = np.clip(np.floor(u.max(1) - 0.5), -1, width - 1).astype(np.int64)
    i0 = np.clip(np.ceil(v.min(1) - 0.5), 0, height).astype(np.int64)
    i1 = np.clip(np.floor(v.max(1) - 0.5), -1, height - 1).astype(np.int64)
    nx, ny = np.maximum(j1 - j0 + 1, 0), np.maximum(i1 - i0 + 1, 0)
    area2 = ((u[:, 1] - u[:, 0]) * (v[:, 2] - v[:, 0]) - (u[:, 2] - u[:, 0]) * (v[:, 1] - v[:, 0]))
    keep = np.flatnonzero((nx * ny > 0) & (area2 != 0) & np.isfinite(tri).all(axis=(1, 2)))

    best_face = np.full(height * width, -1, dtype=np.int64)
    best_depth = np.full(height * width, np.inf)
    counts = (nx * ny)[keep]
    # Chunks of whole triangles starting within the same block of max_candidates candidates.
    chunk_id = (np.cumsum(counts) - counts) // max_candidates
    for chunk in np.split(keep, np.flatnonzero(np.diff(chunk_id)) + 1):
        if chunk.size == 0:
            continue
        cnt = nx[chunk] * ny[chunk]
        f = np.repeat(chunk, cnt)
        off = np.arange(f.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        px = j0[f] + off % nx[f]
        py = i0[f] + off // nx[f]
        cu, cv = px + 0.5, py + 0.5
        tu, tv, tz = u[f], v[f], tri[f, :, 2]
        # Barycentric weights from edge functions, normalised by the signed double area.
        w0 = (tu[:, 1] - cu) * (tv[:, 2] - cv) - (tu[:, 2] - cu) * (tv[:, 1] - cv)
        w1 = (tu[:, 2] - cu) * (tv[:, 0] - cv) - (tu[:, 0] - cu) * (tv[:, 2] - cv)
        a = area2[f]
        b0, b1 = w0 / a, w1 / a
        b2 = 1.0 - b0 - b1
        eps = -1e-9
        inside = (b0 >= eps) & (b1 >= eps) & (b2 >= eps)
        lin = (py * width + px)[inside]
        depth = (b0 * tz[:, 0] + b1 * tz[:, 1] + b2 * tz[:, 2])[inside]
        f = f[inside]
        order = np.lexsort((depth, lin))  # by pixel, nearest first
        lin, depth, f = lin[order], depth[order], f[order]
        first = np.ones(lin.size, dtype=bool)
        first[1:] = lin[1:] != lin[:-1]
        lin, depth, f = lin[first], depth[first], f[first]
        closer = depth < best_depth[lin]
        best_face[lin[closer]] = f[closer]
        best_depth[lin[closer]] = depth[closer]
    return best_face.reshape(height, width), best_depth.reshape(height, width)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Unit normals ``(F, 3)`` of ``faces (F, 3)`` over ``vertices (V, 3)``; zero for degenerate ones."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, norm, out=np.zeros_like(n), where=norm > 0)


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
    screen = np.empty_like(verts)
    screen[:, 0] = (verts[:, 0] - center[0]) * scale + width / 2.0
    screen[:, 1] = (verts[:, 1] - center[1]) * scale + height / 2.0
    screen[:, 2] = verts[:, 2]
    face_idx, _ = rasterize(screen, faces, height, width)
    l_dir = np.asarray(light, dtype=np.float64)
    l_dir = l_dir / np.linalg.norm(l_dir)
    shade = ambient + (1.0 - ambient) * np.abs(face_normals(verts, faces) @ l_dir)  # (F,)
    face_rgb = shade[:, None] * np.asarray(color, dtype=np.float64)[None]
    img = np.empty((height, width, 3), dtype=np.float32)
    img[:] = np.asarray(background, dtype=np.float32)
    hit = face_idx >= 0
    img[hit] = face_rgb[face_idx[hit]]
    return np.clip(img, 0.0, 1.0)
