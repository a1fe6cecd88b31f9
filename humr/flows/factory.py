"""Flow configuration and construction: ``build_flow(FlowConfig(...), features, context_features)``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from humr.flows.base import ConditionalFlow
from humr.flows.glow import ConditionalGlow
from humr.flows.realnvp import ConditionalRealNVP

__all__ = ["FLOW_KINDS", "FlowConfig", "build_flow"]

#: ``"realnvp"``: the paper's soft-clamped affine flow; ``"glow"``: the ProHMR (NICE-style) baseline.
FLOW_KINDS = ("realnvp", "glow")


@dataclass(frozen=True)
class FlowConfig:
    """Flow hyper-parameters; defaults are the paper's (supplementary A).

    Attributes:
        kind: ``"realnvp"`` or ``"glow"``.
        num_layers: blocks (RealNVP: two couplings each) or layers (Glow: one coupling each;
            ProHMR used 4).
        hidden_features: conditioner hidden width.
        clamp: soft-clamp ``alpha`` (RealNVP only; Glow's couplings are additive).
        zero_init: start as the identity flow.
        permutation_seed: seed of the fixed permutations (RealNVP only).
        check_finite: reject NaN / inf inputs with a ``ValueError``.

    Example:
        >>> from dataclasses import replace
        >>> prohmr = replace(FlowConfig(), kind="glow", num_layers=4)
    """

    kind: str = "realnvp"
    num_layers: int = 8
    hidden_features: int = 1024
    clamp: float = 2.0
    zero_init: bool = True
    permutation_seed: int = 0
    check_finite: bool = True

    def __post_init__(self) -> None:
        if self.kind not in FLOW_KINDS:
            raise ValueError(f"kind: expected one of {FLOW_KINDS}, found {self.kind!r}")
        for name in ("num_layers", "hidden_features"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, found {value!r}")
        if not (isinstance(self.clamp, (int, float)) and math.isfinite(self.clamp) and self.clamp > 0):
            raise ValueError(f"clamp: expected a finite number > 0, found {self.clamp!r}")


def build_flow(config: FlowConfig, features: int, context_features: int) -> ConditionalFlow:
    """The flow ``config`` describes, over ``features`` dimensions with ``context_features`` context.

    Example:
        >>> flow = build_flow(FlowConfig(num_layers=2, hidden_features=16), 6, 4)
        >>> type(flow).__name__
        'ConditionalRealNVP'
    """
    if not isinstance(config, FlowConfig):
        raise ValueError(f"config: expected a FlowConfig, found {type(config).__name__}")
    if config.kind == "realnvp":
        return ConditionalRealNVP(
            features,
            context_features,
            num_layers=config.num_layers,
            hidden_features=config.hidden_features,
            clamp=config.clamp,
            zero_init=config.zero_init,
            permutation_seed=config.permutation_seed,
            check_finite=config.check_finite,
        )
    return ConditionalGlow(
        features,
        context_features,
        num_layers=config.num_layers,
        hidden_features=config.hidden_features,
        zero_init=config.zero_init,
        check_finite=config.check_finite,
    )
