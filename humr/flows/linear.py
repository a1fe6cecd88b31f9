"""Context-free invertible linear transforms on the last axis, nflows protocol, any ``(B, [S,] D)`` inputs.

- :class:`FixedPermutation`: a permutation drawn once from a seed with a local generator.
- :class:`ActNorm`: learnable per-feature affine map, initialised to the identity.
- :class:`LULinear`: invertible ``W = L U`` (Glow's 1x1 convolution for vectors), inverted with
  ``torch.linalg.solve_triangular`` (nflows' ``LULinear`` uses the deprecated ``triangular_solve``).

``forward`` maps data to noise, ``inverse`` noise to data; the context is accepted and ignored.
"""

from __future__ import annotations

import torch
from nflows.transforms.base import Transform
from torch import Tensor, nn

from humr.flows._context import check_count, check_inputs

__all__ = ["FixedPermutation", "ActNorm", "LULinear", "seeded_permutation"]


def seeded_permutation(features: int, seed: int) -> Tensor:
    """A permutation of ``range(features)`` ``(features,)`` int64, a function of ``seed`` only.

    Uses a local ``torch.Generator`` on the CPU: the global RNG is neither read nor advanced.
    """
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    return torch.randperm(features, generator=generator, device="cpu")


class FixedPermutation(Transform):
    """Permute the last axis by a fixed permutation ``(D,)``; log-determinant 0.

    The permutation is a persistent buffer, so a checkpoint carries it.

    Args:
        permutation: ``(D,)`` a permutation of ``range(D)``.
    """

    def __init__(self, permutation: Tensor) -> None:
        super().__init__()
        # Explicit CPU device: validation must also work inside a ``torch.device("meta")`` context.
        permutation = torch.as_tensor(permutation, dtype=torch.long, device="cpu")
        d = permutation.numel()
        expected = torch.arange(d, device="cpu")
        is_permutation = permutation.dim() == 1 and torch.equal(torch.sort(permutation).values, expected)
        if d == 0 or not is_permutation:
            raise ValueError(f"permutation: expected a permutation of range(D), found {permutation.tolist()}")
        self.features = d
        self.register_buffer("permutation", permutation)
        self.register_buffer("inverse_permutation", torch.argsort(permutation))

    @classmethod
    def from_seed(cls, features: int, seed: int) -> FixedPermutation:
        """The permutation :func:`seeded_permutation` ``(features, seed)``."""
        return cls(seeded_permutation(features, seed))

    def _permute(self, inputs: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        check_inputs("inputs", inputs, self.features)
        return inputs[..., index], inputs.new_zeros(inputs.shape[:-1])

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``outputs[..., i] = inputs[..., permutation[i]]``: ``(B, [S,] D)`` -> same, logdet ``(B, [S])``."""
        return self._permute(inputs, self.permutation)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Undo :meth:`forward`."""
        return self._permute(inputs, self.inverse_permutation)


class _FeatureTransform(Transform):
    """A learnable map of ``features`` (``D``) inputs, the base of :class:`ActNorm` and :class:`LULinear`."""

    def __init__(self, features: int) -> None:
        super().__init__()
        check_count("features", features)
        self.features = features


class ActNorm(_FeatureTransform):
    """``y = x * exp(log_scale) + shift`` per feature, initialised to the identity.

    Glow initialises ActNorm from the statistics of the first batch; that hidden, order-dependent
    side effect is left out on purpose: here it is a plain learnable affine map starting at the
    identity (the data are 6D rotations, already of unit scale).

    Args:
        features: ``D``.
    """

    def __init__(self, features: int) -> None:
        super().__init__(features)
        self.log_scale = nn.Parameter(torch.zeros(features))
        self.shift = nn.Parameter(torch.zeros(features))

    def _logabsdet(self, inputs: Tensor) -> Tensor:
        return self.log_scale.sum().expand(inputs.shape[:-1])

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> noise: ``(B, [S,] D)`` -> same, logdet ``(B, [S])``."""
        check_inputs("inputs", inputs, self.features)
        return inputs * torch.exp(self.log_scale) + self.shift, self._logabsdet(inputs)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Noise -> data."""
        check_inputs("inputs", inputs, self.features)
        return (inputs - self.shift) * torch.exp(-self.log_scale), -self._logabsdet(inputs)


class LULinear(_FeatureTransform):
    """Invertible linear map ``y = x W^T + b`` with ``W = L U``, initialised to the identity.

    ``L`` is unit lower triangular, ``U`` upper triangular with diagonal ``exp(log_diag)`` (> 0), so
    ``log|det W| = sum(log_diag)`` costs O(D) and ``W`` is invertible by construction. Without a
    pivot permutation this covers every matrix with an LU factorisation and positive pivots; the
    flows put a permutation or coupling between LU layers anyway.

    Args:
        features: ``D``.
    """

    def __init__(self, features: int) -> None:
        super().__init__(features)
        n_off = features * (features - 1) // 2
        # Packed strictly-triangular entries: D^2 + D parameters in all, none unused.
        self.lower_entries = nn.Parameter(torch.zeros(n_off))
        self.upper_entries = nn.Parameter(torch.zeros(n_off))
        self.log_diag = nn.Parameter(torch.zeros(features))
        self.bias = nn.Parameter(torch.zeros(features))
        self.register_buffer("lower_index", torch.tril_indices(features, features, -1), persistent=False)
        self.register_buffer("upper_index", torch.triu_indices(features, features, 1), persistent=False)

    def factors(self) -> tuple[Tensor, Tensor]:
        """``(L, U)``, each ``(D, D)``."""
        d = self.features
        zeros = self.log_diag.new_zeros(d, d)
        lower = zeros.index_put(tuple(self.lower_index), self.lower_entries) + torch.eye(
            d, dtype=zeros.dtype, device=zeros.device
        )
        upper = zeros.index_put(tuple(self.upper_index), self.upper_entries) + torch.diag(
            torch.exp(self.log_diag)
        )
        return lower, upper

    def weight(self) -> Tensor:
        """``W = L U`` ``(D, D)``."""
        lower, upper = self.factors()
        return lower @ upper

    def _logabsdet(self, inputs: Tensor) -> Tensor:
        return self.log_diag.sum().expand(inputs.shape[:-1])

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data -> noise: ``(B, [S,] D)`` -> same, logdet ``(B, [S])``."""
        check_inputs("inputs", inputs, self.features)
        return inputs @ self.weight().T + self.bias, self._logabsdet(inputs)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Noise -> data: solves ``x U^T L^T = y - b`` with two triangular solves (no explicit inverse)."""
        check_inputs("inputs", inputs, self.features)
        lower, upper = self.factors()
        rhs = (inputs - self.bias).reshape(-1, self.features)  # (N, D): one batched solve
        w = torch.linalg.solve_triangular(lower.T, rhs, upper=True, left=False, unitriangular=True)
        x = torch.linalg.solve_triangular(upper.T, w, upper=False, left=False)
        return x.reshape(inputs.shape), -self._logabsdet(inputs)
