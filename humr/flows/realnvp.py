"""Conditional RealNVP with soft clamping: the paper's flow (Sec. 4.1, supplementary A).

Each of the ``num_layers`` blocks is FrEIA's "GLOW coupling block" layout: an affine coupling of
the first half conditioned on the second half and the context, then one of the second half
conditioned on the (new) first half and the context, then a fixed permutation. At the paper's
sizes (D = 132 = 22 x 6D, C = 979, 8 blocks, 1024 hidden) that is 16 conditioners and about 36 M
parameters.

References:
    Dinh, Sohl-Dickstein, Bengio. Density estimation using Real NVP. ICLR 2017.
    Ardizzone et al. Framework for Easily Invertible Architectures (FrEIA): soft clamping.
"""

from __future__ import annotations

from nflows.transforms.base import Transform

from humr.flows.base import ConditionalFlow
from humr.flows.composite import stack_layers
from humr.flows.coupling import SoftClampAffineCoupling
from humr.flows.linear import FixedPermutation

__all__ = ["ConditionalRealNVP"]


class ConditionalRealNVP(ConditionalFlow):
    """Stacked soft-clamped affine coupling blocks conditioned on a context vector.

    Args:
        features: ``D`` (132 for 22 joints in 6D).
        context_features: ``C`` (979 in the paper: 720 image + 256 keypoint embedding + 3 bbox).
        num_layers: number of blocks; each transforms both halves in turn (two couplings).
        hidden_features: width of the conditioners' two hidden layers.
        clamp: soft-clamp ``alpha``: every log-scale lies in ``(-alpha, alpha)``, slope ``2 / pi``
            at 0 (see :func:`~humr.flows.coupling.soft_clamp` for FrEIA's variant).
        zero_init: zero each conditioner's last layer, so that the flow starts as the identity
            (``p(x | c) = N(0, I)`` for every context) and early training is stable.
        permutation_seed: block ``i`` permutes with :func:`~humr.flows.linear.seeded_permutation`
            ``(D, permutation_seed + i)``; no global RNG is touched.
        check_finite: see :class:`~humr.flows.base.ConditionalFlow`.

    Example:
        >>> import torch
        >>> flow = ConditionalRealNVP(6, 4, num_layers=2, hidden_features=16)
        >>> context = torch.randn(3, 4)
        >>> x, log_p = flow.sample_and_log_prob(5, context, generator=torch.Generator().manual_seed(0))
        >>> x.shape, log_p.shape, flow.mode(context).shape
        (torch.Size([3, 5, 6]), torch.Size([3, 5]), torch.Size([3, 6]))
    """

    def __init__(
        self,
        features: int, context_features: int,  # D and C
        num_layers: int = 8,
        hidden_features: int = 1024,
        clamp: float = 2.0,
        zero_init: bool = True,
        permutation_seed: int = 0,
        check_finite: bool = True,
    ) -> None:
        def block(i: int) -> list[Transform]:
            couplings = [
                SoftClampAffineCoupling(features, context_features, first, hidden_features, clamp, zero_init)
                for first in (True, False)
            ]
            return [*couplings, FixedPermutation.from_seed(features, permutation_seed + i)]

        super().__init__(stack_layers(num_layers, features, block), features, context_features, check_finite)
        self.num_layers = num_layers
        self.clamp = float(clamp)
