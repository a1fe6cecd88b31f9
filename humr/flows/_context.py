"""Shape rules shared by every flow transform: inputs with an optional sample axis, one context per image.

Every transform in :mod:`humr.flows` accepts

- ``inputs (N, D)`` with ``context (N, C)``: nflows' protocol, one context row per input row;
- ``inputs (B, S, D)`` with ``context (B, C)``: ``S`` samples share the context of their image,
  so per-image work on the context is done once and broadcast over ``S``.

and returns a log-determinant of shape ``inputs.shape[:-1]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["check_count", "check_inputs", "check_context", "broadcast_context", "check_flow_inputs"]


def check_count(name: str, value: object, minimum: int = 1) -> None:
    """Raise ``ValueError`` unless ``value`` is an int ``>= minimum`` (a size, a number of layers)."""
    if not isinstance(value, int) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name}: expected {expected}, found {value!r}")


def check_inputs(name: str, x: Tensor, features: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a tensor of shape ``(N, features)`` or ``(B, S, features)``."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, found {type(x).__name__}")
    if x.dim() not in (2, 3) or x.shape[-1] != features:
        raise ValueError(
            f"{name}: expected shape (B, {features}) or (B, S, {features}), found {tuple(x.shape)}"
        )


def check_context(name: str, context: Tensor | None, inputs: Tensor, context_features: int) -> Tensor:
    """Validate ``context (B, C)`` against ``inputs (B, D)`` or ``(B, S, D)``; return it.

    Raises:
        ValueError: context missing, of the wrong width or batch, or on another device / dtype.
    """
    if context is None:
        raise ValueError(f"{name}: expected a context of shape (B, {context_features}), found None")
    if not isinstance(context, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor, found {type(context).__name__}")
    if context.dim() != 2 or context.shape[1] != context_features:
        raise ValueError(f"{name}: expected shape (B, {context_features}), found {tuple(context.shape)}")
    if context.shape[0] != inputs.shape[0]:
        raise ValueError(
            f"{name}: batch size {context.shape[0]} does not match the inputs' batch size {inputs.shape[0]} "
            f"(inputs {tuple(inputs.shape)}, context {tuple(context.shape)})"
        )
    if context.device != inputs.device:
        raise ValueError(f"{name}: expected device {inputs.device} (the inputs'), found {context.device}")
    if context.dtype != inputs.dtype:
        raise ValueError(f"{name}: expected dtype {inputs.dtype} (the inputs'), found {context.dtype}")
    return context


def broadcast_context(per_image: Tensor, inputs: Tensor) -> Tensor:
    """View a per-image tensor ``(B, H)`` so that it broadcasts against ``inputs (B, [S,] D)``.

    Returns ``(B, H)`` for 2D inputs and ``(B, 1, H)`` for 3D inputs (no copy).
    """
    return per_image if inputs.dim() == 2 else per_image.unsqueeze(1)


def check_flow_inputs(
    x: Tensor, x_name: str, context: Tensor, features: int, context_features: int, check_finite: bool
) -> None:
    """All checks of a public flow entry point: shapes, batch, device, dtype and (optionally) NaN/inf.

    ``check_finite`` costs one device synchronisation per call on accelerators.
    """
    check_inputs(x_name, x, features)
    check_context("context", context, x, context_features)
    if check_finite:
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{x_name}: expected finite values, found NaN or inf")
        if not bool(torch.isfinite(context).all()):
            raise ValueError("context: expected finite values, found NaN or inf")
