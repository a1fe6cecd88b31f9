"""Shared fixtures: a tiny synthetic data set built once per test session."""

from __future__ import annotations

from dataclasses import replace

import pytest

from humr.config import SYNTHETIC_CPU, ExperimentConfig


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> ExperimentConfig:
    """The tiny budget of ``recipes/paper_full.py --tiny`` with its data cached in a temp dir."""
    from humr.training.recipe import tiny

    config = tiny(SYNTHETIC_CPU)
    root = tmp_path_factory.mktemp("synthetic")
    return replace(
        config,
        data=replace(config.data, root=str(root), num_train=24, num_test=8),
        train=replace(config.train, output_dir=str(tmp_path_factory.mktemp("run"))),
    )


@pytest.fixture(scope="session")
def tiny_datasets(tiny_config):
    from humr.training.data import build_datasets

    return build_datasets(tiny_config.data, tiny_config.body)
