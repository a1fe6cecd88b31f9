"""Evaluation costs against the obvious alternatives.

1. Mask plausibility: one bilinear read of a distance map vs the distance to every mask pixel.
2. Best-of-N curves: one cumulative minimum vs a minimum per N.
3. PA-MPJPE for 64 images x 100 hypotheses (batched Umeyama via roma) vs a loop over hypotheses.
4. Mesh render of ~27k triangles: the torch z-buffer of humr.data.render vs matplotlib PolyCollection
   (painter's algorithm).

Run: ``python benchmarks/bench_eval.py [--threads N]`` (CPU, about 20 s).
"""

from __future__ import annotations

import time

import numpy as np
import torch

from humr.data.render import face_normals
from humr.eval import metrics as M
from humr.eval.render import render_mesh
from humr.losses.mask import mask_to_distance_map


def best_of(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_mask(b: int = 8, s: int = 100, k: int = 17, res: int = 224) -> None:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, res), torch.linspace(-1, 1, res), indexing="ij")
    masks = ((xx / 0.35) ** 2 + (yy / 0.8) ** 2 < 1).expand(b, res, res)  # a person-sized ellipse
    points = torch.randn(b, s, k, 2, generator=g) * 0.5
    invisible = torch.ones(b, k, dtype=torch.bool)
    t_edt = best_of(lambda: mask_to_distance_map(masks))
    dmap = mask_to_distance_map(masks)
    t_map = best_of(lambda: M.mask_plausibility(points, dmap, invisible))
    centres = (torch.arange(res) + 0.5) / res * 2 - 1
    cy, cx = torch.meshgrid(centres, centres, indexing="ij")
    grid = torch.stack([cx, cy], -1)

    def brute():
        out = []
        for i in range(b):  # per image: (S*K, P) distances to every mask pixel
            mp = grid[masks[i]]
            out.append(torch.cdist(points[i].reshape(-1, 2), mp).min(1).values)
        return torch.stack(out)

    t_brute = best_of(brute, repeat=1)
    d_brute = brute().mean()
    _, d_map = M.mask_plausibility(points, dmap, invisible)
    print(f"mask plausibility  B={b} S={s} K={k} {res}x{res}: distance map {t_map * 1e3:7.2f} ms "
          f"(+ EDT {t_edt * 1e3:.1f} ms once per mask) | brute force {t_brute * 1e3:8.1f} ms | "
          f"x{t_brute / t_map:.0f} (x{t_brute / (t_map + t_edt):.1f} incl. EDT); "
          f"MinDist {float(d_map):.4f} vs {float(d_brute):.4f}")


def bench_min_of_n(b: int = 2000, s: int = 1000) -> None:
    errors = torch.rand(b, s, generator=torch.Generator().manual_seed(0))
    t_cum = best_of(lambda: M.min_of_n(errors).mean(0))
    t_loop = best_of(lambda: torch.stack([errors[:, :n].min(1).values.mean() for n in range(1, s + 1)]), 1)
    print(f"min-of-N curve     B={b} S={s}: cummin {t_cum * 1e3:7.2f} ms | min per N {t_loop * 1e3:8.1f} ms "
          f"| x{t_loop / t_cum:.0f}")


def bench_pa_mpjpe(b: int = 64, s: int = 100, n: int = 14) -> None:
    g = torch.Generator().manual_seed(0)
    gt = torch.randn(b, n, 3, generator=g)
    pred = gt[:, None] + 0.05 * torch.randn(b, s, n, 3, generator=g)
    t_batch = best_of(lambda: M.pa_mpjpe(pred, gt))
    t_loop = best_of(lambda: torch.stack([M.pa_mpjpe(pred[:, j:j + 1], gt) for j in range(s)], 1), 1)
    print(f"PA-MPJPE           B={b} S={s} N={n}: batched {t_batch * 1e3:7.2f} ms | loop over S "
          f"{t_loop * 1e3:8.1f} ms | x{t_loop / t_batch:.0f}")


def _body_like_mesh(nu: int = 160, nv: int = 87) -> tuple[np.ndarray, np.ndarray]:
    th, ph = np.linspace(0, np.pi, nv), np.linspace(0, 2 * np.pi, nu, endpoint=False)
    t, p = np.meshgrid(th, ph, indexing="ij")
    verts = np.stack([0.3 * np.sin(t) * np.cos(p), 0.9 * np.cos(t), 0.2 * np.sin(t) * np.sin(p)], -1)
    i, j = np.meshgrid(np.arange(nv - 1), np.arange(nu), indexing="ij")
    a, b = i * nu + j, i * nu + (j + 1) % nu
    faces = np.concatenate([np.stack([a, b, a + nu], -1).reshape(-1, 3),
                            np.stack([b, b + nu, a + nu], -1).reshape(-1, 3)])
    return verts.reshape(-1, 3), faces


def bench_render(size: int = 256) -> None:
    verts, faces = _body_like_mesh()
    t_z = best_of(lambda: render_mesh(verts, faces, size, size))
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure
    except ImportError:
        print(f"mesh render        F={len(faces)} {size}x{size}: z-buffer {t_z * 1e3:7.1f} ms "
              "(no matplotlib to compare)")
        return

    def painter():
        tri = verts[faces]
        order = np.argsort(-tri[:, :, 2].mean(1))  # far to near
        normals = face_normals(torch.from_numpy(verts)[None], torch.from_numpy(faces))[0][0].numpy()
        unit = normals / np.linalg.norm(normals, axis=1, keepdims=True)
        shade = 0.35 + 0.65 * np.abs(unit @ np.array([0.0, 0.0, -1.0]))
        fig = Figure(figsize=(size / 100, size / 100), dpi=100)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        colors = shade[order, None] * [0.65, 0.74, 0.86]
        ax.add_collection(PolyCollection(tri[order, :, :2], facecolors=colors, edgecolors="none"))
        ax.set_xlim(-1, 1)
        ax.set_ylim(1, -1)
        canvas.draw()
        return np.asarray(canvas.buffer_rgba())

    t_p = best_of(painter)
    print(f"mesh render        F={len(faces)} {size}x{size}: z-buffer {t_z * 1e3:7.1f} ms | PolyCollection "
          f"painter's {t_p * 1e3:7.1f} ms | x{t_p / t_z:.1f}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: stable figures on a shared machine; 0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    bench_mask()
    bench_min_of_n()
    bench_pa_mpjpe()
    bench_render()
    bench_render(512)
