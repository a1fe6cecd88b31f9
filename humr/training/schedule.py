"""Learning-rate schedules: a factor of the base learning rate per optimizer step.

``"constant"`` is the paper's (Adam with a fixed 1e-4, supplementary A). ``"cosine"`` warms up
linearly from 0 over ``warmup_steps`` steps, then decays along half a cosine from the base
rate down to ``final_ratio`` times it at ``total_steps``:

    factor(t) = (t + 1) / warmup                                   for t < warmup
    factor(t) = r + (1 - r) (1 + cos(pi (t - warmup) / (T - warmup))) / 2   for t >= warmup

(``t`` the 0-based step, ``T`` the total, ``r = final_ratio``; steps past ``T`` stay at ``r``).
The synthetic CPU default uses it: a short run reaches a flat loss only if the rate decays.

Example:
    >>> round(lr_factor(0, 100, "cosine", warmup_steps=10), 3)
    0.1
    >>> round(lr_factor(10, 100, "cosine", warmup_steps=10), 3)
    1.0
    >>> round(lr_factor(100, 100, "cosine", warmup_steps=10, final_ratio=0.05), 3)
    0.05
"""

from __future__ import annotations

import math
from functools import partial

import torch

__all__ = ["SCHEDULES", "lr_factor", "build_scheduler"]

#: Names of the schedules :func:`lr_factor` knows.
SCHEDULES: tuple[str, ...] = ("constant", "cosine")


def lr_factor(
    step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0, final_ratio: float = 0.0
) -> float:
    """The factor of the base learning rate at 0-based optimizer step ``step`` (formula above)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule: expected one of {SCHEDULES}, found {schedule!r}")
    if step < 0:
        raise ValueError(f"step: expected >= 0, found {step}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return final_ratio + (1.0 - final_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    schedule: str = "constant",
    warmup_steps: int = 0,
    final_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step :class:`~torch.optim.lr_scheduler.LambdaLR` following :func:`lr_factor`."""
    factor = partial(
        lr_factor,
        total_steps=total_steps,
        schedule=schedule,
        warmup_steps=warmup_steps,
        final_ratio=final_ratio,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
