"""Benchmark of humr.losses: joint-wise MMD and the person-mask loss (CPU or the inputs' device).

Run: ``python benchmarks/bench_losses.py [--quick] [--device cpu]``

1. ``joint_mmd`` for B = 64 images x 17 joints x n samples (n = 25, 50, 100, 150), forward +
   backward, beside geomloss's batched Gaussian kernel loss on the same sets (a batch of
   B x 17 pairs, ``backend="tensorized"``), beside the autograd path of ``mmd2`` (the same
   kernel as an opaque callable), and beside a naive Python double loop over images and
   joints (timed on a few images and extrapolated linearly; printed as such).
2. The mask loss for 64 images x 17 joints x 26 hypotheses with a 224 x 224 mask: the
   outside-of-mask test by distance-map look-up (``lookup_distance_map``) beside the
   reference's distances from every keypoint to every mask pixel (timed on a few images
   and extrapolated), and the full ``mask_loss`` forward + backward. Peak memory is given
   as the analytic size of the largest intermediate and as the growth of the peak RSS
   (VmHWM, reset through /proc/self/clear_refs) of a fresh child process running the call
   once; the allocator may reuse freed memory, so the RSS figure is a lower bound.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import statistics
import time

import torch

from humr.losses import (
    default_tolerance,
    gaussian_kernel,
    imq_kernel,
    joint_mmd,
    lookup_distance_map,
    mask_loss,
    mask_to_distance_map,
    mmd2,
)

B, K = 64, 17
_SYNC = [lambda: None]  # replaced by torch.cuda.synchronize when timing on a GPU


def timeit(fns: dict, reps: int, warmup: int = 1) -> dict:
    """Median wall time (ms) of each ``fn()``; repetitions interleave the candidates so that
    the load of a shared machine spreads evenly over them."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            _SYNC[0]()
            t0 = time.perf_counter()
            fn()
            _SYNC[0]()
            times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def _status_mb(field: str) -> float | None:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return None


def _rss_worker(case: str, device: str, n_img: int, queue) -> None:
    """Child process: build the inputs, reset the peak RSS, run ``case`` once, report the growth."""
    inp = _mask_inputs(torch.device(device))
    fns = {
        "lookup": lambda: lookup_distance_map(inp["pts"], inp["dmap"]),
        "reference": lambda: _reference_outside(inp["pts"][:n_img], inp["masks"][:n_img]),
        "loss": _loss_step(inp, True),
        "loss_any": _loss_step(inp, False),
    }
    try:  # Linux >= 4.0: writing 5 resets VmHWM (the peak RSS) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status_mb("VmRSS")
        fns[case]()
        queue.put(_status_mb("VmHWM") - before)
    except OSError:
        queue.put(float("nan"))


def peak_rss_growth_mb(case: str, device: torch.device, n_img: int) -> float:
    """Peak RSS growth (MB) of a fresh child running ``case`` (spawned: forking after OpenMP can hang)."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_rss_worker, args=(case, str(device), n_img, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def naive_mmd_loop(pred, target, bandwidths=(0.05, 0.2, 0.9)):
    """Per (image, joint) pair, three kernel blocks by broadcasting, Eq. 4: the obvious loop."""
    total = pred.new_zeros(())
    n, m = pred.shape[2], target.shape[2]
    for b in range(pred.shape[0]):
        for k in range(pred.shape[1]):
            x, y = pred[b, k], target[b, k]

            def kern(a, c):
                d2 = ((a[:, None] - c[None]) ** 2).sum(-1)
                return sum(h * h / (h * h + d2) for h in bandwidths)

            kxx, kyy, kxy = kern(x, x), kern(y, y), kern(x, y)
            total = total + ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
                             + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)) - 2 * kxy.mean())
    return total / (pred.shape[0] * pred.shape[1])


def _step(pred: torch.Tensor, fn):
    """A forward + backward closure that clears ``pred.grad`` first."""
    def step():
        pred.grad = None
        fn().backward()
    return step


def _mmd_row(n: int, device, quick: bool, geomloss, g: torch.Generator) -> None:
    reps = 2 if quick else (5 if n <= 50 else 3)
    pred = (torch.randn(B, K, n, 2, generator=g) * 0.3).to(device).requires_grad_(True)
    target = (torch.randn(B, K, n, 2, generator=g) * 0.3).to(device)
    opaque = lambda a, b: imq_kernel(a, b)  # noqa: E731 -- forces the autograd path
    gauss = functools.partial(gaussian_kernel, sigma=0.2)
    fns = {
        "imq": _step(pred, lambda: joint_mmd(pred, target)),
        "gauss": _step(pred, lambda: joint_mmd(pred, target, kernel=gauss, unbiased=False)),
        "auto": _step(pred, lambda: mmd2(pred, target, kernel=opaque).mean()),
    }
    if geomloss is not None:
        loss = geomloss.SamplesLoss("gaussian", blur=0.2, backend="tensorized")
        flat_p, flat_t = pred.reshape(B * K, n, 2), target.reshape(B * K, n, 2)
        fns["geo"] = _step(pred, lambda: loss(flat_p, flat_t).mean())
    t = timeit(fns, reps)
    t_imq, t_gauss, t_auto, t_geo = t["imq"], t["gauss"], t["auto"], t.get("geo", float("nan"))
    n_img = 1 if quick else 2  # the naive loop is timed on a few images and extrapolated
    sub_p = pred[:n_img].detach().requires_grad_(True)
    t_naive = timeit({"naive": _step(sub_p, lambda: naive_mmd_loop(sub_p, target[:n_img]))}, 1, warmup=1)
    t_naive = t_naive["naive"] * B / n_img
    print(f"{n:>5} {t_imq:>10.1f} {t_gauss:>12.1f} {t_geo:>10.1f} {t_auto:>13.1f} {t_naive:>12.0f} | "
          f"{t_geo / t_gauss:>10.2f} {t_geo / t_imq:>9.2f} {t_auto / t_imq:>13.2f} "
          f"{t_naive / t_imq:>10.1f}")


def bench_mmd(ns, device, quick: bool) -> None:
    geomloss = None
    try:
        import geomloss
    except ImportError:
        print("geomloss not installed: its column is skipped")
    print("\n== joint_mmd, forward + backward, B = 64 images x 17 joints (ms, median) ==")
    print(f"{'n':>5} {'imq fused':>10} {'gauss fused':>12} {'geomloss':>10} {'imq autograd':>13} "
          f"{'naive loop*':>12} | {'geom/gauss':>10} {'geom/imq':>9} {'autograd/imq':>13} {'naive/imq':>10}")
    g = torch.Generator().manual_seed(0)
    for n in ns:
        _mmd_row(n, device, quick, geomloss, g)
    print("* naive loop: timed on the first images only and extrapolated linearly to 64 images.")
    print("  geom/gauss compares equal work (one Gaussian, biased); geom/imq is the paper's loss (3 IMQ,")
    print("  unbiased) against geomloss's Gaussian. Ratios > 1 mean joint_mmd is faster.")


def _reference_outside(points, mask, extent=1.0):
    """The reference's test: distance from every point to every mask pixel, minimised.

    points ``(b, P, 2)``, mask ``(b, H, W)`` bool -> ``(b, P)`` minimum distance.
    """
    b, h, w = mask.shape
    xs = -extent + (torch.arange(w, dtype=points.dtype) + 0.5) * 2 * extent / w
    ys = -extent + (torch.arange(h, dtype=points.dtype) + 0.5) * 2 * extent / h
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    pix = torch.stack([cx, cy], -1).reshape(1, h * w, 2).to(points.device)
    d = torch.cdist(points, pix.expand(b, -1, -1))  # (b, P, H W): the big matrix
    return d.masked_fill(~mask.reshape(b, 1, h * w), float("inf")).amin(-1)


S_HYP, M_SAMPLES, MASK_SIZE = 26, 150, 224


def _mask_inputs(device: torch.device) -> dict:
    """Deterministic inputs of the mask benchmark: ellipse masks, hypotheses, samples."""
    s, m, h = S_HYP, M_SAMPLES, MASK_SIZE
    g = torch.Generator().manual_seed(1)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, h), indexing="ij")
    masks = torch.stack([(xx / 0.35) ** 2 + ((yy - 0.05 * i / B) / 0.8) ** 2 < 1 for i in range(B)])
    t0 = time.perf_counter()
    dmap = mask_to_distance_map(masks).to(device)
    t_edt = 1e3 * (time.perf_counter() - t0)
    pred = (torch.rand(B, K, s, 2, generator=g) * 2.2 - 1.1).to(device).requires_grad_(True)
    samples = (torch.randn(B, K, m, 2, generator=g) * 0.3).to(device)
    return dict(masks=masks.to(device), dmap=dmap, t_edt=t_edt, pred=pred, samples=samples,
                sdist=lookup_distance_map(samples, dmap),
                apply=torch.ones(B, K, dtype=torch.bool, device=device),
                pts=pred.detach().reshape(B, K * s, 2))


def _loss_step(inp: dict, same_joint: bool):
    def step():
        inp["pred"].grad = None
        mask_loss(inp["pred"], inp["samples"], inp["sdist"], inp["dmap"], inp["apply"],
                  same_joint=same_joint).backward()
    return step


def bench_mask(device, quick: bool) -> None:
    s, m, h = S_HYP, M_SAMPLES, MASK_SIZE
    w = h
    inp = _mask_inputs(device)
    pts, dmap, masks = inp["pts"], inp["dmap"], inp["masks"]
    reps = 2 if quick else 5
    n_img = 2 if quick else 4
    t = timeit({"lookup": lambda: lookup_distance_map(pts, dmap),
                "loss": _loss_step(inp, True)}, reps)
    t_lookup, t_loss = t["lookup"], t["loss"]
    t_ref = timeit({"ref": lambda: _reference_outside(pts[:n_img], masks[:n_img])}, 2)["ref"] * B / n_img
    t_loss_any = timeit({"any": _loss_step(inp, False)}, max(1, reps // 2))["any"]
    # Agreement of each inside/outside test with the truth: the mask value of the cell holding
    # the point. The lookup uses mask_loss's default tolerance (half a cell); the all-pixels
    # distance needs half a cell diagonal, since a point in a mask cell lies up to that far
    # from the cell's centre.
    sub = pts[:n_img]
    inside_sq = (sub.abs() < 1).all(-1)
    col = ((sub[..., 0] + 1) * w / 2).floor().long().clamp(0, w - 1)
    row = ((sub[..., 1] + 1) * h / 2).floor().long().clamp(0, h - 1)
    truth_out = ~(masks[:n_img][torch.arange(n_img, device=sub.device)[:, None], row, col] & inside_sq)
    agree_lookup = ((lookup_distance_map(sub, dmap[:n_img]) > default_tolerance(h, w)) == truth_out)
    agree_ref = ((_reference_outside(sub, masks[:n_img]) > 2**0.5 / h) == truth_out)
    agree_lookup, agree_ref = 100 * agree_lookup.float().mean().item(), 100 * agree_ref.float().mean().item()
    fl = 4  # bytes per float32
    big_ref = B * K * s * h * h * fl / 2**20
    big_lookup = B * K * s * fl / 2**20
    big_loss = B * K * s * m * fl / 2**20
    big_loss_any = B * K * s * K * m * fl / 2**20
    cases = ("lookup", "reference", "loss", "loss_any")
    rss = {case: peak_rss_growth_mb(case, device, n_img) for case in cases}
    print(f"\n== mask loss: {B} images x {K} joints x {s} hypotheses, {h} x {h} mask, {m} samples ==")
    print(f"distance transform of {B} masks (once per sample, data side): {inp['t_edt']:.0f} ms")
    print(f"{'':34} {'time ms':>10} {'largest intermediate MB':>24} {'peak RSS growth MB':>19}")
    print(f"{'outside test, distance-map lookup':34} {t_lookup:>10.2f} {big_lookup:>24.2f} "
          f"{rss['lookup']:>19.0f}")
    print(f"{'outside test, all mask pixels*':34} {t_ref:>10.0f} {big_ref:>24.0f} "
          f"{rss['reference']:>10.0f} ({n_img} img)")
    print(f"{'mask_loss fwd+bwd (same joint)':34} {t_loss:>10.1f} {big_loss:>24.1f} {rss['loss']:>19.0f}")
    print(f"{'mask_loss fwd+bwd (any joint, ref)':34} {t_loss_any:>10.1f} {big_loss_any:>24.1f} "
          f"{rss['loss_any']:>19.0f}")
    print(f"speed-up of the lookup over all mask pixels: {t_ref / t_lookup:.0f}x; "
          f"memory ratio {big_ref / big_lookup:.0f}x")
    print(f"inside/outside agreement with the containing cell: lookup {agree_lookup:.2f}%, "
          f"all mask pixels {agree_ref:.2f}%")
    print(f"* all mask pixels: timed on {n_img} images and extrapolated linearly to {B}; "
          f"its RSS growth is for those {n_img} images.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 25 and 50 only, fewer repetitions")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default); 1 is steadier on a loaded machine")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        _SYNC[0] = torch.cuda.synchronize
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    bench_mmd((25, 50) if args.quick else (25, 50, 100, 150), device, args.quick)
    bench_mask(device, args.quick)


if __name__ == "__main__":
    main()
