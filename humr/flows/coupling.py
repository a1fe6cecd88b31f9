"""Conditional coupling transforms on nflows' :class:`~nflows.transforms.base.Transform` protocol.

``forward(inputs, context) -> (outputs, logabsdet)`` maps data to noise, ``inverse`` noise to data,
as in nflows, so they mix with nflows' own transforms inside a ``CompositeTransform``
(for ``(N, D)`` inputs). In addition they accept ``inputs (B, S, D)`` with ``context (B, C)``
(see :mod:`humr.flows._context`).

The features are split at ``features // 2``; a coupling transforms one half (``transform_first``
picks which) conditioned on the other half and the context.

- :class:`SoftClampAffineCoupling` (RealNVP, Dinh et al. 2017, with the soft clamp of
  Ardizzone et al., FrEIA): ``y = x * exp(s) + t``, ``s = (2 alpha / pi) atan(s_raw / alpha)`` so
  ``|s| < alpha``; log-determinant ``sum(s)``. See :func:`soft_clamp` for how this relates to the
  clamp of FrEIA's ``GLOWCouplingBlock``, the published implementation's flow.
- :class:`AdditiveCoupling` (NICE, Dinh et al. 2015): ``y = x + t``, volume preserving.
"""

from __future__ import annotations

import math

import torch
from nflows.transforms.base import Transform
from torch import Tensor

from humr.flows._context import check_context, check_count, check_inputs
from humr.flows.conditioner import SharedContextMLP

__all__ = ["soft_clamp", "SoftClampAffineCoupling", "AdditiveCoupling"]


def soft_clamp(s: Tensor, alpha: float) -> Tensor:
    """``(2 alpha / pi) atan(s / alpha)``, elementwise: odd, increasing, bounded by ``alpha``.

    Its slope at 0 is ``2 / pi`` (about 0.637), not 1: near 0 it is about ``0.637 s``.

    FrEIA. The published implementation builds its flow from FrEIA's ``GLOWCouplingBlock`` with
    ``clamp=2`` and the default ``clamp_activation="ATAN"``; FrEIA 0.2 (the version its
    environment pins) computes the log-scale as ``clamp * 0.636 * atan(s_raw)``, without
    dividing by ``clamp`` inside the ``atan``: slope ``0.636 * clamp`` (1.27 for ``clamp=2``) at
    0, bound ``0.636 * (pi / 2) * clamp`` (0.999 ``clamp``). That is ``soft_clamp(clamp * s_raw,
    clamp)`` up to the factor ``0.636 / (2 / pi) = 0.99903``: to match it, scale the
    conditioner's log-scale output by ``alpha`` (with zero-initialised conditioners the two
    parametrise the same maps and differ only in how the optimiser steps through them).

    Args:
        s: any shape; alpha: ``> 0``.

    Returns:
        Same shape as ``s``, in ``(-alpha, alpha)``.
    """
    return (2.0 * alpha / math.pi) * torch.atan(s / alpha)


class _Coupling(Transform):
    """Split, condition, transform one half, merge. Subclasses define the per-half map."""

    _params_per_feature = 1

    def __init__(
        self,
        features: int, context_features: int,  # D and C
        transform_first: bool,
        hidden_features: int,
        zero_init: bool,
    ) -> None:
        super().__init__()
        check_count("features", features, 2)  # two halves for a coupling
        check_count("context_features", context_features)
        self.features = features
        self.context_features = context_features
        self.transform_first = bool(transform_first)
        self._split = features // 2
        first, second = self._split, features - self._split
        self.num_transform_features = first if transform_first else second
        num_identity = second if transform_first else first
        self.conditioner = SharedContextMLP(
            num_identity,
            context_features,
            self._params_per_feature * self.num_transform_features,
            hidden_features,
            zero_init=zero_init,
        )

    def _halves(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        a, b = inputs[..., : self._split], inputs[..., self._split :]
        return (a, b) if self.transform_first else (b, a)  # (transformed, identity)

    def _merge(self, transformed: Tensor, identity: Tensor) -> Tensor:
        parts = (transformed, identity) if self.transform_first else (identity, transformed)
        return torch.cat(parts, dim=-1)

    def _run(self, inputs: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        check_inputs("inputs", inputs, self.features)
        check_context("context", context, inputs, self.context_features)
        x_tr, x_id = self._halves(inputs)
        params = self.conditioner(x_id, context)
        y_tr, logabsdet = self._map(x_tr, params, inverse)
        return self._merge(y_tr, x_id), logabsdet

    def _map(self, x_tr: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> noise: inputs ``(B, [S,] D)``, context ``(B, C)`` -> ``((B, [S,] D), (B, [S]))``."""
        return self._run(inputs, context, inverse=False)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Noise -> data: inputs ``(B, [S,] D)``, context ``(B, C)`` -> ``((B, [S,] D), (B, [S]))``."""
        return self._run(inputs, context, inverse=True)


class SoftClampAffineCoupling(_Coupling):
    """Conditional affine coupling with soft-clamped log-scale.

    The conditioner outputs ``[t, s_raw]`` (shift first, as nflows' ``AffineCouplingTransform``);
    the log-scale is ``s = soft_clamp(s_raw, clamp)`` and the log-determinant is ``sum(s)`` exactly
    (never ``log(exp(s))``), so ``|logabsdet| < clamp * num_transform_features``.

    Args:
        features: ``D``; context_features: ``C``.
        transform_first: transform ``x[..., :D // 2]`` (else ``x[..., D // 2:]``).
        hidden_features: conditioner width.
        clamp: ``alpha`` of the soft clamp, > 0.
        zero_init: start as the identity (see :class:`SharedContextMLP`).

    Example:
        >>> c = SoftClampAffineCoupling(4, 3, transform_first=True, hidden_features=8)
        >>> y, logdet = c(torch.randn(2, 5, 4), torch.randn(2, 3))
        >>> y.shape, logdet.shape
        (torch.Size([2, 5, 4]), torch.Size([2, 5]))
    """

    _params_per_feature = 2

    def __init__(
        self,
        features: int, context_features: int,  # D and C
        transform_first: bool,
        hidden_features: int = 1024,
        clamp: float = 2.0,
        zero_init: bool = True,
    ) -> None:
        if not (isinstance(clamp, (int, float)) and math.isfinite(clamp) and clamp > 0):
            raise ValueError(f"clamp: expected a finite number > 0, found {clamp!r}")
        super().__init__(features, context_features, transform_first, hidden_features, zero_init)
        self.clamp = float(clamp)

    def shift_and_log_scale(self, x_id: Tensor, context: Tensor) -> tuple[Tensor, Tensor]:
        """x_id ``(B, [S,] D_id)``, context ``(B, C)`` -> shift and clamped log-scale ``(B, [S,] D_tr)``."""
        params = self.conditioner(x_id, context)
        return self._split_params(params)

    def _split_params(self, params: Tensor) -> tuple[Tensor, Tensor]:
        n = self.num_transform_features
        return params[..., :n], soft_clamp(params[..., n:], self.clamp)

    def _map(self, x_tr: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        shift, log_scale = self._split_params(params)
        logabsdet = log_scale.sum(dim=-1)
        if inverse:
            return (x_tr - shift) * torch.exp(-log_scale), -logabsdet
        return x_tr * torch.exp(log_scale) + shift, logabsdet


class AdditiveCoupling(_Coupling):
    """Conditional additive coupling ``y = x + t(x_id, c)`` (NICE): log-determinant 0.

    Args as :class:`SoftClampAffineCoupling` without ``clamp``.
    """

    def __init__(
        self,
        features: int, context_features: int,  # D and C
        transform_first: bool,
        hidden_features: int = 1024,
        zero_init: bool = True,
    ) -> None:
        super().__init__(features, context_features, transform_first, hidden_features, zero_init)

    def _map(self, x_tr: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        logabsdet = x_tr.new_zeros(x_tr.shape[:-1])
        return (x_tr - params if inverse else x_tr + params), logabsdet
