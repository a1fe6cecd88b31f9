"""One checkpoint loader for resuming, evaluation and prediction: save / move / load round trips for
every encoder kind, and one clear line for anything that is not a humr checkpoint."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from humr.config import ExperimentConfig, ModelConfig, config_to_dict, save_config
from humr.flows import FlowConfig
from humr.training.checkpoint import EXPECTED, load_checkpoint

SMALL = {"pose_hidden": 16, "pose_features": 8, "flow": FlowConfig(num_layers=2, hidden_features=16),
         "head_hidden": 16}


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    for name, value in state.items():
        assert torch.equal(loaded[name], value), name


def _save_as_the_trainer(module, path: Path) -> Path:
    """What Lightning's ``save_checkpoint`` writes of a module (its hyper-parameters, state, step)."""
    state = {"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(), "global_step": 0}
    torch.save(state, path)
    return path


def _every_loader(path: Path):
    """``(config, model)`` from each of the three public entry points."""
    from humr.inference import load_model
    from humr.training.module import HumrLightning

    config, model = load_checkpoint(path)
    yield config, model
    module = HumrLightning.from_checkpoint(str(path))
    yield module.config, module.model
    model, config = load_model(path)
    yield config, model


@pytest.fixture(scope="module")
def trained(tiny_config, tiny_datasets, tmp_path_factory):
    """A one-step small-CNN run written by the trainer, then moved to another folder."""
    from humr.experiment.run import train

    first = tmp_path_factory.mktemp("trained") / "run"
    config = replace(tiny_config, train=replace(tiny_config.train, output_dir=str(first), max_steps=1))
    module, last = train(config, progress=False)
    moved = first.parent / "moved"
    shutil.move(first, moved)
    return config, _state(module.model), moved / "checkpoints" / "last.ckpt"


def test_a_trained_small_cnn_run_reloads_after_it_moved(trained):
    config, state, path = trained
    for loaded_config, model in _every_loader(path):
        assert loaded_config == config
        _assert_same_weights(model, state)


@pytest.mark.slow
def test_a_frozen_hrnet_reloads_from_the_checkpoint_when_its_weights_file_has_moved(tmp_path):
    from humr.model.encoders import HRNetW48Encoder
    from humr.training.module import HumrLightning

    weights = tmp_path / "bedlam_cliff_backbone.pth"
    torch.save(HRNetW48Encoder().state_dict(), weights)  # a generated stand-in for BEDLAM-CLIFF's file
    model = ModelConfig(
        encoder="hrnet_w48", image_features=720, freeze_encoder=True, encoder_checkpoint=str(weights), **SMALL
    )
    config = ExperimentConfig(model=model)
    module = HumrLightning(config)
    state = _state(module.model)
    on_file = torch.load(weights, weights_only=True)
    for name, value in on_file.items():  # the run started from the file's weights
        assert torch.equal(state[f"condition.image_encoder.{name}"], value), name
    path = _save_as_the_trainer(module, tmp_path / "last.ckpt")
    del module, on_file
    weights.rename(tmp_path / "elsewhere.pth")
    for loaded_config, loaded in _every_loader(path):
        assert loaded_config == config  # the stored config still names the original file
        _assert_same_weights(loaded, state)


def test_a_features_model_reloads_without_any_encoder_file(tmp_path):
    from humr.training.module import HumrLightning

    model = ModelConfig(
        encoder="features", image_features=16, encoder_checkpoint="/nowhere/hrnet.pth", **SMALL
    )
    module = HumrLightning(ExperimentConfig(model=model))
    state = _state(module.model)
    path = _save_as_the_trainer(module, tmp_path / "last.ckpt")
    moved = tmp_path / "moved.ckpt"
    path.rename(moved)
    for loaded_config, loaded in _every_loader(moved):
        assert loaded_config.model == model
        _assert_same_weights(loaded, state)


def _not_checkpoints(trained, tmp_path: Path) -> dict[str, Path]:
    _, _, real = trained
    files = {
        "config.json": tmp_path / "config.json",
        "text": tmp_path / "notes.txt",
        "empty": tmp_path / "empty.ckpt",
        "truncated": tmp_path / "truncated.ckpt",
        "a bare tensor": tmp_path / "tensor.ckpt",
        "a state dict": tmp_path / "state.ckpt",
    }
    save_config(ExperimentConfig(), files["config.json"])
    files["text"].write_text("not a checkpoint\n")
    files["empty"].write_bytes(b"")
    data = real.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    torch.save(torch.zeros(3), files["a bare tensor"])
    torch.save({"state_dict": {}}, files["a state dict"])
    return files


def test_files_that_are_not_humr_checkpoints_get_one_line_naming_them(trained, tmp_path):
    from humr.experiment.recipe import main_evaluate
    from humr.inference import load_model
    from humr.training.module import HumrLightning

    for kind, path in _not_checkpoints(trained, tmp_path).items():
        for load in (load_checkpoint, load_model, lambda p: HumrLightning.from_checkpoint(str(p))):
            with pytest.raises(ValueError) as caught:
                load(path)
            message = str(caught.value)
            assert "\n" not in message and str(path) in message and EXPECTED in message, (kind, message)
            assert "weights_only" not in message and caught.value.__cause__ is None, (kind, message)
        with pytest.raises(SystemExit) as exited:
            main_evaluate([str(path)])
        assert str(path) in str(exited.value.code) and "\n" not in str(exited.value.code), kind
    truncated = str(_not_checkpoints(trained, tmp_path)["truncated"])
    with pytest.raises(ValueError, match="damaged or truncated"):
        load_checkpoint(truncated)


def test_a_missing_checkpoint_names_where_it_was_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none.ckpt")):
        load_checkpoint(tmp_path / "none.ckpt")


def test_weights_that_do_not_fit_their_config_are_refused(trained, tmp_path):
    config, _, path = trained
    checkpoint = torch.load(path, weights_only=True)
    other = replace(config, model=replace(config.model, flow=replace(config.model.flow, num_layers=1)))
    checkpoint["hyper_parameters"]["config"] = config_to_dict(other)
    torch.save(checkpoint, tmp_path / "mismatch.ckpt")
    with pytest.raises(ValueError, match="do not fit the model its config describes"):
        load_checkpoint(tmp_path / "mismatch.ckpt")
