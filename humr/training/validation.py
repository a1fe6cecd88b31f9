"""Validation during training: distribution metrics of a fixed subset every N steps.

Every ``every`` optimizer steps (and after the last one) the model draws ``num_hypotheses``
hypotheses for the first ``max_images`` images of a validation set and the evaluation it is
given (the experiment layer passes :func:`humr.experiment.evaluation.evaluate`, so that training
imports nothing above it) measures them without pictures or meshes. The
columns of :data:`VALIDATION_METRICS` go to every logger of the trainer (CSV, TensorBoard)
under ``val/``, one line per validation is printed, and the history travels inside the
checkpoints (a resumed run keeps its curve). :func:`humr.eval.plots.plot_learning_curve`
draws the history next to the run's other pictures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import Dataset

from humr.config import EvalConfig

__all__ = ["VALIDATION_METRICS", "Evaluation", "PeriodicValidation", "format_validation_line"]

#: ``evaluation(model, dataset, eval_config, progress=False, seed=seed) -> metrics`` (a dict with
#: the keys of :data:`VALIDATION_METRICS`), e.g. :func:`humr.experiment.evaluation.evaluate`.
Evaluation = Callable[..., dict[str, Any]]

#: metric key -> short label in the printed line (mode / best-of-N MPJPE, spread, PercIn).
VALIDATION_METRICS: dict[str, str] = {
    "mpjpe_mode": "MPJPE mode",
    "mpjpe_best": "best",
    "spread_vis": "spread vis",
    "spread_invis": "invis",
    "perc_in": "PercIn",
}


def format_validation_line(step: int, metrics: dict[str, float], seconds: float) -> str:
    """``"val step 500: MPJPE mode 150.1 | best 110.3 | ... (4.2 s)"``."""
    cells = [f"{label} {metrics[key]:.1f}" for key, label in VALIDATION_METRICS.items() if key in metrics]
    return f"val step {step}: " + " | ".join(cells) + f" ({seconds:.1f} s)"


class PeriodicValidation(L.Callback):
    """Validate every ``every`` training steps on the first ``max_images`` of ``dataset``.

    Args:
        dataset: a data set of the :mod:`humr.data.fields` contract (a held-out split).
        every: steps between validations (>= 1).
        eval_config: the run's evaluation settings; ``num_hypotheses`` and ``max_images``
            replace its own, pictures and PVE are off.
        evaluation: the function that measures the model (:data:`Evaluation`).
        num_hypotheses: hypotheses per image (mode included) for best-of-N and spread.
        max_images: the fixed subset's size.
        seed: the sampler's seed, the same at every validation (so curves compare like with like).
        verbose: print one line per validation.
    """

    def __init__(
        self,
        dataset: Dataset,
        every: int,
        eval_config: EvalConfig,
        evaluation: Evaluation,
        num_hypotheses: int = 25,
        max_images: int = 64,
        seed: int = 0,
        verbose: bool = True,
    ) -> None:
        if every < 1:
            raise ValueError(f"every: expected >= 1, found {every}")
        if len(dataset) == 0:
            raise ValueError("dataset: the validation set is empty")
        self.dataset = dataset
        self.every = every
        self.evaluation = evaluation
        self.config = replace(
            eval_config, num_hypotheses=num_hypotheses, max_images=max_images, plots=False, pve=False
        )
        self.seed = seed
        self.verbose = verbose
        self.history: list[dict[str, float]] = []
        self._loss_sum: torch.Tensor | None = None  # training loss since the last validation,
        self._loss_count = 0  # summed on the device: read once per validation, not per step

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))

    def validate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Measure now, log, remember and print; returns the metrics of :data:`VALIDATION_METRICS`."""
        step = int(trainer.global_step)
        model = pl_module.model
        was_training = model.training
        start = time.perf_counter()
        try:
            with torch.no_grad():
                metrics = self.evaluation(model, self.dataset, self.config, progress=False, seed=self.seed)
        finally:
            model.train(was_training)
        row = {key: float(metrics[key]) for key in VALIDATION_METRICS if key in metrics}
        for logger in trainer.loggers:
            logger.log_metrics({f"val/{key}": value for key, value in row.items()}, step=step)
        entry = {"step": float(step), **row}
        if self._loss_count:
            entry["train_loss"] = float(self._loss_sum) / self._loss_count
            self._loss_sum, self._loss_count = None, 0
        self.history.append(entry)
        if self.verbose and trainer.is_global_zero:
            pl_module.print(format_validation_line(step, row, time.perf_counter() - start))
        return row

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            loss = loss.detach()
            self._loss_sum = loss if self._loss_sum is None else self._loss_sum + loss
            self._loss_count += 1
        step = int(trainer.global_step)
        if trainer.is_global_zero and step % self.every == 0 and not self._done(step):
            self.validate(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        # the last step is always measured, whatever the cadence (not after an interrupt:
        # a stopped run should save and exit quickly)
        step = int(trainer.global_step)
        finished = trainer.max_steps is not None and step >= trainer.max_steps
        if trainer.is_global_zero and finished and not self._done(step):
            self.validate(trainer, pl_module)

    def _done(self, step: int) -> bool:
        return bool(self.history) and int(self.history[-1]["step"]) == step

    def write_plot(self, folder: str | Path) -> Path | None:
        """The learning curve of :attr:`history` as ``folder/learning_curve.png`` (None if empty)."""
        if not self.history:
            return None
        from humr.eval.plots import plot_learning_curve

        path = Path(folder) / "learning_curve.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_learning_curve(self.history, path)
        return path
