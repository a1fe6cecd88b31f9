"""Learning-rate schedule values at given steps, against the closed form written out here."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from humr.training.schedule import build_scheduler, lr_factor


def test_cosine_values_at_named_steps():
    total, warm, r = 1000, 100, 0.1
    assert lr_factor(0, total, "cosine", warm, r) == pytest.approx(1 / 100)
    assert lr_factor(49, total, "cosine", warm, r) == pytest.approx(50 / 100)
    assert lr_factor(100, total, "cosine", warm, r) == pytest.approx(1.0)
    # half way through the decay the cosine is at 0: the factor is the midpoint of 1 and r
    assert lr_factor(550, total, "cosine", warm, r) == pytest.approx((1 + r) / 2)
    assert lr_factor(1000, total, "cosine", warm, r) == pytest.approx(r)
    assert lr_factor(5000, total, "cosine", warm, r) == pytest.approx(r)


@given(st.integers(0, 3000), st.integers(1, 2000), st.integers(0, 500), st.floats(0, 1))
def test_cosine_matches_the_formula_and_stays_in_range(step, total, warm, r):
    f = lr_factor(step, total, "cosine", warm, r)
    if step < warm:
        expected = (step + 1) / warm
    else:
        p = min((step - warm) / max(total - warm, 1), 1.0)
        expected = r + (1 - r) * (1 + math.cos(math.pi * p)) / 2
    assert f == pytest.approx(expected)
    assert min(r, 1 / max(warm, 1)) - 1e-12 <= f <= 1.0 + 1e-12


def test_constant_is_one_after_warmup():
    assert [lr_factor(t, 10, "constant") for t in range(5)] == [1.0] * 5
    assert lr_factor(1, 10, "constant", warmup_steps=4) == pytest.approx(0.5)


def test_scheduler_drives_the_optimizer_per_step():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2.0)
    sched = build_scheduler(opt, total_steps=20, schedule="cosine", warmup_steps=5, final_ratio=0.0)
    seen = []
    for _ in range(21):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(2.0 * 1 / 5)
    assert seen[5] == pytest.approx(2.0)
    assert seen[20] == pytest.approx(0.0, abs=1e-12)


def test_unknown_schedule_and_negative_step_fail():
    with pytest.raises(ValueError, match="schedule"):
        lr_factor(0, 10, "linear")
    with pytest.raises(ValueError, match="step"):
        lr_factor(-1, 10)
