"""Reading humr checkpoints: one loader for resuming, evaluation and prediction (no Lightning).

A humr checkpoint is the Lightning ``.ckpt`` that training writes (``<output_dir>/checkpoints/
last.ckpt``): the experiment config under ``hyper_parameters["config"]``, the network under
``state_dict["model.*"]``, the step under ``global_step``. The network's weights, a trained or
frozen image encoder's included, are all in the file: loading never reads
``model.encoder_checkpoint`` (the HRNet file a run started from may have moved since). Only the
body's model files are read again (they are licensed and stay out of checkpoints); pass
``body_model_path`` when they live elsewhere than the config says.

Example:
    >>> read_checkpoint("config.json")  # doctest: +SKIP
    Traceback (most recent call last):
    ...
    ValueError: checkpoint: config.json is not a torch checkpoint file; expected a humr checkpoint ...
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from humr.config import ExperimentConfig, config_from_dict
from humr.model.humr_model import HumrModel

__all__ = ["EXPECTED", "read_checkpoint", "checkpoint_config", "build_model", "load_checkpoint"]

#: What a checkpoint path should name, for error messages.
EXPECTED = "a humr checkpoint (the .ckpt training writes to <output_dir>/checkpoints/last.ckpt)"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive


def read_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """The checkpoint's dictionary, read with ``weights_only=True`` (no code runs from the file);
    ``mmap``: map the tensors instead of reading them (to look at the config and step only).

    Raises ``FileNotFoundError`` for a missing file and a one-line ``ValueError`` naming the
    path for anything that is not a complete humr checkpoint (another file, a truncated one).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint: no file at {path}; expected {EXPECTED}")
    try:
        with open(path, "rb") as f:
            zipped = f.read(4) == _ZIP_MAGIC
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap and zipped)
    except Exception as err:  # noqa: BLE001 - every failure to read means the same to the user
        what = (
            f"is damaged or truncated (torch could not read its archive: {type(err).__name__})"
            if zipped
            else "is not a torch checkpoint file"
        )
        raise ValueError(f"checkpoint: {path} {what}; expected {EXPECTED}") from None
    config = checkpoint.get("hyper_parameters", {}).get("config") if isinstance(checkpoint, dict) else None
    if not isinstance(config, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ValueError(
            f"checkpoint: {path} holds no humr config (hyper_parameters['config']) and state_dict; "
            f"expected {EXPECTED}"
        )
    return checkpoint


def checkpoint_config(checkpoint: dict[str, Any], path: str | Path) -> ExperimentConfig:
    """The :class:`~humr.config.ExperimentConfig` stored in a checkpoint read by :func:`read_checkpoint`."""
    try:
        return config_from_dict(ExperimentConfig, checkpoint["hyper_parameters"]["config"])
    except (ValueError, TypeError) as err:
        raise ValueError(f"checkpoint: the config stored in {path} is not valid here: {err}") from None


def build_model(config: ExperimentConfig, encoder_weights: bool = True) -> HumrModel:
    """The model of ``config`` with its body (Anny unless the config names another).

    ``encoder_weights=False``: do not read ``model.encoder_checkpoint`` (the weights are about to
    be loaded from a humr checkpoint).
    """
    from humr.bodies.factory import build_body

    model_config = config.model if encoder_weights else replace(config.model, encoder_checkpoint=None)
    return HumrModel(model_config, build_body(config.body, config.body_model_path))


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    body_model_path: str | Path | None = None,
) -> tuple[ExperimentConfig, HumrModel]:
    """``(config, model)`` of a humr checkpoint; the model holds the checkpoint's weights.

    ``config`` is the stored one (with ``body_model_path`` replaced when given); the model is in
    training mode, as ``nn.Module`` builds it.
    """
    checkpoint = read_checkpoint(path, map_location)
    config = checkpoint_config(checkpoint, path)
    if body_model_path is not None:
        config = replace(config, body_model_path=str(body_model_path))
    model = build_model(config, encoder_weights=False).to(map_location)
    state = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        detail = (str(err).splitlines()[1:2] or [str(err)])[0].strip()
        raise ValueError(
            f"checkpoint: the weights in {path} do not fit the model its config describes ({detail})"
        ) from None
    return config, model
