"""Person-mask loss (paper Sec. 4.3) and the distance-map helpers it reads from.

A person mask is stored as a Euclidean distance map: every cell holds the distance (in crop
units) from its centre to the nearest mask cell centre, 0 inside the person. Looking a
point up in that map replaces the reference implementation's distances from every keypoint
to every mask pixel (a ``64 x 442 x 50,176`` matrix per step) by one bilinear read.

Fidelity of :func:`mask_loss`. The paper (Sec. 4.3) takes the l1 distance from each
projected hypothesis outside the mask to "the closest corresponding heatmap samples", with the
outside-of-mask samples removed, and gives no normalisation. The published implementation
(whose normalisation the weight 0.1 was tuned under, so humr's default ``reduction="reference"``
follows it) sums that distance over the 17 joints of a hypothesis and divides by ``B`` times the
number of random hypotheses, takes the nearest target by l1 among the in-mask samples *and the
ground-truth keypoint*, and skips hypotheses projected outside the crop. humr keeps the paper's
nearest target of the same joint (``same_joint=True``; the reference searches all joints) and
skips hypotheses outside the square that the distance map covers (the crop, or the synthetic
set's larger square where the mask is known there too). ``reduction="entry"`` is the
per-(joint, hypothesis) mean that humr used before.

Conventions. The map covers the square ``[-extent, extent]^2`` of crop coordinates
``(x, y)``; cell ``(i, j)`` of an ``(H, W)`` map is centred at
``x = -extent + (j + 0.5) * 2 * extent / W`` and ``y = -extent + (i + 0.5) * 2 * extent / H``
(the ``align_corners=False`` convention of ``torch.nn.functional.grid_sample``).

Example:
    >>> import torch
    >>> mask = torch.zeros(4, 4, dtype=torch.bool)
    >>> mask[1:3, 1:3] = True
    >>> dmap = mask_to_distance_map(mask)            # (4, 4), 0.5 = one cell
    >>> float(dmap[0, 0])                            # diagonal neighbour of a mask cell
    0.7071067690849304
    >>> lookup_distance_map(torch.tensor([[[-0.25, -0.25]]]), dmap[None]).shape
    torch.Size([1, 1])
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

__all__ = ["mask_to_distance_map", "lookup_distance_map", "default_tolerance", "mask_loss"]


def _as_bool_numpy(mask) -> tuple[np.ndarray, torch.device]:
    """The mask as a numpy bool array; numeric masks must hold only 0 and 1 (no silent cast)."""
    if isinstance(mask, Tensor):
        arr, device = mask.detach().cpu().numpy(), mask.device
    elif isinstance(mask, np.ndarray):
        arr, device = mask, torch.device("cpu")
    else:
        raise ValueError(f"mask: expected a numpy array or torch.Tensor, found {type(mask).__name__}")
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"mask: expected a boolean (or 0/1) array, found dtype {arr.dtype}")
        odd = ~((arr == 0) | (arr == 1))  # NaN is odd too
        if odd.any():
            raise ValueError(f"mask: expected a boolean mask or the values 0 and 1, found "
                             f"{arr[odd].ravel()[0]!r} (threshold soft masks before)")
    return arr.astype(bool), device


def mask_to_distance_map(mask, extent: float = 1.0) -> Tensor:
    """Exact Euclidean distance map of a person mask, in crop units.

    Args:
        mask: ``(H, W)`` or ``(B, H, W)`` boolean (numpy or torch; a numeric array may hold only
            0 and 1) covering the square ``[-extent, extent]^2`` of crop coordinates; True marks
            the person.
        extent: half side of the covered square in crop units.

    Returns:
        ``(H, W)`` or ``(B, H, W)`` float32 torch tensor on the mask's device: distance from
        each cell centre to the nearest mask cell centre (0 inside the mask). Cells need not
        be square (``2 extent / W`` wide, ``2 extent / H`` high).

    Raises:
        ValueError: wrong number of dimensions, values other than 0/1 (e.g. 0.3 or NaN),
            non-positive extent, or an empty mask.
    """
    arr, device = _as_bool_numpy(mask)
    if arr.ndim not in (2, 3) or 0 in arr.shape:
        raise ValueError(f"mask: expected shape (H, W) or (B, H, W) with H, W > 0, found {arr.shape}")
    if not extent > 0:
        raise ValueError(f"extent: expected a positive number, found {extent}")
    batched = arr.ndim == 3
    if not batched:
        arr = arr[None]
    empty = ~arr.reshape(arr.shape[0], -1).any(axis=1)
    if empty.any():
        raise ValueError(f"mask: expected every mask to contain at least one True cell, "
                         f"found empty masks at batch indices {np.flatnonzero(empty).tolist()}")
    _, h, w = arr.shape
    dy, dx = 2.0 * extent / h, 2.0 * extent / w
    # One 3-D transform for the whole batch: a batch spacing larger than any in-image
    # distance (the square's diagonal) means no cell ever finds its nearest mask cell in
    # another image, and the transform is separable, so in-image results stay exact.
    batch_spacing = 4.0 * extent + dx + dy
    dist = ndimage.distance_transform_edt(~arr, sampling=(batch_spacing, dy, dx))
    out = torch.from_numpy(dist.astype(np.float32)).to(device)
    return out if batched else out[0]


def lookup_distance_map(points: Tensor, distance_map: Tensor, extent: float = 1.0) -> Tensor:
    """Look a distance map up at points in crop coordinates (differentiable).

    Args:
        points: ``(B, ..., 2)`` crop coordinates ``(x, y)``, finite.
        distance_map: ``(B, H, W)`` from :func:`mask_to_distance_map` (same ``extent``), finite.
        extent: half side of the square the map covers.

    Returns:
        ``(B, ...)`` in the dtype of ``points``. Inside the square: bilinear interpolation
        between cell centres (exact at cell centres; the outer half cells hold the border
        value). Outside: a lower bound of the true distance to the mask, at least the distance
        to the square (so never 0): with ``q`` the point's projection onto the box spanned by
        the cell centres and ``L`` the largest ``d_c - |q - c|`` (clamped at 0) over the (up to
        four) centres ``c`` around ``q`` (their map values ``d_c``), it is ``sqrt(|p - q|^2 +
        L^2)``. The bound holds for cells of any aspect ratio: every mask cell centre lies in
        that box, so the distance is at least ``sqrt(|p - q|^2 + dist(q)^2)`` (projection onto
        a convex set), and ``dist(q) >= L`` since a distance is 1-Lipschitz. (Interpolating the
        border values instead is not a bound: between two centres of a 4:1 cell the distance
        can be below the linear interpolation of the two.) The bound is exact for the map's
        values: a map stored in float32 (or float16) moves it by that rounding.

    Raises:
        ValueError: wrong shapes or devices, a NaN or infinite point or map value, or a
            non-positive extent.
    """
    if not isinstance(points, Tensor) or points.dim() < 2 or points.shape[-1] != 2:
        found = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"points: expected shape (B, ..., 2), found {found}")
    if not isinstance(distance_map, Tensor) or distance_map.dim() != 3:
        found = tuple(distance_map.shape) if isinstance(distance_map, Tensor) else type(distance_map).__name__
        raise ValueError(f"distance_map: expected shape (B, H, W), found {found}")
    if distance_map.shape[0] != points.shape[0]:
        raise ValueError(f"distance_map: expected batch size {points.shape[0]} (from points), "
                         f"found {distance_map.shape[0]}")
    if distance_map.device != points.device:
        raise ValueError(f"distance_map: expected device {points.device} (from points), "
                         f"found {distance_map.device}")
    if not extent > 0:
        raise ValueError(f"extent: expected a positive number, found {extent}")
    _check_finite([("points", points), ("distance_map", distance_map)])
    return _lookup(points, distance_map, extent)


def _check_finite(named: list[tuple[str, Tensor]], where: dict[str, Tensor] | None = None) -> None:
    """``ValueError`` naming the first tensor with a NaN or infinity (only entries where ``where[name]``
    is True count, broadcast over trailing coordinates); one host synchronisation for all."""
    where = where or {}

    def bad(name: str, t: Tensor) -> Tensor:
        ok = torch.isfinite(t) if t.is_floating_point() else torch.ones_like(t, dtype=torch.bool)
        if name in where:
            mask = where[name].bool()
            ok = ok | ~(mask[..., None] if mask.dim() < ok.dim() else mask)
        return ~ok

    named = [(n, t) for n, t in named if t is not None]
    flags = torch.stack([bad(n, t).any() for n, t in named])
    if not bool(flags.any()):
        return
    for (name, t), flag in zip(named, flags.tolist()):
        if flag:
            kind = "NaN" if bool((bad(name, t) & torch.isnan(t)).any()) else "inf"
            scope = f" where {name}'s validity flag is True" if name in where else ""
            raise ValueError(f"{name}: expected finite values{scope}, found {kind}")


def _lookup(points: Tensor, distance_map: Tensor, extent: float) -> Tensor:
    """:func:`lookup_distance_map` without the checks."""
    b = points.shape[0]
    lead = points.shape[1:-1]
    if not points.is_floating_point():
        points = points.float()
    grid = (points / extent).reshape(b, -1, 1, 2)
    dmap = distance_map.to(points.dtype)
    # align_corners=False puts grid -1/+1 on the square's edges and the samples on cell centres.
    inside_val = F.grid_sample(dmap.unsqueeze(1), grid, mode="bilinear", padding_mode="border",
                               align_corners=False)
    inside_val = inside_val.reshape(b, *lead)
    outside = (points.abs() > extent).any(-1)
    outside_val = _outside_lower_bound(points.reshape(b, -1, 2), dmap, extent).reshape(b, *lead)
    return torch.where(outside, outside_val, inside_val)


def _outside_lower_bound(points: Tensor, dmap: Tensor, extent: float) -> Tensor:
    """``(B, P)``: the bound of :func:`lookup_distance_map` for points ``(B, P, 2)`` outside the square."""
    b, h, w = dmap.shape
    half = points.new_tensor([extent / w, extent / h])  # half cell sides (x, y)
    limit = extent - half
    q = torch.maximum(torch.minimum(points, limit), -limit)  # projection onto the centres' box
    tiny = torch.finfo(points.dtype).tiny
    normal2 = ((points - q) ** 2).sum(-1)
    index = ((q + extent) / (2.0 * half) - 0.5).detach()  # continuous (col, row), centres at integers
    sizes = points.new_tensor([w - 1, h - 1])
    lo = torch.minimum(index.floor().clamp_min(0), sizes)
    hi = torch.minimum(lo + 1, sizes)
    flat = dmap.reshape(b, h * w)
    best = torch.zeros_like(normal2)
    for col in (lo[..., 0], hi[..., 0]):
        for row in (lo[..., 1], hi[..., 1]):
            centre = torch.stack([col, row], -1) * (2.0 * half) - extent + half
            value = flat.gather(1, (row * w + col).long())
            # The clamp keeps the gradient finite where q sits on the centre (sqrt(0)).
            sep = ((q - centre) ** 2).sum(-1).clamp_min(tiny).sqrt()
            best = torch.maximum(best, value - sep)
    return (normal2 + best * best).clamp_min(tiny).sqrt()


def default_tolerance(height: int, width: int, extent: float = 1.0) -> float:
    """Half the larger cell side of an ``(height, width)`` map: ``extent / min(height, width)``.

    Bilinear interpolation between a mask cell centre (0) and an outside neighbour reaches
    half a cell at their common edge, so a point whose looked-up distance is at most this
    value lies in a mask cell or on its boundary.
    """
    return float(extent) / min(int(height), int(width))


def _check(name: str, x, shape: tuple, expected: str) -> None:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape {expected}, found {type(x).__name__}")
    ok = x.dim() == len(shape) and all(s is None or s == t for s, t in zip(shape, x.shape))
    if not ok:
        raise ValueError(f"{name}: expected shape {expected}, found {tuple(x.shape)}")


def mask_loss(
    pred: Tensor,
    heatmap_samples: Tensor,
    sample_mask_distance: Tensor,
    distance_map: Tensor,
    apply: Tensor,
    extent: float = 1.0,
    tolerance: float | None = None,
    sample_valid: Tensor | None = None,
    same_joint: bool = True,
    reduction: str = "reference",
    keypoints: Tensor | None = None,
    keypoints_valid: Tensor | None = None,
) -> Tensor:
    """Person-mask loss (paper Sec. 4.3): pull hypotheses outside the mask to in-mask targets.

    A hypothesis *counts* when it lies inside the square ``[-extent, extent]^2`` that the
    distance map covers (elsewhere the mask is unknown: it is never pulled back) and outside the
    mask, i.e. its looked-up distance exceeds ``tolerance``. Its loss is the l1 distance
    ``|dx| + |dy|`` to the nearest (in l1) *target*: the in-mask heatmap samples (a sample is
    in-mask when it is valid and its ``sample_mask_distance <= tolerance``; outside-of-mask
    samples are removed first, as in the paper) and, when ``keypoints`` are given, the valid
    ground-truth keypoint. See the module docstring for what the paper and the published
    implementation do.

    Args:
        pred: ``(B, K, S, 2)`` projected random hypotheses in crop coordinates.
        heatmap_samples: ``(B, K, M, 2)`` heatmap samples in crop coordinates.
        sample_mask_distance: ``(B, K, M)`` each sample's distance to the mask (crop units).
        distance_map: ``(B, H, W)`` from :func:`mask_to_distance_map`.
        apply: ``(B, K)`` bool, where the loss applies (e.g. invisible joints of images
            with a valid mask).
        extent: half side of the square the distance map covers.
        tolerance: distance below which a point counts as inside; default
            :func:`default_tolerance` (half a distance-map cell).
        sample_valid: optional ``(B, K, M)`` bool; invalid samples are never targets (their
            coordinates and distances may be NaN).
        same_joint: True (paper): targets of the same joint. False (reference
            implementation): the targets of every joint of the same image.
        reduction: ``"reference"`` (default, the published normalisation): the sum over all
            counted entries divided by ``B * S``, i.e. per hypothesis the sum over its joints,
            averaged over the ``B x S`` hypotheses. ``"entry"``: the sum divided by ``S`` times
            the number of applied joints that have a target (the mean per applied (joint,
            hypothesis) entry, hypotheses that do not count as 0). ``"sum"``; ``"none"`` ->
            ``(B, K, S)``.
        keypoints: optional ``(B, K, 2)`` ground-truth keypoints, always a target of their joint
            (of every joint of the image for ``same_joint=False``) as in the published
            implementation.
        keypoints_valid: optional ``(B, K)`` bool: which ``keypoints`` exist (others may be NaN);
            default all.

    Returns:
        A scalar, or ``(B, K, S)`` for ``"none"``; exactly 0, with a gradient path to ``pred``,
        when nothing counts. Gradients flow to ``pred`` only.

    Raises:
        ValueError: naming the argument: wrong shape or device, an unknown reduction, a negative
            tolerance, or a NaN or infinity in ``pred``, ``distance_map``, or (where valid)
            ``heatmap_samples``, ``sample_mask_distance`` and ``keypoints``.
    """
    b, k, s, m = _check_mask_loss_inputs(pred, heatmap_samples, sample_mask_distance, distance_map, apply,
                                         sample_valid, reduction, keypoints, keypoints_valid)
    tolerance = _check_tolerance(tolerance, extent, distance_map)
    valid, keypoints_valid = _check_values(pred, distance_map, heatmap_samples, sample_mask_distance,
                                           sample_valid, keypoints, keypoints_valid)
    nearest, applied, active = _counted(
        pred, distance_map, extent, tolerance, heatmap_samples, sample_mask_distance, valid, apply, keypoints,
        keypoints_valid, same_joint,
    )
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    entry = torch.where(active, (pred - nearest).abs().sum(-1), zero)
    if reduction == "none":
        return entry
    total = entry.sum()
    if reduction == "sum":
        return total
    count = b * s if reduction == "reference" else applied.sum() * s
    return total / torch.as_tensor(count, device=pred.device).clamp_min(1).to(pred.dtype)


@torch.no_grad()
def _counted(
    pred: Tensor, distance_map: Tensor, extent: float, tolerance: float, heatmap_samples: Tensor,
    sample_mask_distance: Tensor, valid: Tensor | None, apply: Tensor, keypoints: Tensor | None,
    keypoints_valid: Tensor | None, same_joint: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """What :func:`mask_loss` counts (no gradient): each hypothesis' nearest target ``(B, K, S, 2)``,
    the applied joints that have a target ``(B, K)`` and the counted entries ``(B, K, S)``."""
    p = pred.detach()
    in_square = (p.abs() <= extent).all(-1)  # (B, K, S); the mask is unknown elsewhere
    outside = _lookup(p, distance_map, extent) > tolerance
    cand = sample_mask_distance <= tolerance  # (B, K, M)
    if valid is not None:
        cand = cand & valid
    nearest, has_target = _nearest_targets(p, heatmap_samples, cand, keypoints, keypoints_valid, same_joint)
    applied = apply.bool() & has_target  # (B, K)
    active = in_square & outside & applied.unsqueeze(-1)  # (B, K, S)
    return nearest, applied, active


def _check_values(
    pred: Tensor, distance_map: Tensor, heatmap_samples: Tensor, sample_mask_distance: Tensor,
    sample_valid: Tensor | None, keypoints: Tensor | None, keypoints_valid: Tensor | None,
) -> tuple[Tensor | None, Tensor | None]:
    """``sample_valid`` as bool and ``keypoints_valid`` (all True by default when there are
    ``keypoints``), after checking the values for NaN and infinity where they are valid."""
    if keypoints is not None and keypoints_valid is None:
        keypoints_valid = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    valid = sample_valid.bool() if sample_valid is not None else None
    _check_finite(
        [("pred", pred), ("distance_map", distance_map), ("heatmap_samples", heatmap_samples),
         ("sample_mask_distance", sample_mask_distance), ("keypoints", keypoints)],
        where={name: flag for name, flag in (("heatmap_samples", valid), ("sample_mask_distance", valid),
                                             ("keypoints", keypoints_valid)) if flag is not None},
    )
    return valid, keypoints_valid


def _check_tolerance(tolerance: float | None, extent: float, distance_map: Tensor) -> float:
    """``tolerance`` (default :func:`default_tolerance` of the ``(B, H, W)`` map) after checking it and
    ``extent``."""
    if tolerance is None:
        tolerance = default_tolerance(distance_map.shape[1], distance_map.shape[2], extent)
    elif not tolerance >= 0:
        raise ValueError(f"tolerance: expected a non-negative number, found {tolerance}")
    if not extent > 0:
        raise ValueError(f"extent: expected a positive number, found {extent}")
    return tolerance


def _check_mask_loss_inputs(pred, heatmap_samples, sample_mask_distance, distance_map, apply, sample_valid,
                            reduction, keypoints, keypoints_valid) -> tuple[int, int, int, int]:
    """Shapes, devices and the reduction of :func:`mask_loss`; returns ``(B, K, S, M)``."""
    _check("pred", pred, (None, None, None, 2), "(B, K, S, 2)")
    b, k, s, _ = pred.shape
    _check("heatmap_samples", heatmap_samples, (b, k, None, 2), f"({b}, {k}, M, 2)")
    m = heatmap_samples.shape[2]
    _check("sample_mask_distance", sample_mask_distance, (b, k, m), f"({b}, {k}, {m})")
    _check("distance_map", distance_map, (b, None, None), f"({b}, H, W)")
    _check("apply", apply, (b, k), f"({b}, {k})")
    if sample_valid is not None:
        _check("sample_valid", sample_valid, (b, k, m), f"({b}, {k}, {m})")
    if keypoints is not None:
        _check("keypoints", keypoints, (b, k, 2), f"({b}, {k}, 2)")
    if keypoints_valid is not None:
        if keypoints is None:
            raise ValueError("keypoints_valid: given without keypoints")
        _check("keypoints_valid", keypoints_valid, (b, k), f"({b}, {k})")
    if reduction not in ("reference", "entry", "sum", "none"):
        raise ValueError(f"reduction: expected 'reference', 'entry', 'sum' or 'none', found {reduction!r}")
    for name, t in (("heatmap_samples", heatmap_samples), ("sample_mask_distance", sample_mask_distance),
                    ("distance_map", distance_map), ("apply", apply), ("sample_valid", sample_valid),
                    ("keypoints", keypoints), ("keypoints_valid", keypoints_valid)):
        if t is not None and t.device != pred.device:
            raise ValueError(f"{name}: expected device {pred.device} (from pred), found {t.device}")
    return b, k, s, m


def _nearest_targets(
    p: Tensor, samples: Tensor, cand: Tensor, keypoints: Tensor | None, keypoints_valid: Tensor | None,
    same_joint: bool,
) -> tuple[Tensor, Tensor]:
    """Nearest (l1) target of every hypothesis ``p (B, K, S, 2)`` -> ``((B, K, S, 2), has_target (B, K))``.

    Targets: the samples where ``cand (B, K, M)`` and the keypoints where ``keypoints_valid``; of
    the same joint, or of every joint of the image for ``same_joint=False``.
    """
    b, k, s, _ = p.shape
    # Non-targets become finite zeros so that no NaN reaches the distances or the gathered targets.
    pool = torch.where(cand[..., None], samples, 0.0).to(p.dtype)  # (B, K, M, 2)
    ok = cand
    if keypoints is not None:
        gt = torch.where(keypoints_valid.bool()[..., None], keypoints, 0.0).to(p.dtype)
        pool = torch.cat([pool, gt[:, :, None]], 2)  # (B, K, M + 1, 2)
        ok = torch.cat([ok, keypoints_valid.bool()[..., None]], 2)
    if same_joint:
        queries, pool, ok = p.reshape(b * k, s, 2), pool.reshape(b * k, -1, 2), ok.reshape(b * k, 1, -1)
    else:
        queries, pool, ok = p.reshape(b, k * s, 2), pool.reshape(b, -1, 2), ok.reshape(b, 1, -1)
    dist = torch.cdist(queries, pool, p=1.0).masked_fill_(~ok, float("inf"))  # (., queries, targets)
    idx = dist.argmin(-1)  # (., queries)
    nearest = pool.gather(1, idx[..., None].expand(*idx.shape, 2)).reshape(b, k, s, 2)
    has = ok.any(-1).reshape(b, k) if same_joint else ok.any(-1).expand(b, k)
    return nearest, has
