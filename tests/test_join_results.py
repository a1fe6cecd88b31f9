"""Joining ablation results written by separate processes: humr.experiment.join."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from humr.eval.seeds import aggregate_rows
from humr.experiment.join import compare_rows, join_results

ROOT = Path(__file__).resolve().parents[1]


def _ablation_folder(folder: Path, rows: dict[str, dict[int, float]], data_seed: int = 0) -> Path:
    """A folder shaped like ablation_table3.py's output: results.json and one config per (row, seed)."""
    per_seed = {label: {str(s): {"mpjpe_best": v, "spread_invis": 2 * v} for s, v in seeds.items()}
                for label, seeds in rows.items()}
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"seeds": [], "per_seed": per_seed}))
    for i, seeds in enumerate(rows.values()):
        for s in seeds:
            run = folder / f"row{i}" / f"seed{s}"
            run.mkdir(parents=True)
            (run / "config.json").write_text(json.dumps({"data": {"seed": data_seed}, "train": {"seed": s}}))
    return folder


def _single_run(folder: Path, value: float, seed: int, data_seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"data": {"seed": data_seed}, "train": {"seed": seed}}))
    (folder / "metrics.json").write_text(json.dumps({"mpjpe_best": value, "spread_invis": 2 * value}))
    return folder


def test_joined_rows_aggregate_like_numpy(tmp_path):
    a = _ablation_folder(tmp_path / "a", {"A": {0: 100.0, 1: 104.0}})
    b = _ablation_folder(tmp_path / "b", {"A": {2: 111.0}, "B": {0: 90.0}})
    run = _single_run(tmp_path / "main", 95.0, seed=1)
    joined = join_results([a, b / "results.json"], {"B": run})
    assert {k: sorted(v) for k, v in joined.items()} == {"A": [0, 1, 2], "B": [0, 1]}
    table = aggregate_rows(joined)
    values = np.array([100.0, 104.0, 111.0])
    assert table["A"]["mpjpe_best"][:2] == pytest.approx((values.mean(), values.std(ddof=1)))
    changes = dict((k, (d, sep)) for k, d, sep in compare_rows(table, "A", "B", ["mpjpe_best", "pve_best"]))
    assert set(changes) == {"mpjpe_best"}  # a metric neither row has is left out
    delta, sep = changes["mpjpe_best"]
    assert delta == pytest.approx(92.5 - values.mean())
    assert sep == (abs(delta) > max(values.std(ddof=1), np.std([90.0, 95.0], ddof=1)))


def test_same_row_and_seed_twice_is_refused(tmp_path):
    a = _ablation_folder(tmp_path / "a", {"A": {0: 100.0}})
    b = _ablation_folder(tmp_path / "b", {"A": {0: 101.0}})
    with pytest.raises(ValueError, match="'A', seed 0: found in both"):
        join_results([a, b])


def test_different_data_seeds_are_refused(tmp_path):
    a = _ablation_folder(tmp_path / "a", {"A": {0: 100.0}}, data_seed=0)
    b = _ablation_folder(tmp_path / "b", {"B": {0: 101.0}}, data_seed=1)
    with pytest.raises(ValueError, match="different data seeds"):
        join_results([a, b])
    with pytest.raises(ValueError, match="different data seeds"):
        join_results([a], {"B": _single_run(tmp_path / "run", 1.0, seed=0, data_seed=1)})


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing/results.json: not found"):
        join_results([tmp_path / "missing"])
    (tmp_path / "single").mkdir()
    (tmp_path / "single" / "results.json").write_text(json.dumps({"A": {"mpjpe_best": 1.0}}))
    with pytest.raises(ValueError, match="no 'per_seed'"):
        join_results([tmp_path / "single"])
    with pytest.raises(ValueError, match="nothing to join"):
        join_results([])
    table = aggregate_rows({"A": {0: {"x": 1.0}}})
    with pytest.raises(ValueError, match="row 'Z': not in the table"):
        compare_rows(table, "A", "Z", ["x"])


def test_recipe_writes_the_joined_table_and_picture(tmp_path):
    a = _ablation_folder(tmp_path / "a", {"A": {0: 100.0, 1: 104.0}})
    b = _ablation_folder(tmp_path / "b", {"B": {0: 90.0, 1: 92.0}})
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(ROOT / "recipes" / "join_results.py"), str(a), str(b),
                           "--out", str(out), "--compare", "A>B"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "B vs A: mpjpe_best -11.00 (>1 std)" in done.stdout
    saved = json.loads((out / "results.json").read_text())
    assert saved["per_seed"]["B"]["1"]["mpjpe_best"] == 92.0
    assert (out / "rows.png").stat().st_size > 0
    bad = subprocess.run([sys.executable, str(ROOT / "recipes" / "join_results.py"), str(a),
                          "--compare", "A"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "expected 'A>B'" in bad.stderr
