"""Costs of the real-data evaluation protocol and of the mixture index map.

1. SMPL-X -> SMPL conversion of every hypothesis' mesh (16 images x 100 hypotheses per batch in
   the protocol; 100 meshes here): the sparse (6890 x 10475, three entries a row) product humr uses vs
   the dense matrix product of the reference implementation.
2. :class:`humr.data.mixture.MixtureDataset` indexing vs a plain ``ConcatDataset`` (the
   reference's unweighted concatenation): the cost of realising the ratios per item.

Run: ``python benchmarks/bench_real_eval.py [--threads N]`` (CPU, about 30 s).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from humr.bodies.conversion import smplx_to_smpl_vertices
from humr.data.mixture import MixtureDataset


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_conversion(bodies: int = 100) -> None:
    g = torch.Generator().manual_seed(0)
    rows = torch.arange(6890).repeat_interleave(3)
    cols = torch.randint(0, 10475, (6890 * 3,), generator=g)
    vals = torch.rand(6890 * 3, generator=g)
    sparse = torch.sparse_coo_tensor(torch.stack([rows, cols]), vals, (6890, 10475), check_invariants=True)
    sparse = sparse.coalesce()
    dense = sparse.to_dense()
    verts = torch.randn(bodies, 10475, 3, generator=g)
    t_sparse = best_of(lambda: smplx_to_smpl_vertices(verts, sparse))
    # The reference's torch.matmul(matrix, (..., 10475, 3)): one matrix pass per mesh, memory bound.
    t_ref = best_of(lambda: torch.matmul(dense, verts), repeat=1)
    t_gemm = best_of(lambda: dense @ verts.permute(1, 0, 2).reshape(10475, -1))  # one GEMM over all meshes
    err = (smplx_to_smpl_vertices(verts, sparse) - torch.matmul(dense, verts)).abs().max().item()
    print(
        f"SMPL-X -> SMPL of {bodies} meshes: sparse {t_sparse * 1e3:.1f} ms; dense, reference-style batched "
        f"matmul {t_ref * 1e3:.0f} ms ({t_ref / t_sparse:.0f}x); dense single GEMM {t_gemm * 1e3:.0f} ms "
        f"({t_gemm / t_sparse:.1f}x); max difference {err:.1e}; dense matrix {dense.numel() * 4 >> 20} MB"
    )


class _Items(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def bench_mixture(n: int = 20_000) -> None:
    sets = [_Items(50_000), _Items(10_000), _Items(2_000)]
    concat = ConcatDataset(sets)
    mix = MixtureDataset(sets, weights=(0.6, 0.3, 0.1), length=n)
    idx = np.random.default_rng(0).integers(0, n, n)
    t_concat = best_of(lambda: [concat[int(i)] for i in idx])
    t_mix = best_of(lambda: [mix[int(i)] for i in idx])
    print(
        f"{n} item look-ups: MixtureDataset {t_mix / n * 1e6:.2f} us/item, ConcatDataset "
        f"{t_concat / n * 1e6:.2f} us/item ({t_mix / t_concat:.1f}x; a real item costs milliseconds)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_conversion()
    bench_mixture()
