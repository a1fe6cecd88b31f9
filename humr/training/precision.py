"""Training precision: ``"auto"`` picks bfloat16 autocast where the hardware runs it natively.

On a CPU, bfloat16 matrix multiplies are fast only with native instructions (AVX512-BF16 or
AMX-BF16): there the training step measured 1.79x faster than float32 with losses within 5%
(``benchmarks/bench_train_step.py --bf16``); elsewhere bfloat16 is emulated and slower, so
``"auto"`` keeps float32. On a GPU, ``"auto"`` means ``"bf16-mixed"`` where CUDA supports it.
The body model, the camera and the losses run in float32 under either
(:class:`humr.model.humr_model.HumrModel`).

Example:
    >>> resolve_precision("32-true", "cpu")
    '32-true'
    >>> resolve_precision("auto", "cpu", cpu_flags=frozenset({"avx512_bf16"}))
    'bf16-mixed'
    >>> resolve_precision("auto", "cpu", cpu_flags=frozenset({"avx2"}))
    '32-true'
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["NATIVE_BF16_FLAGS", "cpu_flags", "resolve_precision"]

#: ``/proc/cpuinfo`` flags of CPUs with native bfloat16 arithmetic.
NATIVE_BF16_FLAGS: frozenset[str] = frozenset({"avx512_bf16", "amx_bf16"})


def cpu_flags(path: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (empty where ``/proc/cpuinfo`` does not exist, e.g. macOS)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def resolve_precision(precision: str, accelerator: str, cpu_flags: frozenset[str] | None = None) -> str:
    """Lightning's precision for ``precision`` (``"auto"`` resolved as above) on ``accelerator``."""
    if precision != "auto":
        return precision
    if accelerator in ("gpu", "cuda"):
        import torch

        return "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "32-true"
    if accelerator == "cpu":
        flags = globals()["cpu_flags"]() if cpu_flags is None else cpu_flags
        return "bf16-mixed" if flags & NATIVE_BF16_FLAGS else "32-true"
    return "32-true"
