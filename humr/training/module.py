"""The LightningModule: one training step = :func:`humr.training.objective.training_losses`."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from humr.config import ExperimentConfig, config_from_dict, config_to_dict
from humr.model.humr_model import HumrModel
from humr.training.objective import training_losses

__all__ = ["HumrLightning", "build_model"]


def build_model(config: ExperimentConfig) -> HumrModel:
    """The model of ``config`` with its body (Anny unless the config names another)."""
    from humr.bodies.factory import build_body

    body = build_body(config.body, config.body_model_path)
    return HumrModel(config.model, body)


class HumrLightning(L.LightningModule):
    """Trains :class:`~humr.model.humr_model.HumrModel` with the losses of Eq. 7 (AdamW, Sec. A)."""

    def __init__(self, config: ExperimentConfig | dict[str, Any]) -> None:
        super().__init__()
        if isinstance(config, dict):
            config = config_from_dict(ExperimentConfig, config)
        self.config = config
        # The config travels inside every checkpoint, so a checkpoint alone rebuilds the model.
        self.save_hyperparameters({"config": config_to_dict(config)})
        self.model = build_model(config)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = training_losses(self.model, batch, self.config.loss)
        batch_size = batch["pose"].shape[0]
        self.log("train/loss", losses.total, prog_bar=True, batch_size=batch_size)
        for name, value in losses.terms.items():
            self.log(f"train/{name}", value.detach(), prog_bar=name in ("nll", "mmd"), batch_size=batch_size)
        return losses.total

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        # The fused kernel updates all parameters in one pass and avoids per-parameter host syncs
        # (benchmarks/bench_train_step.py: 25 ms against 74 ms per step at the paper's size on CPU).
        return torch.optim.AdamW(
            params, lr=self.config.train.lr, weight_decay=self.config.train.weight_decay, fused=True
        )

    @classmethod
    def from_checkpoint(cls, path: str, map_location: str | torch.device = "cpu") -> HumrLightning:
        """Rebuild the module (config included) from a Lightning checkpoint file."""
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
        if "hyper_parameters" not in checkpoint or "config" not in checkpoint["hyper_parameters"]:
            raise ValueError(f"checkpoint: {path} holds no humr config (was it written by humr's trainer?)")
        module = cls(checkpoint["hyper_parameters"]["config"])
        module.load_state_dict(checkpoint["state_dict"])
        return module
