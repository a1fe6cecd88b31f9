"""A conditional normalizing flow: a standard-normal base pushed through a conditional transform.

Direction convention (nflows'): the transform's ``forward`` maps data ``x`` to latent ``z``,
its ``inverse`` maps ``z`` to ``x``. Densities follow the change of variables

    log p(x | c) = log N(z; 0, I) + log|det dz/dx|,      z = f^{-1}(x; c)

and for a given latent ``log p(f(z; c) | c) = log N(z; 0, I) - log|det dx/dz|``.

Every public method takes a single ``x`` / ``z`` of shape ``(B, D)`` or ``S`` per image of shape
``(B, S, D)`` together with one context per image ``(B, C)``; the context is never repeated per
sample (see :mod:`humr.flows.conditioner`).
"""

from __future__ import annotations

import math

import torch
from nflows.transforms.base import Transform
from torch import Tensor, nn

from humr.flows._context import check_count, check_flow_inputs

__all__ = ["ConditionalFlow", "standard_normal_log_prob"]


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` summed over the last axis: ``(..., D)`` -> ``(...)``."""
    return -0.5 * z.pow(2).sum(dim=-1) - 0.5 * z.shape[-1] * math.log(2.0 * math.pi)


class ConditionalFlow(nn.Module):
    """Conditional density ``p(x | c)`` over ``R^D`` with a standard-normal base.

    Args:
        transform: an nflows-protocol transform (data -> noise in ``forward``) that accepts
            ``(B, [S,] D)`` inputs with a ``(B, C)`` context.
        features: ``D``.
        context_features: ``C``.
        check_finite: reject NaN / inf inputs with a ``ValueError`` (one device synchronisation per
            call on accelerators; switch off for speed once a pipeline is trusted).
    """

    def __init__(self, transform: Transform, features: int, context_features: int, check_finite: bool = True):
        super().__init__()
        check_count("features", features, 2)  # two halves for a coupling
        check_count("context_features", context_features)
        self._transform = transform
        self.features = features
        self.context_features = context_features
        self.check_finite = check_finite

    def _check(self, x: Tensor, name: str, context: Tensor) -> None:
        check_flow_inputs(x, name, context, self.features, self.context_features, self.check_finite)

    # -- data -> latent -------------------------------------------------------------------------
    def inverse(self, x: Tensor, context: Tensor) -> Tensor:
        """Latent of data: x ``(B, D)`` or ``(B, S, D)``, context ``(B, C)`` -> z of x's shape."""
        self._check(x, "x", context)
        return self._transform(x, context)[0]

    def log_prob(self, x: Tensor, context: Tensor) -> Tensor:
        """``log p(x | c)``: x ``(B, D)`` -> ``(B,)`` or ``(B, S, D)`` -> ``(B, S)``; context ``(B, C)``."""
        self._check(x, "x", context)
        z, logabsdet = self._transform(x, context)
        return standard_normal_log_prob(z) + logabsdet

    # -- latent -> data -------------------------------------------------------------------------
    def transform(self, z: Tensor, context: Tensor) -> Tensor:
        """Push latents through the flow: z ``(B, [S,] D)``, context ``(B, C)`` -> x of z's shape."""
        self._check(z, "z", context)
        return self._transform.inverse(z, context)[0]

    def transform_and_log_prob(self, z: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """x = f(z; c) and ``log p(x | c)``: z ``(B, [S,] D)`` -> (x ``(B, [S,] D)``, ``(B, [S])``).

        The training step passes ``z (B, 1 + S, D)`` with ``z[:, 0] = 0`` (the mode) and ``S`` random
        latents.
        """
        self._check(z, "z", context)
        x, logabsdet = self._transform.inverse(z, context)
        return x, standard_normal_log_prob(z) - logabsdet

    def mode(self, context: Tensor) -> Tensor:
        """Image of ``z = 0`` (approximate mode, the deterministic estimate): ``(B, C)`` -> ``(B, D)``."""
        z = self._latent_like(context, (self.features,), zeros=True)
        return self.transform(z, context)

    # -- sampling -------------------------------------------------------------------------------
    def sample_latent(
        self, num_samples: int, context: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """Standard-normal latents ``(B, num_samples, D)`` on the context's device and dtype."""
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples: expected a positive int, found {num_samples!r}")
        on_context_device = not isinstance(context, Tensor) or generator is None
        if not on_context_device and generator.device.type != context.device.type:
            raise ValueError(
                f"generator: expected a generator on the context's device {context.device}, "
                f"found one on {generator.device}"
            )
        return self._latent_like(context, (num_samples, self.features), generator=generator)

    def sample(self, num_samples: int, context: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``num_samples`` draws per image: context ``(B, C)`` -> ``(B, num_samples, D)``."""
        return self.transform(self.sample_latent(num_samples, context, generator), context)

    def sample_and_log_prob(
        self, num_samples: int, context: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draws and log-densities: context ``(B, C)`` -> (``(B, S, D)``, ``(B, S)``), ``S = num_samples``."""
        return self.transform_and_log_prob(self.sample_latent(num_samples, context, generator), context)

    def _latent_like(
        self,
        context: Tensor,
        tail: tuple[int, ...],
        zeros: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        if not isinstance(context, Tensor) or context.dim() != 2:
            found = tuple(context.shape) if isinstance(context, Tensor) else type(context).__name__
            raise ValueError(f"context: expected shape (B, {self.context_features}), found {found}")
        shape = (context.shape[0], *tail)
        if zeros:
            return context.new_zeros(shape)
        return torch.randn(shape, generator=generator, device=context.device, dtype=context.dtype)

    def extra_repr(self) -> str:
        return f"features={self.features}, context_features={self.context_features}"
