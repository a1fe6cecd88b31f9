"""What ``recipes/fit.py`` calls: fit a checkpoint's synthetic split to the detector keypoints and
tabulate the metrics before and after fitting, with and without the flow prior.

The targets are the detector's highest-likelihood pose ``batch["detector_keypoints"]`` (never the
ground truth); the metrics are those of :func:`humr.experiment.evaluation.evaluate` (pelvis-aligned
body joints, PVE on full meshes, 2DKP against the ground-truth 2D keypoints of visible joints,
3D spread, mask plausibility), so the rows compare with the evaluation tables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import typing
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from humr.config import EvalConfig, ExperimentConfig
from humr.eval.accumulator import MetricAccumulator
from humr.experiment.evaluation import OwnBodyProtocol, eval_batches, update_accuracy, update_distribution
from humr.fitting import FitConfig, fit_keypoints
from humr.model.humr_model import HumrModel
from humr.model.hypotheses import Hypotheses

__all__ = ["default_rows", "evaluate_fitting", "main_fit"]

#: A table row: the fitting config (None: the model's own hypotheses) and the sampled starts.
Row = tuple[FitConfig | None, int]
#: Metrics that need more than one hypothesis per image (left out of single-hypothesis rows).
_MULTI_HYPOTHESIS = ("_best", "kp2d_samples", "spread_")


def default_rows(config: FitConfig, num_samples: int) -> dict[str, Row]:
    """Before fitting, then the mode alone and the mode with ``num_samples`` sampled starts, each
    fitted with the flow prior (``config``) and without it (``pose_prior="none"``)."""
    no_prior = replace(config, pose_prior="none")
    return {
        f"model: mode + {num_samples}": (None, num_samples),
        "fit, flow prior: mode": (config, 0),
        f"fit, flow prior: mode + {num_samples}": (config, num_samples),
        "fit, no prior: mode": (no_prior, 0),
        f"fit, no prior: mode + {num_samples}": (no_prior, num_samples),
    }


def _batch_metrics(
    acc: MetricAccumulator, batch: Mapping[str, torch.Tensor], hyps: Hypotheses, model: HumrModel, pve: bool
) -> None:
    """The per-batch metrics of :func:`humr.experiment.evaluation.evaluate`, for any hypotheses:
    accuracy (:class:`~humr.experiment.evaluation.OwnBodyProtocol`) and the distribution metrics."""
    protocol = OwnBodyProtocol(model.body)
    with torch.no_grad():
        update_accuracy(acc, protocol.targets(batch, hyps, pve), protocol.root)
        update_distribution(acc, batch, hyps)


def evaluate_fitting(
    model: HumrModel, dataset: Dataset,
    eval_config: EvalConfig,
    rows: Mapping[str, Row],
    seed: int = 0,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Metrics of every row over the first ``eval_config.max_images`` images of ``dataset``.

    Every row draws its sampled starts from its own generator seeded with ``seed``, so the
    fitted rows start from exactly the model row's random hypotheses. Returns row -> the
    accumulator's means (mm, 256-crop pixels, %) plus ``fit_seconds`` and ``num_images``;
    single-hypothesis rows leave out the best-of-N and spread metrics.
    """
    model.eval()
    accumulators = {name: MetricAccumulator() for name in rows}
    generators = {name: torch.Generator().manual_seed(seed) for name in rows}
    seconds = dict.fromkeys(rows, 0.0)
    for batch in tqdm(eval_batches(dataset, eval_config), desc="fit", disable=not progress, leave=False):
        for name, (config, num_samples) in rows.items():
            start = time.perf_counter()
            if config is None:
                with torch.no_grad():
                    hyps = model(batch, num_samples=num_samples, generator=generators[name])
            else:
                hyps = fit_keypoints(model, batch, config=config, num_samples=num_samples,
                                     generator=generators[name])
            seconds[name] += time.perf_counter() - start
            _batch_metrics(accumulators[name], batch, hyps, model, eval_config.pve)
    results: dict[str, dict[str, Any]] = {}
    for name, acc in accumulators.items():
        metrics: dict[str, Any] = acc.compute()
        if rows[name][1] == 0:
            metrics = {k: v for k, v in metrics.items() if not any(m in k for m in _MULTI_HYPOTHESIS)}
        metrics["fit_seconds"] = seconds[name]
        metrics["num_images"] = acc.counts().get("mpjpe_mode", 0)
        results[name] = metrics
    return results


def _parse_bool(text: str) -> bool:
    if text.lower() in {"1", "true", "yes", "on"}:
        return True
    if text.lower() in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, found {text!r}")


def _fit_parser(description: str) -> argparse.ArgumentParser:
    """``CHECKPOINT``, ``--split``, ``--num-samples``, ``--seed`` and ``--fit.FIELD`` for every
    :class:`FitConfig` field; everything else goes on to the experiment config's parser."""
    parser = argparse.ArgumentParser(description=description, add_help=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", help="a humr checkpoint (runs/NAME/checkpoints/last.ckpt)")
    parser.add_argument("--split", choices=("test", "train"), default="test",
                        help="tune on train, report on test (default: test)")
    parser.add_argument("--num-samples", type=int, default=10, help="sampled starts beside the mode (10)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampled starts (0)")
    hints = typing.get_type_hints(FitConfig)
    defaults = FitConfig()
    for f in fields(FitConfig):
        parser.add_argument(f"--fit.{f.name}", dest=f"fit.{f.name}", default=argparse.SUPPRESS,
                            type=_parse_bool if hints[f.name] is bool else hints[f.name],
                            help=f"FitConfig.{f.name} (default: {getattr(defaults, f.name)!r})")
    return parser


def _load(ckpt: Path, rest: list[str], description: str) -> tuple[ExperimentConfig, HumrModel]:
    """The checkpoint's config with the ``--data.*`` / ``--eval.*`` overrides, and its model."""
    from humr.config import flat_config
    from humr.experiment.cli import parse_config
    from humr.experiment.recipe import EVALUATE_MAY_CHANGE
    from humr.training.checkpoint import load_checkpoint

    stored, model = load_checkpoint(ckpt)
    config = parse_config(stored, rest, description)
    old, new = flat_config(stored), flat_config(config)
    fixed = [k for k in new if old[k] != new[k] and not k.startswith(EVALUATE_MAY_CHANGE)]
    if fixed:
        raise ValueError(f"{', '.join('--' + k for k in fixed)} would change the trained network; "
                         "only --data.*, --eval.*, --body_model_path and --name apply to fitting")
    if config.data.dataset != "synthetic":
        raise ValueError(f"--data: fitting is measured on the synthetic set (ground truth in the model's own "
                         f"body), found {config.data.dataset!r}")
    return config, model


def main_fit(argv: list[str] | None = None, description: str = "") -> dict[str, dict[str, Any]]:
    """``CHECKPOINT [--split] [--num-samples K] [--fit.* / --eval.* / --data.* overrides]``: the table."""
    from humr.eval.accumulator import format_table
    from humr.experiment.data import build_datasets

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _fit_parser(description)
    if "--help" in argv or "-h" in argv:
        parser.print_help()
        print("\nexperiment overrides (--eval.max_images, --eval.batch_size, --data.root, ...): "
              "see recipes/evaluate.py --help")
        raise SystemExit(0)
    known, rest = parser.parse_known_args(argv)
    if known.checkpoint is None or known.checkpoint.startswith("-"):
        raise SystemExit("fit: give a checkpoint path first (e.g. runs/paper_full/checkpoints/last.ckpt)")
    if known.num_samples < 0:
        raise SystemExit(f"fit: --num-samples: expected >= 0, found {known.num_samples}")
    ckpt = Path(known.checkpoint)
    try:
        fit_config = FitConfig(**{k[len("fit."):]: v for k, v in vars(known).items() if k.startswith("fit.")})
        config, model = _load(ckpt, rest, description)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"fit: {err}") from None
    datasets = dict(zip(("train", "test"), build_datasets(config.data, config.body)))
    rows = default_rows(fit_config, known.num_samples)
    start = time.perf_counter()
    results = evaluate_fitting(model.eval(), datasets[known.split], config.eval, rows, seed=known.seed)
    wall = time.perf_counter() - start
    images = next(iter(results.values()))["num_images"]
    print(format_table(results, num_hypotheses=1 + known.num_samples,
                       title=f"{config.name}: fitting to the detector keypoints, synthetic {known.split} "
                             f"({images} images, {fit_config.steps} {fit_config.optimizer} steps)"))
    print("fit seconds: " + ", ".join(f"{name} {r['fit_seconds']:.1f}" for name, r in results.items()))
    out = ckpt.parent.parent / "fitting" / f"{known.split}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    saved = {"fit_config": {f.name: getattr(fit_config, f.name) for f in fields(FitConfig)},
             "num_samples": known.num_samples, "wall_seconds": wall, "rows": results}
    out.write_text(json.dumps(saved, indent=2, default=str) + "\n")
    print(f"wall time {wall:.0f} s; results in {out}")
    return results
