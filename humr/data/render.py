"""A small batched z-buffer rasterizer and the image pieces of the synthetic data set.

The rasterizer samples triangles at pixel centres: pixel ``(row i, col j)`` is centred at
``(x=j, y=i)``, so an ``H x W`` grid spans ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` (OpenCV's
convention, shared by :func:`object_mask` and the synthetic set's grids; a caller with
coordinates in ``[0, W]`` subtracts 0.5). It is batched over frames and triangles in torch with
no Python loop: each triangle enumerates the pixel centres of its bounding box, keeps those
inside it (barycentric test, edges inclusive so shared edges leave no pinholes), and one
``scatter_reduce(amin)`` over a key ``(quantized depth, face id)`` keeps the nearest face per
pixel, ties broken by the face id, so the result is deterministic. Its output is a face-index
buffer: colours, person masks and occlusion tests are all read from it. It is humr's one
rasterizer: the mesh pictures of :mod:`humr.eval.render` use it too, with linear depth
(``perspective=False``) for their orthographic views.

The image helpers (part labels, shading, textures, objects) are numpy/OpenCV and take a
``numpy.random.Generator``; OpenCV (the ``vision`` extra) is imported by the two that use it,
so the rasterizer needs torch only.

Example:
    >>> import torch
    >>> tri = torch.tensor([[[1.0, 1.0], [6.0, 1.0], [1.0, 6.0]]])
    >>> faces = torch.tensor([[0, 1, 2]])
    >>> buf = rasterize(tri, torch.ones(1, 3), faces, (8, 8))
    >>> int((buf >= 0).sum())   # pixel centres with x + y <= 7 and x, y >= 1
    21
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "rasterize",
    "face_normals",
    "front_facing",
    "face_shading",
    "read_obj_mesh",
    "proxy_mesh",
    "vertex_parts",
    "part_palette",
    "background_texture",
    "OBJECT_KINDS",
    "object_mask",
    "object_texture",
]

_DEPTH_SCALE = 1e5  # depth quantum of the z-buffer key: 10 micrometres
_FACE_BITS = 32


def rasterize(
    points: Tensor,
    depth: Tensor,
    faces: Tensor,
    size: tuple[int, int],
    face_valid: Tensor | None = None,
    perspective: bool = True,
) -> Tensor:
    """Nearest-face index per pixel centre.

    Args:
        points: ``(B, V, 2)`` vertex positions ``(x, y)`` in pixels of the output grid.
        depth: ``(B, V)`` vertex depths (> 0 in front of the camera); interpolated
            perspective-correctly (``1/z`` is linear in the image).
        faces: ``(F, 3)`` int vertex indices.
        size: ``(H, W)`` of the output grid.
        face_valid: optional ``(B, F)`` bool; False faces are skipped (culled, absent).
        perspective: depth interpolated perspective-correctly (``1/z`` linear in the image: a
            pinhole camera) or, with False, linearly (an orthographic view).

    Returns:
        ``(B, H, W)`` int64: the index in ``[0, F)`` of the nearest face covering each pixel
        centre, or -1.
    """
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ValueError(f"points: expected shape (B, V, 2), found {tuple(points.shape)}")
    b, v, _ = points.shape
    if depth.shape != (b, v):
        raise ValueError(f"depth: expected shape {(b, v)}, found {tuple(depth.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"faces: expected shape (F, 3), found {tuple(faces.shape)}")
    nf = faces.shape[0]
    if face_valid is not None and face_valid.shape != (b, nf):
        raise ValueError(f"face_valid: expected shape {(b, nf)}, found {tuple(face_valid.shape)}")
    h, w = int(size[0]), int(size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"size: expected positive (H, W), found {size}")
    if nf >= 2 ** (_FACE_BITS - 1):
        raise ValueError(f"faces: at most {2 ** (_FACE_BITS - 1) - 1} faces, found {nf}")
    low, high = (int(faces.min()), int(faces.max())) if nf else (0, 0)
    if low < 0 or high >= v:
        raise ValueError(f"faces: expected vertex indices in [0, {v}), found [{low}, {high}]")
    device = points.device
    empty = torch.full((b * h * w,), -1, dtype=torch.long, device=device)
    drawn = _drawn_triangles(points, depth, faces.to(device=device, dtype=torch.long), (h, w), face_valid)
    if drawn[0].numel() == 0:
        return empty.reshape(b, h, w)
    frame, face, pix, key = _covered_pixels(*drawn, (h, w), perspective)
    big = torch.iinfo(torch.long).max
    zbuf = torch.full((b * h * w,), big, dtype=torch.long, device=device)
    zbuf.scatter_reduce_(0, pix, key, reduce="amin", include_self=True)
    out = torch.where(zbuf == big, empty, zbuf % (2**_FACE_BITS))
    return out.reshape(b, h, w)


def _drawn_triangles(
    points: Tensor, depth: Tensor, faces: Tensor, size: tuple[int, int], face_valid: Tensor | None
) -> tuple[Tensor, ...]:
    """Per-face stage of :func:`rasterize`: the triangles that cover a pixel centre at all.

    Works in float32 on the faces that are drawn (culled ones are never gathered), keeps those
    in front of the camera, finite, non-degenerate and with a pixel centre in their bounding
    box. Returns ``frame, face (K,)``, ``tri (K, 3, 2)``, ``tz (K, 3)``, ``area (K,)`` (float64)
    and the boxes' first pixel ``x0, y0`` and size ``bw, bh`` ``(K,)``.
    """
    (h, w), (b, nf), device = size, (points.shape[0], faces.shape[0]), points.device
    if face_valid is None:
        frame = torch.arange(b, device=device).repeat_interleave(nf)
        face = torch.arange(nf, device=device).repeat(b)
    else:
        frame, face = torch.nonzero(face_valid.to(device=device, dtype=torch.bool), as_tuple=True)
    vid = faces[face]  # (K, 3)
    tri = points.to(torch.float32)[frame[:, None], vid]  # (K, 3, 2)
    tz = depth.to(torch.float32)[frame[:, None], vid]  # (K, 3)
    x, y = tri[..., 0], tri[..., 1]
    x0 = torch.ceil(x.amin(-1)).clamp(0, w)
    x1 = torch.floor(x.amax(-1)).clamp(-1, w - 1)
    y0 = torch.ceil(y.amin(-1)).clamp(0, h)
    y1 = torch.floor(y.amax(-1)).clamp(-1, h - 1)
    bw = (x1 - x0 + 1).clamp(min=0)
    bh = (y1 - y0 + 1).clamp(min=0)
    keep = (bw > 0) & (bh > 0) & (tz > 0).all(-1) & torch.isfinite(tri).all(-1).all(-1)
    sel = torch.nonzero(keep).flatten()
    frame, face = frame[sel], face[sel]
    tri = tri[sel].to(torch.float64)
    tz = tz[sel].to(torch.float64)
    x, y = tri[..., 0], tri[..., 1]
    area = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (x[:, 2] - x[:, 0]) * (y[:, 1] - y[:, 0])
    sel = torch.nonzero(area.abs() > 1e-12).flatten()
    x0, y0, bw, bh = x0[keep][sel], y0[keep][sel], bw[keep][sel], bh[keep][sel]
    return frame[sel], face[sel], tri[sel], tz[sel], area[sel], x0, y0, bw, bh


def _covered_pixels(
    frame: Tensor, face: Tensor, tri: Tensor, tz: Tensor, area: Tensor, x0: Tensor, y0: Tensor,
    bw: Tensor, bh: Tensor, size: tuple[int, int], perspective: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-pixel stage of :func:`rasterize`: every pixel centre inside a triangle of
    :func:`_drawn_triangles`, as ``frame, face, flat pixel index, z-buffer key`` ``(P,)``.

    Each triangle enumerates the pixel centres of its box; barycentric test with inclusive
    edges; perspective-correct depth (``1/z`` linear in the image; linear depth without
    ``perspective``) quantized into the key's high bits, the face id in its low bits.
    """
    h, w = size
    device = frame.device
    counts_w = bw.long()
    counts = counts_w * bh.long()
    total = int(counts.sum())
    owner = torch.repeat_interleave(torch.arange(counts.numel(), device=device), counts)
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=device) - start[owner]
    cf, cface = frame[owner], face[owner]
    cw = counts_w[owner]
    px = x0.long()[owner] + local % cw
    py = y0.long()[owner] + torch.div(local, cw, rounding_mode="floor")
    ctri = tri[owner]  # (C, 3, 2)
    qx, qy = px.to(torch.float64), py.to(torch.float64)

    def edge(a: int, c: int) -> Tensor:
        ax, ay = ctri[:, a, 0], ctri[:, a, 1]
        return (ctri[:, c, 0] - ax) * (qy - ay) - (ctri[:, c, 1] - ay) * (qx - ax)

    bary = torch.stack([edge(1, 2), edge(2, 0), edge(0, 1)], dim=-1) / area[owner][:, None]  # (C, 3)
    inside = (bary >= -1e-9).all(-1)
    if perspective:
        depth_px = 1.0 / (bary / tz[owner]).sum(-1).clamp(min=1e-12)
    else:
        depth_px = (bary * tz[owner]).sum(-1)
    key = (depth_px * _DEPTH_SCALE).clamp(max=2.0 ** 30).long() * (2**_FACE_BITS) + cface
    pix = (cf * h + py) * w + px
    return cf[inside], cface[inside], pix[inside], key[inside]


def face_normals(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """Unnormalized face normals ``(B, F, 3)`` (right-hand rule) and first corners ``(B, F, 3)``.

    Args:
        vertices: ``(B, V, 3)``; faces: ``(F, 3)``.
    """
    f = faces.long()
    v0, v1, v2 = vertices[:, f[:, 0]], vertices[:, f[:, 1]], vertices[:, f[:, 2]]
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1), v0


def front_facing(normals: Tensor, corners: Tensor) -> Tensor:
    """Faces whose outward normal points towards a camera at the origin.

    Args:
        normals, corners: ``(B, F, 3)`` from :func:`face_normals` in the camera frame, faces
            wound counter-clockwise seen from outside.

    Returns:
        ``(B, F)`` bool, ``n . v0 < 0`` (any point of a planar face gives the same sign).
    """
    return (normals * corners).sum(-1) < 0


def face_shading(normals: Tensor, light: Tensor, ambient: float = 0.35) -> Tensor:
    """Lambert shading per face, ``ambient + (1 - ambient) max(0, n . l)``.

    Args:
        normals: ``(B, F, 3)`` from :func:`face_normals`; light ``(B, 3)`` unit direction
            towards the light.

    Returns:
        ``(B, F)`` in ``[ambient, 1]``.
    """
    n = normals / normals.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    lam = (n * light[:, None, :]).sum(-1).clamp(min=0)
    return ambient + (1 - ambient) * lam


def read_obj_mesh(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices ``(V, 3)`` and triangles ``(F, 3)`` of a Wavefront OBJ (polygons fanned into triangles)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mesh file {path.name} not found at {path}")
    verts, tris = [], []
    for line in path.read_text().splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("f "):
            idx = [int(tok.split("/")[0]) - 1 for tok in line.split()[1:]]
            tris.extend([idx[0], idx[i], idx[i + 1]] for i in range(1, len(idx) - 1))
    return np.asarray(verts, np.float64), np.asarray(tris, np.int64)


def proxy_mesh(full_vertices: np.ndarray, proxy_vertices: np.ndarray, proxy_faces: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Express a decimated proxy of a mesh through the full mesh's vertices.

    Each proxy vertex is replaced by its nearest full-mesh vertex (both in the same rest
    pose), so posing the full mesh poses the proxy for free; faces that collapse are dropped.

    Args:
        full_vertices: ``(V, 3)``; proxy_vertices ``(P, 3)``; proxy_faces ``(F, 3)``.

    Returns:
        ``index (P,)`` into the full vertices and ``faces (F', 3)`` into ``index``.
    """
    from scipy.spatial import cKDTree

    _, index = cKDTree(full_vertices).query(proxy_vertices)
    mapped = index[proxy_faces]
    keep = (mapped[:, 0] != mapped[:, 1]) & (mapped[:, 1] != mapped[:, 2]) & (mapped[:, 0] != mapped[:, 2])
    return index.astype(np.int64), proxy_faces[keep]


def vertex_parts(rest_vertices: Tensor, rest_joints: Tensor, parents: tuple[int, ...]) -> Tensor:
    """Body-part label of each vertex: the nearest bone segment in the rest pose.

    Segment ``j`` runs from joint ``j`` to the mean of its children (a leaf joint: a point);
    the label is ``j``.

    Args:
        rest_vertices: ``(V, 3)``; rest_joints ``(J, 3)``; parents: ``J`` parent indices.

    Returns:
        ``(V,)`` int64 in ``[0, J)``.
    """
    nj = rest_joints.shape[0]
    par = torch.tensor(parents, dtype=torch.long)
    child_sum = torch.zeros_like(rest_joints)
    child_cnt = torch.zeros(nj, dtype=rest_joints.dtype)
    mask = par >= 0
    child_sum.index_add_(0, par[mask], rest_joints[mask])
    child_cnt.index_add_(0, par[mask], torch.ones(int(mask.sum()), dtype=rest_joints.dtype))
    end = torch.where(child_cnt[:, None] > 0, child_sum / child_cnt.clamp(min=1)[:, None], rest_joints)
    a, d = rest_joints[None], (end - rest_joints)[None]  # (1, J, 3)
    p = rest_vertices[:, None]  # (V, 1, 3)
    t = (((p - a) * d).sum(-1) / (d * d).sum(-1).clamp(min=1e-12)).clamp(0, 1)
    dist = (p - (a + t[..., None] * d)).norm(dim=-1)  # (V, J)
    return dist.argmin(-1)


def part_palette(num_parts: int, rng: np.random.Generator, saturation: float = 0.75) -> np.ndarray:
    """``(num_parts, 3)`` float32 RGB colours in [0, 1]: evenly spaced hues with a random offset.

    Hues are interleaved so that neighbouring part indices (often neighbouring limbs) differ.
    """
    import cv2  # the vision extra: only the synthetic set's image pieces need OpenCV

    order = (np.arange(num_parts) * 7) % num_parts
    hue = (order / num_parts + rng.uniform()) % 1.0
    hsv = np.stack([hue * 179.0, np.full(num_parts, 255.0 * saturation), np.full(num_parts, 230.0)], -1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0]
    return rgb.astype(np.float32) / 255.0


def background_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(size, size, 3)`` float32 texture in [0, 1]: smooth colour noise, stripes and grain."""
    import cv2

    coarse = rng.uniform(0.1, 0.9, size=(int(rng.integers(2, 6)), int(rng.integers(2, 6)), 3))
    img = cv2.resize(coarse.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)
    if rng.uniform() < 0.5:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        angle, period = rng.uniform(0, np.pi), rng.uniform(6, 30)
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) * (2 * np.pi / period)
        img = img + (0.12 * np.sin(phase))[..., None] * rng.uniform(-1, 1, size=3).astype(np.float32)
    img = img + rng.normal(0, 0.04, size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0)


#: Object shapes of :func:`object_mask`, by code.
OBJECT_KINDS: tuple[str, ...] = ("ellipse", "rectangle", "band")


def object_mask(size: int, kind: int, center: tuple[float, float], half_size: tuple[float, float],
                angle: float) -> np.ndarray:
    """An object's silhouette on a ``size x size`` grid, tested at pixel centres ``(x=j, y=i)``.

    Args:
        size: grid side in pixels.
        kind: index into :data:`OBJECT_KINDS`: an ellipse or a rectangle with half axes
            ``half_size`` along its axes rotated by ``angle`` (a long thin rectangle is a bar or
            pole), or a ``band``: every pixel on the far side of the line through ``center`` at
            ``angle`` (the side its normal ``(-sin, cos)`` points to, i.e. below for angle 0;
            a table, a wall, a car in front of the legs).
        center: ``(x, y)`` in grid pixels; half_size: ``(a, b)`` pixels; angle: radians.

    Returns:
        ``(size, size)`` bool.
    """
    if kind not in range(len(OBJECT_KINDS)):
        raise ValueError(f"kind: expected an index into {OBJECT_KINDS}, found {kind!r}")
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    dx, dy = xx - center[0], yy - center[1]
    u, v = c * dx + s * dy, -s * dx + c * dy  # along / across the object's first axis
    if OBJECT_KINDS[kind] == "band":
        return v >= 0
    a, b = max(half_size[0], 1e-9), max(half_size[1], 1e-9)
    if OBJECT_KINDS[kind] == "ellipse":
        return (u / a) ** 2 + (v / b) ** 2 <= 1.0
    return (np.abs(u) <= a) & (np.abs(v) <= b)


def object_texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``(size, size, 3)`` float32 texture in [0, 1]: two-colour stripes with grain."""
    base = rng.uniform(0.05, 0.95, size=3).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = rng.uniform(3, 12)
    theta = rng.uniform(0, np.pi)
    stripes = (np.sin((np.cos(theta) * xx + np.sin(theta) * yy) * 2 * np.pi / period) > 0).astype(np.float32)
    second = rng.uniform(0.05, 0.95, size=3).astype(np.float32)
    tex = base + (second - base) * stripes[..., None] * rng.uniform(0.3, 1.0)
    tex = tex + rng.normal(0, 0.03, size=tex.shape).astype(np.float32)
    return np.clip(tex, 0, 1)
