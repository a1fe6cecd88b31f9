"""Validation during training: a tiny run logs the validation columns, draws the learning curve,
and keeps its history across a resume; the ablation recipes' seeds flag and seed tables."""

from __future__ import annotations

import csv
import math
from dataclasses import replace

import pytest
import torch

from humr.eval.accumulator import format_table
from humr.experiment.recipe import parse_rows, parse_seeds, select_rows
from humr.training.validation import VALIDATION_METRICS, format_validation_line


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_tiny_run_writes_validation_columns_and_the_curve(tiny_config, tmp_path):
    from humr.experiment.data import build_validation_set
    from humr.experiment.evaluation import evaluate
    from humr.experiment.run import train

    config = replace(
        tiny_config,
        train=replace(tiny_config.train, output_dir=str(tmp_path), max_steps=3, checkpoint_every=1,
                      val_every=2, val_images=4, val_hypotheses=3),
    )
    module, last = train(config, progress=False)
    rows = [r for r in _rows(next((tmp_path / "logs").rglob("metrics.csv"))) if r.get("val/mpjpe_mode")]
    # every val_every steps and after the last one
    assert [int(r["step"]) for r in rows] == [2, 3]
    assert (tmp_path / "plots" / "learning_curve.png").stat().st_size > 0
    # the last row is the finished model measured on the first val_images of the validation split
    val_config = replace(config.eval, num_hypotheses=3, max_images=4, plots=False, pve=False)
    with torch.no_grad():
        again = evaluate(module.model.eval(), build_validation_set(config.data, config.body), val_config,
                         progress=False, seed=config.train.seed)
    for key in VALIDATION_METRICS:
        assert float(rows[-1][f"val/{key}"]) == pytest.approx(again[key], rel=1e-5), key
    # the history travels in the checkpoint and a resumed run continues it
    state = torch.load(last, weights_only=False)["callbacks"]
    history = next(v["history"] for k, v in state.items() if "PeriodicValidation" in k)
    assert [int(h["step"]) for h in history] == [2, 3] and all("train_loss" in h for h in history)
    resumed = replace(config, train=replace(config.train, max_steps=4, resume="last"))
    _, last = train(resumed, progress=False)
    state = torch.load(last, weights_only=False)["callbacks"]
    history = next(v["history"] for k, v in state.items() if "PeriodicValidation" in k)
    assert [int(h["step"]) for h in history] == [2, 3, 4]


def test_validation_line_names_every_metric():
    line = format_validation_line(500, {k: float(i) for i, k in enumerate(VALIDATION_METRICS)}, 1.25)
    assert line.startswith("val step 500: ") and line.endswith("(1.2 s)")
    for label in VALIDATION_METRICS.values():
        assert label in line


def test_seeds_flag_is_read_and_removed():
    argv = ["--steps", "5", "--seeds", "0,1,2", "--tiny"]
    assert parse_seeds(argv) == ((0, 1, 2), ["--steps", "5", "--tiny"])
    assert parse_seeds(["--seeds=3,4"]) == ((3, 4), [])
    assert parse_seeds(["--steps", "5"]) == (None, ["--steps", "5"])
    for bad in (["--seeds", "0,0"], ["--seeds", "a"], ["--seeds"]):
        with pytest.raises(SystemExit, match="--seeds"):
            parse_seeds(bad)


def test_rows_flag_selects_rows_by_run_name_in_table_order():
    from humr.ablations import table3_rows_with_regressor
    from humr.config import SYNTHETIC_CPU

    names, rest = parse_rows(["--steps", "5", "--rows", "table3_regressor,table3_3"])
    assert names == ("table3_regressor", "table3_3") and rest == ["--steps", "5"]
    assert parse_rows(["--steps", "5"]) == (None, ["--steps", "5"])
    rows = table3_rows_with_regressor(SYNTHETIC_CPU)
    picked = select_rows(rows, names)
    assert [config.name for _, config in picked] == ["table3_3", "table3_regressor"]
    assert select_rows(rows, None) == rows
    with pytest.raises(SystemExit, match="table3_9.*the rows are table3_0"):
        select_rows(rows, ("table3_9",))
    with pytest.raises(SystemExit, match="--rows"):
        parse_rows(["--rows", ","])
    # The ablation parser documents --seeds and --rows but leaves them to main_rows.
    from humr.experiment.cli import parse_config

    assert parse_config(SYNTHETIC_CPU, ["--steps", "5"], "", seeds=True).train.max_steps == 5


def test_seed_summaries_print_as_mean_plus_minus_std():
    table = format_table({"row": {"mpjpe_best": (110.04, 9.96, 3), "spread_vis": (50.0, math.nan, 1),
                                  "spread_invis": (90.0, 1.0, 1)}})
    assert "110.0±10.0" in table  # mean±std, the std with the cell's decimals
    assert "50.0 / 90.0±1.0" in table  # one seed: no ±
