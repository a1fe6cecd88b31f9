"""Conditional Glow-style flow with additive couplings: the ProHMR baseline of the ablation (Table 3).

Each layer is ActNorm -> invertible LU linear -> additive coupling (NICE), the coupling alternating
between the two halves, as in ProHMR's conditional Glow. Additive couplings are volume preserving:
only ActNorm and the LU layers change volume, and neither depends on the context, so
``log|det|`` is the same for every input and context; the paper reports that this flow struggles
with sharp distributions for unambiguous joints.

Differences from ProHMR, on purpose: ActNorm starts at the identity instead of a data-dependent
initialisation (a hidden global side effect), and the conditioners are the same shared-context
MLPs as the RealNVP's (ProHMR uses nflows' ``ResidualNet``).

References:
    Kingma, Dhariwal. Glow: Generative flow with invertible 1x1 convolutions. NeurIPS 2018.
    Kolotouros et al. Probabilistic modeling for human mesh recovery (ProHMR). ICCV 2021.
"""

from __future__ import annotations

from nflows.transforms.base import Transform

from humr.flows.base import ConditionalFlow
from humr.flows.composite import stack_layers
from humr.flows.coupling import AdditiveCoupling
from humr.flows.linear import ActNorm, LULinear

__all__ = ["ConditionalGlow"]


class ConditionalGlow(ConditionalFlow):
    """Stacked (ActNorm, LU linear, additive coupling) layers conditioned on a context vector.

    Args:
        features: ``D``; context_features: ``C``.
        num_layers: number of layers (ProHMR uses 4), each with one coupling.
        hidden_features: width of the conditioners' two hidden layers.
        zero_init: zero each conditioner's last layer (the flow starts as the identity).
        check_finite: see :class:`~humr.flows.base.ConditionalFlow`.

    Example:
        >>> import torch
        >>> flow = ConditionalGlow(6, 4, num_layers=2, hidden_features=16)
        >>> flow.log_prob(torch.randn(3, 6), torch.randn(3, 4)).shape
        torch.Size([3])
    """

    def __init__(
        self,
        features: int, context_features: int,  # D and C
        num_layers: int = 4,
        hidden_features: int = 1024,
        zero_init: bool = True,
        check_finite: bool = True,
    ) -> None:
        def layer(i: int) -> list[Transform]:
            return [
                ActNorm(features),
                LULinear(features),
                AdditiveCoupling(features, context_features, i % 2 == 0, hidden_features, zero_init),
            ]

        super().__init__(stack_layers(num_layers, features, layer), features, context_features, check_finite)
        self.num_layers = num_layers
