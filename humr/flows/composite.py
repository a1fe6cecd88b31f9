"""nflows' ``CompositeTransform`` generalised to inputs with a sample axis."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from nflows.transforms.base import CompositeTransform, Transform
from torch import Tensor

from humr.flows._context import check_count

__all__ = ["SampleCompositeTransform", "stack_layers"]


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


def stack_layers(
    num_layers: int, features: int, layer: Callable[[int], Sequence[Transform]]
) -> SampleCompositeTransform:
    """The transforms ``layer(0)``, ..., ``layer(num_layers - 1)`` composed in order, for ``D = features``.

    Checks ``num_layers >= 1`` and ``features >= 2`` first; the layers are built in order, so
    their initialisation draws from the global RNG in that order.
    """
    check_count("num_layers", num_layers)
    check_count("features", features, 2)
    return SampleCompositeTransform([t for i in range(num_layers) for t in layer(i)])
