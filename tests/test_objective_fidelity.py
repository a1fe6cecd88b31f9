"""The objective's normalisations (issue 12) against independent transcriptions of their formulas.

Each term of :func:`humr.training.objective.training_losses` is recomputed here by hand (loops
over images, hypotheses and joints, closed forms) from the hypotheses the step drew, captured
with a forward hook, on a tiny SMPL-X-layout model and a hand-built batch.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import humr.training.objective as objective
from humr.config import LossConfig, ModelConfig
from humr.flows import FlowConfig
from humr.losses.mask import default_tolerance, lookup_distance_map, mask_to_distance_map
from humr.rotations import axis_angle_to_matrix, matrix_to_rot6d
from humr.training.objective import LOSS_NAMES, training_losses

REGRESSOR_TERMS = ("pose_regression", "joints_3d")

TINY = ModelConfig(
    encoder="features", image_features=16, pose_hidden=16, pose_features=8,
    flow=FlowConfig(num_layers=2, hidden_features=32), head_hidden=32,
)
IMQ_BANDWIDTHS = (0.05, 0.2, 0.9)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from humr.bodies.smplx_body import SMPLXBody
    from humr.model.humr_model import HumrModel
    from humr.testing.body_files import write_smplx_npz

    path = write_smplx_npz(tmp_path_factory.mktemp("smplx") / "SMPLX_NEUTRAL.npz", num_shape_components=300)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = HumrModel(TINY, SMPLXBody(path)).double()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # away from the zero initialisation, so every term is non-trivial
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model.eval()  # no dropout: one forward is reproducible


def make_batch(model, b: int = 3, m: int = 8, seed: int = 0, body_joints: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    gt = 0.6 * torch.randn(b, 17, 2, generator=g, dtype=f64)
    gt[0, 9] = torch.tensor([1.3, 0.2], dtype=f64)  # a truncated wrist
    conf = torch.rand(b, 17, generator=g, dtype=f64)
    samples = gt[:, :, None] + 0.2 * torch.randn(b, 17, m, 2, generator=g, dtype=f64)
    masks = np.zeros((b, 12, 12), dtype=bool)
    masks[:, 3:9, 2:7] = True
    dmap = mask_to_distance_map(masks).double()
    batch = {
        "image_features": torch.randn(b, TINY.image_features, generator=g, dtype=f64),
        "pose": axis_angle_to_matrix(0.3 * torch.randn(b, 22, 3, generator=g, dtype=f64)),
        "shape": torch.randn(b, model.body.num_shape, generator=g, dtype=f64),
        "keypoints_2d": gt,
        "keypoints_2d_valid": torch.rand(b, 17, generator=g) > 0.1,
        "detector_keypoints": torch.cat([gt, conf[..., None]], -1),
        "heatmap_samples": samples,
        "heatmap_sample_valid": torch.rand(b, 17, m, generator=g) > 0.1,
        "heatmap_sample_mask_distance": lookup_distance_map(samples, dmap),
        "distance_map": dmap,
        "distance_map_extent": torch.ones(b, dtype=f64),
        "mask_valid": torch.tensor([True] * (b - 1) + [False]),
        "center": torch.tensor([[640.0, 360.0]], dtype=f64).expand(b, 2) + 50 * torch.rand(b, 2, generator=g),
        "box_size": 300 + 100 * torch.rand(b, generator=g, dtype=f64),
        "focal": torch.full((b,), math.hypot(1280, 720), dtype=f64),
        "image_size": torch.tensor([[1280.0, 720.0]], dtype=f64).expand(b, 2),
    }
    if body_joints:
        batch["body_joints_2d"] = 0.5 * torch.randn(b, 22, 2, generator=g, dtype=f64)
        batch["body_joints_2d_valid"] = torch.rand(b, 22, generator=g) > 0.2
    return batch


def run_step(model, batch, config: LossConfig, seed: int = 5):
    """The step's terms and the hypotheses it drew."""
    seen = []
    handle = model.register_forward_hook(lambda mod, args, out: seen.append(out))
    try:
        losses = training_losses(model, batch, config, generator=torch.Generator().manual_seed(seed))
    finally:
        handle.remove()
    return losses, seen[0]


def test_defaults_are_the_published_normalisations():
    config = LossConfig()
    assert (config.nll_per_dimension, config.shape_reduction, config.orth_reduction, config.mmd_reduction,
            config.mask_normalization, config.keypoint_2d_set, config.camera_scale_weight) == (
        True, "sum", "split", "all", "reference", "auto", 1.0)
    assert config.mmd_unbiased  # Eq. 4 stays as the paper says
    assert set(LOSS_NAMES) == {"nll", "keypoint_2d", "shape", "orth", "mmd", "mask", "random_2d",
                               "camera_scale", *REGRESSOR_TERMS}


@pytest.mark.parametrize("per_dimension", [True, False])
def test_nll_is_minus_the_flow_log_density_over_d_averaged_over_the_batch(model, per_dimension):
    batch = make_batch(model)
    config = LossConfig(num_samples=4, nll_noise=0.0, nll_per_dimension=per_dimension)
    losses, _ = run_step(model, batch, config)
    with torch.no_grad():
        context = model.condition(batch)
        x = matrix_to_rot6d(batch["pose"]).flatten(-2) - model.pose_offset  # (B, 132)
        z, logabsdet = model.flow._transform(x, context)  # data -> noise
        # log N(z; 0, I) by hand, summed over the D = 132 dimensions, plus the log-determinant
        log_density = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1) + logabsdet
    d = 132 if per_dimension else 1
    assert x.shape[-1] == 132
    want = -float(log_density.sum()) / len(log_density) / d
    assert losses.terms["nll"].item() == pytest.approx(want, rel=1e-6)  # pose_log_prob returns float32


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_shape_loss_is_the_summed_squared_error_averaged_over_images(model, reduction):
    batch = make_batch(model)
    losses, hyps = run_step(model, batch, LossConfig(num_samples=4, shape_reduction=reduction))
    pred, gt = hyps.regressed_shape.detach().numpy(), batch["shape"].numpy()
    per_image = [sum((pred[b, i] - gt[b, i]) ** 2 for i in range(pred.shape[1])) for b in range(len(pred))]
    want = sum(per_image) / len(per_image) / (1 if reduction == "sum" else pred.shape[1])
    assert losses.terms["shape"].item() == pytest.approx(want, rel=1e-6)


def _orth_by_hand(pose6d: np.ndarray) -> float:
    """Mean over (image, hypothesis, joint) and the 4 entries of (M^T M - I)^2, M = [a b] (3 x 2)."""
    total, count = 0.0, 0
    for image in pose6d:
        for hyp in image:
            for joint in hyp.reshape(-1, 3, 2):
                a, b = joint[:, 0], joint[:, 1]
                total += (a @ a - 1) ** 2 + 2 * (a @ b) ** 2 + (b @ b - 1) ** 2
                count += 4
    return total / count


@pytest.mark.parametrize("reduction", ["split", "joint"])
def test_orthonormality_is_mode_plus_samples_each_a_mean_over_its_own_hypotheses(model, reduction):
    batch = make_batch(model)
    losses, hyps = run_step(model, batch, LossConfig(num_samples=4, orth_reduction=reduction))
    pose6d = hyps.pose6d.detach().numpy()
    # An orthonormal rest-pose offset makes the flow's outputs non-orthonormal only slightly:
    # make sure the term is far from 0 so that the comparison says something.
    assert _orth_by_hand(pose6d) > 1e-6
    if reduction == "split":
        want = _orth_by_hand(pose6d[:, :1]) + _orth_by_hand(pose6d[:, 1:])
    else:
        want = _orth_by_hand(pose6d)
    assert losses.terms["orth"].item() == pytest.approx(want, rel=1e-6)


def _imq(a, b) -> float:
    d2 = float(((a - b) ** 2).sum())
    return sum(h * h / (h * h + d2) for h in IMQ_BANDWIDTHS)


def _mmd_unbiased_by_hand(x: np.ndarray, y: np.ndarray) -> float:
    n, m = len(x), len(y)
    sxx = sum(_imq(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    syy = sum(_imq(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    sxy = sum(_imq(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return sxx + syy - 2 * sxy


@pytest.mark.parametrize("reduction", ["all", "active"])
def test_mmd_all_is_the_mean_over_every_image_and_joint_with_inactive_zero(model, monkeypatch, reduction):
    batch = make_batch(model)
    calls = []
    real = objective.joint_mmd

    def spy(pred, target, weight, **kwargs):
        calls.append((pred.detach().numpy(), target.numpy(), weight.numpy()))
        return real(pred, target, weight, **kwargs)

    monkeypatch.setattr(objective, "joint_mmd", spy)
    losses, hyps = run_step(model, batch, LossConfig(num_samples=4, mmd_reduction=reduction))
    pred, target, active = calls[0]
    # the step's random hypotheses, joint-major
    np.testing.assert_array_equal(pred, hyps.keypoints_2d[:, 1:].transpose(1, 2).detach().numpy())
    b, k = active.shape
    assert 0 < active.sum() < b * k  # some joints inactive: the two reductions differ
    per = np.zeros((b, k))
    for bi in range(b):
        for ki in range(k):
            if active[bi, ki]:
                per[bi, ki] = _mmd_unbiased_by_hand(pred[bi, ki], target[bi, ki])
    want = per.sum() / (b * k) if reduction == "all" else per.sum() / active.sum()
    assert losses.terms["mmd"].item() == pytest.approx(want, rel=1e-6, abs=1e-12)


def _mask_by_hand(pred, batch, apply, normalization: str) -> float:
    """The published L_mask by loops over (image, hypothesis, joint): hypotheses inside the covered
    square and outside the mask, l1 to the nearest (l1) in-mask sample of the joint or its GT
    keypoint; summed over joints per hypothesis, divided by B x n ("reference")."""
    b, k, n, _ = pred.shape
    dmap = batch["distance_map"]
    tol = default_tolerance(dmap.shape[1], dmap.shape[2])
    inside = (lookup_distance_map(torch.from_numpy(pred), dmap) <= tol).numpy()
    samples, sdist = batch["heatmap_samples"].numpy(), batch["heatmap_sample_mask_distance"].numpy()
    valid, gt, gt_ok = batch["heatmap_sample_valid"], batch["keypoints_2d"].numpy(), batch[
        "keypoints_2d_valid"]
    total, applied = 0.0, 0
    for bi in range(b):
        for ki in range(k):
            if not apply[bi, ki]:
                continue
            targets = [samples[bi, ki, j] for j in range(samples.shape[2])
                       if valid[bi, ki, j] and sdist[bi, ki, j] <= tol]
            if normalization == "reference" and gt_ok[bi, ki]:
                targets.append(gt[bi, ki])
            if not targets:
                continue
            applied += 1
            for si in range(n):
                p = pred[bi, ki, si]
                if inside[bi, ki, si] or np.abs(p).max() > 1.0:
                    continue
                total += min(float(np.abs(p - t).sum()) for t in targets)
    return total / (b * n) if normalization == "reference" else total / max(applied * n, 1)


@pytest.mark.parametrize("normalization", ["reference", "entry"])
def test_mask_loss_is_the_published_formula_by_brute_force(model, normalization):
    batch = make_batch(model)
    config = LossConfig(num_samples=6, mask_normalization=normalization)
    losses, hyps = run_step(model, batch, config)
    pred = hyps.keypoints_2d[:, 1:].transpose(1, 2).detach().numpy()  # (B, 17, n, 2)
    conf = batch["detector_keypoints"][..., 2]
    outside_crop = (batch["keypoints_2d"].abs() > 1).any(-1)
    invisible = batch["keypoints_2d_valid"] & ((conf < config.visibility_threshold) | outside_crop)
    apply = (invisible & batch["mask_valid"][:, None]).numpy()
    want = _mask_by_hand(pred, batch, apply, normalization)
    assert want > 0
    assert losses.terms["mask"].item() == pytest.approx(want, rel=1e-6)


def _project_by_hand(points: np.ndarray, translation: np.ndarray, batch, bi: int) -> np.ndarray:
    """Pinhole projection (principal point at the image centre) into crop coordinates."""
    f = float(batch["focal"][bi])
    w, h = batch["image_size"][bi].tolist()
    cx, cy = batch["center"][bi].tolist()
    half = float(batch["box_size"][bi]) / 2
    p = points + translation
    u = f * p[:, 0] / p[:, 2] + w / 2
    v = f * p[:, 1] / p[:, 2] + h / 2
    return np.stack([(u - cx) / half, (v - cy) / half], -1)


def test_keypoint_2d_on_the_mode_uses_body_joints_when_the_batch_has_them(model):
    batch = make_batch(model)
    losses, hyps = run_step(model, batch, LossConfig(num_samples=4))  # "auto"
    joints = model.body.keypoints(hyps.rotmat[:, :1], hyps.shape[:, None], "body_joints")[:, 0].detach()
    gt, ok = batch["body_joints_2d"].numpy(), batch["body_joints_2d_valid"].numpy()
    per_image = []
    for bi in range(len(gt)):
        uv = _project_by_hand(joints[bi].numpy(), hyps.translation[bi].detach().numpy(), batch, bi)
        per_image.append(sum(np.abs(uv[j] - gt[bi, j]).sum() for j in range(len(uv)) if ok[bi, j]))
    want = sum(per_image) / len(per_image)
    assert losses.terms["keypoint_2d"].item() == pytest.approx(want, rel=1e-6)
    forced, _ = run_step(model, batch, LossConfig(num_samples=4, keypoint_2d_set="body_joints"))
    assert forced.terms["keypoint_2d"].item() == pytest.approx(want, rel=1e-6)

    coco, hyps = run_step(model, batch, LossConfig(num_samples=4, keypoint_2d_set="coco17"))
    mode, gt17, ok17 = hyps.keypoints_2d[:, 0].detach().numpy(), batch["keypoints_2d"].numpy(), batch[
        "keypoints_2d_valid"].numpy()
    want17 = sum(np.abs(mode[bi, j] - gt17[bi, j]).sum() for bi in range(len(mode)) for j in range(17)
                 if ok17[bi, j]) / len(mode)
    assert coco.terms["keypoint_2d"].item() == pytest.approx(want17, rel=1e-6)
    without = make_batch(model, body_joints=False)
    auto, hyps = run_step(model, without, LossConfig(num_samples=4))
    mode = hyps.keypoints_2d[:, 0].detach().numpy()
    gt17, ok17 = without["keypoints_2d"].numpy(), without["keypoints_2d_valid"].numpy()
    want17 = sum(np.abs(mode[bi, j] - gt17[bi, j]).sum() for bi in range(len(mode)) for j in range(17)
                 if ok17[bi, j]) / len(mode)
    assert auto.terms["keypoint_2d"].item() == pytest.approx(want17, rel=1e-6)
    with pytest.raises(ValueError, match="keypoint_2d_set"):
        run_step(model, without, LossConfig(num_samples=4, keypoint_2d_set="body_joints"))


def test_camera_scale_term_sees_the_raw_scale_not_the_clamped_one(model):
    batch = make_batch(model)
    camera_bias = model.head.camera_out.bias
    saved = camera_bias.detach().clone()
    try:
        with torch.no_grad():  # push the raw scale below the clamp (0.01), even negative
            camera_bias[0] -= (0.9 + 0.1) / model.head.iterations
        losses, hyps = run_step(model, batch, LossConfig(num_samples=4))
        raw = model.head(model.condition(batch))[1][:, 0].detach()  # eval mode: the same forward
    finally:
        with torch.no_grad():
            camera_bias.copy_(saved)
    assert (raw < 0.01).any() and torch.allclose(hyps.regressed_camera[:, 0], raw)
    want = sum(math.exp(-10 * float(s)) ** 2 for s in raw) / len(raw)
    assert losses.terms["camera_scale"].item() == pytest.approx(want, rel=1e-6)
    clamped = sum(math.exp(-10 * max(float(s), 0.01)) ** 2 for s in raw) / len(raw)
    assert want > 1.1 * clamped  # so the comparison above tells the raw scale from the clamped one
    torch.testing.assert_close(hyps.camera[:, 0].detach(), raw.clamp_min(0.01).float())  # the guard stays


def test_total_is_linear_in_each_weight(model):
    """Changing one weight changes the total by exactly that change times its (unweighted) term."""
    batch = make_batch(model)
    config = LossConfig(num_samples=4, random_2d_loss="all", random_2d_weight=1e-3)
    base, _ = run_step(model, batch, config)
    for name in LOSS_NAMES:
        if name in REGRESSOR_TERMS:  # 0 for the flow head (tests/test_regressor.py covers them)
            assert base.terms[name] == 0, name
            continue
        assert torch.isfinite(base.terms[name]) and base.terms[name] > 0, name
        field = f"{name}_weight"
        bumped, _ = run_step(model, batch, replace(config, **{field: getattr(config, field) + 0.25}))
        change = (bumped.total - base.total).item()
        assert change == pytest.approx(0.25 * base.terms[name].item(), rel=1e-6), name


def test_auto_falls_back_to_coco_per_image_without_valid_body_joints(model):
    """A mixture image whose files lack body joints (all invalid) is supervised on COCO-17 instead."""
    batch = make_batch(model)
    batch["body_joints_2d_valid"][1] = False  # image 1: no body joint known
    losses, hyps = run_step(model, batch, LossConfig(num_samples=4))
    joints = model.body.keypoints(hyps.rotmat[:, :1], hyps.shape[:, None], "body_joints")[:, 0].detach()
    mode = hyps.keypoints_2d[:, 0].detach().numpy()
    per_image = []
    for bi in range(3):
        if bi == 1:
            gt, ok = batch["keypoints_2d"][bi].numpy(), batch["keypoints_2d_valid"][bi].numpy()
            per_image.append(sum(np.abs(mode[bi, j] - gt[j]).sum() for j in range(17) if ok[j]))
        else:
            uv = _project_by_hand(joints[bi].numpy(), hyps.translation[bi].detach().numpy(), batch, bi)
            gt, ok = batch["body_joints_2d"][bi].numpy(), batch["body_joints_2d_valid"][bi].numpy()
            per_image.append(sum(np.abs(uv[j] - gt[j]).sum() for j in range(len(uv)) if ok[j]))
    assert losses.terms["keypoint_2d"].item() == pytest.approx(sum(per_image) / 3, rel=1e-6)
    forced, _ = run_step(model, batch, LossConfig(num_samples=4, keypoint_2d_set="body_joints"))
    assert forced.terms["keypoint_2d"].item() == pytest.approx((per_image[0] + per_image[2]) / 3, rel=1e-6)


@pytest.fixture(scope="module")
def regressor(model):
    from humr.model.humr_model import HumrModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reg = HumrModel(replace(TINY, pose_head="regressor"), model.body).double()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in reg.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return reg.eval()


def test_regressor_head_gives_copies_of_one_pose_and_no_likelihood(regressor):
    batch = make_batch(regressor)
    hyps = regressor(batch, num_samples=5, generator=torch.Generator().manual_seed(0), with_log_prob=True)
    assert hyps.log_prob is None and regressor.flow is None
    torch.testing.assert_close(hyps.rotmat, hyps.rotmat[:, :1].expand_as(hyps.rotmat), rtol=0, atol=0)
    with pytest.raises(ValueError, match="pose_head"):
        regressor.pose_log_prob(batch["pose"], regressor.condition(batch))


def test_regression_losses_by_hand(regressor):
    batch = make_batch(regressor)
    losses, hyps = run_step(regressor, batch, LossConfig(num_samples=4))
    rot, gt = hyps.rotmat[:, 0].detach().numpy(), batch["pose"].numpy()
    want_pose = np.mean([((rot[b, j] - gt[b, j]) ** 2).sum() for b in range(3) for j in range(22)])
    assert losses.terms["pose_regression"].item() == pytest.approx(want_pose, rel=1e-6)  # float32 hypotheses
    body = regressor.body
    pred = body.keypoints(hyps.rotmat[:, :1], hyps.shape[:, None], "body_joints")[:, 0].detach().numpy()
    true = body.keypoints(batch["pose"][:, None], batch["shape"][:, None], "body_joints")[:, 0].numpy()
    want_joints = np.mean([np.abs((pred[b, j] - pred[b, 0]) - (true[b, j] - true[b, 0])).sum()
                           for b in range(3) for j in range(22)])
    assert losses.terms["joints_3d"].item() == pytest.approx(want_joints, rel=1e-6)  # body in float32
    assert losses.terms["nll"] == 0  # no likelihood to maximise


def test_regressor_learns_the_pose_of_a_fixed_batch(regressor):
    """A few AdamW steps on one batch lower its 3D error: the head and its losses train together."""
    import copy

    reg = copy.deepcopy(regressor).train()
    batch = make_batch(reg, seed=3)
    config = LossConfig(num_samples=2, mmd_weight=0.0, mask_weight=0.0)
    opt = torch.optim.AdamW([p for p in reg.parameters() if p.requires_grad], lr=3e-3)
    first = None
    for _ in range(60):
        losses = training_losses(reg, batch, config, generator=torch.Generator().manual_seed(0))
        first = losses.terms["joints_3d"].item() if first is None else first
        opt.zero_grad()
        losses.total.backward()
        opt.step()
    assert losses.terms["joints_3d"].item() < 0.5 * first
