"""Aggregation over seeds against numpy on a fake table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from humr.eval.seeds import aggregate_rows, aggregate_seeds, separated


def test_mean_and_sample_std_against_numpy():
    rng = np.random.default_rng(3)
    table = {
        row: {seed: {"mpjpe_best": float(rng.normal(100, 5)), "perc_in": float(rng.uniform(50, 90)),
                     "curves": {"mpjpe": [1, 2]}, "checkpoint": "x.ckpt"} for seed in (0, 1, 2)}
        for row in ("a", "b")
    }
    agg = aggregate_rows(table)
    for row in table:
        for key in ("mpjpe_best", "perc_in"):
            vals = np.array([table[row][s][key] for s in (0, 1, 2)])
            mean, std, n = agg[row][key]
            assert mean == pytest.approx(vals.mean())
            assert std == pytest.approx(vals.std(ddof=1))
            assert n == 3
        assert "curves" not in agg[row] and "checkpoint" not in agg[row]


def test_nan_cells_are_skipped_and_one_seed_has_no_std():
    agg = aggregate_seeds({0: {"x": 1.0, "y": float("nan")}, 1: {"x": 3.0, "y": 2.0}})
    assert agg["x"][:2] == (2.0, pytest.approx(math.sqrt(2.0)))
    assert agg["y"][2] == 1 and math.isnan(agg["y"][1])


def test_separated_uses_the_larger_std():
    a = {"m": (10.0, 1.0, 3)}
    assert separated(a, {"m": (12.5, 2.0, 3)}, "m")
    assert not separated(a, {"m": (11.5, 2.0, 3)}, "m")
    assert not separated(a, {"m": (20.0, float("nan"), 1)}, "m")
    assert not separated(a, {}, "m")


def test_empty_runs_fail():
    with pytest.raises(ValueError, match="runs"):
        aggregate_seeds({})
