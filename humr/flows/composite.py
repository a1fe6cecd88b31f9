"""nflows' ``CompositeTransform`` generalised to inputs with a sample axis."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from nflows.transforms.base import CompositeTransform
from torch import Tensor

__all__ = ["SampleCompositeTransform"]


class SampleCompositeTransform(CompositeTransform):
    """Compose transforms in order; accepts ``inputs (B, D)`` or ``(B, S, D)`` with ``context (B, C)``.

    nflows' cascade allocates a ``(B,)`` log-determinant, which cannot accumulate the ``(B, S)``
    log-determinants of sample-batched inputs; this one allocates ``inputs.shape[:-1]``. For
    ``(N, D)`` inputs it behaves exactly like nflows' ``CompositeTransform``.
    """

    @staticmethod
    def _cascade(
        inputs: Tensor, funcs: Iterable[Callable[..., tuple[Tensor, Tensor]]], context: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        outputs = inputs
        total_logabsdet = inputs.new_zeros(inputs.shape[:-1])
        for func in funcs:
            outputs, logabsdet = func(outputs, context)
            total_logabsdet = total_logabsdet + logabsdet
        return outputs, total_logabsdet
