"""Inference speed: hypotheses per second, with and without full meshes, and where the time goes.

Two workloads on the paper's network (``ModelConfig(encoder="features", image_features=720)``,
cached features, so the image encoder is not timed) and a SMPL-X-format body of 10,475 vertices
(random values; ``--body anny`` for Anny):

- one image, 1000 hypotheses (the mode and 999 draws: supplementary Fig. S1 evaluates PVE with
  1000 meshes per image);
- a batch of ``--images`` images (16: the evaluation batch) at 100 hypotheses each (Sec. 5.1).

For each: ``model(batch, num_samples)`` (flow, shape/camera head, COCO-17 keypoints of every
hypothesis through the fast path, projections) alone, then followed by
:meth:`~humr.model.hypotheses.Hypotheses.vertices` (every hypothesis' mesh), under
``torch.inference_mode``. Prints the best and median seconds of ``--repeats`` calls,
hypotheses per second, the peak memory increase of the call (VmHWM, or the CUDA allocator), and
a phase breakdown of one profiled call (the labels of ``bench_train_step.py``, ``smplx``'s LBS
pieces included: shape blend shapes, joint regression, rigid transforms; the rest of
``body_full_forward`` is the pose blend shapes and the skinning itself).

Usage:
    python benchmarks/bench_inference.py [--device cpu|cuda] [--body smplx|anny] [--threads N]
        [--hypotheses 1000] [--images 16] [--per-image 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _batch import PAPER_MODEL, build_bench_model, make_batch, num_vertices, to_device  # noqa: E402
from bench_train_step import (  # noqa: E402
    LABELS,
    current_bytes,
    median_seconds,
    peak_bytes,
    phase_breakdown,
    phase_labels,
    print_breakdown,
    reset_peak,
    sync,
)


def workload(model, batch, num_samples: int, meshes: bool, chunk: int) -> Callable[[], object]:
    def run():
        with torch.inference_mode():
            with record_function("model_forward"):
                hyps = model(batch, num_samples=num_samples)
            if meshes:
                with record_function("meshes"):
                    return hyps.vertices(model.body, chunk=chunk)
            return hyps.keypoints_2d

    return run


def measure(name: str, fn: Callable[[], object], hypotheses: int, model, device, repeats: int):
    """Print best / median seconds, hypotheses per second and peak memory; return a phase breakdown."""
    times = median_seconds(fn, device, repeats)
    base = current_bytes(device)
    reset_peak(device)
    fn()
    sync(device)
    extra = (peak_bytes(device) - base) / 2**20
    best, med = min(times), statistics.median(times)
    print(f"  {name:<44}{best:>8.3f}{med:>9.3f}{hypotheses / best:>12.0f}{extra:>11.0f}")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with phase_labels(model), profile(activities=activities) as prof:
        with record_function("step"):
            fn()
        sync(device)
    labels = LABELS | {"model_forward", "meshes"}
    table, total = phase_breakdown(prof, labels, device.type == "cuda")
    return name, table, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--body", default="smplx", choices=("smplx", "anny"))
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--hypotheses", type=int, default=1000, help="hypotheses for the single image")
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=2048, help="bodies per mesh forward")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = build_bench_model(args.body, PAPER_MODEL).to(device).eval()
    body = model.body
    cpu_batch = make_batch(max(args.images, 1), body.num_pose_joints, body.num_shape, body.shape_range,
                           PAPER_MODEL.image_features, image_resolution=0)
    batch = to_device(cpu_batch, device)
    one = {k: v[:1] for k, v in batch.items()}
    threads = f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else threads}; "
          f"torch {torch.__version__}; body {args.body} ({num_vertices(body)} vertices)")
    print(f"\n  {'workload':<44}{'best s':>8}{'median s':>9}{'hyps/s':>12}{'+peak MiB':>11}")
    runs = [
        (f"1 image x {args.hypotheses} hyps, keypoints", one, args.hypotheses, False),
        (f"1 image x {args.hypotheses} hyps, + meshes", one, args.hypotheses, True),
        (f"{args.images} images x {args.per_image} hyps, keypoints", batch, args.per_image, False),
        (f"{args.images} images x {args.per_image} hyps, + meshes", batch, args.per_image, True),
    ]
    breakdowns = []
    for name, b, hyps, meshes in runs:
        fn = workload(model, b, hyps - 1, meshes, args.chunk)
        breakdowns.append(measure(name, fn, b["pose"].shape[0] * hyps, model, device, args.repeats))
    for name, table, total in breakdowns:
        print_breakdown(name, table, total)


if __name__ == "__main__":
    main()
