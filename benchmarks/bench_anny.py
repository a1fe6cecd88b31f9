"""AnnyBody: fast keypoints (forward kinematics + the linear regressor trick) vs Anny's full forward.

Batch of 1664 bodies (64 images x 26 hypotheses, the training step's count), float32. Each case
runs in its own process; peak memory is the peak RSS increase during one call after a warm-up
(sampled every millisecond, glibc told to return large blocks at once), or the CUDA peak. Cases:

- ``fast coco17``: :meth:`AnnyBody.keypoints` with 1664 distinct shapes;
- ``fast coco17, 64 shapes``: the same poses with one shape per image broadcast over its 26
  hypotheses (shape ``(64, 1, 6)``), as in training;
- ``fast body_joints``: the 22 kinematic joints only;
- ``full warp`` / ``full lbs``: Anny's full forward (every vertex skinned, warp kernel or dense
  LBS) and the COCO regressor on the mesh, i.e. :meth:`AnnyBody.keypoints_from_output`.

Run: ``python benchmarks/bench_anny.py [--n 1664] [--repeats 3] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time

CASES = {
    "fast coco17": ("warp", "fast", "coco17", False),
    "fast coco17, 64 shapes": ("warp", "fast", "coco17", True),
    "fast body_joints": ("warp", "fast", "body_joints", False),
    "full warp": ("warp", "full", "coco17", False),
    "full lbs": ("lbs", "full", "coco17", False),
}


def _rss_mb() -> float:
    """Current resident set size (Linux), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


class _PeakRss:
    """Samples the resident set size every millisecond in a thread: the peak over a block."""

    def __enter__(self) -> _PeakRss:
        self.base = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def run_case(name: str, backward: bool, n: int, repeats: int, device: str) -> dict:
    import torch

    from humr.bodies.anny_body import AnnyBody
    from humr.rotations import axis_angle_to_matrix

    skinning, path, names, shared = CASES[name]
    body = AnnyBody(skinning=skinning, device=device)
    g = torch.Generator().manual_seed(0)
    pose0 = axis_angle_to_matrix(0.5 * torch.randn(n, 22, 3, generator=g)).to(device)
    shape0 = body.sample_shapes(n, generator=g).to(device)
    if shared:
        images = max(1, n // 26)
        pose0 = pose0[: images * 26].reshape(images, 26, 22, 3, 3)
        shape0 = shape0[:images, None]
    weights = None

    def step() -> None:
        nonlocal weights
        pose = pose0.clone().requires_grad_(backward)
        shape = shape0.clone().requires_grad_(backward)
        if path == "fast":
            kp = body.keypoints(pose, shape, names)
        else:
            kp = body.keypoints_from_output(body(pose, shape), names)
        if backward:
            if weights is None:
                weights = torch.randn(kp.shape, generator=torch.Generator().manual_seed(1)).to(device)
            (weights * kp).sum().backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    step()  # warm-up: plans, warp kernel load, allocator pools
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
        step()
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        with _PeakRss() as rss:
            step()
        peak = rss.peak - rss.base
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"seconds": statistics.median(times), "peak_mb": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1664)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.backward, args.n, args.repeats, args.device)))
        return

    import torch

    print(f"AnnyBody keypoints, {args.n} bodies, float32, {args.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    results = {}
    for backward in (False, True):
        for name in CASES:
            cmd = [sys.executable, __file__, "--case", name, "--n", str(args.n),
                   "--repeats", str(args.repeats), "--device", args.device]
            cmd += ["--backward"] if backward else []
            # Large blocks mmapped and unmapped on free: the RSS then tracks live memory.
            env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode or not lines:
                print(f"{name}: failed\n{proc.stderr[-2000:]}")
                continue
            results[name, backward] = json.loads(lines[-1])
    for backward in (False, True):
        print("\nforward + backward" if backward else "\nforward")
        ref = results.get(("full warp", backward))
        print(f"{'case':28s} {'time':>9s} {'peak MB':>9s} {'vs full warp':>13s}")
        for name in CASES:
            r = results.get((name, backward))
            if r is None:
                continue
            ratio = f"{ref['seconds'] / r['seconds']:.1f}x faster" if ref else ""
            print(f"{name:28s} {r['seconds'] * 1e3:7.0f} ms {r['peak_mb']:9.0f} {ratio:>13s}")


if __name__ == "__main__":
    main()
