"""The reference-style pieces (full meshes, per-pixel mask distances) give the library's values.

The parts computed independently are compared: hypotheses' keypoints read from fully skinned
meshes against forward kinematics, and the mask loss decided per pixel against the distance-map
look-up. (The rest of the reference-style step is the library's own code, composed in
``benchmarks/_reference_step.py``: one test checks that the composition gives every term.)"""

from __future__ import annotations

import math
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.config import LossConfig, ModelConfig
from humr.flows import FlowConfig
from humr.losses.mask import lookup_distance_map, mask_loss, mask_to_distance_map
from humr.rotations import axis_angle_to_matrix
from humr.training.objective import flow_nll, invisible_joints, training_losses

# The reference-style step lives beside the benchmark that uses it (benchmarks/bench_train_step.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from _reference_step import (  # noqa: E402
    pixel_mask_inside,
    reference_hypotheses,
    reference_mask_loss,
    reference_training_losses,
)

TINY = ModelConfig(
    encoder="features", image_features=16, pose_hidden=16, pose_features=8,
    flow=FlowConfig(num_layers=2, hidden_features=32), head_hidden=32,
)


def corner_cells(points: np.ndarray, size: int, extent: float) -> np.ndarray:
    """``(..., 4, 2)`` (row, col) of the 2 x 2 cells a bilinear read at ``points (..., 2)`` touches."""
    u = (points + extent) / (2 * extent) * size - 0.5  # continuous index, cell centres at integers
    lo = np.clip(np.floor(u), 0, size - 1).astype(int)
    hi = np.clip(np.floor(u) + 1, 0, size - 1).astype(int)
    cols = np.stack([lo[..., 0], hi[..., 0], lo[..., 0], hi[..., 0]], -1)
    rows = np.stack([lo[..., 1], lo[..., 1], hi[..., 1], hi[..., 1]], -1)
    return np.stack([rows, cols], -1)


def unambiguous_mask(points: np.ndarray, size: int, extent: float, rng: np.random.Generator) -> np.ndarray:
    """``(size, size)`` mask on which every point of ``points (P, 2)`` has its 2 x 2 bilinear cells all
    mask or all background, with about half the points seeding the mask (both kinds occur)."""
    mask = np.zeros((size, size), bool)
    corners = corner_cells(points, size, extent)  # (P, 4, 2)
    for c in corners[rng.random(len(points)) < 0.5]:
        mask[c[:, 0], c[:, 1]] = True
    if not mask.any() and len(points):
        mask[corners[0, :, 0], corners[0, :, 1]] = True
    elif not mask.any():
        mask[0, 0] = True  # mask_to_distance_map needs one mask cell
    while True:  # grow the mask over every point with mixed cells: monotone, so it ends
        hit = mask[corners[..., 0], corners[..., 1]]  # (P, 4)
        mixed = hit.any(-1) & ~hit.all(-1)
        if not mixed.any():
            return mask
        for c in corners[mixed]:
            mask[c[:, 0], c[:, 1]] = True


@pytest.fixture(scope="module")
def smplx_model(tmp_path_factory):
    from humr.bodies.smplx_body import SMPLXBody
    from humr.model.humr_model import HumrModel
    from humr.testing.body_files import write_smplx_npz

    path = write_smplx_npz(tmp_path_factory.mktemp("smplx") / "SMPLX_NEUTRAL.npz", num_shape_components=300)
    with torch.random.fork_rng(devices=[]):  # the initialisation's draws are replaced below
        model = HumrModel(TINY, SMPLXBody(path)).double().eval()  # eval: no dropout draws
    # Every weight from a generator, at the default initialisation's scale, and away from the zero
    # initialisation of the flow's last layers so that every parameter gets a gradient.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            std = 0.05 if p.dim() < 2 else (3 * p.shape[1]) ** -0.5
            p.copy_(std * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def small_batch(b: int, num_shape: int, m: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    gt = 0.6 * torch.randn(b, 17, 2, generator=g, dtype=f64)
    conf = torch.rand(b, 17, generator=g, dtype=f64)
    samples = gt[:, :, None] + 0.2 * torch.randn(b, 17, m, 2, generator=g, dtype=f64)
    return {
        "image_features": torch.randn(b, TINY.image_features, generator=g, dtype=f64),
        "pose": axis_angle_to_matrix(0.3 * torch.randn(b, 22, 3, generator=g, dtype=f64)),
        "shape": torch.randn(b, num_shape, generator=g, dtype=f64),
        "keypoints_2d": gt,
        "keypoints_2d_valid": torch.rand(b, 17, generator=g) > 0.1,
        "detector_keypoints": torch.cat([gt, conf[..., None]], -1),
        "heatmap_samples": samples,
        "heatmap_sample_valid": torch.rand(b, 17, m, generator=g) > 0.1,
        "mask_valid": torch.tensor([True] * (b - 1) + [False]),
        "center": torch.tensor([[640.0, 360.0]], dtype=f64).expand(b, 2) + 50 * torch.rand(b, 2, generator=g),
        "box_size": 300 + 100 * torch.rand(b, generator=g, dtype=f64),
        "focal": torch.full((b,), math.hypot(1280, 720), dtype=f64),
        "image_size": torch.tensor([[1280.0, 720.0]], dtype=f64).expand(b, 2),
    }


def test_full_mesh_hypotheses_give_the_forward_kinematics_keypoints_and_gradients(smplx_model):
    model, n = smplx_model, 6
    batch = small_batch(3, model.body.num_shape, 20, seed=2)
    weights = torch.randn(3, 1 + n, 17, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    results = []
    for hypotheses in (model.forward, partial(reference_hypotheses, model)):
        model.zero_grad()
        hyps = hypotheses(batch, n, generator=torch.Generator().manual_seed(5))
        (hyps.keypoints_2d * weights).sum().backward()
        grads = [p.grad.clone() for p in model.parameters() if p.requires_grad]
        results.append((hyps, grads))
    (fast, fast_grads), (ref, ref_grads) = results
    assert fast.keypoints_2d.shape == (3, 1 + n, 17, 2)
    # The library's path runs the body in float32 whatever the flow ran in; the reference in float64.
    close = {"rtol": 1e-5, "atol": 1e-6, "check_dtype": False}
    torch.testing.assert_close(ref.keypoints_3d, fast.keypoints_3d, **close)
    torch.testing.assert_close(ref.keypoints_2d, fast.keypoints_2d, **close)
    assert all(g.abs().sum() > 0 for g in fast_grads)  # every parameter takes part
    for a, b in zip(ref_grads, fast_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_per_pixel_mask_loss_equals_the_look_up_on_a_steps_hypotheses(smplx_model):
    model, config = smplx_model, LossConfig(num_samples=6)
    batch = small_batch(3, model.body.num_shape, 20, seed=2)
    with torch.no_grad():
        hyps = model(batch, config.num_samples, generator=torch.Generator().manual_seed(5))
    points = hyps.keypoints_2d[:, 1:].transpose(1, 2).contiguous()  # (B, 17, n, 2), as the step
    apply = invisible_joints(batch, config) & batch["mask_valid"][:, None]
    assert apply.any()
    # A mask on which the library's look-up and the per-pixel test agree at every applied point.
    extent, size, rng = 1.1 * float(points.abs().max()), 24, np.random.default_rng(0)
    masks = [unambiguous_mask(points[i][apply[i]].reshape(-1, 2).numpy(), size, extent, rng)
             for i in range(3)]
    dmap = mask_to_distance_map(np.stack(masks), extent=extent).double()
    outside = lookup_distance_map(points, dmap, extent) > extent / size
    assert outside[apply].any() and (~outside[apply]).any()  # both decisions are exercised
    samples = batch["heatmap_samples"]
    args = (samples, lookup_distance_map(samples, dmap, extent), dmap, apply)
    kwargs = {"extent": extent, "sample_valid": batch["heatmap_sample_valid"], "same_joint": True}
    values, grads = [], []
    for loss in (mask_loss, partial(reference_mask_loss, chunk=1)):
        pred = points.clone().requires_grad_(True)
        value = loss(pred, *args, **kwargs)
        values.append(value)
        grads.append(torch.autograd.grad(value, pred)[0])
    assert values[0] > 0
    torch.testing.assert_close(values[1], values[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-12, atol=1e-12)


def test_reference_step_gives_every_term_of_the_library_step(smplx_model):
    """The step composed of the objective's pieces with the two reference-style replacements gives
    the library's terms and total (same draws in the same order), on a mask where the two inside
    tests agree at every hypothesis of an applied joint."""
    model, config = smplx_model, LossConfig(num_samples=6)
    b, seed = 3, 11
    batch = small_batch(b, model.body.num_shape, 20, seed=2)
    with torch.no_grad():  # the step's hypotheses: the NLL's noise is drawn first, then the latents
        g = torch.Generator().manual_seed(seed)
        context = model.condition(batch)
        flow_nll(model, batch, context, config, g)
        hyps = model(batch, config.num_samples, generator=g, context=context)
    points = hyps.keypoints_2d[:, 1:].transpose(1, 2)  # (B, 17, n, 2)
    apply = invisible_joints(batch, config) & batch["mask_valid"][:, None]
    extent, size, rng = 1.1 * float(points.abs().max()), 24, np.random.default_rng(1)
    masks = [unambiguous_mask(points[i][apply[i]].reshape(-1, 2).numpy(), size, extent, rng)
             for i in range(b)]
    dmap = mask_to_distance_map(np.stack(masks), extent=extent).double()
    batch.update(distance_map=dmap, distance_map_extent=torch.full((b,), extent, dtype=torch.float64),
                 heatmap_sample_mask_distance=lookup_distance_map(batch["heatmap_samples"], dmap, extent))
    with torch.no_grad():
        lib = training_losses(model, batch, config, torch.Generator().manual_seed(seed))
        ref = reference_training_losses(model, batch, config, torch.Generator().manual_seed(seed),
                                        mask_chunk=1)
    assert list(ref.terms) == list(lib.terms)
    assert lib.terms["mask"] > 0 and lib.terms["mmd"] != 0
    close = {"rtol": 1e-4, "atol": 1e-6, "check_dtype": False}
    for name, value in lib.terms.items():
        torch.testing.assert_close(ref.terms[name], value, **close, msg=name)
    weights = {"nll": config.nll_weight, "keypoint_2d": config.keypoint_2d_weight,
               "shape": config.shape_weight, "orth": config.orth_weight, "mmd": config.mmd_weight,
               "mask": config.mask_weight,
               "random_2d": config.random_2d_weight, "camera_scale": config.camera_scale_weight,
               "pose_regression": config.pose_regression_weight, "joints_3d": config.joints_3d_weight}
    by_hand = sum(weights[name] * float(value) for name, value in ref.terms.items())
    assert math.isclose(float(ref.total), by_hand, rel_tol=1e-9)
    torch.testing.assert_close(ref.total, lib.total, **close)


@settings(max_examples=30, deadline=None)
@given(h=st.integers(2, 12), w=st.integers(2, 12), extent=st.floats(0.5, 2.0), seed=st.integers(0, 2**31))
def test_pixel_inside_test_is_the_pixel_under_the_point(h, w, extent, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((2, h, w)) < 0.4
    mask[:, 0, 0] = True  # never empty
    pts = rng.uniform(-1.3 * extent, 1.3 * extent, (2, 50, 2))
    inside = pixel_mask_inside(torch.from_numpy(pts), mask_to_distance_map(mask, extent), extent, chunk=1)
    # Independent: the index of the pixel containing the point (points on pixel edges are skipped).
    col = (pts[..., 0] + extent) / (2 * extent) * w
    row = (pts[..., 1] + extent) / (2 * extent) * h
    in_square = (np.abs(pts) < extent).all(-1)
    on_edge = (np.abs(col - np.round(col)) < 1e-9) | (np.abs(row - np.round(row)) < 1e-9)
    ci, ri = np.clip(col.astype(int), 0, w - 1), np.clip(row.astype(int), 0, h - 1)
    expected = in_square & mask[np.arange(2)[:, None], ri, ci]
    keep = ~on_edge
    np.testing.assert_array_equal(inside.numpy()[keep], expected[keep])


@settings(max_examples=20, deadline=None)
@given(same_joint=st.booleans(), seed=st.integers(0, 2**31))
def test_reference_mask_loss_equals_the_library_where_the_inside_tests_agree(same_joint, seed):
    rng = np.random.default_rng(seed)
    b, k, s, m, size = 2, 3, 5, 7, 16
    pred = torch.from_numpy(rng.uniform(-0.9, 0.9, (b, k, s, 2))).requires_grad_(True)
    samples = torch.from_numpy(rng.uniform(-0.9, 0.9, (b, k, m, 2)))
    masks = [unambiguous_mask(pred[i].detach().reshape(-1, 2).numpy(), size, 1.0, rng) for i in range(b)]
    dmap = mask_to_distance_map(np.stack(masks)).double()
    sample_dist = lookup_distance_map(samples, dmap)
    apply = torch.from_numpy(rng.random((b, k)) < 0.7)
    valid = torch.from_numpy(rng.random((b, k, m)) < 0.8)
    args = (samples, sample_dist, dmap, apply)
    lib = mask_loss(pred, *args, sample_valid=valid, same_joint=same_joint)
    (g_lib,) = torch.autograd.grad(lib, pred)
    ref = reference_mask_loss(pred, *args, sample_valid=valid, same_joint=same_joint, chunk=1)
    (g_ref,) = torch.autograd.grad(ref, pred)
    torch.testing.assert_close(ref, lib, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_ref, g_lib, rtol=1e-12, atol=1e-12)


def test_pixel_inside_test_rejects_bad_input():
    dmap = torch.zeros(2, 4, 4)
    with pytest.raises(ValueError, match="points"):
        pixel_mask_inside(torch.zeros(2, 5), dmap)
    with pytest.raises(ValueError, match="distance_map"):
        pixel_mask_inside(torch.zeros(3, 5, 2), dmap)
    with pytest.raises(ValueError, match="chunk"):
        pixel_mask_inside(torch.zeros(2, 5, 2), dmap, chunk=0)
