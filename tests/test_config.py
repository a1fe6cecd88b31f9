"""Configs: round trips through JSON and the command line, and the ablations as config diffs."""

from __future__ import annotations

import dataclasses

import pytest

from humr.ablations import sample_count_rows, table3_rows, table_s2_rows
from humr.config import PAPER_FULL, SYNTHETIC_CPU, ExperimentConfig, load_config, override, save_config
from humr.training.cli import _leaves, parse_config


def _flat(config) -> dict:
    out = {}
    for name, value in dataclasses.asdict(config).items():
        if isinstance(value, dict):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    return out


def test_json_round_trip(tmp_path):
    for config in (PAPER_FULL, SYNTHETIC_CPU):
        save_config(config, tmp_path / "c.json")
        assert load_config(tmp_path / "c.json") == config


def test_every_field_is_overridable_from_the_command_line():
    argv, expected = [], {}
    for dotted, _hint in _leaves(ExperimentConfig):
        current = _flat(SYNTHETIC_CPU)[dotted]
        if isinstance(current, bool):
            new, text = not current, str(not current).lower()
        elif isinstance(current, int):
            new, text = current + 3, str(current + 3)
        elif isinstance(current, float):
            new, text = current * 2 + 1, repr(current * 2 + 1)
        elif isinstance(current, tuple):
            new, text = (0.5, 0.25), "0.5,0.25"
        else:  # str or None
            new, text = "x_" + str(current), "x_" + str(current)
        argv += [f"--{dotted}", text]
        expected[dotted] = new
    config = parse_config(SYNTHETIC_CPU, argv)
    flat = _flat(config)
    assert {k: flat[k] for k in expected} == expected


def test_aliases_and_errors():
    config = parse_config(
        SYNTHETIC_CPU, ["--steps", "7", "--body", "smplx", "--body-model-dir", "/x", "--devices", "2"]
    )
    assert (config.train.max_steps, config.body, config.body_model_path, config.train.devices) == (
        7,
        "smplx",
        "/x",
        2,
    )
    with pytest.raises(SystemExit):
        parse_config(SYNTHETIC_CPU, ["--loss.no_such_field", "1"])
    with pytest.raises(ValueError, match="no field"):
        override(SYNTHETIC_CPU, {"loss.no_such": 1})


def _diff(a: ExperimentConfig, b: ExperimentConfig) -> set[str]:
    fa, fb = _flat(a), _flat(b)
    return {k for k in fa if fa[k] != fb[k] and k != "name"}


def test_table3_adds_one_component_per_row():
    rows = table3_rows(SYNTHETIC_CPU)
    assert [label for label, _ in rows][-1].startswith("+ L_mask")
    assert _diff(rows[-1][1], SYNTHETIC_CPU) == set()  # the last row is the full model
    expected = [
        {"model.use_bbox_info"},
        {"model.use_pose_condition"},
        {"model.flow"},
        {"loss.mmd_weight"},
        {"loss.mask_weight"},
    ]
    for (_, prev), (_, cur), want in zip(rows, rows[1:], expected):
        assert _diff(prev, cur) == want
    assert rows[0][1].model.flow == "glow" and rows[0][1].loss.mmd_weight == 0


def test_table_s2_and_sample_count_rows():
    rows = dict(table_s2_rows(SYNTHETIC_CPU))
    assert all(c.loss.mask_weight == 0 for c in rows.values())
    assert rows["L_MMD (ours)"].loss.mmd_weight == SYNTHETIC_CPU.loss.mmd_weight
    vis = rows["L_2D-vis, lambda=0.005"]
    assert (vis.loss.random_2d_loss, vis.loss.random_2d_weight, vis.loss.mmd_weight) == (
        "visible",
        0.005,
        0.0,
    )
    counts = [c.loss.num_samples for _, c in sample_count_rows(SYNTHETIC_CPU, (2, 25))]
    assert counts == [2, 25]


def test_paper_config_holds_the_papers_numbers():
    loss, model = PAPER_FULL.loss, PAPER_FULL.model
    assert (
        loss.shape_weight,
        loss.keypoint_2d_weight,
        loss.nll_weight,
        loss.orth_weight,
        loss.mmd_weight,
        loss.mask_weight,
    ) == (5e-4, 1e-2, 1e-1, 1e-1, 5e-2, 1e-1)
    assert (loss.num_samples, loss.uncertain_threshold, loss.visibility_threshold) == (25, 0.7, 0.5)
    assert loss.mmd_bandwidths == (0.05, 0.2, 0.9)
    assert (model.flow_layers, model.flow_hidden, model.flow_clamp, model.image_features) == (
        8,
        1024,
        2.0,
        720,
    )
    assert (PAPER_FULL.train.lr, PAPER_FULL.train.weight_decay, PAPER_FULL.data.batch_size) == (
        1e-4,
        1e-4,
        64,
    )
