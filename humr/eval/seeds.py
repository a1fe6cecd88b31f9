"""Results over seeds: each metric's mean and standard deviation across training runs.

A result of this library is a claim about a distribution of training runs, not about one run:
the ablation recipes train every row with several seeds and report ``mean ± std`` per cell.
The standard deviation is the sample one (``ddof = 1``, NumPy's ``np.std(x, ddof=1)``); with a
single seed it is NaN, never 0, so that a table never suggests a spread nobody measured.

Example:
    >>> runs = {0: {"mpjpe_best": 100.0}, 1: {"mpjpe_best": 110.0}, 2: {"mpjpe_best": 120.0}}
    >>> agg = aggregate_seeds(runs)
    >>> agg["mpjpe_best"]
    (110.0, 10.0, 3)
    >>> separated(agg, {"mpjpe_best": (130.0, 5.0, 3)}, "mpjpe_best")
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = ["aggregate_seeds", "aggregate_rows", "separated"]

Summary = tuple[float, float, int]  #: (mean, sample standard deviation, number of seeds)


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def aggregate_seeds(runs: Mapping[int, Mapping[str, object]]) -> dict[str, Summary]:
    """``{seed: metrics}`` -> ``{metric: (mean, std, n)}`` over the seeds that report the metric.

    Only finite numbers are aggregated (curves, paths and NaN cells are skipped per seed).
    """
    if not runs:
        raise ValueError("runs: expected results of at least one seed, found none")
    values: dict[str, list[float]] = {}
    for seed, metrics in runs.items():
        if not isinstance(metrics, Mapping):
            raise ValueError(f"runs[{seed!r}]: expected a mapping of metrics, found {type(metrics).__name__}")
        for key, value in metrics.items():
            if _finite_number(value):
                values.setdefault(key, []).append(float(value))
    out: dict[str, Summary] = {}
    for key, vals in values.items():
        arr = np.asarray(vals, dtype=np.float64)
        std = float(arr.std(ddof=1)) if arr.size > 1 else float("nan")
        out[key] = (float(arr.mean()), std, int(arr.size))
    return out


def aggregate_rows(
    results: Mapping[str, Mapping[int, Mapping[str, object]]],
) -> dict[str, dict[str, Summary]]:
    """``{row: {seed: metrics}}`` -> ``{row: {metric: (mean, std, n)}}``."""
    return {row: aggregate_seeds(runs) for row, runs in results.items()}


def separated(a: Mapping[str, Summary], b: Mapping[str, Summary], key: str, k: float = 1.0) -> bool:
    """Whether the means of ``key`` differ by more than ``k`` times the larger standard deviation.

    The test the ablation goals are stated in ("lower by more than one standard deviation").
    False when either side lacks the metric or has no spread estimate (a single seed).
    """
    if key not in a or key not in b:
        return False
    (ma, sa, _), (mb, sb, _) = a[key], b[key]
    if not (math.isfinite(sa) and math.isfinite(sb)):
        return False
    return abs(ma - mb) > k * max(sa, sb)
