"""The training objective's joint rules, one optimisation on a fixed batch, resume, and bad configs."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import default_collate

from humr.bodies.base import ARTICULATED_COCO17
from humr.config import LossConfig
from humr.training.objective import (
    LOSS_NAMES,
    draw_sample_indices,
    invisible_joints,
    select_mmd_targets,
    training_losses,
)


def _batch(
    conf: list[float], inside: list[bool], has_samples: list[bool], m: int = 6
) -> dict[str, torch.Tensor]:
    """One image of 17 joints; ground truth at x = 0.1 * k (or 1.5 when outside the crop)."""
    k = 17
    gt = torch.stack([torch.linspace(-0.8, 0.8, k), torch.zeros(k)], -1)
    gt[~torch.tensor(inside), 0] = 1.5
    samples = torch.arange(k * m, dtype=torch.float32).reshape(k, m, 1).expand(k, m, 2) + 10.0
    valid = torch.tensor(has_samples)[:, None].expand(k, m).clone()
    return {
        "detector_keypoints": torch.cat([gt, torch.tensor(conf)[:, None]], -1)[None],
        "keypoints_2d": gt[None],
        "keypoints_2d_valid": torch.ones(1, k, dtype=torch.bool),
        "heatmap_samples": samples[None],
        "heatmap_sample_valid": valid[None],
    }


def test_mmd_target_rules_follow_section_4_5():
    k = 17
    conf = [0.9] * k
    inside, has = [True] * k, [True] * k
    wrist, elbow, knee, nose, ankle = 9, 7, 13, 0, 15
    conf[wrist] = 0.3  # articulated, uncertain, invisible -> heatmap samples
    conf[elbow] = 0.6  # articulated, uncertain, visible -> heatmap samples
    conf[nose] = 0.3  # not articulated, invisible -> inactive
    conf[knee] = 0.2
    has[knee] = False  # articulated, uncertain but no sample survived the cut -> inactive
    inside[ankle] = False  # ground truth outside the crop -> inactive
    batch = _batch(conf, inside, has)
    target, active = select_mmd_targets(batch, LossConfig(), n=4)
    expected_active = torch.ones(k, dtype=torch.bool)
    expected_active[[nose, knee, ankle]] = False
    assert torch.equal(active[0], expected_active)
    for j in (wrist, elbow):  # drawn from that joint's own samples, distinct
        drawn = target[0, j, :, 0]
        assert ((drawn >= 10 + 6 * j) & (drawn < 10 + 6 * (j + 1))).all() and drawn.unique().numel() == 4
    for j in (1, 5, 8, 16):  # confident joints: n copies of the ground truth
        assert torch.equal(target[0, j], batch["keypoints_2d"][0, j].expand(4, 2))


def test_reference_lower_cut_sends_least_confident_joints_to_ground_truth():
    conf = [0.9] * 17
    conf[9] = 0.1
    batch = _batch(conf, [True] * 17, [True] * 17)
    target, active = select_mmd_targets(batch, LossConfig(heatmap_min_confidence=0.15), n=3)
    assert bool(active[0, 9]) and torch.equal(target[0, 9], batch["keypoints_2d"][0, 9].expand(3, 2))
    target, _ = select_mmd_targets(batch, LossConfig(), n=3)
    assert (target[0, 9, :, 0] >= 10).all()  # the paper's rule: heatmap samples


def test_invisible_joints_are_low_confidence_or_outside_the_crop():
    conf = [0.9] * 17
    conf[3] = 0.4
    inside = [True] * 17
    inside[12] = False
    got = invisible_joints(_batch(conf, inside, [True] * 17), LossConfig())[0]
    assert got.nonzero().flatten().tolist() == [3, 12]


@settings(max_examples=40, deadline=None)
@given(
    valid_rows=st.lists(st.lists(st.booleans(), min_size=8, max_size=8), min_size=1, max_size=5),
    n=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_drawn_indices_are_valid_and_distinct_while_possible(valid_rows, n, seed):
    valid = torch.tensor(valid_rows)
    idx = draw_sample_indices(valid, n, torch.Generator().manual_seed(seed))
    assert idx.shape == (len(valid_rows), n)
    for row, picks in zip(valid, idx):
        count = int(row.sum())
        if count == 0:
            continue
        assert row[picks].all()
        assert picks.unique().numel() == min(n, count)


def test_articulated_joints_are_elbows_wrists_knees_ankles():
    from humr.bodies.base import COCO17_NAMES

    names = {COCO17_NAMES[i].removeprefix("coco_").split("_", 1)[1] for i in ARTICULATED_COCO17}
    assert names == {"elbow", "wrist", "knee", "ankle"}


@pytest.fixture(scope="module")
def module_and_batch(tiny_config, tiny_datasets):
    from humr.training.module import HumrLightning

    train_set, _ = tiny_datasets
    batch = default_collate([train_set[i] for i in range(8)])
    with torch.random.fork_rng(devices=[]):  # a fixed initialisation without touching the global RNG
        torch.manual_seed(0)
        module = HumrLightning(tiny_config)
    return module, batch


def test_every_loss_term_is_finite_and_active(module_and_batch):
    module, batch = module_and_batch
    losses = training_losses(module.model, batch, module.config.loss, torch.Generator().manual_seed(0))
    assert set(losses.terms) == set(LOSS_NAMES)
    for name in ("nll", "keypoint_2d", "shape", "orth", "mmd", "camera_scale"):
        value = losses.terms[name]
        assert torch.isfinite(value) and value.abs() > 0, name
    assert torch.isfinite(losses.terms["mask"])
    assert losses.terms["random_2d"] == 0  # off in the paper's configuration
    # (the total as the weighted sum: tests/test_objective_fidelity.py, linearity in each weight)
    losses.total.backward()
    model = module.model
    for part in (model.flow, model.head, model.condition.image_encoder, model.condition.pose_mlp):
        grads = [p.grad for p in part.parameters() if p.requires_grad]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), type(part).__name__


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(module_and_batch):
    module, batch = module_and_batch
    model = module.model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss(seed: int) -> torch.Tensor:
        return training_losses(model, batch, module.config.loss, torch.Generator().manual_seed(seed)).total

    model.eval()  # no dropout: the same seed gives the same loss
    with torch.no_grad():
        before = float(loss(1))
    model.train()
    for step in range(15):
        optimizer.zero_grad()
        loss(100 + step).backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        after = float(loss(1))
    assert after < before


def test_train_then_resume_continues_from_the_saved_step(tiny_config, tmp_path):
    from humr.experiment.run import train

    config = replace(
        tiny_config,
        train=replace(tiny_config.train, output_dir=str(tmp_path), max_steps=2, checkpoint_every=1),
    )
    _, last = train(config, progress=False)
    assert torch.load(last, weights_only=False)["global_step"] == 2
    assert (tmp_path / "config.json").is_file() and any((tmp_path / "logs").rglob("metrics.csv"))
    resumed = replace(config, train=replace(config.train, max_steps=3, resume="last"))
    _, last = train(resumed, progress=False)
    assert torch.load(last, weights_only=False)["global_step"] == 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("body", "smurf", "unknown body"),
        ("body", "smplx", "needs its model files"),
        ("loss.num_samples", 1, "at least 2"),
        ("train.resume", "/nonexistent/last.ckpt", "no checkpoint"),
        ("loss.random_2d_loss", "some", "random_2d_loss"),
        ("loss.shape_reduction", "max", "shape_reduction"),
        ("loss.orth_reduction", "both", "orth_reduction"),
        ("loss.mask_normalization", "mean", "mask_normalization"),
        ("loss.keypoint_2d_set", "smpl", "keypoint_2d_set"),
        ("loss.camera_scale_weight", -1.0, "camera_scale_weight"),
    ],
)
def test_bad_configuration_fails_before_training(tiny_config, field, value, message):
    from humr.config import override
    from humr.experiment.run import train

    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train(override(tiny_config, {field: value}), progress=False)


@pytest.mark.slow
def test_paper_full_recipe_runs_to_the_metrics_table(tiny_config, tmp_path):
    script = Path(__file__).resolve().parents[1] / "recipes" / "paper_full.py"
    result = subprocess.run(
        [
            sys.executable,
            str(script),
            "--tiny",
            "--output-dir",
            str(tmp_path),
            "--data.root",
            tiny_config.data.root,
            "--data.num_train",
            "24",
            "--data.num_test",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MPJPE" in result.stdout and "paper_full" in result.stdout
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert any((tmp_path / "plots").glob("hypotheses_*.png"))


def test_bfloat16_autocast_keeps_the_body_in_float32_and_the_losses_close(module_and_batch):
    module, batch = module_and_batch
    model = module.model.eval()
    with torch.no_grad():
        full = training_losses(model, batch, module.config.loss, torch.Generator().manual_seed(3))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = training_losses(model, batch, module.config.loss, torch.Generator().manual_seed(3))
            hyps = model(batch, num_samples=2, generator=torch.Generator().manual_seed(3))
    assert hyps.keypoints_3d.dtype == hyps.keypoints_2d.dtype == hyps.rotmat.dtype == torch.float32
    for name in ("nll", "keypoint_2d", "shape", "orth", "mmd"):
        torch.testing.assert_close(mixed.terms[name].float(), full.terms[name], rtol=0.05, atol=0.05)
