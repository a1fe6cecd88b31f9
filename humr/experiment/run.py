"""Train, resume and evaluate an experiment: the one code path every recipe calls.

:func:`train` fits a config's model (the LightningModule of :mod:`humr.training`),
:func:`evaluate_experiment` measures a model the way its data config calls for, and
:func:`run_experiment` does both.

Interrupts. SIGINT (Ctrl-C) and SIGTERM (what cluster schedulers send before they kill a job)
stop training at the end of the current step: that step's checkpoint is written to
``<output_dir>/checkpoints/last.ckpt``, the command that resumes the run is printed, and
:func:`train` raises :class:`TrainingInterrupted`, which exits with 128 + the signal's number
(130 for SIGINT, 143 for SIGTERM). A second signal of the same kind acts at once. This replaces
Lightning's own SIGTERM handling, which stops with exit status 0.

Resuming (``train.resume``: a checkpoint path, or ``"last"``) first checks, before anything is
written, that the checkpoint was trained with the requested config except for the fields of
:data:`RESUME_MAY_DIFFER`, and that ``train.max_steps`` lies beyond the checkpoint's step. The
resumed run continues from the saved step (weights, optimiser state, step count) with a fresh
shuffle of the training set; it does not replay the batches the interrupted epoch had left.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import signal
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from humr.config import DataConfig, EvalConfig, ExperimentConfig, flat_config, save_config
from humr.model.humr_model import HumrModel
from humr.training.checkpoint import build_model
from humr.training.module import HumrLightning
from humr.training.precision import resolve_precision

__all__ = [
    "RESUME_MAY_DIFFER",
    "TrainingInterrupted",
    "StopOnSignal",
    "check_config",
    "check_resume",
    "resolve_resume",
    "resume_command",
    "train",
    "evaluate_experiment",
    "run_experiment",
]

#: Config fields that may differ between a checkpoint and the config that resumes it: how far to
#: train (``train.max_steps``, upward only), where things are (output, data and body files, the
#: encoder file whose weights the checkpoint already holds), how often to log, save and validate, the
#: accelerator, data-loader workers, the run's name, and all of evaluation (``eval.*``). Every
#: other field (model, losses, data content and batch, optimiser, seed, precision, devices)
#: defines the run and must match.
RESUME_MAY_DIFFER: tuple[str, ...] = (
    "name",
    "body_model_path",
    "model.encoder_checkpoint",
    "data.root",
    "data.features_dir",
    "data.samples_dir",
    "data.num_workers",
    "train.max_steps",
    "train.resume",
    "train.output_dir",
    "train.log_every",
    "train.checkpoint_every",
    "train.accelerator",
    "train.val_every",
    "train.val_images",
    "train.val_hypotheses",
    "eval.*",
)


def check_config(config: ExperimentConfig) -> None:
    """Checks that need files or other layers, before any data is built or anything is written.

    Every field's own value is checked when the config is built (:mod:`humr.config`).
    """
    from humr.experiment.data import check_body, check_data_config

    check_data_config(config.data)  # first: "--data foo" is about the data, whatever the body
    if config.body != "anny" and not config.body_model_path:
        raise ValueError(
            f"body_model_path: the {config.body!r} body needs its model files "
            "(--body-model-dir DIR); the free default is --body anny"
        )
    if config.body_model_path and not Path(config.body_model_path).exists():
        raise FileNotFoundError(f"body_model_path: {config.body_model_path} does not exist")
    if config.data.dataset != "synthetic":
        from humr.experiment.evaluation_real import check_real_eval_config
        from humr.experiment.real_data import evaluation_protocol

        check_real_eval_config(config.eval, evaluation_protocol(config.data))
    check_body(config.data, config.body)
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


def _may_differ(key: str) -> bool:
    return key in RESUME_MAY_DIFFER or f"{key.partition('.')[0]}.*" in RESUME_MAY_DIFFER


def check_resume(config: ExperimentConfig, path: str | Path) -> int:
    """The step of the checkpoint at ``path``, once ``config`` may continue it.

    Raises ``ValueError`` naming every field in which ``config`` differs from the checkpoint's
    config (except :data:`RESUME_MAY_DIFFER`), or when ``train.max_steps`` is not beyond the
    checkpoint's step (the run is already there: nothing would train).
    """
    from humr.training.checkpoint import checkpoint_config, read_checkpoint

    checkpoint = read_checkpoint(path, mmap=True)
    stored = flat_config(checkpoint_config(checkpoint, path))
    requested = flat_config(config)
    differ = [k for k in requested if stored.get(k) != requested[k] and not _may_differ(k)]
    if differ:
        listed = "; ".join(f"{k}: checkpoint {stored.get(k)!r}, requested {requested[k]!r}" for k in differ)
        raise ValueError(
            f"train.resume: {path} was trained with another configuration ({listed}); resume with the "
            f"run's own config (--config {Path(path).parent.parent / 'config.json'} --resume last) or "
            "train a new run in another output dir"
        )
    step = int(checkpoint.get("global_step", 0))
    if config.train.max_steps <= step:
        raise ValueError(
            f"train.max_steps: {path} is already at step {step}; resuming it needs train.max_steps > "
            f"{step}, found {config.train.max_steps} (evaluate it with recipes/evaluate.py {path})"
        )
    return step


class TrainingInterrupted(SystemExit):
    """Training stopped on a signal after saving its checkpoint; exits with 128 + the signal's number.

    Attributes: ``signal`` (the signal's number), ``step`` (the checkpoint's step),
    ``checkpoint`` (its path), ``command`` (the shell command that resumes the run).
    """

    def __init__(self, signum: int, step: int, checkpoint: Path, command: str) -> None:
        super().__init__(128 + signum)
        self.signal, self.step, self.checkpoint, self.command = signum, step, checkpoint, command


class StopOnSignal(Callback):
    """Ends training at the end of the step during which SIGINT or SIGTERM arrived.

    Installed from ``on_train_start`` (after Lightning's own SIGTERM handler, which it replaces)
    until the end of fitting; on several processes, every rank stops at the same step.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _record(self, signum: int, frame: Any) -> None:
        self.received = signum
        # A second signal of the same kind acts at once.
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        print(
            f"\n{signal.Signals(signum).name}: stopping after this step and saving a checkpoint "
            "(send it again to stop at once)",
            file=sys.stderr,
            flush=True,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread
        for signum in self.SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._record)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            trainer.should_stop = True

    def _restore(self, *args: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    on_train_end = _restore
    on_exception = _restore


def resume_command(config: ExperimentConfig) -> str:
    """The command that resumes ``config``'s run from its output dir (``recipes/paper_full.py``
    runs one config, so it resumes a row of an ablation too)."""
    here = Path(sys.argv[0]).with_name("paper_full.py") if sys.argv and sys.argv[0].endswith(".py") else None
    recipe = here if here is not None and here.is_file() else Path("recipes/paper_full.py")
    config_json = Path(config.train.output_dir) / "config.json"
    return shlex.join(["python", str(recipe), "--config", str(config_json), "--resume", "last"])


class _DropAdvertisements(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡")


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Keep Lightning's output to what a user acts on: no advertisement for its logging services, no
    deprecation warning about torch APIs its own internals use (neither is the user's to fix)."""
    from lightning_utilities.core import rank_zero

    drop = _DropAdvertisements()
    rank_zero.log.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
            )
            # A resumed run draws a fresh shuffle of its epoch (documented above): nothing to act on.
            warnings.filterwarnings("ignore", message=r".*dataloader is not resumable")
            yield
    finally:
        rank_zero.log.removeFilter(drop)


def _loader(config: ExperimentConfig, train_set: Dataset) -> DataLoader:
    return DataLoader(
        train_set,
        batch_size=config.data.batch_size,
        shuffle=True,
        drop_last=len(train_set) >= config.data.batch_size,
        num_workers=config.data.num_workers,
        persistent_workers=config.data.num_workers > 0,
        pin_memory=config.train.accelerator not in ("cpu",),
    )


def _validation(config: ExperimentConfig) -> Callback | None:
    """The periodic validation of ``train.val_every`` (None when 0)."""
    if config.train.val_every == 0:
        return None
    from humr.experiment.data import build_validation_set
    from humr.training.validation import PeriodicValidation

    def evaluation(model: HumrModel, dataset: Dataset, eval_config: EvalConfig, **kwargs: Any) -> dict:
        # the test set's protocol on real data (SMPL for 3DPW / EMDB), as evaluate_experiment
        return evaluate_experiment(model, dataset, config.data, eval_config, **kwargs)

    return PeriodicValidation(
        build_validation_set(config.data, config.body),
        config.train.val_every,
        config.eval,
        evaluation=evaluation,
        num_hypotheses=config.train.val_hypotheses,
        max_images=config.train.val_images,
        seed=config.train.seed,
    )


def _trainer(config: ExperimentConfig, out: Path, progress: bool, callbacks: list[Callback]) -> L.Trainer:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    checkpoint = ModelCheckpoint(
        dirpath=out / "checkpoints",
        save_last=True,
        every_n_train_steps=config.train.checkpoint_every,
        save_top_k=0,
    )
    return L.Trainer(
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        num_nodes=config.train.num_nodes,
        strategy="ddp" if config.train.devices * config.train.num_nodes > 1 else "auto",
        precision=resolve_precision(config.train.precision, config.train.accelerator),
        max_steps=config.train.max_steps,
        max_epochs=-1,
        logger=[CSVLogger(out, name="logs"), TensorBoardLogger(out, name="tensorboard")],
        callbacks=[checkpoint, *callbacks],
        log_every_n_steps=config.train.log_every,
        enable_progress_bar=progress,
        enable_model_summary=False,
        gradient_clip_val=config.train.gradient_clip or None,
        default_root_dir=out,
        num_sanity_val_steps=0,
    )


def train(config: ExperimentConfig, progress: bool = True) -> tuple[HumrLightning, Path]:
    """Train ``config``; returns the trained module and the path of its last checkpoint.

    Writes ``config.json``, ``checkpoints/last.ckpt``, CSV and TensorBoard logs into
    ``config.train.output_dir``; every check (:func:`check_config`, :func:`check_resume`) runs
    before the first of them. Raises :class:`TrainingInterrupted` after SIGINT / SIGTERM.
    """
    from humr.experiment.data import build_datasets

    check_config(config)
    ckpt_path = resolve_resume(config)
    if ckpt_path is not None:
        check_resume(config, ckpt_path)
    out = Path(config.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "config.json")
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    train_set, _ = build_datasets(config.data, config.body)
    if len(train_set) == 0:
        raise ValueError("data: the training set is empty")
    # Resuming: every weight comes from the checkpoint, the encoder's file is not read again.
    module = HumrLightning(config, model=build_model(config, encoder_weights=ckpt_path is None))
    stop = StopOnSignal()
    callbacks: list[Callback] = [stop]
    validation = _validation(config)
    if validation is not None:
        callbacks.append(validation)
    last = out / "checkpoints" / "last.ckpt"
    with _quiet_lightning():
        trainer = _trainer(config, out, progress, callbacks)
        trainer.fit(module, _loader(config, train_set), ckpt_path=ckpt_path)
        trainer.save_checkpoint(last, weights_only=False)
    if validation is not None and config.eval.plots and trainer.is_global_zero:
        validation.write_plot(out / "plots")
    if stop.received is not None:
        command = resume_command(config)
        name = signal.Signals(stop.received).name
        print(
            f"{name}: stopped at step {trainer.global_step} of {config.train.max_steps}; checkpoint {last}\n"
            f"resume with: {command}",
            file=sys.stderr,
            flush=True,
        )
        raise TrainingInterrupted(stop.received, trainer.global_step, last, command)
    return module, last


def evaluate_experiment(
    model: HumrModel, dataset: Dataset,
    data_config: DataConfig, eval_config: EvalConfig,
    out_dir: Path | None = None,
    progress: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """The evaluation a data config calls for: :func:`humr.experiment.evaluation.evaluate` on the
    synthetic set, :func:`humr.experiment.evaluation_real.evaluate_real` with the test set's protocol
    on real data."""
    if data_config.dataset == "synthetic":
        from humr.experiment.evaluation import evaluate

        return evaluate(model, dataset, eval_config, out_dir=out_dir, progress=progress, seed=seed)
    from humr.experiment.evaluation_real import evaluate_real
    from humr.experiment.real_data import evaluation_protocol

    protocol = evaluation_protocol(data_config)
    return evaluate_real(model, dataset, eval_config, protocol, out_dir=out_dir, progress=progress, seed=seed)


def run_experiment(
    config: ExperimentConfig, progress: bool = True, plots: bool | None = None
) -> dict[str, Any]:
    """Train then evaluate on the test split; returns the metrics (and timings) of the run."""
    from humr.experiment.data import build_datasets

    start = time.perf_counter()
    module, last = train(config, progress=progress)
    train_seconds = time.perf_counter() - start
    _, test_set = build_datasets(config.data, config.body, test_focal=config.eval.test_focal)
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
