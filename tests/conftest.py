"""Shared fixtures and settings of the test suite.

- ``tiny_config`` / ``tiny_datasets``: a tiny synthetic data set built once per test session.
- ``TORCH_THREADS = n`` in a test module runs that module with ``n`` intra-op threads (restored
  afterwards): many tiny operations on a shared, loaded machine are far faster on one or two.
- Hypothesis: under ``CI=true`` the ``"ci"`` profile derandomises every property test (the same
  examples on every run); locally the ``"dev"`` profile explores new examples from a fresh seed
  each session, printed in the report header and under every failing test (replay it with
  ``--hypothesis-seed=N``). ``HYPOTHESIS_PROFILE`` or ``--hypothesis-profile`` choose a profile.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import replace

import pytest
import torch
from hypothesis import is_hypothesis_test, settings

from humr.config import SYNTHETIC_CPU, ExperimentConfig

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)


def hypothesis_profile_name(environ: Mapping[str, str]) -> str:
    """The profile a session loads: ``HYPOTHESIS_PROFILE``, else ``"ci"`` under ``CI=true``, else
    ``"dev"``."""
    if environ.get("HYPOTHESIS_PROFILE"):
        return environ["HYPOTHESIS_PROFILE"]
    return "ci" if environ.get("CI", "").lower() in ("true", "1") else "dev"


settings.load_profile(hypothesis_profile_name(os.environ))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # A seed of our own (before Hypothesis' plugin reads the option), so that it can be printed.
    if not settings.default.derandomize and config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(2**32))


def _seed_note(config: pytest.Config) -> str | None:
    seed = config.getoption("hypothesis_seed", None)
    if seed is None or settings.default.derandomize:
        return None
    return f"hypothesis seed {seed}: replay with --hypothesis-seed={seed} (CI=true derandomises)"


def pytest_report_header(config: pytest.Config) -> str | None:
    return _seed_note(config)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    note = _seed_note(item.config)
    if report.failed and note and is_hypothesis_test(getattr(item, "obj", None)):
        report.sections.append(("hypothesis seed", note))


@pytest.fixture(autouse=True, scope="module")
def _module_torch_threads(request: pytest.FixtureRequest):
    threads = getattr(request.module, "TORCH_THREADS", None)
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory) -> ExperimentConfig:
    """The tiny budget of ``recipes/paper_full.py --tiny`` with its data cached in a temp dir."""
    from humr.experiment.recipe import tiny

    config = tiny(SYNTHETIC_CPU)
    root = tmp_path_factory.mktemp("synthetic")
    return replace(
        config,
        data=replace(config.data, root=str(root), num_train=24, num_test=8),
        train=replace(config.train, output_dir=str(tmp_path_factory.mktemp("run"))),
    )


@pytest.fixture(scope="session")
def tiny_datasets(tiny_config):
    from humr.experiment.data import build_datasets

    return build_datasets(tiny_config.data, tiny_config.body)
