"""Distribution metrics of probabilistic human mesh recovery (paper Sec. 5.1, Tables 1 and 2).

Every function is pure and batched. Hypotheses come as ``(B, S, ...)`` with the mode (the
flow's z = 0 sample) at index 0 and random samples at ``1 .. S-1``; ground truth as
``(B, ...)``. 3D inputs are in metres and 3D outputs in millimetres; 2D inputs are in crop
coordinates (the person box spans [-1, 1], see :mod:`humr.data.fields`) and 2D outputs in
pixels of a ``crop_pixels x crop_pixels`` crop (256 in the paper).

Accuracy (Table 1)
    :func:`mpjpe`, :func:`pa_mpjpe`, :func:`pve` give one error per hypothesis ``(B, S)``;
    :func:`mode_and_best` reads the mode's and the best hypothesis' error off it and
    :func:`min_of_n` the best-of-N curve for N = 1 .. S (Fig. S1) in one pass.
Consistency (Table 2)
    :func:`keypoint_2d_error`: 2D distance of visible joints to the ground truth, for the
    mode and averaged over the random hypotheses.
Diversity (Table 2)
    :func:`sample_spread`: mean 3D distance of the hypotheses to their per-joint mean, for
    visible and invisible joints separately.
Plausibility (Table 2, the paper's new metrics)
    :func:`mask_plausibility`: PercIn and MinDist of invisible joints' hypotheses, read from a
    person-mask distance map.

Each metric also has a ``*_sums`` form returning :class:`SumCount` pairs, so that
:class:`humr.eval.accumulator.MetricAccumulator` can weight batches exactly as the metric
defines (per image, per joint entry or per (joint, hypothesis) entry).

Example:
    >>> import torch
    >>> gt = torch.zeros(2, 14, 3)
    >>> pred = gt[:, None] + 0.01 * torch.ones(2, 5, 14, 3)   # every joint 1 cm off per axis
    >>> [round(v, 2) for v in mpjpe(pred, gt, root=None)[0].tolist()]
    [17.32, 17.32, 17.32, 17.32, 17.32]
    >>> float(mpjpe(pred, gt, root="3dpw").max())             # a constant offset aligns away
    0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import roma
import torch
from torch import Tensor

from humr.bodies.base import H36M14_NAMES, SMPL24_NAMES
from humr.losses.mask import default_tolerance, lookup_distance_map

__all__ = [
    "Protocol",
    "PROTOCOLS",
    "SumCount",
    "root_point",
    "mpjpe",
    "pa_mpjpe",
    "pve",
    "mode_and_best",
    "min_of_n",
    "visible_from_confidence",
    "keypoint_2d_error",
    "keypoint_2d_error_sums",
    "sample_spread",
    "sample_spread_sums",
    "TORSO_COCO17",
    "torso_aligned",
    "mask_plausibility",
    "mask_plausibility_sums",
]

M_TO_MM = 1000.0


@dataclass(frozen=True)
class Protocol:
    """An evaluation protocol: which keypoints the 3D errors use and where the root is.

    keypoints: the keypoint names, in order (a set of :mod:`humr.bodies.base`).
    root: indices into ``keypoints`` whose mean is the root subtracted before MPJPE/PVE.
    """

    name: str
    keypoints: tuple[str, ...]
    root: tuple[int, ...]


#: The two protocols of the paper.
#:
#: ``"3dpw"``: the 14 H36M joints (LSP order) regressed from SMPL meshes. The reference
#: code regresses the 17 H36M joints and subtracts H36M joint 0 (its pelvis) before
#: keeping 14, but the 14 LSP joints have no pelvis: we use the midpoint of the two hips
#: (LSP indices 2 and 3, as ProHMR does), which the H36M regressor's pelvis nearly equals.
#: A caller holding the 17-joint H36M pelvis subtracts it itself and passes ``root=None``.
#:
#: ``"emdb"``: the 24 SMPL joints, root = the mean of the two hips (SMPL indices 1, 2), the
#: same definition as for 3DPW so that both data sets align on one anatomical point. SMPL
#: joint 0 sits a few cm from that midpoint; pass ``root=0`` for a protocol aligning on it.
PROTOCOLS: dict[str, Protocol] = {
    "3dpw": Protocol("3dpw", H36M14_NAMES, (2, 3)),
    "emdb": Protocol("emdb", SMPL24_NAMES, (1, 2)),
}


class SumCount(NamedTuple):
    """A metric's sum over its entries and the number of entries (0-d tensors)."""

    total: Tensor
    count: Tensor

    @property
    def mean(self) -> Tensor:
        """``total / count``; NaN when there is no entry (the metric is undefined)."""
        return self.total / self.count.to(self.total.dtype)


# ----------------------------------------------------------------------------- checks


def _shape(x) -> object:
    return tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__


def _check_float(name: str, x, ndim: int, last: int | None, expected: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != ndim or (last is not None and x.shape[-1] != last):
        raise ValueError(f"{name}: expected shape {expected}, found {_shape(x)}")
    if not x.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, found {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")


def _check_same(name: str, x: Tensor, ref_name: str, ref: Tensor, shape: tuple[int, ...]) -> None:
    if tuple(x.shape) != shape:
        raise ValueError(f"{name}: expected shape {shape} (from {ref_name}), found {tuple(x.shape)}")
    if x.device != ref.device:
        raise ValueError(f"{name}: expected device {ref.device} (from {ref_name}), found {x.device}")


def _check_bool(name: str, x, shape: tuple[int, ...], ref_name: str, ref: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.dtype != torch.bool:
        raise ValueError(f"{name}: expected a bool tensor of shape {shape}, found "
                         f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    _check_same(name, x, ref_name, ref, shape)
    return x


def _check_pred_gt(pred, gt, what: str) -> None:
    _check_float("pred", pred, 4, 3, f"(B, S, N, 3) {what} in metres")
    b, _s, n, _ = pred.shape
    _check_float("gt", gt, 3, 3, f"({b}, {n}, 3) {what} in metres")
    _check_same("gt", gt, "pred", pred, (b, n, 3))
    if pred.shape[1] == 0 or n == 0:
        raise ValueError(f"pred: expected at least one hypothesis and one point, found {tuple(pred.shape)}")


# ----------------------------------------------------------------------------- accuracy


def root_point(points: Tensor, root: str | int | Sequence[int]) -> Tensor:
    """The root of a keypoint set: ``(..., N, 3)`` -> ``(..., 3)``.

    ``root`` is a protocol name of :data:`PROTOCOLS` (checks that ``N`` matches it), one
    index, or a sequence of indices whose mean is the root.
    """
    n = points.shape[-2]
    if isinstance(root, str):
        if root not in PROTOCOLS:
            raise ValueError(f"root: unknown protocol {root!r}; expected one of {sorted(PROTOCOLS)}, "
                             "an index or a sequence of indices")
        proto = PROTOCOLS[root]
        if n != len(proto.keypoints):
            raise ValueError(f"points: protocol {root!r} expects {len(proto.keypoints)} keypoints "
                             f"({proto.keypoints[0]}, ...), found {n}")
        idx: tuple[int, ...] = proto.root
    elif isinstance(root, int):
        idx = (root,)
    else:
        idx = tuple(int(i) for i in root)
    if not idx or not all(-n <= i < n for i in idx):
        raise ValueError(f"root: expected indices in [0, {n}), found {idx}")
    return points[..., list(idx), :].mean(-2)


def _align(pred: Tensor, gt: Tensor, root) -> tuple[Tensor, Tensor]:
    if root is None:
        return pred, gt
    return pred - root_point(pred, root)[..., None, :], gt - root_point(gt, root)[..., None, :]


def mpjpe(pred: Tensor, gt: Tensor, root: str | int | Sequence[int] | None = None) -> Tensor:
    """Mean per-joint position error of every hypothesis, in mm.

    ``mean_n |(p_n - p_root) - (g_n - g_root)|`` with each hypothesis' own root.

    Args:
        pred: ``(B, S, N, 3)`` hypotheses' joints in metres.
        gt: ``(B, N, 3)`` ground-truth joints in metres.
        root: alignment before the error: a protocol name (``"3dpw"``, ``"emdb"``, see
            :data:`PROTOCOLS`), a joint index or indices whose mean is the root, or ``None``
            when the caller has aligned already.

    Returns:
        ``(B, S)`` errors in mm.
    """
    _check_pred_gt(pred, gt, "joints")
    p, g = _align(pred, gt[:, None], root)
    return (p - g).norm(dim=-1).mean(-1) * M_TO_MM


def pa_mpjpe(pred: Tensor, gt: Tensor) -> Tensor:
    """MPJPE after a per-hypothesis similarity Procrustes alignment onto the ground truth, in mm.

    ``min_{s, R, t} mean_n |s R p_n + t - g_n|`` evaluated at the least-squares
    (Umeyama) ``(s, R, t)`` from :func:`roma.rigid_points_registration`; root alignment is
    irrelevant since ``t`` absorbs it.

    Args:
        pred: ``(B, S, N, 3)`` hypotheses' joints in metres (``N >= 3``).
        gt: ``(B, N, 3)`` ground-truth joints in metres.

    Returns:
        ``(B, S)`` errors in mm.
    """
    _check_pred_gt(pred, gt, "joints")
    if pred.shape[2] < 3:
        raise ValueError(f"pred: Procrustes needs at least 3 joints, found shape {tuple(pred.shape)}")
    g = gt[:, None].expand_as(pred)
    rot, trans, scale = roma.rigid_points_registration(pred, g, compute_scaling=True)
    aligned = scale[..., None, None] * pred @ rot.transpose(-1, -2) + trans[..., None, :]
    return (aligned - g).norm(dim=-1).mean(-1) * M_TO_MM


def pve(pred: Tensor, gt: Tensor, pred_root: Tensor | None = None, gt_root: Tensor | None = None) -> Tensor:
    """Per-vertex error of every hypothesis, in mm.

    ``mean_v |(p_v - r_p) - (g_v - r_g)|``. Protocols align meshes on the root of the
    *joints* (e.g. the 3DPW hip midpoint), so the roots are passed in, typically
    ``root_point(pred_joints, "3dpw")`` and ``root_point(gt_joints, "3dpw")``.

    Args:
        pred: ``(B, S, V, 3)`` hypotheses' vertices in metres.
        gt: ``(B, V, 3)`` ground-truth vertices in metres.
        pred_root: ``(B, S, 3)`` or ``None`` (no alignment; then ``gt_root`` must be ``None``).
        gt_root: ``(B, 3)`` or ``None``.

    Returns:
        ``(B, S)`` errors in mm.
    """
    _check_pred_gt(pred, gt, "vertices")
    b, s = pred.shape[:2]
    if (pred_root is None) != (gt_root is None):
        raise ValueError("pred_root, gt_root: expected both or neither, found "
                         f"{_shape(pred_root)} and {_shape(gt_root)}")
    p, g = pred, gt[:, None]
    if pred_root is not None:
        _check_float("pred_root", pred_root, 3, 3, f"({b}, {s}, 3)")
        _check_same("pred_root", pred_root, "pred", pred, (b, s, 3))
        _check_float("gt_root", gt_root, 2, 3, f"({b}, 3)")
        _check_same("gt_root", gt_root, "pred", pred, (b, 3))
        p = p - pred_root[..., None, :]
        g = g - gt_root[:, None, None, :]
    return (p - g).norm(dim=-1).mean(-1) * M_TO_MM


def mode_and_best(errors: Tensor) -> tuple[Tensor, Tensor]:
    """``(B, S)`` per-hypothesis errors -> ``(mode (B,), best (B,))``: index 0 and the minimum over S."""
    if not isinstance(errors, Tensor) or errors.dim() != 2 or errors.shape[1] == 0:
        raise ValueError(f"errors: expected shape (B, S) with S >= 1, found {_shape(errors)}")
    return errors[:, 0], errors.min(dim=1).values


def min_of_n(errors: Tensor) -> Tensor:
    """Best-of-N errors for every N = 1 .. S in one pass (Fig. S1).

    ``out[b, n-1] = min(errors[b, :n])``, the cumulative minimum along the sample axis: the
    first N hypotheses (the mode, then N - 1 samples) stand for a draw of N. Average over
    the data set for the curve, e.g. ``min_of_n(errors).mean(0)``.

    Args:
        errors: ``(B, S)`` per-hypothesis errors.

    Returns:
        ``(B, S)``, non-increasing along S.
    """
    if not isinstance(errors, Tensor) or errors.dim() != 2 or errors.shape[1] == 0:
        raise ValueError(f"errors: expected shape (B, S) with S >= 1, found {_shape(errors)}")
    return torch.cummin(errors, dim=1).values


# ----------------------------------------------------------------------------- consistency


def visible_from_confidence(confidence: Tensor, threshold: float = 0.5) -> Tensor:
    """Visibility proxy of the paper: detector confidence ``>= threshold`` (0.5): ``(B, K)`` -> bool."""
    if not isinstance(confidence, Tensor) or not confidence.is_floating_point():
        raise ValueError(f"confidence: expected a floating-point tensor (B, K), found {_shape(confidence)}")
    return confidence >= threshold


def keypoint_2d_error_sums(
    pred: Tensor, gt: Tensor, visible: Tensor, crop_pixels: int = 256
) -> tuple[SumCount, SumCount]:
    """Sums and counts of :func:`keypoint_2d_error`: ``(mode, samples)``.

    ``mode`` sums over visible ``(b, k)`` entries of hypothesis 0, ``samples`` over visible
    ``(b, s, k)`` entries with ``s >= 1``.
    """
    _check_float("pred", pred, 4, 2, "(B, S, K, 2) in crop coordinates")
    b, s, k, _ = pred.shape
    _check_float("gt", gt, 3, 2, f"({b}, {k}, 2) in crop coordinates")
    _check_same("gt", gt, "pred", pred, (b, k, 2))
    vis = _check_bool("visible", visible, (b, k), "pred", pred)
    if s == 0:
        raise ValueError(f"pred: expected at least one hypothesis, found {tuple(pred.shape)}")
    # crop coordinates span 2 units over crop_pixels pixels
    dist = (pred - gt[:, None]).norm(dim=-1) * (crop_pixels / 2.0)  # (B, S, K)
    w = vis.to(dist.dtype)
    n_vis = vis.sum()
    mode = SumCount((dist[:, 0] * w).sum(), n_vis)
    samples = SumCount((dist[:, 1:] * w[:, None]).sum(), n_vis * (s - 1))
    return mode, samples


def keypoint_2d_error(
    pred: Tensor, gt: Tensor, visible: Tensor, crop_pixels: int = 256
) -> tuple[Tensor, Tensor]:
    """2D keypoint error (2DKP) of visible joints, in pixels of a ``crop_pixels`` square crop.

    ``mode = mean_{(b,k) visible} |p[b,0,k] - g[b,k]| * crop_pixels / 2`` and
    ``samples = mean_{(b,s,k): visible, s >= 1} |p[b,s,k] - g[b,k]| * crop_pixels / 2``: crop
    coordinates span [-1, 1], so a unit is ``crop_pixels / 2`` pixels (128 for the paper's
    256 x 256 crop). Only visible joints count (the paper: detector confidence >= 0.5, see
    :func:`visible_from_confidence`; AND it with ground-truth validity where that varies).

    Args:
        pred: ``(B, S, K, 2)`` projected hypotheses in crop coordinates, mode at index 0.
        gt: ``(B, K, 2)`` ground-truth keypoints in crop coordinates.
        visible: ``(B, K)`` bool.
        crop_pixels: side of the square crop the error is expressed in.

    Returns:
        ``(mode, samples)`` 0-d tensors in pixels; NaN when there is no entry (no visible
        joint, or ``S == 1`` for ``samples``).
    """
    mode, samples = keypoint_2d_error_sums(pred, gt, visible, crop_pixels)
    return mode.mean, samples.mean


# ----------------------------------------------------------------------------- diversity


def sample_spread_sums(hyps: Tensor, visible: Tensor) -> tuple[SumCount, SumCount]:
    """Sums (mm) and counts of :func:`sample_spread`: ``(visible, invisible)``, per (joint, sample) entry."""
    _check_float("hyps", hyps, 4, 3, "(B, S, K, 3) in metres")
    b, s, k, _ = hyps.shape
    vis = _check_bool("visible", visible, (b, k), "hyps", hyps)
    if s == 0:
        raise ValueError(f"hyps: expected at least one hypothesis, found {tuple(hyps.shape)}")
    dist = (hyps - hyps.mean(dim=1, keepdim=True)).norm(dim=-1).sum(dim=1) * M_TO_MM  # (B, K), summed over S
    w = vis.to(dist.dtype)
    n_vis = vis.sum()
    return (SumCount((dist * w).sum(), n_vis * s),
            SumCount((dist * (1 - w)).sum(), (vis.numel() - n_vis) * s))


def sample_spread(hyps: Tensor, visible: Tensor) -> tuple[Tensor, Tensor]:
    """3D keypoint spread (diversity), in mm, for visible and invisible joints separately.

    With ``m[b,k] = mean_s h[b,s,k]`` and ``d[b,s,k] = |h[b,s,k] - m[b,k]|``:
    ``visible_mm = mean of d over the entries (b, s, k) with visible[b,k]`` and
    ``invisible_mm`` likewise over ``~visible[b,k]``. Each class is normalised by its own
    number of (joint, sample) entries, not by all joints. All S hypotheses count (pass
    ``hyps[:, 1:]`` to leave out the mode). Hypotheses should be root-relative, else a
    common translation would be part of the spread.

    Args:
        hyps: ``(B, S, K, 3)`` 3D keypoint hypotheses in metres.
        visible: ``(B, K)`` bool.

    Returns:
        ``(visible_mm, invisible_mm)`` 0-d tensors; NaN for a class with no entry.
    """
    vis, invis = sample_spread_sums(hyps, visible)
    return vis.mean, invis.mean


#: COCO-17 indices of the shoulders and hips: the torso :func:`torso_aligned` registers.
TORSO_COCO17: tuple[int, ...] = (5, 6, 11, 12)


def torso_aligned(hyps: Tensor, torso: Sequence[int] = TORSO_COCO17) -> Tensor:
    """Every hypothesis moved rigidly so that its torso points best match the mode's (Kabsch).

    A diagnostic beyond the paper: the spread of :func:`sample_spread` includes the torso's
    orientation, which moves visible and hidden joints alike; the spread of the aligned
    hypotheses is the limbs' own diversity. Rotation and translation only (no scaling), fitted
    on the ``torso`` joints of hypothesis ``s`` onto those of the mode (index 0).

    Args:
        hyps: ``(B, S, K, 3)`` 3D keypoints, mode at index 0.
        torso: indices of at least three non-collinear joints.

    Returns:
        ``(B, S, K, 3)``; the mode is unchanged.
    """
    _check_float("hyps", hyps, 4, 3, "(B, S, K, 3) in metres")
    index = list(torso)
    if len(index) < 3 or any(not 0 <= i < hyps.shape[2] for i in index):
        raise ValueError(f"torso: expected at least 3 indices in [0, {hyps.shape[2]}), found {index}")
    points = hyps[:, :, index]
    mode = points[:, :1].expand_as(points)
    rot, trans = roma.rigid_points_registration(points, mode, compute_scaling=False)
    aligned = hyps @ rot.transpose(-1, -2) + trans[..., None, :]
    return torch.cat([hyps[:, :1], aligned[:, 1:]], dim=1)


# ----------------------------------------------------------------------------- plausibility


def mask_plausibility_sums(
    points: Tensor,
    distance_map: Tensor,
    invisible: Tensor,
    extent: float = 1.0,
    tolerance: float | None = None,
    unit: str = "crop",
    crop_pixels: int = 256,
) -> tuple[SumCount, SumCount]:
    """Sums and counts of :func:`mask_plausibility`: ``(perc_in, min_dist)``.

    ``perc_in.total`` counts inside entries times 100 (so that ``.mean`` is a percentage);
    both count the invisible ``(b, s, k)`` entries.
    """
    _check_float("points", points, 4, 2, "(B, S, K, 2) in crop coordinates")
    b, s, k, _ = points.shape
    _check_float("distance_map", distance_map, 3, None, f"({b}, H, W)")
    if distance_map.shape[0] != b or distance_map.device != points.device:
        raise ValueError(f"distance_map: expected shape ({b}, H, W) on {points.device} (from points), "
                         f"found {tuple(distance_map.shape)} on {distance_map.device}")
    inv = _check_bool("invisible", invisible, (b, k), "points", points)
    if unit not in ("crop", "pixels"):
        raise ValueError(f"unit: expected 'crop' or 'pixels', found {unit!r}")
    if tolerance is None:
        tolerance = default_tolerance(distance_map.shape[1], distance_map.shape[2], extent)
    dist = lookup_distance_map(points, distance_map, extent)  # (B, S, K) crop units
    w = inv[:, None].expand(b, s, k)
    n = w.sum()
    inside = (dist <= tolerance) & w
    scale = crop_pixels / 2.0 if unit == "pixels" else 1.0
    perc = SumCount(inside.sum().to(dist.dtype) * 100.0, n)
    min_dist = SumCount(torch.where(w, dist, torch.zeros_like(dist)).sum() * scale, n)
    return perc, min_dist


# The arguments repeat mask_plausibility_sums' on purpose (its means form), written compactly.
def mask_plausibility(
    points: Tensor, distance_map: Tensor, invisible: Tensor,
    extent: float = 1.0, tolerance: float | None = None, unit: str = "crop", crop_pixels: int = 256,
) -> tuple[Tensor, Tensor]:
    """Plausibility of invisible joints' hypotheses against a person mask (PercIn, MinDist).

    Over the entries ``(b, s, k)`` with ``invisible[b, k]`` (all S hypotheses), with
    ``d[b,s,k]`` the distance of ``points[b,s,k]`` to the mask read (bilinearly) from the
    distance map by :func:`humr.losses.mask.lookup_distance_map`:

    - ``perc_in = 100 * mean(d <= tolerance)``: percentage of hypotheses inside the mask. The
      default tolerance, half a map cell (:func:`humr.losses.mask.default_tolerance`),
      absorbs the interpolation between a mask cell (0) and its outside neighbours (for
      cells at most twice as wide as high it stays below the distance to any outside cell
      centre; maps are square in practice).
    - ``min_dist = mean(d)``: mean distance to the nearest mask cell centre, 0 inside.
      Beyond the square the map covers the look-up is a lower bound: give the map an
      ``extent`` that covers where hypotheses fall.

    Units: the map stores crop units (the box spans 2 units), so ``unit="crop"`` returns
    those; ``unit="pixels"`` multiplies by ``crop_pixels / 2``. The paper's EMDB values
    (0.6 to 1.6) are only plausible as pixels (most hypotheses lie inside and count 0): its
    masks are 224 x 224 crops, so ``unit="pixels", crop_pixels=224`` is the comparable
    setting. Distances are never computed to every mask pixel.

    Args:
        points: ``(B, S, K, 2)`` projected hypotheses in crop coordinates.
        distance_map: ``(B, H, W)`` from :func:`humr.losses.mask.mask_to_distance_map`,
            covering ``[-extent, extent]^2``, 0 inside the person.
        invisible: ``(B, K)`` bool: the joints to evaluate.
        extent: half side of the square the map covers.
        tolerance: inside threshold in crop units; default half a cell.
        unit: ``"crop"`` or ``"pixels"`` for ``min_dist``.
        crop_pixels: crop side for ``unit="pixels"``.

    Returns:
        ``(perc_in, min_dist)`` 0-d tensors; NaN when no entry is invisible.
    """
    perc, min_dist = mask_plausibility_sums(points, distance_map, invisible, extent, tolerance, unit,
                                            crop_pixels)
    return perc.mean, min_dist.mean
