"""Per-joint and per-vertex uncertainty of a hypothesis set: the spread of its S hypotheses.

The spread of a point is the mean distance of its S hypotheses to their mean,
``spread[b, k] = mean_s |p[b, s, k] - mean_t p[b, t, k]|``, with **all S hypotheses counted,
the mode (index 0) included**. This is the per-entry form of the diversity metric of the
paper (Sec. 5.1, :func:`humr.eval.metrics.sample_spread`): the mean of ``joint_spread`` over
the visible (or invisible) entries equals ``sample_spread`` of that class. Pass
``points[:, 1:]`` for the spread of the random draws alone.

Units are those of the input (metres in, metres out); :class:`humr.model.hypotheses.Hypotheses`
converts to mm. A single hypothesis (``S = 1``) has spread 0.

Example:
    >>> import torch
    >>> pts = torch.zeros(1, 2, 1, 3)
    >>> pts[0, 1, 0, 0] = 0.2               # two hypotheses 20 cm apart: each 10 cm from the mean
    >>> joint_spread(pts)
    tensor([[0.1000]])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["joint_spread", "chunked_spread", "uncertain"]


def _check_points(points, name: str = "points") -> None:
    if not isinstance(points, Tensor) or points.dim() != 4:
        found = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"{name}: expected shape (B, S, K, D), found {found}")
    if not points.is_floating_point():
        raise ValueError(f"{name}: expected a floating-point tensor, found {points.dtype}")
    if points.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one hypothesis, found shape {tuple(points.shape)}")


def joint_spread(points: Tensor) -> Tensor:
    """Mean distance of each point's S hypotheses to their mean: ``(B, S, K, D)`` -> ``(B, K)``.

    All S hypotheses count, the mode (index 0) included (see the module docstring).
    """
    _check_points(points)
    return (points - points.mean(dim=1, keepdim=True)).norm(dim=-1).mean(dim=1)


def chunked_spread(
    make_points: Callable[[slice], Tensor], batch: int, samples: int, chunk: int = 2048
) -> Tensor:
    """:func:`joint_spread` of points built a few images at a time (e.g. skinned meshes).

    ``make_points(images)`` returns the ``(b, S, V, D)`` points of the images ``images`` (a
    slice of ``range(batch)``); each call builds at most ``max(1, chunk // samples)`` images'
    ``S`` hypotheses, so memory stays at about ``chunk`` meshes (at least one image's S).

    Returns:
        ``(batch, V)``.
    """
    if batch < 1 or samples < 1 or chunk < 1:
        raise ValueError(f"batch, samples, chunk: expected >= 1, found {batch}, {samples}, {chunk}")
    step = max(1, chunk // samples)
    return torch.cat([joint_spread(make_points(slice(i, min(i + step, batch))))
                      for i in range(0, batch, step)])


def uncertain(spread: Tensor, threshold: float) -> Tensor:
    """``spread > threshold`` (same units), as bool; ``threshold`` must be finite and >= 0."""
    threshold = float(threshold)
    if not (threshold >= 0 and threshold != float("inf")):
        raise ValueError(f"threshold: expected a finite value >= 0, found {threshold}")
    return spread > threshold
