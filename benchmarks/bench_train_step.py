"""One training step at the paper's configuration: speed, memory, where the time goes, and the bars.

The step: B = 64 images of cached 720-d encoder features (``ModelConfig(encoder="features",
image_features=720)``: 8 RealNVP blocks, 1024 hidden, 36 M flow parameters), 1 + 25 hypotheses
per image, all six losses of ``PAPER_FULL.loss``, a SMPL-X-format body of 10,475 vertices (random
values from :mod:`humr.testing.body_files`; ``--body anny`` for Anny), AdamW. The batch is
:func:`_batch.make_batch` (150 heatmap samples per joint, a 224 x 224 distance map).

Prints one table:

- ``humr``: :func:`humr.training.objective.training_losses` + backward + ``AdamW.step``;
- ``reference-style``: :func:`_reference_step.reference_training_losses` (full mesh of
  every hypothesis, mask distances to every mask pixel), same optimizer: the ratio to beat;
- ``flow matmul floor``: ``torch.mm`` of exactly the flow's Linear shapes of one step, forward and
  backward (counted analytically), i.e. the time of the flow's FLOPs with no overhead;

with seconds per step (median), steps per second, and peak memory of a fresh child process per
variant (Linux: ``VmHWM`` reset through ``/proc/self/clear_refs`` after a warm-up step, so the
figure is the steady-state step's peak; CUDA: ``torch.cuda.max_memory_allocated``). Then a breakdown
by phase from ``torch.profiler``: each piece of the step is wrapped in a ``record_function`` label
(the library is not edited: the benchmark wraps its functions at run time), forward time is the
innermost label's self time, and the backward time of each autograd node is charged to the label
whose forward op created it (matched by sequence number). Host synchronisations are counted as
``aten::_local_scalar_dense`` calls (``.item()``, ``bool(tensor)``) per phase.

Usage:
    python benchmarks/bench_train_step.py [--device cpu|cuda] [--steps 5] [--reference-steps 2]
        [--batch 64] [--body smplx|anny] [--threads N] [--profile] [--skip-reference] [--skip-memory]

``--profile`` adds the reference step's breakdown (one more reference step) and, with
``--trace DIR``, writes Chrome traces of the profiled steps.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _batch import PAPER_MODEL, build_bench_model, make_batch, num_vertices, to_device  # noqa: E402

from humr.config import PAPER_FULL  # noqa: E402

LOSS = PAPER_FULL.loss


# ----------------------------------------------------------------------------- measurement helpers
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Start a new memory high-water mark (CUDA allocator, or the process RSS on Linux)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def peak_bytes(device: torch.device) -> int:
    """Memory high-water mark since :func:`reset_peak`: CUDA allocator bytes, else VmHWM."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def median_seconds(
    fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1
) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return times


# ----------------------------------------------------------------------------- the step
def setup(args: argparse.Namespace):
    """Model, optimizer and CPU batch of the paper's configuration."""
    device = torch.device(args.device)
    model = build_bench_model(args.body, PAPER_MODEL).to(device).train()
    body = model.body
    batch = make_batch(
        args.batch, body.num_pose_joints, body.num_shape, body.shape_range, PAPER_MODEL.image_features
    )
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=PAPER_FULL.train.lr, weight_decay=PAPER_FULL.train.weight_decay,
                                  fused=True)  # as humr.training.module configures it
    return device, model, optimizer, batch


def make_step(variant: str, model, optimizer, batch_cpu, device, config=LOSS, mask_chunk: int = 4,
              autocast: bool = False):
    """A closure running one full training step (data to device, losses, backward, AdamW)."""
    import _reference_step as reference

    import humr.training.objective as objective

    # Looked up at call time, so that the profiled step sees the labelled wrappers.
    if variant == "humr":
        def losses_fn(*a, **k):
            return objective.training_losses(*a, **k)
    elif variant == "reference":
        def losses_fn(*a, **k):
            return reference.reference_training_losses(*a, mask_chunk=mask_chunk, **k)
    else:
        raise ValueError(f"variant: expected 'humr' or 'reference', found {variant!r}")
    generator = torch.Generator(device=device).manual_seed(0)

    def step() -> float:
        with record_function("data_to_device"):
            batch = to_device(batch_cpu, device, non_blocking=True)
        # Lightning's "bf16-mixed" precision: the flow and heads in bfloat16, the body in float32.
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            losses = losses_fn(model, batch, config, generator=generator)
        with record_function("backward"):
            losses.total.backward()
        with record_function("optimizer"):
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return losses.total.detach()

    return step


# ----------------------------------------------------------------------------- phase labels
def _labelled(fn: Callable, name: str) -> Callable:
    @functools.wraps(fn)
    def inner(*args, **kwargs):
        with record_function(name):
            return fn(*args, **kwargs)

    return inner


@contextlib.contextmanager
def phase_labels(model) -> Iterator[None]:
    """Wrap the pieces of the step in ``record_function`` labels (instance / module attributes,
    restored on exit; the library's code is untouched)."""
    import _reference_step as ref

    import humr.model.humr_model as hm
    import humr.training.objective as obj

    patches = [
        (model.condition, "forward", "condition"),
        (model, "pose_log_prob", "flow_nll"),
        (model.flow, "transform", "flow_sample"),
        (model.flow, "transform_and_log_prob", "flow_sample"),
        (model.head, "forward", "shape_camera_head"),
        (model.body, "keypoints", "body_keypoints"),
        (model.body, "forward", "body_full_forward"),
        (model.body, "keypoints_from_output", "keypoints_from_output"),
        (model, "project", "projection"),
        (hm, "rot6d_to_matrix", "rot6d_to_matrix"),
        (hm, "weak_to_full_translation", "projection"),
        (ref, "rot6d_to_matrix", "rot6d_to_matrix"),
        (ref, "weak_to_full_translation", "projection"),
        (ref, "pixel_mask_inside", "mask_pixel_distances"),
    ]
    for module in (obj, ref):
        patches += [
            (module, "nll_loss", "loss_nll"),
            (module, "keypoint_2d_loss", "loss_keypoint_2d"),
            (module, "shape_loss", "loss_shape"),
            (module, "orthonormal_loss", "loss_orth"),
            (module, "select_mmd_targets", "mmd_targets"),
            (module, "joint_mmd", "loss_mmd"),
            (module, "invisible_joints", "loss_mask"),
        ]
    patches += [(obj, "mask_loss", "loss_mask"), (ref, "reference_mask_loss", "loss_mask")]
    patches += [(obj, "training_losses", "losses"), (ref, "reference_training_losses", "losses")]
    with contextlib.suppress(ImportError):  # smplx's LBS pieces, called by the full forward
        import smplx.lbs as lbs

        patches += [(lbs, name, label) for name, label in LBS_LABELS.items()]
    saved = []
    for owner, attr, label in patches:
        if not hasattr(owner, attr):
            continue
        had_own = attr in vars(owner)
        saved.append((owner, attr, had_own, vars(owner).get(attr)))
        setattr(owner, attr, _labelled(getattr(owner, attr), label))
    try:
        yield
    finally:
        for owner, attr, had_own, value in reversed(saved):
            if had_own:
                setattr(owner, attr, value)
            else:
                delattr(owner, attr)


#: ``smplx.lbs`` helpers -> labels; the rest of ``body_full_forward`` is pose blend shapes + skinning.
LBS_LABELS = {"blend_shapes": "lbs: shape blend", "vertices2joints": "lbs: joint regression",
              "batch_rigid_transform": "lbs: rigid transforms"}
BACKWARD_PREFIX = "autograd::engine::evaluate_function: "
SYNC_OPS = ("aten::_local_scalar_dense",)


def _duration_us(event, cuda: bool) -> float:
    return event.device_time_total if cuda else event.time_range.elapsed_us()


def phase_breakdown(prof, labels: set[str], cuda: bool) -> tuple[dict[str, list[float]], float]:
    """``{phase: [forward_ms, backward_ms, host_syncs]}`` and the step's total ms from one profiled step.

    Forward: each label's time minus its nested labels'. Backward: each autograd node's time, charged
    to the innermost label around the forward op with the node's sequence number.
    """
    events = list(prof.events())

    def innermost_label(e) -> str | None:
        p = e.cpu_parent
        while p is not None and p.name not in labels:
            p = p.cpu_parent
        return p.name if p is not None else None

    table: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    seq_label: dict[int, str] = {}
    step_us = 0.0
    for e in events:
        if e.name in labels:
            d = _duration_us(e, cuda)
            table[e.name][0] += d  # self time: nested labels are taken out of their parent
            outer = innermost_label(e)
            if outer is not None:
                table[outer][0] -= d
            if e.name == "step":
                step_us += d
        elif e.sequence_nr >= 0 and not e.name.startswith(BACKWARD_PREFIX) and e.sequence_nr not in seq_label:
            label = innermost_label(e)
            if label is not None:
                seq_label[e.sequence_nr] = label
        if e.name in SYNC_OPS:
            table[innermost_label(e) or "step"][2] += 1
    for e in events:
        if e.name.startswith(BACKWARD_PREFIX) and innermost_label(e) == "backward":
            d = _duration_us(e, cuda)
            table["backward"][0] -= d  # what remains of the label is the engine's own time
            key = "accumulate grads" if "AccumulateGrad" in e.name else seq_label.get(e.sequence_nr, "step")
            table[key][1] += d
    table["backward: engine overhead"][1] += table.pop("backward", [0.0, 0.0, 0])[0]
    table["other (unlabelled)"] = table.pop("step", [0.0, 0.0, 0])
    out = {k: [v[0] / 1e3, v[1] / 1e3, v[2]] for k, v in table.items()}
    return out, step_us / 1e3


LABELS = {
    "step", "data_to_device", "losses", "condition", "flow_nll", "flow_sample", "rot6d_to_matrix",
    "shape_camera_head", "body_keypoints", "body_full_forward", "keypoints_from_output", "projection",
    "loss_nll", "loss_keypoint_2d", "loss_shape", "loss_orth", "mmd_targets", "loss_mmd", "loss_mask",
    "mask_pixel_distances", "backward", "optimizer", *LBS_LABELS.values(),
}


def profiled_step(
    step: Callable, model, device: torch.device, trace: Path | None, name: str, repeats: int = 1
):
    """The breakdown of the fastest of ``repeats`` profiled steps (the least disturbed by other load)."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    best = None
    for _ in range(repeats):
        with phase_labels(model), profile(activities=activities) as prof:
            with record_function("step"):
                step()
            sync(device)
        table, total = phase_breakdown(prof, LABELS, device.type == "cuda")
        if best is None or total < best[1]:
            best = (table, total)
            if trace is not None:
                trace.mkdir(parents=True, exist_ok=True)
                prof.export_chrome_trace(str(trace / f"{name}.json"))
    return best


def check_labelled_step_matches(model, batch_cpu, device) -> float:
    """|labelled - plain| total loss of one step (no update): the wrappers change nothing."""
    from humr.training.objective import training_losses

    batch = to_device(batch_cpu, device)
    totals = []
    for labelled in (False, True):
        ctx = phase_labels(model) if labelled else contextlib.nullcontext()
        with ctx, torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(0)  # the head's dropout
            g = torch.Generator(device=device).manual_seed(0)
            import humr.training.objective as obj  # the (possibly wrapped) module attribute

            fn = obj.training_losses if labelled else training_losses
            totals.append(float(fn(model, batch, LOSS, generator=g).total))
    return abs(totals[0] - totals[1])


# ----------------------------------------------------------------------------- the floor
def flow_matmul_shapes(batch: int, hypotheses: int, features: int, context: int, blocks: int, hidden: int):
    """``(m, k, n)`` of every matrix product of the flow in one step, forward and backward.

    Two passes: the NLL of the ground truth (``batch`` rows) and the hypotheses (``batch *
    hypotheses`` rows); each has ``2 * blocks`` conditioners ``[x_id (m, D/2) -> H] + [context
    (batch, C) -> H], H -> H, H -> D``. Backward: grad of the weight always, grad of the input except
    for the first conditioner's data input (the data / latent needs no gradient).
    """
    half = features // 2
    shapes = []
    for rows in (batch, batch * hypotheses):
        for c in range(2 * blocks):
            for m, k, n, grad_input in (
                (rows, half, hidden, c > 0),
                (batch, context, hidden, True),
                (rows, hidden, hidden, True),
                (rows, hidden, features, True),
            ):
                shapes.append((m, k, n))  # forward  (m, k) @ (k, n)
                shapes.append((k, m, n))  # grad W   (k, m) @ (m, n)
                if grad_input:
                    shapes.append((m, n, k))  # grad x   (m, n) @ (n, k)
    return shapes


def matmul_floor(
    shapes, device: torch.device, repeats: int = 5, dtype: torch.dtype = torch.float32
) -> tuple[float, float]:
    """(seconds, GFLOP) of ``torch.mm`` over ``shapes``: the sum of each product's best time over
    ``repeats`` (robust to other processes sharing the machine)."""
    flops = sum(2.0 * m * k * n for m, k, n in shapes)
    best: dict[tuple[int, int, int], float] = {}
    kw = {"device": device, "dtype": dtype}
    mats = {(m, k, n): (torch.randn(m, k, **kw), torch.randn(k, n, **kw)) for m, k, n in set(shapes)}
    for _ in range(repeats):
        for shape, (a, b) in mats.items():
            sync(device)
            start = time.perf_counter()
            torch.mm(a, b)
            sync(device)
            best[shape] = min(best.get(shape, float("inf")), time.perf_counter() - start)
    return sum(best[s] for s in shapes), flops / 1e9


def optimizer_variants(model, device: torch.device, repeats: int = 5) -> dict[str, float]:
    """Best seconds of one ``AdamW.step`` over the model's parameters: default, foreach, fused."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = {}
    for name, kw in (("default", {}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        copies = [p.detach().clone().requires_grad_(True) for p in params]
        for c in copies:
            c.grad = torch.randn_like(c)
        try:
            opt = torch.optim.AdamW(copies, lr=1e-4, weight_decay=1e-4, **kw)
        except (RuntimeError, ValueError) as err:  # e.g. fused unsupported on this device
            print(f"  [optimizer] {name}: unavailable ({err})", file=sys.stderr)
            continue
        out[name] = min(median_seconds(opt.step, device, repeats, warmup=1))
    return out


# ----------------------------------------------------------------------------- child: memory
def child_memory(args: argparse.Namespace) -> None:
    """Run in a fresh process: a warm-up step, reset the high-water mark, one step; print JSON."""
    device, model, optimizer, batch = setup(args)
    step = make_step(args.child, model, optimizer, batch, device, mask_chunk=args.mask_chunk)
    step()
    sync(device)
    base = current_bytes(device)
    reset_peak(device)
    step()
    sync(device)
    print(json.dumps({"baseline": base, "peak": peak_bytes(device)}))


def memory_of(variant: str, args: argparse.Namespace) -> dict[str, int] | None:
    cmd = [sys.executable, __file__, "--child", variant, "--device", args.device, "--batch", str(args.batch),
           "--body", args.body, "--mask-chunk", str(args.mask_chunk)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        print(f"[memory] {variant}: child failed\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report
def print_breakdown(title: str, table: dict[str, list[float]], step_ms: float) -> None:
    rows = sorted(table.items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    print(f"\n{title} (one profiled step: {step_ms:.0f} ms under the profiler)")
    print(f"  {'phase':<28}{'forward ms':>11}{'backward ms':>12}{'total ms':>10}{'share':>8}{'syncs':>7}")
    for name, (fwd, bwd, syncs) in rows:
        total = fwd + bwd
        if abs(total) < 0.05 and not syncs:
            continue
        print(f"  {name:<28}{fwd:>11.1f}{bwd:>12.1f}{total:>10.1f}{100 * total / step_ms:>7.1f}%{syncs:>7d}")
    fwd = sum(v[0] for v in table.values())
    bwd = sum(v[1] for v in table.values())
    print(f"  {'sum':<28}{fwd:>11.1f}{bwd:>12.1f}{fwd + bwd:>10.1f}{100 * (fwd + bwd) / step_ms:>7.1f}%"
          f"{sum(v[2] for v in table.values()):>7d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=5, help="timed humr steps (after one warm-up)")
    parser.add_argument("--reference-steps", type=int, default=2, help="timed reference-style steps")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--body", default="smplx", choices=("smplx", "anny"))
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument("--mask-chunk", type=int, default=4, help="images per block of mask-pixel distances")
    parser.add_argument("--profile", action="store_true", help="also break the reference step down")
    parser.add_argument("--profile-steps", type=int, default=2, help="profiled humr steps (fastest shown)")
    parser.add_argument("--trace", type=Path, default=None, help="write Chrome traces of profiled steps here")
    parser.add_argument("--skip-reference", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="also time the humr step under bfloat16 autocast")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        child_memory(args)
        return

    device, model, optimizer, batch = setup(args)
    threads = f"CPU, {torch.get_num_threads()} threads"
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else threads
    n = LOSS.num_samples
    print(f"device: {dev_name}; torch {torch.__version__}; body {args.body} "
          f"({num_vertices(model.body)} vertices); B = {args.batch}, 1 + {n} hypotheses; "
          f"flow {PAPER_MODEL.flow.num_layers} blocks x {PAPER_MODEL.flow.hidden_features} hidden, "
          f"{sum(p.numel() for p in model.flow.parameters()) / 1e6:.1f} M parameters")
    diff = check_labelled_step_matches(model, batch, device)
    print(f"labelled step == training_losses: |diff of total loss| = {diff:.2e}")

    results: dict[str, dict[str, float]] = {}
    step = make_step("humr", model, optimizer, batch, device)
    times = median_seconds(step, device, args.steps)
    results["humr"] = {"s": statistics.median(times), "min": min(times)}
    humr_table, humr_ms = profiled_step(step, model, device, args.trace, "humr", args.profile_steps)
    if args.bf16:
        mixed = make_step("humr", model, optimizer, batch, device, autocast=True)
        times = median_seconds(mixed, device, args.steps)
        results["humr, bf16 autocast"] = {"s": statistics.median(times), "min": min(times)}

    ref_table = None
    if not args.skip_reference:
        ref = make_step("reference", model, optimizer, batch, device, mask_chunk=args.mask_chunk)
        times = median_seconds(ref, device, args.reference_steps)
        results["reference"] = {"s": statistics.median(times), "min": min(times)}
        if args.profile:
            ref_table, ref_ms = profiled_step(ref, model, device, args.trace, "reference")

    cond = model.condition.out_features
    shapes = flow_matmul_shapes(args.batch, n + 1, 6 * model.num_pose_joints, cond,
                                PAPER_MODEL.flow.num_layers, PAPER_MODEL.flow.hidden_features)
    floor_s, gflop = matmul_floor(shapes, device)
    results["flow matmul floor"] = {"s": floor_s, "min": floor_s}
    bf16_s, _ = matmul_floor(shapes, device, dtype=torch.bfloat16)

    if not args.skip_memory:
        for variant in [v for v in ("humr", "reference") if v in results]:
            mem = memory_of(variant, args)
            if mem:
                results[variant].update(peak=mem["peak"] / 2**20, base=mem["baseline"] / 2**20)

    print(f"\n  {'variant':<20}{'s/step':>9}{'(min)':>8}{'steps/s':>9}{'x humr':>8}{'peak MiB':>10}"
          f"{'step MiB':>10}")
    base_s = results["humr"]["s"]
    for name, r in results.items():
        peak = f"{r['peak']:>10.0f}{r['peak'] - r['base']:>10.0f}" if "peak" in r else f"{'':>10}{'':>10}"
        print(f"  {name:<20}{r['s']:>9.3f}{r['min']:>8.3f}{1 / r['s']:>9.2f}{r['s'] / base_s:>8.2f}{peak}")
    print(f"  flow FLOPs per step: {gflop:.1f} GFLOP ({len(shapes)} products); floor rate "
          f"{gflop / floor_s:.0f} GFLOP/s; humr step = {base_s / floor_s:.2f} x floor")
    print(f"  the same products in bfloat16: {bf16_s:.3f} s ({gflop / bf16_s:.0f} GFLOP/s, "
          f"{floor_s / bf16_s:.2f} x faster than float32)")
    if "reference" in results:
        r = results["reference"]
        line = f"  reference-style / humr: {r['s'] / base_s:.2f} x time"
        if "peak" in r and "peak" in results["humr"]:
            h = results["humr"]
            line += (f", {r['peak'] / h['peak']:.2f} x peak memory, "
                     f"{(r['peak'] - r['base']) / max(h['peak'] - h['base'], 1):.2f} x step memory")
        print(line)
        hw = args.batch * 17 * n * 224 * 224 * 4 / 2**30
        print(f"  (the reference held the whole (B, 17 n, 224^2) mask-distance block at once: {hw:.1f} GiB "
              f"in float32; here it is computed {args.mask_chunk} images at a time)")
    print("  memory: 'peak' = high-water mark of a fresh process during a steady-state step (model, "
          "optimizer state and batch included); 'step' = peak minus the resident size before that step")

    opt = optimizer_variants(model, device)
    if opt:
        print("  AdamW.step over the model's parameters (best of 5): "
              + ", ".join(f"{k} {1e3 * v:.0f} ms" for k, v in opt.items()))

    print_breakdown("humr step by phase", humr_table, humr_ms)
    if ref_table is not None:
        print_breakdown("reference-style step by phase", ref_table, ref_ms)


if __name__ == "__main__":
    main()
