"""The LightningModule: one training step = :func:`humr.training.objective.training_losses`."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from humr.config import ExperimentConfig, config_from_dict, config_to_dict
from humr.model.humr_model import HumrModel
from humr.training.checkpoint import build_model, load_checkpoint
from humr.training.objective import REGRESSOR_TERMS, training_losses

__all__ = ["HumrLightning", "build_model"]


class HumrLightning(L.LightningModule):
    """Trains :class:`~humr.model.humr_model.HumrModel` with the losses of Eq. 7 (AdamW, Sec. A).

    Args:
        config: the experiment (or its :func:`~humr.config.config_to_dict` form).
        model: the network to train; default: built from ``config`` (reading
            ``model.encoder_checkpoint``).
    """

    def __init__(self, config: ExperimentConfig | dict[str, Any], model: HumrModel | None = None) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = config_from_dict(ExperimentConfig, config)
        self.config = config
        # The config travels inside every checkpoint, so a checkpoint alone rebuilds the model.
        self.save_hyperparameters({"config": config_to_dict(config)})
        self.model = build_model(config) if model is None else model

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = training_losses(self.model, batch, self.config.loss)
        batch_size = batch["pose"].shape[0]
        self.log("train/loss", losses.total, prog_bar=True, batch_size=batch_size)
        for name, value in losses.terms.items():
            if self.model.flow is not None and name in REGRESSOR_TERMS:
                continue  # always 0 for the flow head
            self.log(f"train/{name}", value.detach(), prog_bar=name in ("nll", "mmd"), batch_size=batch_size)
        return losses.total

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (fused) and the per-step learning-rate schedule of ``config.train``."""
        from humr.training.schedule import build_scheduler

        train = self.config.train
        params = [p for p in self.model.parameters() if p.requires_grad]
        # The fused kernel updates all parameters in one pass and avoids per-parameter host syncs
        # (benchmarks/bench_train_step.py: 25 ms against 74 ms per step at the paper's size on CPU).
        optimizer = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, fused=True)
        scheduler = build_scheduler(
            optimizer, train.max_steps, train.lr_schedule, train.warmup_steps, train.final_lr_ratio
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    @classmethod
    def from_checkpoint(
        cls, path: str, map_location: str | torch.device = "cpu", body_model_path: str | None = None
    ) -> HumrLightning:
        """Rebuild the module (config included) from a humr checkpoint
        (:func:`humr.training.checkpoint.load_checkpoint`: the weights come from the file only)."""
        config, model = load_checkpoint(path, map_location, body_model_path)
        return cls(config, model=model)
