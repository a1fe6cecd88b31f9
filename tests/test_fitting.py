"""humr.fitting: the flow as a conditional prior for fitting to 2D keypoints (issue 17)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.cameras import crop_to_image, estimate_focal, project_to_crop
from humr.fitting import FitConfig, KeypointFit, fit_keypoints, geman_mcclure, keypoint_targets
from humr.model.humr_model import HumrModel
from humr.rotations import axis_angle_to_matrix, rot6d_to_matrix

TORCH_THREADS = 1  # many small operations: far faster on one thread of a shared machine
FIELDS = ("pose6d", "rotmat", "shape", "camera", "translation", "keypoints_3d", "keypoints_2d",
          "regressed_shape", "regressed_camera")


def perturb_flow(model: HumrModel, seed: int, scale: float = 0.05) -> HumrModel:
    """A flow that is not the identity (a fresh flow's last layers are zero), without the global RNG."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def model(tiny_config) -> HumrModel:
    from humr.training.module import build_model

    with torch.random.fork_rng(devices=[]):  # a fixed initialisation without touching the global RNG
        torch.manual_seed(0)
        model = build_model(tiny_config)
    return perturb_flow(model, seed=0)


@pytest.fixture(scope="module")
def batch(model, tiny_config) -> dict[str, torch.Tensor]:
    """Three hand-built images: noise crops, boxes in a 1000 x 800 image, detector keypoints of a
    random Anny pose seen by a weak-perspective camera, plus noise, with confidences in [0.3, 1]."""
    g = torch.Generator().manual_seed(7)
    size = tiny_config.data.image_size
    image_size = torch.tensor([[1000.0, 800.0]]).expand(3, 2)
    center = torch.tensor([[500.0, 400.0], [300.0, 350.0], [640.0, 360.0]])
    box_size = torch.tensor([300.0, 250.0, 400.0])
    pose = axis_angle_to_matrix(0.3 * torch.randn(3, model.num_pose_joints, 3, generator=g))
    with torch.no_grad():
        points = model.body.keypoints(pose, model.body.mean_shape(3), "coco17")
    camera = torch.tensor([[0.9, 0.0, 0.1], [0.8, 0.05, 0.0], [1.0, -0.05, 0.15]])
    focal = estimate_focal(image_size)
    box = {"center": center, "box_size": box_size, "focal": focal, "image_size": image_size}
    xy = project_to_crop(points, camera, *box.values()) + 0.02 * torch.randn(3, 17, 2, generator=g)
    confidence = 0.3 + 0.7 * torch.rand(3, 17, 1, generator=g)
    image = torch.rand(3, 3, size, size, generator=g)
    return {"image": image, "detector_keypoints": torch.cat([xy, confidence], -1), **box}


def sub_batch(batch, rows: slice) -> dict[str, torch.Tensor]:
    return {k: v[rows] for k, v in batch.items()}


def planted_keypoints(model, batch, latent, camera) -> torch.Tensor:
    """COCO-17 crop keypoints ``(B, S, 17, 2)`` of latents and cameras, by the model's own pieces."""
    with torch.no_grad():
        context = model.condition(batch)
        shape = model.body.constrain_shape(model.head(context)[0])
        pose6d = model.flow.transform(latent, context) + model.pose_offset
        rotmat = rot6d_to_matrix(pose6d.reshape(*latent.shape[:2], -1, 6))
        points = model.body.keypoints(rotmat, shape[:, None].expand(-1, latent.shape[1], -1), "coco17")
        box = [batch[k][:, None] for k in ("center", "box_size", "focal", "image_size")]
        return project_to_crop(points, camera[:, None], *box)


def reprojection_pixels(keypoints_2d, targets) -> torch.Tensor:
    """Mean distance ``(B, S)`` in pixels of a 256 crop."""
    return (keypoints_2d - targets[:, None, :, :2]).norm(dim=-1).mean(-1) * 128


@pytest.mark.parametrize("pose_prior", ["flow", "none"])
def test_zero_steps_reproduce_the_models_hypotheses(model, batch, pose_prior):
    """Before any step, the fit decodes exactly what HumrModel.forward gives (same draws)."""
    config = FitConfig(steps=0, pose_prior=pose_prior)
    seed = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    fitted = fit_keypoints(model, batch, config=config, num_samples=2, generator=seed())
    with torch.no_grad():
        expected = model(batch, num_samples=2, generator=seed(), with_log_prob=True)
    for name in FIELDS:
        torch.testing.assert_close(getattr(fitted, name), getattr(expected, name), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fitted.log_prob, expected.log_prob, atol=1e-3, rtol=1e-4)


def test_the_regressor_head_fits_without_a_prior_only(model, batch, tiny_config):
    """A model whose pose head is a regressor: no flow prior; without one the fit starts from its pose."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        regressor = HumrModel(replace(tiny_config.model, pose_head="regressor"), model.body).eval()
    with pytest.raises(ValueError, match="needs the flow pose head"):
        KeypointFit(regressor, batch)
    fitted = fit_keypoints(regressor, batch, config=FitConfig(steps=0, pose_prior="none"), num_samples=1)
    with torch.no_grad():
        expected = regressor(batch, num_samples=1)
    for name in FIELDS:
        torch.testing.assert_close(getattr(fitted, name), getattr(expected, name), atol=1e-5, rtol=1e-5)
    assert fitted.log_prob is None


def test_fitting_recovers_a_planted_latent(model, batch):
    """Keypoints of a known latent and camera are fitted from z = 0 to well under a pixel."""
    batch = sub_batch(batch, slice(0, 2))
    generator = torch.Generator().manual_seed(1)
    latent = 0.2 * torch.randn(2, 1, 6 * model.num_pose_joints, generator=generator)
    with torch.no_grad():
        camera = model.clamp_camera(model.head(model.condition(batch))[1])
    camera = camera * torch.tensor([1.1, 1.0, 1.0]) + torch.tensor([0.0, 0.05, -0.04])
    targets = torch.cat([planted_keypoints(model, batch, latent, camera)[:, 0], torch.ones(2, 17, 1)], -1)
    config = FitConfig(steps=60, optimizer="lbfgs", lr=1.0, latent_weight=0.0, sigma=1e3)
    fit = KeypointFit(model, batch, targets, config)
    before = reprojection_pixels(fit.hypotheses().keypoints_2d, targets)
    after = reprojection_pixels(fit.run().hypotheses().keypoints_2d, targets)
    assert before.min() > 5.0  # the mode is far from the planted pose
    assert after.max() < 1.0


def test_objective_decreases_monotonically_under_lbfgs(model, batch):
    """Each L-BFGS iteration's strong-Wolfe line search accepts only steps with sufficient decrease
    E(x + t d) <= E(x) + c1 t grad(E).d < E(x) (d a descent direction), and when the search gives up
    it returns the lowest point of its bracket, which starts at t = 0; so the objective never rises,
    on any problem. (Adam, the default, has no such guarantee.)"""
    config = FitConfig(steps=0, optimizer="lbfgs", lr=1.0, fit_shape=True)
    fit = KeypointFit(model, batch, config=config, num_samples=1, generator=torch.Generator().manual_seed(2))
    values = [float(fit.objective().detach())]
    for _ in range(12):
        fit.step()
        values.append(float(fit.objective().detach()))
    assert values[-1] < 0.9 * values[0]
    for before, after in zip(values, values[1:]):
        assert after <= before * (1 + 1e-6)


def test_a_huge_prior_keeps_the_fit_at_the_mode(model, batch):
    """Without the prior the latent moves far from 0; with a huge weight the pose stays the mode's."""
    batch = sub_batch(batch, slice(0, 2))
    base = FitConfig(steps=15, optimizer="lbfgs", lr=1.0, fit_camera=False)
    free = KeypointFit(model, batch, config=replace(base, latent_weight=0.0)).run()
    held = KeypointFit(model, batch, config=replace(base, latent_weight=1e8)).run()
    mode = KeypointFit(model, batch, config=replace(base, steps=0)).hypotheses()
    assert free.variables["latent"].norm(dim=-1).min() > 0.5
    assert held.variables["latent"].abs().max() < 1e-3
    torch.testing.assert_close(held.hypotheses().keypoints_3d, mode.keypoints_3d, atol=1e-4, rtol=0)


def test_batched_fitting_equals_fitting_each_image_alone(model, batch):
    """With Adam the objective is a sum of per-image terms and the update is elementwise."""
    generator = torch.Generator().manual_seed(4)
    start = torch.randn(3, 3, 6 * model.num_pose_joints, generator=generator)
    start[:, 0] = 0
    config = FitConfig(steps=8, fit_shape=True)
    together = KeypointFit(model, batch, config=config, start=start).run().hypotheses()
    for i in range(3):
        rows = slice(i, i + 1)
        alone = KeypointFit(model, sub_batch(batch, rows), config=config, start=start[rows])
        alone = alone.run().hypotheses()
        for name in FIELDS:
            torch.testing.assert_close(
                getattr(alone, name), getattr(together, name)[rows], atol=2e-4, rtol=1e-4
            )


def test_free_shape_stays_in_the_bodys_range(model, batch):
    config = FitConfig(steps=5, lr=0.5, fit_shape=True, shape_weight=0.0)
    fit = KeypointFit(model, batch, config=config).run()
    low, high = model.body.shape_range
    assert not torch.equal(fit.variables["shape"], fit.shape0)  # it moved
    shape = fit.hypotheses().shape
    assert shape.min() >= low and shape.max() <= high


def test_image_pixel_targets_equal_crop_targets(batch):
    detector = batch["detector_keypoints"]
    pixels = crop_to_image(detector[..., :2], batch["center"], batch["box_size"])
    targets = keypoint_targets(batch, torch.cat([pixels, detector[..., 2:]], -1), units="image")
    torch.testing.assert_close(targets, detector, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="keypoints: expected shape"):
        keypoint_targets(batch, detector[:, :5])


@settings(max_examples=50, deadline=None)
@given(r=st.floats(-1e4, 1e4, allow_nan=False), sigma=st.floats(0.1, 100.0))
def test_geman_mcclure_is_quadratic_near_zero_and_bounded(r, sigma):
    """0 <= rho(r) <= min(r^2, sigma^2), rho(sigma) = sigma^2 / 2, even in r."""
    rho = float(geman_mcclure(torch.tensor(r, dtype=torch.float64), sigma))
    assert 0.0 <= rho <= min(r * r, sigma * sigma) * (1 + 1e-12)
    assert rho == pytest.approx(float(geman_mcclure(torch.tensor(-r, dtype=torch.float64), sigma)))
    at_sigma = float(geman_mcclure(torch.tensor(sigma, dtype=torch.float64), sigma))
    assert at_sigma == pytest.approx(sigma**2 / 2)


def test_bad_config_and_start_raise(model, batch):
    with pytest.raises(ValueError, match="optimizer"):
        FitConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="latent_weight"):
        FitConfig(latent_weight=-1.0)
    with pytest.raises(ValueError, match="start: expected latents of shape"):
        KeypointFit(model, batch, start=torch.zeros(3, 1, 5))


def test_fitting_works_with_smplx(tiny_config, batch, tmp_path):
    """The same fit through SMPL-X's fast keypoint path (stand-in model files, 10 betas)."""
    from humr.bodies.smplx_body import SMPLXBody
    from humr.testing.body_files import write_smplx_npz

    path = write_smplx_npz(tmp_path / "SMPLX_NEUTRAL.npz", num_vertices=9930, num_shape_components=20)
    smplx_model = perturb_flow(HumrModel(tiny_config.model, SMPLXBody(path, num_shape=10)), seed=5)
    fit = KeypointFit(smplx_model, batch, config=FitConfig(steps=0, optimizer="lbfgs", fit_shape=True))
    before = float(fit.objective().detach())
    fitted = fit.run(4).hypotheses()
    assert float(fit.objective().detach()) < before
    assert fitted.keypoints_2d.shape == (3, 1, 17, 2) and fitted.shape.shape == (3, 10)


def test_evaluate_fitting_rows_start_from_the_models_hypotheses(model, tiny_config, tiny_datasets):
    """A fit of zero steps has exactly the metrics of the model's own hypotheses (same starts),
    and a fit of a few steps lowers the mode's 2D error to the detector keypoints' ground truth."""
    from humr.experiment.fit_eval import evaluate_fitting

    eval_config = replace(tiny_config.eval, max_images=4, batch_size=2, pve=False)
    rows = {
        "model": (None, 2),
        "zero steps": (FitConfig(steps=0), 2),
        "fitted mode": (FitConfig(steps=30), 0),
    }
    results = evaluate_fitting(model, tiny_datasets[1], eval_config, rows, progress=False)
    metrics = {row: {k: v for k, v in m.items() if k != "fit_seconds"} for row, m in results.items()}
    assert metrics["zero steps"] == pytest.approx(metrics["model"], rel=1e-6, nan_ok=True)
    assert results["fitted mode"]["kp2d_mode"] < results["model"]["kp2d_mode"]
    assert "mpjpe_best" not in results["fitted mode"] and results["fitted mode"]["num_images"] == 4
