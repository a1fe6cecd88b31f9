"""Is the predicted spread a usable confidence? Rank correlation and coverage of the hypotheses.

Over a test set, per joint entry ``(b, k)``:

- **Spearman** :func:`spearman_correlation` between the joint's 3D spread
  (:func:`humr.eval.uncertainty.joint_spread`) and its mode error ``|p[b, 0, k] - g[b, k]|``:
  1 when the joints the model is unsure of are exactly its worst ones, 0 when the spread says
  nothing about the error.
- **Coverage** :func:`coverage`: for a nominal level ``q``, whether the ground truth lies
  within the ``q``-quantile of the hypotheses' distances to their mean. Its mean over entries
  is the coverage curve; a calibrated distribution lies on the diagonal (coverage ``q`` at
  level ``q``), an over-confident one below it.

As the spread, both use all S hypotheses with the mode (index 0) included. The ground truth
must be in the hypotheses' frame (align it on the same root first). Quantiles interpolate
linearly between order statistics (``torch.quantile``'s and numpy's default).

Example:
    >>> import torch
    >>> hyps = torch.zeros(1, 4, 2, 3)          # every hypothesis on the truth
    >>> coverage(hyps, torch.zeros(1, 2, 3), torch.tensor([0.5, 0.9])).all().item()
    True
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["COVERAGE_LEVELS", "LARGE_ERROR_MM", "average_ranks", "spearman_correlation", "coverage",
           "mode_joint_errors"]

#: Nominal levels of the coverage curve: 0.05, 0.10, ..., 1.00 (0.5 and 0.9 among them).
COVERAGE_LEVELS: tuple[float, ...] = tuple(i / 20 for i in range(1, 21))
#: A mode error above this (mm) is a failure the spread should flag.
LARGE_ERROR_MM = 100.0


def _check_1d(name: str, x) -> None:
    if not isinstance(x, Tensor) or x.dim() != 1:
        found = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name}: expected shape (N,), found {found}")
    if x.is_floating_point() and not torch.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")


def average_ranks(x: Tensor) -> Tensor:
    """Ranks ``1 .. N`` of ``x (N,)`` (float64), ties sharing the mean of their ranks."""
    _check_1d("x", x)
    order = torch.argsort(x, stable=True)
    _, inverse, counts = torch.unique_consecutive(x[order], return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).to(torch.float64)  # the last 1-based rank of each tie group
    mean_rank = ends - (counts.to(torch.float64) - 1) / 2
    ranks = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    ranks[order] = mean_rank[inverse]
    return ranks


def spearman_correlation(x: Tensor, y: Tensor) -> Tensor:
    """Spearman's rank correlation of ``x (N,)`` and ``y (N,)``: Pearson's of their average ranks.

    Returns a 0-d float64 tensor; NaN for fewer than 2 entries or a constant input (undefined).
    """
    _check_1d("x", x)
    _check_1d("y", y)
    if x.shape != y.shape:
        raise ValueError(f"y: expected shape {tuple(x.shape)} (from x), found {tuple(y.shape)}")
    if x.shape[0] < 2:
        return torch.tensor(float("nan"), dtype=torch.float64)
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = (rx.square().sum() * ry.square().sum()).sqrt()
    return (rx * ry).sum() / denom if denom > 0 else torch.tensor(float("nan"), dtype=torch.float64)


def _check_set(points, gt) -> None:
    if not isinstance(points, Tensor) or points.dim() != 4 or points.shape[1] == 0:
        found = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"points: expected shape (B, S, K, D) with S >= 1, found {found}")
    b, _, k, d = points.shape
    if not isinstance(gt, Tensor) or tuple(gt.shape) != (b, k, d):
        found = tuple(gt.shape) if isinstance(gt, Tensor) else type(gt).__name__
        raise ValueError(f"gt: expected shape ({b}, {k}, {d}) (from points), found {found}")
    for name, x in (("points", points), ("gt", gt)):
        if not x.is_floating_point() or not torch.isfinite(x).all():
            raise ValueError(f"{name}: expected finite floating-point values")


def mode_joint_errors(points: Tensor, gt: Tensor) -> Tensor:
    """Per-joint error of the mode: ``|points[:, 0] - gt|``, ``(B, S, K, D)``, ``(B, K, D)`` -> ``(B, K)``."""
    _check_set(points, gt)
    return (points[:, 0] - gt).norm(dim=-1)


def coverage(points: Tensor, gt: Tensor, levels: Tensor | tuple[float, ...] = COVERAGE_LEVELS) -> Tensor:
    """Whether each ground-truth point lies within the ``q``-quantile ball of its hypotheses.

    With ``m = mean_s p[b, s, k]`` and ``d_s = |p[b, s, k] - m|``:
    ``covered[b, k, i] = |g[b, k] - m| <= quantile(d, levels[i])`` over the S hypotheses.

    Args:
        points: ``(B, S, K, D)`` hypotheses (mode included).
        gt: ``(B, K, D)`` ground truth in the same frame.
        levels: ``(Q,)`` nominal levels in [0, 1].

    Returns:
        ``(B, K, Q)`` bool; its mean over ``(b, k)`` is the coverage curve.
    """
    _check_set(points, gt)
    q = torch.as_tensor(levels, dtype=points.dtype, device=points.device)
    if q.dim() != 1 or q.numel() == 0 or not ((q >= 0) & (q <= 1)).all():
        raise ValueError(f"levels: expected a non-empty (Q,) list in [0, 1], found {levels}")
    mean = points.mean(dim=1)
    radius = torch.quantile((points - mean[:, None]).norm(dim=-1), q, dim=1)  # (Q, B, K)
    return ((gt - mean).norm(dim=-1)[None] <= radius).permute(1, 2, 0)
