"""One training step of the paper's flow: shared-context evaluation vs the naive per-sample context.

Step = NLL of the ground truth ``(B, D)`` plus ``S`` hypotheses ``(B, S, D)`` (mode first) with their
log-probabilities, forward and backward, at D = 132, C = 979, 8 blocks, 1024 hidden, B = 64, S = 26.

Prints time and memory for

- shared: ``flow.transform_and_log_prob(z (B, S, D), context (B, C))`` (the library's path);
- naive: the same flow fed ``z (B * S, D)`` with the context repeated per sample;
- matmul floor: plain ``torch.mm`` of exactly the shapes the shared step multiplies (forward and
  backward), i.e. the time of the same FLOPs with no flow overhead.

Memory: on CUDA the allocator's peak; on CPU the bytes autograd saves for the backward pass
(activations, counted once per storage), which is what grows with ``S``.

Usage: ``python benchmarks/bench_flows.py [--device cpu] [--repeats 3] [--batch 64] [--samples 26]``
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from humr.flows import ConditionalRealNVP

FEATURES, CONTEXT, BLOCKS, HIDDEN = 132, 979, 8, 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def saved_bytes(fn: Callable[[], torch.Tensor], exclude: list[torch.Tensor]) -> int:
    """Bytes of distinct storages autograd saves for backward while building ``fn``'s graph.

    Storages of ``exclude`` (the parameters, which exist anyway) are not counted.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn()
    loss.backward()
    return sum(n for ptr, n in seen.items() if ptr not in skip)


def matmul_shapes(batch: int, samples: int, shared: bool = True) -> list[tuple[int, int, int]]:
    """``(m, k, n)`` of every matrix product of one step, forward and backward.

    ``shared``: the context's first-layer term is computed for ``batch`` rows, else for every sample.
    """
    half = FEATURES // 2
    shapes = []
    for rows in (batch, batch * samples):  # ground-truth pass, hypotheses pass
        context_rows = batch if shared else rows
        for _ in range(2 * BLOCKS):
            for m, k, n in ((rows, half, HIDDEN), (context_rows, CONTEXT, HIDDEN), (rows, HIDDEN, HIDDEN),
                            (rows, HIDDEN, 2 * half)):
                shapes += [(m, k, n), (m, n, k), (n, m, k)]  # forward, grad input, grad weight
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=26)
    parser.add_argument("--threads", type=int, default=0, help="CPU intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    b, s = args.batch, args.samples

    g = torch.Generator().manual_seed(0)
    flow = ConditionalRealNVP(FEATURES, CONTEXT, BLOCKS, HIDDEN, zero_init=False).to(device)
    context = torch.randn(b, CONTEXT, generator=g).to(device).requires_grad_()
    x_gt = torch.randn(b, FEATURES, generator=g).to(device)
    z = torch.randn(b, s, FEATURES, generator=g).to(device)
    z[:, 0] = 0  # the mode

    def step_shared() -> torch.Tensor:
        nll = -flow.log_prob(x_gt, context).mean()
        x, log_p = flow.transform_and_log_prob(z, context)
        return nll + x.square().mean() + log_p.mean()

    def step_naive() -> torch.Tensor:
        nll = -flow.log_prob(x_gt, context).mean()
        x, log_p = flow.transform_and_log_prob(z.reshape(b * s, FEATURES), context.repeat_interleave(s, 0))
        return nll + x.square().mean() + log_p.mean()

    with torch.no_grad():  # the two forms compute the same numbers
        ref = step_naive().item()
        diff = abs(step_shared().item() - ref) / max(abs(ref), 1e-12)

    shapes = matmul_shapes(b, s)
    flops = sum(2 * m * k * n for m, k, n in shapes)
    naive_flops = sum(2 * m * k * n for m, k, n in matmul_shapes(b, s, shared=False))
    operands = {}
    for m, k, n in set(shapes):
        operands[(m, k, n)] = (torch.randn(m, k, device=device), torch.randn(k, n, device=device))

    def matmuls() -> None:
        for shape in shapes:
            torch.mm(*operands[shape])

    def run(step: Callable[[], torch.Tensor]) -> Callable[[], None]:
        def go() -> None:
            flow.zero_grad(set_to_none=True)
            context.grad = None
            step().backward()
        return go

    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"flow: D={FEATURES} C={CONTEXT} blocks={BLOCKS} hidden={HIDDEN} "
          f"params={sum(p.numel() for p in flow.parameters()) / 1e6:.2f} M; B={b} S={s}")
    print(f"shared vs naive loss relative difference: {diff:.1e}")
    variants = {"shared": run(step_shared), "naive": run(step_naive), "matmul floor": matmuls}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():  # warm-up
        fn()
    for _ in range(args.repeats):  # interleaved, so that load drifts hit every variant alike
        for name, fn in variants.items():
            times[name].append(timed(fn, device))
    results = {name: statistics.median(t) for name, t in times.items()}
    memory = {}
    for name, step in (("shared", step_shared), ("naive", step_naive)):
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            run(step)()
            sync(device)
            memory[name] = torch.cuda.max_memory_allocated(device) - base
        else:
            flow.zero_grad(set_to_none=True)
            memory[name] = saved_bytes(step, list(flow.parameters()))
    mem_label = "peak allocated above model" if device.type == "cuda" else "autograd-saved activations"
    print(f"\n{'':14s} {'median s':>9s} {'GFLOP/s':>8s} {'vs shared':>9s}   {mem_label}")
    for name, t in results.items():
        mem = f"{memory[name] / 2**20:8.0f} MiB" if name in memory else ""
        print(f"{name:14s} {t:9.3f} {flops / t / 1e9:8.0f} {t / results['shared']:9.2f}   {mem}")
    print(f"\n(GFLOP/s counts the shared step's {flops / 1e9:.1f} GFLOP for every row.)")
    print(f"shared step / matmul floor: {results['shared'] / results['matmul floor']:.2f}x")
    print(f"naive step / shared step:   {results['naive'] / results['shared']:.2f}x "
          f"(matmul FLOPs {naive_flops / flops:.2f}x)")
    print(f"naive / shared memory:      {memory['naive'] / memory['shared']:.2f}x")


if __name__ == "__main__":
    main()
