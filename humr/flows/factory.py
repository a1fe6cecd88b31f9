"""Flow configuration and construction: ``build_flow(FlowConfig(...), features, context_features)``."""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass, fields
from typing import Literal

from humr.flows.base import ConditionalFlow
from humr.flows.glow import ConditionalGlow
from humr.flows.realnvp import ConditionalRealNVP

__all__ = ["FlowKind", "FLOW_KINDS", "FlowConfig", "build_flow"]

#: ``"realnvp"``: the paper's soft-clamped affine flow; ``"glow"``: the ProHMR (NICE-style) baseline.
FlowKind = Literal["realnvp", "glow"]
FLOW_KINDS: tuple[str, ...] = typing.get_args(FlowKind)


@dataclass(frozen=True)
class FlowConfig:
    """Flow hyper-parameters; defaults are the paper's (supplementary A).

    Every field is checked when the config is built; a bad value raises ``ValueError`` naming
    the field (``humr.config`` puts the section in front when the flow's config sits in a
    model's: ``model.flow.num_layers``).

    Attributes:
        kind: ``"realnvp"`` or ``"glow"``.
        num_layers: blocks (RealNVP: two couplings each) or layers (Glow: one coupling each;
            ProHMR used 4).
        hidden_features: conditioner hidden width.
        clamp: soft-clamp ``alpha`` of the affine couplings, RealNVP only: Glow's couplings are
            additive, so a Glow config with another clamp than the default is refused.
        zero_init: start as the identity flow.
        permutation_seed: seed of the fixed permutations, RealNVP only (Glow mixes with learned
            LU linear layers), so a Glow config with another seed than the default is refused.
        check_finite: reject NaN / inf inputs with a ``ValueError``.

    Example:
        >>> from dataclasses import replace
        >>> prohmr = replace(FlowConfig(), kind="glow", num_layers=4)
        >>> replace(prohmr, clamp=3.0)
        Traceback (most recent call last):
        ...
        ValueError: clamp: Glow's couplings are additive (no clamp); expected the default 2.0, found 3.0
    """

    kind: FlowKind = "realnvp"
    num_layers: int = 8
    hidden_features: int = 1024
    clamp: float = 2.0
    zero_init: bool = True
    permutation_seed: int = 0
    check_finite: bool = True

    def __post_init__(self) -> None:
        if self.kind not in FLOW_KINDS:
            listed = ", ".join(FLOW_KINDS)
            raise ValueError(f"kind: expected one of {listed}, found unknown kind {self.kind!r}")
        for name in ("num_layers", "hidden_features", "permutation_seed"):
            value = getattr(self, name)
            low = 0 if name == "permutation_seed" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                what = "an int >= 0" if low == 0 else "a positive int"
                raise ValueError(f"{name}: expected {what}, found {value!r}")
        for name in ("zero_init", "check_finite"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true or false, found {getattr(self, name)!r}")
        clamp = self.clamp
        number = isinstance(clamp, (int, float)) and not isinstance(clamp, bool)
        if not (number and math.isfinite(clamp) and clamp > 0):
            raise ValueError(f"clamp: expected a finite number > 0, found {clamp!r}")
        if self.kind == "glow":
            self._check_realnvp_only()

    def _check_realnvp_only(self) -> None:
        """Glow has no clamp and no fixed permutations: a changed value would be ignored."""
        defaults = {f.name: f.default for f in fields(FlowConfig)}
        reasons = {"clamp": "Glow's couplings are additive (no clamp)",
                   "permutation_seed": "Glow has no fixed permutations (it learns LU linear layers)"}
        for name, reason in reasons.items():
            if getattr(self, name) != defaults[name]:
                found, default = getattr(self, name), defaults[name]
                raise ValueError(f"{name}: {reason}; expected the default {default!r}, found {found!r}")


def build_flow(config: FlowConfig, features: int, context_features: int) -> ConditionalFlow:
    """The flow ``config`` describes, over ``features`` dimensions with ``context_features`` context.

    Example:
        >>> flow = build_flow(FlowConfig(num_layers=2, hidden_features=16), 6, 4)
        >>> type(flow).__name__
        'ConditionalRealNVP'
    """
    if not isinstance(config, FlowConfig):
        raise ValueError(f"config: expected a FlowConfig, found {type(config).__name__}")
    shared = {
        "num_layers": config.num_layers,
        "hidden_features": config.hidden_features,
        "zero_init": config.zero_init,
        "check_finite": config.check_finite,
    }
    if config.kind == "glow":  # no clamp, no fixed permutations (FlowConfig refuses changed ones)
        return ConditionalGlow(features, context_features, **shared)
    return ConditionalRealNVP(
        features, context_features, clamp=config.clamp, permutation_seed=config.permutation_seed, **shared
    )
