"""What the scripts in ``recipes/`` call: parse a config, run, print the table, save results."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from humr.config import PAPER_FULL, SYNTHETIC_CPU, ExperimentConfig
from humr.experiment.cli import ROWS_FLAG, SEEDS_FLAG, TINY_FLAG, parse_config

__all__ = ["TINY_FLAG", "SEEDS_FLAG", "ROWS_FLAG", "tiny", "defaults_for", "parse_seeds", "parse_rows",
           "select_rows", "main_full", "main_rows", "main_evaluate"]


def tiny(config: ExperimentConfig) -> ExperimentConfig:
    """A budget that runs end to end in well under a minute (for smoke tests and CI).

    HRNet-W48 keeps its 720 features (its width is fixed); other encoders shrink to 32.
    """
    features = config.model.image_features
    return replace(
        config,
        data=replace(config.data, num_train=48, num_test=16, num_val=8, batch_size=8),
        train=replace(
            config.train,
            max_steps=4,
            log_every=1,
            checkpoint_every=2,
            warmup_steps=min(config.train.warmup_steps, 1),
            val_every=min(config.train.val_every, 2),
            val_images=8,
            val_hypotheses=4,
        ),
        eval=replace(config.eval, num_hypotheses=8, max_images=16, batch_size=8),
        model=replace(
            config.model,
            flow=replace(
                config.model.flow,
                hidden_features=min(config.model.flow.hidden_features, 64),
                num_layers=min(config.model.flow.num_layers, 2),
            ),
            head_hidden=min(config.model.head_hidden, 64),
            image_features=features if config.model.encoder == "hrnet_w48" else min(features, 32),
        ),
    )


def defaults_for(argv: list[str]) -> ExperimentConfig:
    """The synthetic CPU default unless ``--data`` names a real data set (then the paper's config)."""
    data = None
    for i, arg in enumerate(argv):
        if arg in ("--data", "--data.dataset") and i + 1 < len(argv):
            data = argv[i + 1]
        elif arg.startswith(("--data=", "--data.dataset=")):
            data = arg.split("=", 1)[1]
    base = SYNTHETIC_CPU if data in (None, "synthetic") else PAPER_FULL
    return tiny(base) if TINY_FLAG in argv else base


def _split_flags(argv: list[str] | None) -> list[str]:
    return list(sys.argv[1:] if argv is None else argv)


def _recipe_doc() -> str:
    """The running recipe's docstring (its usage examples) for ``--help``."""
    return getattr(sys.modules.get("__main__"), "__doc__", None) or ""


def _save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def main_full(
    argv: list[str] | None = None,
    description: str = "",
    config_fn: Callable[[ExperimentConfig], ExperimentConfig] | None = None,
    output_dir: str | None = None,
) -> dict[str, Any]:
    """Train and evaluate one configuration; print the Tables 1/2-style metrics.

    ``config_fn`` turns the default config into the recipe's own (e.g.
    :func:`humr.ablations.regressor_baseline`) before the command line overrides it;
    ``output_dir`` replaces the default output folder.
    """
    from humr.eval.accumulator import format_table
    from humr.experiment.run import run_experiment

    argv = _split_flags(argv)
    defaults = defaults_for(argv)
    if config_fn is not None:
        defaults = config_fn(defaults)
    if output_dir is not None:
        defaults = replace(defaults, train=replace(defaults.train, output_dir=output_dir))
    config = parse_config(defaults, argv, description or _recipe_doc(), tiny=True)
    start = time.perf_counter()
    metrics = run_experiment(config)
    metrics["wall_seconds"] = time.perf_counter() - start
    print(
        format_table(
            {config.name: metrics},
            num_hypotheses=config.eval.num_hypotheses,
            title=f"{config.name}: {config.data.dataset}, body {config.body}",
        )
    )
    out = Path(config.train.output_dir)
    _save(metrics, out / "metrics.json")
    print(
        f"wall time {metrics['wall_seconds']:.0f} s (train {metrics['train_seconds']:.0f} s, "
        f"evaluate {metrics['eval_seconds']:.0f} s); checkpoint {metrics['checkpoint']}; results in {out}"
    )
    return metrics


#: Panels of the ablation picture (:func:`humr.eval.plots.plot_rows_with_seeds`).
ROW_PANELS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("3D spread [mm]", (("spread_vis", "visible"), ("spread_invis", "invisible"))),
    ("best of N [mm]", (("mpjpe_best", "MPJPE"), ("pve_best", "PVE"))),
    ("PercIn [%]", (("perc_in", "PercIn"),)),
    ("MinDist [px]", (("min_dist", "MinDist"),)),
)


def _pop_flag(argv: list[str], flag: str) -> tuple[str | None, list[str]]:
    """The value of ``flag`` (``--flag V`` or ``--flag=V``) and ``argv`` without it; None if absent."""
    rest = list(argv)
    for i, arg in enumerate(rest):
        if arg == flag or arg.startswith(flag + "="):
            value = arg.split("=", 1)[1] if "=" in arg else (rest[i + 1] if i + 1 < len(rest) else "")
            del rest[i : i + (1 if "=" in arg else 2)]
            return value, rest
    return None, rest


def parse_seeds(argv: list[str]) -> tuple[tuple[int, ...] | None, list[str]]:
    """``--seeds 0,1,2`` (training seeds of every row) out of ``argv``: ``(seeds or None, the rest)``."""
    value, rest = _pop_flag(argv, SEEDS_FLAG)
    if value is None:
        return None, rest
    try:
        seeds = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        seeds = ()
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"{SEEDS_FLAG}: expected distinct integers like 0,1,2, found {value!r}")
    return seeds, rest


def parse_rows(argv: list[str]) -> tuple[tuple[str, ...] | None, list[str]]:
    """``--rows table3_3,table3_4`` (the run names of the rows to train) out of ``argv``."""
    value, rest = _pop_flag(argv, ROWS_FLAG)
    if value is None:
        return None, rest
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    if not names:
        raise SystemExit(f"{ROWS_FLAG}: expected run names like table3_3,table3_4, found {value!r}")
    return names, rest


def select_rows(
    rows: list[tuple[str, ExperimentConfig]], names: tuple[str, ...] | None
) -> list[tuple[str, ExperimentConfig]]:
    """The rows whose run name is in ``names`` (all when None); an unknown name lists the known ones."""
    if names is None:
        return rows
    known = [config.name for _, config in rows]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"{ROWS_FLAG}: unknown row {', '.join(unknown)}; the rows are {', '.join(known)}")
    return [(label, config) for label, config in rows if config.name in names]


def main_rows(
    rows_fn: Callable[[ExperimentConfig], list[tuple[str, ExperimentConfig]]],
    title: str,
    output_dir: str,
    argv: list[str] | None = None,
    default_steps: int = 600,
) -> dict[str, Any]:
    """Train and evaluate every row of an ablation; print one table with a row per config.

    ``--rows table3_3,table3_4`` trains only the rows with those run names (e.g. to spread one
    table over several machines; ``humr.eval.seeds.aggregate_rows`` joins their ``per_seed``).
    With ``--seeds 0,1,2`` every row is trained once per seed (``train.seed``; the data stay those
    of ``data.seed``), each cell prints ``mean±std`` over the seeds (sample std), and
    ``rows.png`` puts the rows side by side. Results (per seed and aggregated) go to
    ``<output_dir>/results.json``.
    """
    from humr.eval.accumulator import format_table
    from humr.experiment.run import run_experiment

    seeds, argv = parse_seeds(_split_flags(argv))
    row_names, argv = parse_rows(argv)
    base = defaults_for(argv)
    if TINY_FLAG not in argv:
        base = replace(base, train=replace(base.train, max_steps=default_steps))
    base = replace(base, train=replace(base.train, output_dir=output_dir))
    full = parse_config(base, argv, _recipe_doc() or title, tiny=True, seeds=True)
    root = Path(full.train.output_dir)
    per_seed: dict[str, dict[int, dict[str, Any]]] = {}
    for label, config in select_rows(rows_fn(full), row_names):
        for seed in seeds or (config.train.seed,):
            out = root / config.name / f"seed{seed}" if seeds else root / config.name
            run = replace(config, train=replace(config.train, seed=seed, output_dir=str(out)))
            print(f"== {label}, seed {seed} ({run.train.max_steps} steps)", flush=True)
            per_seed.setdefault(label, {})[seed] = run_experiment(run, plots=False)
    if seeds:
        title = f"{title} (mean±std over seeds {','.join(map(str, seeds))}; data seed {full.data.seed})"
        return report_seeded_rows(per_seed, root, title, full.eval.num_hypotheses, seeds)
    table = {label: next(iter(runs.values())) for label, runs in per_seed.items()}
    print(format_table(table, num_hypotheses=full.eval.num_hypotheses, title=title))
    _save(table, root / "results.json")
    return table


def report_seeded_rows(
    per_seed: dict[str, dict[int, dict[str, Any]]], root: Path, title: str,
    num_hypotheses: int | str = "S", seeds: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Print the mean±std table of ``{row: {seed: metrics}}``, write ``root/rows.png`` and
    ``root/results.json`` (per seed and aggregated); returns what the JSON holds."""
    from humr.eval.accumulator import format_table
    from humr.eval.plots import plot_rows_with_seeds
    from humr.eval.seeds import aggregate_rows

    table = aggregate_rows(per_seed)
    seeds = list(seeds) if seeds is not None else sorted({s for runs in per_seed.values() for s in runs})
    print(format_table(table, num_hypotheses=num_hypotheses, title=title))
    root.mkdir(parents=True, exist_ok=True)
    plot_rows_with_seeds(table, ROW_PANELS, root / "rows.png")
    results: dict[str, Any] = {"seeds": seeds, "per_seed": per_seed, "aggregate": table}
    _save(results, root / "results.json")
    return results


#: What ``recipes/evaluate.py`` may change of a checkpoint's config: the rest is the trained network.
EVALUATE_MAY_CHANGE = ("name", "body_model_path", "data.", "eval.")


def _evaluation_config(ckpt: Path, rest: list[str], description: str) -> ExperimentConfig:
    from humr.config import flat_config
    from humr.training.checkpoint import checkpoint_config, read_checkpoint

    try:
        stored = checkpoint_config(read_checkpoint(ckpt, mmap=True), ckpt)
    except ValueError as err:
        raise SystemExit(f"evaluate: {err}") from None
    config = parse_config(stored, rest, description)
    old, new = flat_config(stored), flat_config(config)
    fixed = [k for k in new if old[k] != new[k] and not k.startswith(EVALUATE_MAY_CHANGE)]
    if fixed:
        raise SystemExit(
            f"evaluate: {', '.join('--' + k for k in fixed)} would change the trained network; "
            "only --data.*, --eval.*, --body_model_path and --name apply to an evaluation"
        )
    return config


def main_evaluate(argv: list[str] | None = None, description: str = "") -> dict[str, Any]:
    """Evaluate a checkpoint: ``CHECKPOINT [--eval.* / --data.* overrides]``."""
    import argparse

    import torch

    from humr.eval.accumulator import format_table
    from humr.experiment.data import build_datasets
    from humr.experiment.run import evaluate_experiment
    from humr.training.checkpoint import load_checkpoint

    argv = _split_flags(argv)
    first = argparse.ArgumentParser(description=description, add_help=False)
    first.add_argument("checkpoint", nargs="?")
    known, rest = first.parse_known_args(argv)
    if known.checkpoint is None or known.checkpoint.startswith("-"):
        parse_config(SYNTHETIC_CPU, ["--help"] if "--help" in argv or "-h" in argv else [], description)
        raise SystemExit(
            "evaluate: give a checkpoint path first (e.g. runs/paper_full/checkpoints/last.ckpt)"
        )
    ckpt = Path(known.checkpoint)
    if not ckpt.is_file():
        raise SystemExit(f"evaluate: no checkpoint at {ckpt}")
    config = _evaluation_config(ckpt, rest, description)
    _, model = load_checkpoint(ckpt, body_model_path=config.body_model_path)
    _, test_set = build_datasets(config.data, config.body, test_focal=config.eval.test_focal)
    out = ckpt.parent.parent / "evaluation"
    with torch.no_grad():
        metrics = evaluate_experiment(model.eval(), test_set, config.data, config.eval, out_dir=out)
    print(
        format_table(
            {config.name: metrics},
            num_hypotheses=config.eval.num_hypotheses,
            title=f"{config.name}: {config.data.dataset}",
        )
    )
    _save(metrics, out / "metrics.json")
    print(f"results in {out}")
    return metrics
