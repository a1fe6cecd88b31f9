"""Runs that lose nothing: interrupts save and resume, a resume that does not fit refuses before
writing anything, Lightning's output stays quiet, and the test suite itself is reproducible."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from humr.config import override

ROOT = Path(__file__).resolve().parents[1]


def _run_config(tiny_config, out: Path, steps: int, checkpoint_every: int = 100):
    return replace(
        tiny_config,
        train=replace(
            tiny_config.train, output_dir=str(out), max_steps=steps, checkpoint_every=checkpoint_every
        ),
    )


def _step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


# ----------------------------------------------------------------------------- interrupts


def test_sigint_saves_the_current_step_exits_130_and_the_resumed_run_ends_at_the_same_step(
    tiny_config, tiny_datasets, tmp_path, monkeypatch, capsys
):
    from humr.experiment.run import TrainingInterrupted, train
    from humr.training.module import HumrLightning

    config = _run_config(tiny_config, tmp_path / "run", steps=5)  # no periodic checkpoint before 100
    step = HumrLightning.training_step

    def interrupted_step(self, batch, batch_idx):
        if self.global_step == 1:  # Ctrl-C during the second step
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, batch, batch_idx)

    monkeypatch.setattr(HumrLightning, "training_step", interrupted_step)
    with pytest.raises(TrainingInterrupted) as caught:
        train(config, progress=False)
    monkeypatch.undo()
    assert caught.value.code == 130 and caught.value.step == 2
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert caught.value.checkpoint == last and _step(last) == 2  # the step the signal ended
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    err = capsys.readouterr().err
    assert f"resume with: {caught.value.command}" in err
    resume_args = ["--config", str(tmp_path / "run" / "config.json"), "--resume", "last"]
    assert shlex.split(caught.value.command)[-4:] == resume_args
    _, last = train(replace(config, train=replace(config.train, resume="last")), progress=False)
    assert _step(last) == config.train.max_steps


@pytest.mark.slow
def test_sigterm_stops_the_recipe_with_143_and_its_resume_command_finishes_the_run(
    tiny_config, tiny_datasets, tmp_path
):
    out = tmp_path / "run"
    argv = [
        "--tiny",
        "--steps",
        "12",
        "--train.checkpoint_every",
        "2",
        "--output-dir",
        str(out),
        "--data.root",
        tiny_config.data.root,
        "--data.num_train",
        str(tiny_config.data.num_train),
        "--data.num_test",
        str(tiny_config.data.num_test),
        "--eval.plots",
        "false",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "recipes" / "paper_full.py"), *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    last = out / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # the first periodic checkpoint: training is under way
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 143, stderr[-3000:]
    interrupted = _step(last)
    assert 2 <= interrupted < 12 and not (out / "metrics.json").exists()
    command = next(line for line in stderr.splitlines() if line.startswith("resume with: "))
    words = shlex.split(command.removeprefix("resume with: "))
    assert words[0] == "python" and words[-4:] == ["--config", str(out / "config.json"), "--resume", "last"]
    resumed = subprocess.run(
        [sys.executable, *words[1:]], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert _step(last) == 12 and (out / "metrics.json").is_file()
    # Lightning's advertisement and its internal deprecation warning are not the user's business.
    for text in (stdout + stderr, resumed.stdout + resumed.stderr):
        assert "💡" not in text and "litlogger" not in text and "LeafSpec" not in text
        assert "`weights_only` was not set" not in text


# ----------------------------------------------------------------------------- resume checks


@pytest.fixture(scope="module")
def finished_run(tiny_config, tiny_datasets, tmp_path_factory):
    """A tiny run trained to step 3, and the bytes of its config.json."""
    from humr.experiment.run import train

    config = _run_config(tiny_config, tmp_path_factory.mktemp("finished"), steps=3)
    _, last = train(config, progress=False)
    return config, last


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model.flow.num_layers": 1}, r"model\.flow\.num_layers: checkpoint 2, requested 1"),
        ({"loss.mmd_weight": 0.5, "train.lr": 3e-3}, r"loss\.mmd_weight: .*train\.lr: "),
        ({"train.max_steps": 3}, r"already at step 3; .*train\.max_steps > 3, found 3"),
        ({"train.max_steps": 2}, r"already at step 3"),
    ],
)
def test_a_resume_that_does_not_fit_refuses_before_touching_the_run(finished_run, change, message):
    from humr.experiment.run import train

    config, last = finished_run
    folder = Path(config.train.output_dir)
    before = {p: p.read_bytes() for p in (folder / "config.json", last)}
    with pytest.raises(ValueError, match=message):
        train(override(config, {"train.resume": "last", **change}), progress=False)
    assert {p: p.read_bytes() for p in before} == before


def test_a_resume_may_change_what_does_not_define_the_run(finished_run, tmp_path):
    from humr.experiment.run import check_resume

    config, last = finished_run
    changed = override(
        config,
        {
            "train.resume": str(last),
            "train.max_steps": 7,
            "train.checkpoint_every": 3,
            "train.log_every": 5,
            "train.output_dir": str(tmp_path / "elsewhere"),
            "eval.num_hypotheses": 4,
            "data.num_workers": 1,
            "name": "renamed",
        },
    )
    assert check_resume(changed, last) == 3


# ----------------------------------------------------------------------------- CI reproducibility


def _examples(profile: str) -> list[int]:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    seen: list[int] = []

    @settings(settings.get_profile(profile), max_examples=20)
    @given(st.integers(0, 2**62))
    def record(x):
        seen.append(x)

    record()
    return seen


def test_ci_profile_is_chosen_by_the_environment_and_derandomises():
    from conftest import hypothesis_profile_name

    assert hypothesis_profile_name({"CI": "true"}) == "ci"
    assert hypothesis_profile_name({}) == "dev"
    assert hypothesis_profile_name({"CI": "true", "HYPOTHESIS_PROFILE": "dev"}) == "dev"
    assert _examples("ci") == _examples("ci")


_PROPERTY_TESTS = """
from hypothesis import given, strategies as st

@given(st.integers(0, 2**62))
def test_passes(x):
    print("drew", x)

@given(st.integers(0, 10**9))
def test_fails(x):
    assert x % 7 != 3
"""


@pytest.mark.slow
def test_local_sessions_explore_print_their_seed_and_replay_it_while_ci_repeats(tmp_path):
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_properties.py").write_text(_PROPERTY_TESTS)
    local = {k: v for k, v in os.environ.items() if k not in ("CI", "HYPOTHESIS_PROFILE")}

    def session(env: dict[str, str], *extra: str) -> tuple[list[str], str]:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-qs", "-p", "no:cacheprovider", "test_properties.py", *extra],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert result.returncode == 1, result.stdout[-3000:]  # test_fails fails, test_passes passes
        return [line for line in result.stdout.splitlines() if line.startswith("drew")], result.stdout

    drawn_a, out_a = session(local)
    drawn_b, out_b = session(local)
    seed_a = out_a.split("--hypothesis-seed=")[1].split()[0]
    assert drawn_a != drawn_b and seed_a != out_b.split("--hypothesis-seed=")[1].split()[0]
    failure = out_a[out_a.index("test_fails") :]
    assert f"--hypothesis-seed={seed_a}" in failure  # printed under the failing test too
    assert session(local, f"--hypothesis-seed={seed_a}")[0] == drawn_a
    ci = {**local, "CI": "true"}
    (drawn_c, out_c), (drawn_d, _) = session(ci), session(ci)
    assert drawn_c == drawn_d and "--hypothesis-seed" not in out_c


def test_the_readme_test_command_collects_the_doctests():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "humr/config.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "humr/config.py::humr.config" in result.stdout, result.stdout[-2000:]


def test_the_torch_floor_allows_no_version_without_fused_cpu_adamw():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from packaging.requirements import Requirement

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(Requirement(d) for d in deps if Requirement(d).name == "torch")
    # AdamW(fused=True) on CPU tensors arrived in torch 2.4; the module builds it so.
    assert not torch_req.specifier.contains("2.3.1") and torch_req.specifier.contains("2.4.0")
