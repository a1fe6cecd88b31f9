"""CLIFF camera utilities (Sec. 4.1 of the paper; Li et al., ECCV 2022; BEDLAM-CLIFF variant).

Conventions
-----------
* Camera frame: OpenCV, x right, y down, z forward (metres). Image pixels: the centre of
  pixel (row i, col j) is at ``(x=j, y=i)``; a principal point ``(W/2, H/2)`` is the image centre
  as CLIFF uses it.
* Person box: square, centre ``(cx, cy)`` and side ``b`` in full-image pixels. Crop coordinates
  are ``(p - c) / (b / 2)``, so the box spans [-1, 1] on both axes (see ``humr.data.fields``).
* Weak-perspective crop camera ``cam = [s, tx, ty]``: a 3D point ``P`` (root-relative, metres)
  lands at ``s * (P_xy + [tx, ty])`` in crop coordinates. CLIFF turns it into the full-image
  perspective translation
  ``t = [tx + 2 (cx - W/2) / (s b), ty + 2 (cy - H/2) / (s b), 2 f / (s b)]``, which projects
  every point at the root's depth (``P_z = 0``) to the same pixel as the crop camera does.
* Bounding-box condition (Eq. 3, BEDLAM-CLIFF): ``[(cx - W/2) / f, (cy - H/2) / f, b / f]``.

Shapes: a leading ``...`` is any batch shape; per-camera arguments (``center (..., 2)``,
``box_size (...)``, ``focal (...)``, ``image_size (..., 2)``) broadcast against each other and
against the batch dimensions of the points (numpy rules). Python numbers are accepted for
per-camera arguments. Everything is differentiable and follows the inputs' device and dtype.

Example:
    >>> import torch
    >>> cam = torch.tensor([0.9, 0.0, 0.1])
    >>> P = torch.tensor([[0.2, -0.3, 0.0]])   # at the root's depth
    >>> crop = project_to_crop(P, cam, torch.tensor([600.0, 400.0]), 300.0, 1500.0,
    ...                        torch.tensor([1000.0, 800.0]))
    >>> torch.allclose(crop, 0.9 * (P[:, :2] + cam[1:]), atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "estimate_focal",
    "bbox_info",
    "weak_to_full_translation",
    "full_to_weak_camera",
    "perspective_project",
    "image_to_crop",
    "crop_to_image",
    "project_to_crop",
]

# --------------------------------------------------------------------------- validation helpers


def _as_tensor(name: str, x: Tensor | float | Sequence[float], like: Tensor | None = None) -> Tensor:
    """``x`` as a floating tensor; Python numbers take ``like``'s dtype and device."""
    if isinstance(x, Tensor):
        if like is not None and x.device != like.device:
            raise ValueError(f"{name}: expected a tensor on {like.device}, found one on {x.device}")
        if not x.is_floating_point():
            floating = like is not None and like.is_floating_point()
            x = x.to(like.dtype if floating else torch.get_default_dtype())
        return x
    try:
        dtype = like.dtype if like is not None and like.is_floating_point() else torch.get_default_dtype()
        return torch.as_tensor(x, dtype=dtype, device=like.device if like is not None else None)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{name}: expected a tensor or number, found {type(x).__name__}") from err


def _check_last(name: str, x: Tensor, size: int, extra: str = "") -> None:
    if x.dim() < 1 or x.shape[-1] != size:
        raise ValueError(f"{name}: expected shape (...{extra}, {size}), found {tuple(x.shape)}")


def _check_finite(name: str, x: Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: contains NaN or infinite values")


def _check_positive(name: str, x: Tensor) -> None:
    _check_finite(name, x)
    if x.numel() and not bool((x > 0).all()):
        raise ValueError(f"{name}: expected values > 0, found minimum {float(x.min()):.6g}")


def _batch_shape(**shapes: Sequence[int]) -> torch.Size:
    """Broadcast the named batch shapes, or raise ``ValueError`` naming all of them."""
    try:
        return torch.broadcast_shapes(*shapes.values())
    except RuntimeError as err:
        found = ", ".join(f"{k} {tuple(v)}" for k, v in shapes.items())
        raise ValueError(f"batch shapes do not broadcast: {found}") from err


def _vector(name: str, x: Tensor | Sequence[float], size: int, like: Tensor | None = None) -> Tensor:
    """``x`` as a finite floating tensor ``(..., size)`` (see :func:`_as_tensor` for ``like``)."""
    x = _as_tensor(name, x, like)
    _check_last(name, x, size)
    _check_finite(name, x)
    return x


def _box_camera(
    center: Tensor, box_size: Tensor | float, focal: Tensor | float, image_size: Tensor | Sequence[float],
    like: Tensor | None = None,
    positive: Sequence[tuple[str, Tensor]] = (),
    **batch: Sequence[int],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The checked per-camera arguments ``center (..., 2)``, ``b (...)``, ``f (...)``, ``size (..., 2)``.

    Python numbers take ``like``'s dtype and device (``center``'s without ``like``). The extra
    ``positive`` ``(name, tensor)`` pairs are checked for ``> 0`` before ``box_size``; the named
    ``batch`` shapes are broadcast first with the four arguments' batch shapes.
    """
    center = _vector("center", center, 2, like)
    like = center if like is None else like
    b = _as_tensor("box_size", box_size, like)
    f = _as_tensor("focal", focal, like)
    size = _as_tensor("image_size", image_size, like)
    _check_last("image_size", size, 2)
    for name, x in positive:
        _check_positive(name, x)
    _check_positive("box_size", b)
    _check_positive("focal", f)
    _check_positive("image_size", size)
    _batch_shape(**batch, center=center.shape[:-1], box_size=b.shape, focal=f.shape,
                 image_size=size.shape[:-1])
    return center, b, f, size


def _crop_box(points: Tensor, center: Tensor, box_size: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
    """The checked arguments of :func:`image_to_crop` / :func:`crop_to_image`: points, centre, side."""
    points = _as_tensor("points", points)
    if points.dim() < 2 or points.shape[-1] != 2:
        raise ValueError(f"points: expected shape (..., N, 2), found {tuple(points.shape)}")
    center = _vector("center", center, 2, points)
    b = _as_tensor("box_size", box_size, points)
    _check_positive("box_size", b)
    _batch_shape(points=points.shape[:-2], center=center.shape[:-1], box_size=b.shape)
    return points, center, b


# --------------------------------------------------------------------------- CLIFF quantities


def estimate_focal(image_size: Tensor | Sequence[float]) -> Tensor:
    """CLIFF focal length estimate ``sqrt(W^2 + H^2)``: ``image_size (..., 2)`` = (W, H) -> ``(...)``."""
    size = _as_tensor("image_size", image_size)
    _check_last("image_size", size, 2)
    _check_positive("image_size", size)
    return torch.linalg.vector_norm(size, dim=-1)


def bbox_info(
    center: Tensor, box_size: Tensor | float, focal: Tensor | float, image_size: Tensor | Sequence[float],
) -> Tensor:
    """CLIFF box condition (Eq. 3, BEDLAM-CLIFF variant) -> ``(..., 3)``.

    Args:
        center: ``(..., 2)`` box centre (cx, cy) in full-image pixels.
        box_size: ``(...)`` box side b in pixels (> 0).
        focal: ``(...)`` focal length f in pixels (> 0).
        image_size: ``(..., 2)`` full image (W, H) in pixels (> 0).

    Returns:
        ``[(cx - W/2) / f, (cy - H/2) / f, b / f]``, batch shape broadcast over the arguments.
    """
    center, b, f, size = _box_camera(center, box_size, focal, image_size)
    offset = (center - size / 2) / f[..., None]
    x, y, z = torch.broadcast_tensors(offset[..., 0], offset[..., 1], b / f)
    return torch.stack([x, y, z], dim=-1)


def weak_to_full_translation(
    cam: Tensor,
    center: Tensor, box_size: Tensor | float, focal: Tensor | float, image_size: Tensor | Sequence[float],
) -> Tensor:
    """Weak-perspective crop camera -> full-image perspective root translation (CLIFF).

    Args:
        cam: ``(..., 3)`` crop camera ``[s, tx, ty]`` with ``s > 0``.
        center: ``(..., 2)`` box centre in full-image pixels.
        box_size: ``(...)`` box side b in pixels.
        focal: ``(...)`` focal length f in pixels.
        image_size: ``(..., 2)`` full image (W, H); the principal point is its centre.

    Returns:
        ``(..., 3)`` translation ``[tx + 2 (cx - W/2) / (s b), ty + 2 (cy - H/2) / (s b), 2 f / (s b)]``.
    """
    cam = _vector("cam", cam, 3)
    s, tx, ty = cam.unbind(-1)
    center, b, f, size = _box_camera(
        center, box_size, focal, image_size, cam, [("cam[..., 0] (scale s)", s)], cam=cam.shape[:-1]
    )
    sb = s * b
    offset = center - size / 2
    out = torch.broadcast_tensors(tx + 2 * offset[..., 0] / sb, ty + 2 * offset[..., 1] / sb, 2 * f / sb)
    return torch.stack(out, dim=-1)


def full_to_weak_camera(
    translation: Tensor,
    center: Tensor, box_size: Tensor | float, focal: Tensor | float, image_size: Tensor | Sequence[float],
) -> Tensor:
    """Inverse of :func:`weak_to_full_translation`: root translation ``(..., 3)`` -> ``[s, tx, ty] (..., 3)``.

    ``s = 2 f / (b t_z)``, ``tx = t_x - (cx - W/2) t_z / f``, ``ty = t_y - (cy - H/2) t_z / f``;
    needs ``t_z > 0`` (the root in front of the camera). Used to make ground-truth crop cameras.
    """
    t = _vector("translation", translation, 3)
    _check_positive("translation[..., 2] (depth)", t[..., 2])
    center, b, f, size = _box_camera(center, box_size, focal, image_size, t, translation=t.shape[:-1])
    offset = center - size / 2
    tz = t[..., 2]
    out = torch.broadcast_tensors(2 * f / (b * tz), t[..., 0] - offset[..., 0] * tz / f,
                                  t[..., 1] - offset[..., 1] * tz / f)
    return torch.stack(out, dim=-1)


# --------------------------------------------------------------------------- projections


def perspective_project(
    points: Tensor,
    translation: Tensor,
    focal: Tensor | float,
    principal_point: Tensor | Sequence[float],
    min_depth: float = 1e-3,
) -> Tensor:
    """Pinhole projection of ``points + translation`` to full-image pixels.

    Args:
        points: ``(..., N, 3)`` points in the camera's axes (metres), e.g. root-relative joints.
        translation: ``(..., 3)`` translation added to every point (the root position).
        focal: ``(...)`` focal length in pixels (> 0).
        principal_point: ``(..., 2)`` principal point (px, py) in pixels.
        min_depth: depths below this (points behind or at the camera) are clamped to it before
            the division, so the output stays finite (such points land far outside the image and
            get no gradient through their depth). Must be > 0.

    Returns:
        ``(..., N, 2)`` pixel coordinates ``f * (X, Y) / max(Z, min_depth) + principal_point``.
    """
    points = _as_tensor("points", points)
    _check_last("points", points, 3, ", N")
    if points.dim() < 2:
        raise ValueError(f"points: expected shape (..., N, 3), found {tuple(points.shape)}")
    _check_finite("points", points)
    t = _vector("translation", translation, 3, points)
    f = _as_tensor("focal", focal, points)
    _check_positive("focal", f)
    pp = _vector("principal_point", principal_point, 2, points)
    if not min_depth > 0:
        raise ValueError(f"min_depth: expected a value > 0, found {min_depth}")
    _batch_shape(points=points.shape[:-2], translation=t.shape[:-1], focal=f.shape,
                 principal_point=pp.shape[:-1])
    p = points + t[..., None, :]
    depth = p[..., 2:].clamp(min=min_depth)
    return f[..., None, None] * p[..., :2] / depth + pp[..., None, :]


def image_to_crop(points: Tensor, center: Tensor, box_size: Tensor | float) -> Tensor:
    """Full-image pixels ``(..., N, 2)`` -> crop coordinates ``(p - c) / (b / 2)`` ``(..., N, 2)``.

    ``center (..., 2)`` and ``box_size (...)`` describe the square person box; the box maps to
    [-1, 1]^2. For samples ``(B, K, n, 2)`` with per-image boxes pass ``center[:, None]``.
    """
    points, center, b = _crop_box(points, center, box_size)
    return (points - center[..., None, :]) / (b[..., None, None] / 2)


def crop_to_image(points: Tensor, center: Tensor, box_size: Tensor | float) -> Tensor:
    """Crop coordinates ``(..., N, 2)`` -> full-image pixels ``c + p * b / 2`` ``(..., N, 2)``.

    Inverse of :func:`image_to_crop`, same argument shapes.
    """
    points, center, b = _crop_box(points, center, box_size)
    return center[..., None, :] + points * (b[..., None, None] / 2)


def project_to_crop(
    points: Tensor,
    cam: Tensor,
    center: Tensor, box_size: Tensor | float, focal: Tensor | float, image_size: Tensor | Sequence[float],
    min_depth: float = 1e-3,
) -> Tensor:
    """Project root-relative 3D points through the CLIFF full-image camera into crop coordinates.

    Composes :func:`weak_to_full_translation`, :func:`perspective_project` with the principal
    point at the image centre, and :func:`image_to_crop`.

    Args:
        points: ``(..., N, 3)`` root-relative points (metres, camera axes).
        cam: ``(..., 3)`` predicted crop camera ``[s, tx, ty]``.
        center: ``(..., 2)`` box centre in full-image pixels.
        box_size: ``(...)`` box side in pixels.
        focal: ``(...)`` focal length in pixels.
        image_size: ``(..., 2)`` full image (W, H).
        min_depth: depth clamp of :func:`perspective_project`.

    Returns:
        ``(..., N, 2)`` crop coordinates; points at the root's depth land at ``s (P_xy + [tx, ty])``.
    """
    cam = _as_tensor("cam", cam)
    size = _as_tensor("image_size", image_size, cam)
    t = weak_to_full_translation(cam, center, box_size, focal, size)
    uv = perspective_project(points, t, focal, size / 2, min_depth=min_depth)
    return image_to_crop(uv, center, box_size)
