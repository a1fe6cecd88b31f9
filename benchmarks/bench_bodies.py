"""Keypoints of many bodies: the fast path (forward kinematics + closed-form vertex keypoints)
against a full mesh forward, as a training step needs them (64 images x 26 hypotheses = 1664).

Each case runs in its own subprocess so that its peak memory is its own: the peak resident set
is reset after setup (``/proc/self/clear_refs``) and read back after the timed calls. Without a
model file, a stand-in SMPL-X file with the real sizes (10,475 vertices, 400 shape and 486 pose
blend shapes) is written to a temporary directory: costs are those of the real model.

    python benchmarks/bench_bodies.py                 # 1664 bodies, COCO-17 + body joints
    python benchmarks/bench_bodies.py --batch 256 --repeats 5 --model /path/to/smplx
    python benchmarks/bench_bodies.py --no-anny       # skip the Anny body

Cases: ``fast`` = ``SMPLXBody.keypoints``; ``full`` = ``SMPLXBody.forward`` +
``keypoints_from_output`` (``smplx.lbs.lbs``); ``smplx_layer`` = ``smplx.SMPLXLayer.forward``
(what the reference implementation runs: vertices, joints, landmarks) then the same keypoints.
Each with and without a backward pass of a scalar of the keypoints.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NAMES = "coco17+body_joints"


def _names():
    from humr.bodies.base import BODY_JOINT_NAMES, COCO17_NAMES

    return list(COCO17_NAMES) + list(BODY_JOINT_NAMES)


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- cases (run in a child process)
def _smplx_setup(model: str, batch: int):
    import roma
    import torch

    from humr.bodies import SMPLXBody

    body = SMPLXBody(model)
    g = torch.Generator().manual_seed(0)
    pose = roma.rotvec_to_rotmat(0.3 * torch.randn(batch, 22, 3, generator=g))
    shape = torch.randn(batch, 11, generator=g)
    return body, pose, shape


def _smplx_case(kind: str, model: str, batch: int):
    import torch

    body, pose, shape = _smplx_setup(model, batch)
    names = _names()

    if kind == "fast":

        def fn(p, s):
            return body.keypoints(p, s, names)
    elif kind == "full":

        def fn(p, s):
            return body.keypoints_from_output(body(p, s), names)
    elif kind == "smplx_layer":
        from humr.bodies.base import BodyOutput

        layer = body.layer

        def fn(p, s):
            out = layer(betas=s, global_orient=p[:, :1], body_pose=p[:, 1:])
            return body.keypoints_from_output(BodyOutput(out.vertices, out.joints[:, :55]), names)
    else:
        raise ValueError(kind)
    return fn, pose, shape, torch


# ---------------------------------------------------------------- ANNY HOOK
# The Anny body (humr.bodies.anny_body.AnnyBody, written separately) is timed the same way when it
# imports: its fast keypoints against its full forward. Cases "anny_fast" / "anny_full".
def _anny_case(kind: str, batch: int):
    import roma
    import torch

    from humr.bodies.anny_body import AnnyBody

    body = AnnyBody()
    g = torch.Generator().manual_seed(0)
    pose = roma.rotvec_to_rotmat(0.3 * torch.randn(batch, body.num_pose_joints, 3, generator=g))
    shape = body.mean_shape(batch)
    names = "coco17"
    if kind == "anny_fast":

        def fn(p, s):
            return body.keypoints(p, s, names)
    else:

        def fn(p, s):
            return body.keypoints_from_output(body(p, s), names)

    return fn, pose.to(shape.dtype), shape, torch


def _anny_available() -> str | None:
    """None when the Anny body can be timed, else the reason it cannot."""
    try:
        import anny  # noqa: F401

        import humr.bodies.anny_body  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means: skip, and say why
        return f"{type(exc).__name__}: {exc}"
    return None


# ---------------------------------------------------------------- end of ANNY HOOK


def child(kind: str, model: str, batch: int, repeats: int, backward: bool, threads: int) -> dict:
    if threads > 0:
        import torch

        torch.set_num_threads(threads)
    if kind.startswith("anny"):
        fn, pose, shape, torch = _anny_case(kind, batch)
    else:
        fn, pose, shape, torch = _smplx_case(kind, model, batch)

    def step():
        if backward:
            p, s = pose.clone().requires_grad_(), shape.clone().requires_grad_()
            fn(p, s).square().sum().backward()
        else:
            with torch.no_grad():
                fn(pose, shape)

    step()  # warm-up (plan caches, allocator, lazy kernels)
    import gc

    gc.collect()
    base = _rss_mb("VmRSS")
    reset = _reset_peak()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    peak = _rss_mb("VmHWM") - base if reset else float("nan")
    return {
        "kind": kind,
        "backward": backward,
        "batch": batch,
        "best_s": min(times),
        "median_s": sorted(times)[len(times) // 2],
        "peak_mb": peak,
        "threads": torch.get_num_threads(),
    }


# ---------------------------------------------------------------- driver
def run_case(kind: str, model: str, batch: int, repeats: int, backward: bool, threads: int) -> dict | str:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--model",
        model,
        "--batch",
        str(batch),
        "--repeats",
        str(repeats),
        "--threads",
        str(threads),
    ] + (["--backward"] if backward else [])
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return f"failed: {res.stderr.strip().splitlines()[-1] if res.stderr.strip() else res.returncode}"
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=1664)
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of the fast cases (after a warm-up)")
    ap.add_argument("--full-repeats", type=int, default=2, help="timed runs of the full-mesh cases")
    ap.add_argument("--model", default=None, help="SMPL-X .npz or its directory (default: a stand-in file)")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--no-anny", action="store_true")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--backward", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        print(
            json.dumps(child(args.child, args.model, args.batch, args.repeats, args.backward, args.threads))
        )
        return

    tmp = None
    model = args.model
    if model is None:
        from humr.testing.body_files import write_smplx_npz

        tmp = tempfile.TemporaryDirectory()
        model = str(write_smplx_npz(Path(tmp.name) / "SMPLX_NEUTRAL.npz"))
        print(f"stand-in SMPL-X file (10,475 vertices, random values): {model}")
    print(
        f"{args.batch} bodies, keypoints = {NAMES}, best of {args.repeats} (fast) / {args.full_repeats} "
        f"(full) runs after a warm-up, {os.cpu_count()} cores visible, threads: {args.threads or 'default'}"
    )

    kinds = ["fast", "full", "smplx_layer"]
    anny_skip = None if not args.no_anny else "--no-anny"
    if anny_skip is None:
        anny_skip = _anny_available()
    if anny_skip is None:
        kinds += ["anny_fast", "anny_full"]

    results: dict[tuple[str, bool], dict | str] = {}
    print(f"{'case':<14}{'pass':<18}{'best s':>10}{'median s':>10}{'peak MB':>10}")
    for kind in kinds:
        for backward in (False, True):
            repeats = args.repeats if kind.endswith("fast") else args.full_repeats
            r = run_case(kind, model, args.batch, repeats, backward, args.threads)
            results[kind, backward] = r
            label = "forward+backward" if backward else "forward"
            if isinstance(r, str):
                print(f"{kind:<14}{label:<18}{r}")
            else:
                print(f"{kind:<14}{label:<18}{r['best_s']:>10.4f}{r['median_s']:>10.4f}{r['peak_mb']:>10.1f}")
    if anny_skip is not None:
        print(f"anny: skipped ({anny_skip})")

    print("\nratios (time, best of runs; memory = peak increase over setup)")
    pairs = [("full", "fast"), ("smplx_layer", "fast")] + (
        [("anny_full", "anny_fast")] if "anny_fast" in kinds else []
    )
    for slow, fast in pairs:
        for backward in (False, True):
            a, b = results.get((slow, backward)), results.get((fast, backward))
            if isinstance(a, dict) and isinstance(b, dict):
                label = "forward+backward" if backward else "forward"
                mem = a["peak_mb"] / b["peak_mb"] if b["peak_mb"] > 0 else float("inf")
                print(
                    f"{slow} / {fast} ({label}): time x{a['best_s'] / b['best_s']:.1f}, "
                    f"peak memory {a['peak_mb']:.0f} MB vs {b['peak_mb']:.1f} MB (x{mem:.0f})"
                )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
