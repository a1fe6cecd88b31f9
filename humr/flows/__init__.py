"""humr.flows: conditional normalizing flows on nflows' transform protocol.

- :class:`ConditionalRealNVP`: the paper's soft-clamped affine coupling flow.
- :class:`ConditionalGlow`: the ProHMR baseline (ActNorm, LU linear, additive couplings).
- :class:`FlowConfig`, :func:`build_flow`: configuration and construction.

Both flows evaluate ``S`` samples per image with the context's share of every conditioner
computed once per image: pass ``x`` / ``z`` as ``(B, S, D)`` with ``context (B, C)``.

Imports nothing from humr beyond this package.
"""

from humr.flows.base import ConditionalFlow, standard_normal_log_prob
from humr.flows.composite import SampleCompositeTransform
from humr.flows.conditioner import SharedContextMLP
from humr.flows.coupling import AdditiveCoupling, SoftClampAffineCoupling, soft_clamp
from humr.flows.factory import FLOW_KINDS, FlowConfig, FlowKind, build_flow
from humr.flows.glow import ConditionalGlow
from humr.flows.linear import ActNorm, FixedPermutation, LULinear, seeded_permutation
from humr.flows.realnvp import ConditionalRealNVP

__all__ = [
    "ConditionalFlow",
    "ConditionalRealNVP",
    "ConditionalGlow",
    "FlowConfig",
    "FlowKind",
    "FLOW_KINDS",
    "build_flow",
    "standard_normal_log_prob",
    "SampleCompositeTransform",
    "SharedContextMLP",
    "SoftClampAffineCoupling",
    "AdditiveCoupling",
    "soft_clamp",
    "ActNorm",
    "FixedPermutation",
    "LULinear",
    "seeded_permutation",
]
