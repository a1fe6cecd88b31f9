"""Person-mask loss (paper Sec. 4.3) and the distance-map helpers it reads from.

A person mask is stored as a Euclidean distance map: every cell holds the distance (in crop
units) from its centre to the nearest mask cell centre, 0 inside the person. Looking a
point up in that map replaces the reference implementation's distances from every keypoint
to every mask pixel (a ``64 x 442 x 50,176`` matrix per step) by one bilinear read.

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
    if isinstance(mask, Tensor):
        return mask.detach().cpu().numpy().astype(bool), mask.device
    if isinstance(mask, np.ndarray):
        return mask.astype(bool), torch.device("cpu")
    raise ValueError(f"mask: expected a numpy array or torch.Tensor, found {type(mask).__name__}")


def mask_to_distance_map(mask, extent: float = 1.0) -> Tensor:
    """Exact Euclidean distance map of a person mask, in crop units.

    Args:
        mask: ``(H, W)`` or ``(B, H, W)`` boolean (numpy or torch) covering the square
            ``[-extent, extent]^2`` of crop coordinates; True marks the person.
        extent: half side of the covered square in crop units.

    Returns:
        ``(H, W)`` or ``(B, H, W)`` float32 torch tensor on the mask's device: distance from
        each cell centre to the nearest mask cell centre (0 inside the mask). Cells need not
        be square (``2 extent / W`` wide, ``2 extent / H`` high).

    Raises:
        ValueError: wrong number of dimensions, non-positive extent, or an empty mask.
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
    """Bilinear look-up of a distance map at points in crop coordinates (differentiable).

    Args:
        points: ``(B, ..., 2)`` crop coordinates ``(x, y)``.
        distance_map: ``(B, H, W)`` from :func:`mask_to_distance_map` (same ``extent``).
        extent: half side of the square the map covers.

    Returns:
        ``(B, ...)`` in the dtype of ``points``. Inside the square: bilinear interpolation
        between cell centres (exact at cell centres; the outer half cells hold the border
        value). Outside: ``sqrt(border^2 + o^2)`` with ``border`` the value at the nearest
        point of the square and ``o`` the distance to the square; since the mask lies in
        the (convex) square, this is a lower bound of the true distance, and never 0
        outside the square.
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
    b = points.shape[0]
    lead = points.shape[1:-1]
    if not points.is_floating_point():
        points = points.float()
    grid = (points / extent).reshape(b, -1, 1, 2)
    dmap = distance_map.to(points.dtype).unsqueeze(1)  # (B, 1, H, W)
    # align_corners=False puts grid -1/+1 on the square's edges and the samples on cell centres.
    inside_val = F.grid_sample(dmap, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside_val = inside_val.reshape(b, *lead)
    excess = (points.abs() - extent).clamp_min(0.0)
    out_sq = (excess * excess).sum(-1)  # squared distance to the square, (B, ...)
    outside = out_sq > 0
    # The clamp keeps the gradient finite where the unused branch would be sqrt(0).
    outside_val = (inside_val * inside_val + out_sq).clamp_min(torch.finfo(points.dtype).tiny).sqrt()
    return torch.where(outside, outside_val, inside_val)


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
    reduction: str = "mean",
) -> Tensor:
    """Person-mask loss (paper Sec. 4.3): pull hypotheses outside the mask to heatmap samples.

    A hypothesis is *outside* when its looked-up distance to the mask exceeds ``tolerance``.
    Its loss is the l1 distance ``|dx| + |dy|`` to the closest (Euclidean) *in-mask* heatmap
    sample: a sample is in-mask when its ``sample_mask_distance <= tolerance`` and it is
    valid. Outside-of-mask heatmap samples are removed first, as in the paper.

    Args:
        pred: ``(B, K, S, 2)`` projected hypotheses in crop coordinates.
        heatmap_samples: ``(B, K, M, 2)`` heatmap samples in crop coordinates.
        sample_mask_distance: ``(B, K, M)`` each sample's distance to the mask (crop units).
        distance_map: ``(B, H, W)`` from :func:`mask_to_distance_map`.
        apply: ``(B, K)`` bool, where the loss applies (e.g. invisible joints of images
            with a valid mask).
        extent: half side of the square the distance map covers.
        tolerance: distance below which a point counts as inside; default
            :func:`default_tolerance` (half a distance-map cell).
        sample_valid: optional ``(B, K, M)`` bool; invalid samples are never targets (their
            coordinates may be NaN).
        same_joint: True (paper): the closest sample of the same joint. False (reference
            implementation): the closest in-mask sample of any joint of the same image.
        reduction: ``"mean"``: sum over entries divided by the number of (joint,
            hypothesis) entries the loss applies to, i.e. ``S`` times the number of applied
            joints that have at least one in-mask target, inside hypotheses counting as 0;
            ``"sum"``; or ``"none"`` -> ``(B, K, S)``.

    Returns:
        A scalar (``"mean"``, ``"sum"``) or ``(B, K, S)``; exactly 0, with a gradient path to
        ``pred``, when nothing applies. Gradients flow to ``pred`` only.
    """
    _check("pred", pred, (None, None, None, 2), "(B, K, S, 2)")
    b, k, s, _ = pred.shape
    _check("heatmap_samples", heatmap_samples, (b, k, None, 2), f"({b}, {k}, M, 2)")
    m = heatmap_samples.shape[2]
    _check("sample_mask_distance", sample_mask_distance, (b, k, m), f"({b}, {k}, {m})")
    _check("distance_map", distance_map, (b, None, None), f"({b}, H, W)")
    _check("apply", apply, (b, k), f"({b}, {k})")
    if sample_valid is not None:
        _check("sample_valid", sample_valid, (b, k, m), f"({b}, {k}, {m})")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction: expected 'mean', 'sum' or 'none', found {reduction!r}")
    for name, t in (("heatmap_samples", heatmap_samples), ("sample_mask_distance", sample_mask_distance),
                    ("distance_map", distance_map), ("apply", apply), ("sample_valid", sample_valid)):
        if t is not None and t.device != pred.device:
            raise ValueError(f"{name}: expected device {pred.device} (from pred), found {t.device}")
    if tolerance is None:
        tolerance = default_tolerance(distance_map.shape[1], distance_map.shape[2], extent)
    elif not tolerance >= 0:
        raise ValueError(f"tolerance: expected a non-negative number, found {tolerance}")
    if bool(torch.isnan(pred).any()):
        raise ValueError("pred: expected finite coordinates, found NaN")

    with torch.no_grad():
        outside = lookup_distance_map(pred.detach(), distance_map, extent) > tolerance  # (B, K, S)
        cand = sample_mask_distance <= tolerance  # (B, K, M); NaN distances compare False
        if sample_valid is not None:
            cand = cand & sample_valid.bool()
        # Non-candidates become finite zeros so that no NaN reaches the gathered targets.
        targets = torch.where(cand[..., None], heatmap_samples.detach(), 0.0).to(pred.dtype)
        if same_joint:
            pool, pool_ok = targets, cand  # (B, K, M, 2), (B, K, M)
            has_cand = cand.any(-1)  # (B, K)
        else:
            pool = targets.reshape(b, 1, k * m, 2).expand(b, k, k * m, 2)
            pool_ok = cand.reshape(b, 1, k * m).expand(b, k, k * m)
            has_cand = cand.reshape(b, -1).any(-1, keepdim=True).expand(b, k)
        p = pred.detach()
        # Squared distances (B, K, S, P) by one batched matmul; only the argmin is used.
        d2 = ((p * p).sum(-1, keepdim=True) - 2.0 * p @ pool.transpose(-1, -2)
              + (pool * pool).sum(-1).unsqueeze(-2))
        d2 = d2.masked_fill(~pool_ok.unsqueeze(-2), float("inf"))
        idx = d2.argmin(-1)  # (B, K, S)
        nearest = torch.gather(pool, 2, idx.unsqueeze(-1).expand(b, k, s, 2))  # (B, K, S, 2)
        active = outside & (apply.bool() & has_cand).unsqueeze(-1)  # (B, K, S)
        count = (apply.bool() & has_cand).sum() * s

    entry = torch.where(active, (pred - nearest).abs().sum(-1), torch.zeros((), dtype=pred.dtype,
                                                                              device=pred.device))
    if reduction == "none":
        return entry
    total = entry.sum()
    if reduction == "sum":
        return total
    return total / count.clamp_min(1).to(pred.dtype)
