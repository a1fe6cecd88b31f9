"""Train, resume and evaluate an experiment: the one code path every recipe calls."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from humr.config import ExperimentConfig, save_config
from humr.training.module import HumrLightning
from humr.training.objective import check_loss_config

__all__ = ["check_config", "train", "resolve_resume", "run_experiment"]


def check_config(config: ExperimentConfig) -> None:
    """Fail before any data is built or any step is taken, with a message that says what to fix."""
    from humr.bodies.factory import BODY_NAMES
    from humr.training.data import check_data_config

    if config.body not in BODY_NAMES:
        raise ValueError(f"body: unknown body {config.body!r}; expected one of {list(BODY_NAMES)}")
    if config.body != "anny" and not config.body_model_path:
        raise ValueError(
            f"body_model_path: the {config.body!r} body needs its model files "
            "(--body-model-dir DIR); the free default is --body anny"
        )
    if config.body_model_path and not Path(config.body_model_path).exists():
        raise FileNotFoundError(f"body_model_path: {config.body_model_path} does not exist")
    check_loss_config(config.loss)
    check_data_config(config.data)
    if config.data.dataset != "synthetic":
        from humr.training.evaluation_real import check_real_eval_config
        from humr.training.real_data import evaluation_protocol

        check_real_eval_config(config.eval, evaluation_protocol(config.data))
    if config.data.dataset == "synthetic" and config.body != "anny":
        raise ValueError(
            f"body: the synthetic set is made of Anny bodies; use --body anny, found {config.body!r}"
        )
    if config.train.max_steps < 1:
        raise ValueError(f"train.max_steps: expected >= 1, found {config.train.max_steps}")
    if config.eval.num_hypotheses < 2:
        raise ValueError(
            f"eval.num_hypotheses: expected >= 2 (mode and one sample), found {config.eval.num_hypotheses}"
        )


def resolve_resume(config: ExperimentConfig) -> str | None:
    resume = config.train.resume
    if resume is None:
        return None
    path = Path(config.train.output_dir) / "checkpoints" / "last.ckpt" if resume == "last" else Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"train.resume: no checkpoint at {path}")
    return str(path)


def train(config: ExperimentConfig, progress: bool = True) -> tuple[HumrLightning, Path]:
    """Train ``config``; returns the trained module and the path of its last checkpoint.

    Writes ``config.json``, ``checkpoints/last.ckpt``, CSV and TensorBoard logs into
    ``config.train.output_dir``.
    """
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from humr.training.data import build_datasets

    check_config(config)
    ckpt_path = resolve_resume(config)
    out = Path(config.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.json")
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    train_set, _ = build_datasets(config.data, config.body)
    if len(train_set) == 0:
        raise ValueError("data: the training set is empty")
    loader = DataLoader(
        train_set,
        batch_size=config.data.batch_size,
        shuffle=True,
        drop_last=len(train_set) >= config.data.batch_size,
        num_workers=config.data.num_workers,
        persistent_workers=config.data.num_workers > 0,
        pin_memory=config.train.accelerator not in ("cpu",),
    )
    module = HumrLightning(config)
    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints",
        save_last=True,
        every_n_train_steps=config.train.checkpoint_every,
        save_top_k=0,
    )
    trainer = L.Trainer(
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        num_nodes=config.train.num_nodes,
        strategy="ddp" if config.train.devices * config.train.num_nodes > 1 else "auto",
        precision=config.train.precision,
        max_steps=config.train.max_steps,
        max_epochs=-1,
        logger=[CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tensorboard")],
        callbacks=[checkpoint],
        log_every_n_steps=config.train.log_every,
        enable_progress_bar=progress,
        enable_model_summary=False,
        gradient_clip_val=config.train.gradient_clip or None,
        default_root_dir=out,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    last = out / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(last)
    return module, last


def run_experiment(
    config: ExperimentConfig, progress: bool = True, plots: bool | None = None
) -> dict[str, Any]:
    """Train then evaluate on the test split; returns the metrics (and timings) of the run."""
    from humr.training.data import build_datasets
    from humr.training.evaluation_real import evaluate_experiment

    start = time.perf_counter()
    module, last = train(config, progress=progress)
    train_seconds = time.perf_counter() - start
    _, test_set = build_datasets(config.data, config.body)
    eval_config = config.eval if plots is None else replace(config.eval, plots=plots)
    model = module.model.eval()
    with torch.no_grad():
        metrics = evaluate_experiment(
            model,
            test_set,
            config.data,
            eval_config,
            out_dir=Path(config.train.output_dir),
            progress=progress,
        )
    metrics["train_seconds"] = train_seconds
    metrics["eval_seconds"] = time.perf_counter() - start - train_seconds
    metrics["checkpoint"] = str(last)
    return metrics
