"""Join ablation results trained in several processes (or on several machines) into one table.

``recipes/ablation_table3.py --rows ... --seeds ...`` writes ``<dir>/results.json`` with the
metrics of every (row, seed) it trained; a single run (``recipes/paper_full.py``) writes
``<dir>/metrics.json`` and ``<dir>/config.json``. :func:`join_results` merges them into
``{row: {seed: metrics}}``, refusing what cannot belong to one table: a (row, seed) found twice,
or runs trained on different data seeds (a table is about one data set; compare data seeds
side by side, never pooled).

    python recipes/join_results.py runs/t3_a runs/t3_b --run "+ L_mask (full)=runs/main" --out runs/t3
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from humr.eval.seeds import Summary, separated

__all__ = ["join_results", "compare_rows"]

PerSeed = dict[str, dict[int, dict[str, Any]]]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (expected the output of an ablation recipe or a run)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None


def _data_seeds(folder: Path) -> set[int]:
    """The ``data.seed`` of every run config below ``folder`` (the run itself or its rows' seeds)."""
    configs = [folder / "config.json"] if (folder / "config.json").is_file() else []
    configs += sorted(folder.glob("*/seed*/config.json")) + sorted(folder.glob("*/config.json"))
    return {int(_read_json(c)["data"]["seed"]) for c in configs}


def _check_one_data_seed(data_seeds: Mapping[int, str]) -> None:
    if len(data_seeds) > 1:
        seeds = dict(sorted(data_seeds.items()))
        raise ValueError(f"runs of different data seeds cannot share a table: {seeds}")


def _add(joined: PerSeed, sources: dict[tuple[str, int], str], label: str, seed: int,
         metrics: Mapping[str, Any], source: str) -> None:
    if (label, seed) in sources:
        raise ValueError(f"row {label!r}, seed {seed}: found in both {sources[(label, seed)]} and {source}")
    sources[(label, seed)] = source
    joined.setdefault(label, {})[seed] = dict(metrics)


def join_results(folders: Sequence[str | Path] = (), runs: Mapping[str, str | Path] | None = None) -> PerSeed:
    """``{row: {seed: metrics}}`` from ablation output folders and single runs.

    Args:
        folders: folders (or their ``results.json``) written by an ablation recipe with ``--seeds``.
        runs: row label -> folder of a single run (``metrics.json``, ``config.json``; the seed is
            its ``train.seed``), e.g. the main job as the full model's row.

    Raises:
        ValueError: a (row, seed) twice, a results file without per-seed results, runs of
            different data seeds, or nothing to join.
    """
    joined: PerSeed = {}
    sources: dict[tuple[str, int], str] = {}
    data_seeds: dict[int, str] = {}
    for item in folders:
        path = Path(item)
        folder, file = (path.parent, path) if path.suffix == ".json" else (path, path / "results.json")
        data_seeds.update({s: str(folder) for s in _data_seeds(folder)})
        _check_one_data_seed(data_seeds)
        results = _read_json(file)
        if not isinstance(results, Mapping) or "per_seed" not in results:
            raise ValueError(f"{file}: no 'per_seed' results (run the ablation with --seeds)")
        for label, seeds in results["per_seed"].items():
            for seed, metrics in seeds.items():
                _add(joined, sources, label, int(seed), metrics, str(file))
    for label, folder in (runs or {}).items():
        folder = Path(folder)
        config = _read_json(folder / "config.json")
        data_seeds.setdefault(int(config["data"]["seed"]), str(folder))
        _check_one_data_seed(data_seeds)
        metrics = _read_json(folder / "metrics.json")
        _add(joined, sources, label, int(config["train"]["seed"]), metrics, str(folder))
    if not joined:
        raise ValueError("nothing to join: pass at least one results folder or run")
    return joined


def compare_rows(
    table: Mapping[str, Mapping[str, Summary]], before: str, after: str, keys: Sequence[str]
) -> list[tuple[str, float, bool]]:
    """``[(metric, mean(after) - mean(before), separated by more than one std), ...]``."""
    for label in (before, after):
        if label not in table:
            raise ValueError(f"row {label!r}: not in the table (rows: {list(table)})")
    return [(k, table[after][k][0] - table[before][k][0], separated(table[before], table[after], k))
            for k in keys if k in table[before] and k in table[after]]

