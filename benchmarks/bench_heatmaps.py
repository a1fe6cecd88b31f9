"""Batched heatmap sampling vs a per-heatmap loop (the obvious alternative).

Setting: B = 64 images x 17 COCO heatmaps of 64 x 48 cells (ViTPose), n = 150 samples each,
cut at 0.05, jitter on. Run: ``python benchmarks/bench_heatmaps.py [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from humr.data.heatmaps import sample_heatmaps


def make_heatmaps(batch: int, joints: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blobs of random centre, width and peak ``(batch, joints, h, w)``, like detector output."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    centre = torch.rand(batch, joints, 2, 1, 1, generator=generator) * torch.tensor([w, h]).view(2, 1, 1)
    sigma = 1.5 + 6 * torch.rand(batch, joints, 1, 1, generator=generator)
    peak = 0.2 + 0.8 * torch.rand(batch, joints, 1, 1, generator=generator)
    d2 = (xs - centre[:, :, 0]) ** 2 + (ys - centre[:, :, 1]) ** 2
    return peak * torch.exp(-d2 / (2 * sigma**2))


def loop_torch(heatmaps: torch.Tensor, n: int, cut: float, generator: torch.Generator) -> torch.Tensor:
    """One ``torch.multinomial`` per heatmap."""
    b, k, h, w = heatmaps.shape
    out = torch.empty(b, k, n, 2)
    for i in range(b):
        for j in range(k):
            p = heatmaps[i, j].flatten().clamp(min=0)
            p = torch.where(p >= cut, p, torch.zeros_like(p))
            cell = torch.multinomial(p, n, replacement=True, generator=generator)
            xy = torch.stack([cell % w, cell // w], -1).float()
            out[i, j] = xy + torch.rand(n, 2, generator=generator) - 0.5
    return out


def loop_numpy(heatmaps: np.ndarray, n: int, cut: float, rng: np.random.Generator) -> np.ndarray:
    """One ``rng.choice`` per heatmap (as a numpy data pipeline would do it)."""
    b, k, h, w = heatmaps.shape
    out = np.empty((b, k, n, 2), dtype=np.float32)
    for i in range(b):
        for j in range(k):
            p = np.clip(heatmaps[i, j].ravel(), 0, None)
            p = np.where(p >= cut, p, 0.0)
            cell = rng.choice(h * w, size=n, p=p / p.sum())
            out[i, j] = np.stack([cell % w, cell // w], -1) + rng.random((n, 2)) - 0.5
    return out


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("-n", type=int, default=150)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    hm = make_heatmaps(args.batch, 17, 64, 48, g)
    hm_np = hm.numpy().astype(np.float64)
    rng = np.random.default_rng(0)

    print(f"heatmaps {tuple(hm.shape)}, n={args.n}")
    for threads in sorted({1, torch.get_num_threads()}):
        torch.set_num_threads(threads)
        t_batched = best_of(lambda: sample_heatmaps(hm, args.n, generator=g), args.repeats)
        t_torch = best_of(lambda: loop_torch(hm, args.n, 0.05, g), max(1, args.repeats // 2))
        t_numpy = best_of(lambda: loop_numpy(hm_np, args.n, 0.05, rng), max(1, args.repeats // 2))
        print(f" torch threads={threads} (ratio = loop time / batched time)")
        print(f"  batched sample_heatmaps    : {t_batched * 1e3:8.2f} ms")
        print(f"  loop of torch.multinomial  : {t_torch * 1e3:8.2f} ms  (ratio {t_torch / t_batched:5.1f})")
        print(f"  loop of numpy rng.choice   : {t_numpy * 1e3:8.2f} ms  (ratio {t_numpy / t_batched:5.1f})")


if __name__ == "__main__":
    main()
