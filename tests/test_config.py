"""Configs: round trips through JSON and the command line, validation of every field when a
config is built, and the ablations as config diffs."""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import re
import typing
from pathlib import Path

import pytest

from humr.ablations import sample_count_rows, table3_rows, table_s2_rows
from humr.config import PAPER_FULL, SYNTHETIC_CPU, ExperimentConfig, load_config, override, save_config
from humr.experiment.cli import _leaves, parse_config

ROOT = Path(__file__).resolve().parents[1]


def _flat(config) -> dict:
    """Every leaf by its dotted name (sections nest: ``model.flow.num_layers``)."""
    out = {}
    for name, value in (dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config).items():
        if isinstance(value, dict):
            out.update({f"{name}.{k}": v for k, v in _flat(value).items()})
        else:
            out[name] = value
    return out


def test_json_round_trip(tmp_path):
    for config in (PAPER_FULL, SYNTHETIC_CPU):
        save_config(config, tmp_path / "c.json")
        assert load_config(tmp_path / "c.json") == config


FLOW_FLAGS = [
    "--model.flow.num_layers", "2", "--model.flow.hidden_features", "8", "--model.flow.clamp", "1.5",
    "--model.flow.zero_init", "false", "--model.flow.permutation_seed", "7",
]


def test_every_flow_setting_reaches_the_model_and_its_config_json(tmp_path):
    """``model.flow`` is the flow's own config: settings the flat fields could not carry
    (``zero_init``, ``permutation_seed``) reach the flow, and config.json keeps them."""
    import torch

    from humr.flows.linear import FixedPermutation
    from humr.training.checkpoint import build_model

    config = parse_config(SYNTHETIC_CPU, FLOW_FLAGS)
    save_config(config, tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["model"]["flow"]["permutation_seed"] == 7
    assert load_config(tmp_path / "c.json") == config
    models = {}
    for zero_init in (True, False):
        run = override(config, {"model.flow.zero_init": zero_init})
        with torch.random.fork_rng(devices=[]):  # a fixed initialisation, the global RNG untouched
            torch.manual_seed(0)
            models[zero_init] = build_model(run)
    flow = models[False].flow
    d = 6 * models[False].num_pose_joints
    permutations = [m.permutation for m in flow.modules() if isinstance(m, FixedPermutation)]
    assert len(permutations) == 2 and flow.clamp == 1.5
    for i, permutation in enumerate(permutations):  # seed 7 + block i, drawn by a local generator
        expected = torch.randperm(d, generator=torch.Generator().manual_seed(7 + i))
        assert torch.equal(permutation, expected)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(3, 2, d, dtype=torch.float64, generator=gen)
    context = torch.randn(3, flow.context_features, generator=gen)
    with torch.no_grad():
        identity = models[True].flow.double().transform(z, context.double())
        moved = flow.double().transform(z, context.double())
    # zero_init: identity couplings, so the flow only permutes z; --model.flow.zero_init false: not
    assert torch.allclose(identity.sort(-1).values, z.sort(-1).values)
    assert not torch.allclose(moved.sort(-1).values, z.sort(-1).values)


def test_configs_with_the_flat_flow_fields_of_older_runs_still_load(tmp_path):
    data = dataclasses.asdict(parse_config(SYNTHETIC_CPU, FLOW_FLAGS[:6]))
    flow = data["model"].pop("flow")
    data["model"].update(flow=flow["kind"], flow_layers=flow["num_layers"],
                         flow_hidden=flow["hidden_features"], flow_clamp=flow["clamp"])
    (tmp_path / "old.json").write_text(json.dumps(data))
    loaded = load_config(tmp_path / "old.json").model.flow
    assert (loaded.kind, loaded.num_layers, loaded.hidden_features, loaded.clamp) == ("realnvp", 2, 8, 1.5)


def _names(hint) -> tuple[str, ...]:
    """The names a ``Literal`` (or optional ``Literal``) field accepts, else ()."""
    if typing.get_origin(hint) is typing.Literal:
        return typing.get_args(hint)
    inner = [a for a in typing.get_args(hint) if typing.get_origin(a) is typing.Literal]
    return typing.get_args(inner[0]) if inner else ()


def test_every_field_is_overridable_from_the_command_line():
    argv, expected = [], {}
    for dotted, hint in _leaves(ExperimentConfig):
        current = _flat(SYNTHETIC_CPU)[dotted]
        if _names(hint):  # another accepted name (the last one: "features" needs no HRNet width)
            new = text = [n for n in _names(hint) if n != current][-1]
        elif isinstance(current, bool):
            new, text = not current, str(not current).lower()
        elif isinstance(current, int):
            new, text = current + 3, str(current + 3)
        elif isinstance(current, float):  # stays inside [0, 1] for thresholds, > 0 for the rest
            new, text = current / 2 + 0.01, repr(current / 2 + 0.01)
        elif dotted == "data.ratios":
            new, text = (0.5,), "0.5"  # one ratio per data set
        elif isinstance(current, tuple):
            new, text = (0.5, 0.25), "0.5,0.25"
        else:  # str or None
            new, text = "x_" + str(current), "x_" + str(current)
        argv += [f"--{dotted}", text]
        expected[dotted] = new
    # Glow refuses the RealNVP-only settings changed above (clamp, permutation seed): its kind
    # changes in a run of its own.
    kind = argv.index("--model.flow.kind")
    argv, glow = argv[:kind] + argv[kind + 2 :], expected.pop("model.flow.kind")
    config = parse_config(SYNTHETIC_CPU, argv)
    flat = _flat(config)
    assert {k: flat[k] for k in expected} == expected
    assert parse_config(SYNTHETIC_CPU, ["--model.flow.kind", glow]).model.flow.kind == glow == "glow"


def test_aliases_and_errors():
    config = parse_config(
        SYNTHETIC_CPU,
        ["--steps", "7", "--body", "smplx", "--body-model-dir", "/x", "--devices", "2", "--flow", "glow"],
    )
    assert (config.train.max_steps, config.body, config.body_model_path, config.train.devices) == (
        7,
        "smplx",
        "/x",
        2,
    )
    assert config.model.flow.kind == "glow"
    with pytest.raises(SystemExit):
        parse_config(SYNTHETIC_CPU, ["--loss.no_such_field", "1"])
    with pytest.raises(ValueError, match="no field"):
        override(SYNTHETIC_CPU, {"loss.no_such": 1})


def _diff(a: ExperimentConfig, b: ExperimentConfig) -> set[str]:
    fa, fb = _flat(a), _flat(b)
    return {k for k in fa if fa[k] != fb[k] and k != "name"}


def test_table3_adds_one_component_per_row():
    rows = table3_rows(SYNTHETIC_CPU)
    assert [label for label, _ in rows][-1].startswith("+ L_mask")
    assert _diff(rows[-1][1], SYNTHETIC_CPU) == set()  # the last row is the full model
    expected = [  # (tests/test_ablations.py checks them against the paper's row names)
        {"model.use_bbox_info"},
        {"model.use_pose_condition"},
        {"model.flow.kind"},  # SYNTHETIC_CPU's flow already has ProHMR's 4 layers
        {"loss.mmd_weight", "loss.random_2d_loss", "loss.random_2d_weight"},
        {"loss.mask_weight"},
    ]
    for (_, prev), (_, cur), want in zip(rows, rows[1:], expected):
        assert _diff(prev, cur) == want
    assert rows[0][1].model.flow.kind == "glow" and rows[0][1].loss.mmd_weight == 0


def test_table_s2_and_sample_count_rows():
    rows = dict(table_s2_rows(SYNTHETIC_CPU))
    assert all(c.loss.mask_weight == 0 for c in rows.values())
    assert rows["L_MMD (ours)"].loss.mmd_weight == SYNTHETIC_CPU.loss.mmd_weight
    vis = rows["L_2D-vis, lambda=0.005"]
    assert (vis.loss.random_2d_loss, vis.loss.random_2d_weight, vis.loss.mmd_weight) == (
        "visible",
        0.005,
        0.0,
    )
    counts = [c.loss.num_samples for _, c in sample_count_rows(SYNTHETIC_CPU, (2, 25))]
    assert counts == [2, 25]


#: What SYNTHETIC_CPU may change of the paper's config (its docstring): the data, the body, the
#: encoder, the network widths, the batch and the training / evaluation budget. Never a loss.
CPU_BUDGET = {
    "body",
    "model.encoder",
    "model.image_features",
    "model.freeze_encoder",
    "model.pose_hidden",
    "model.pose_features",
    "model.flow.num_layers",
    "model.flow.hidden_features",
    "model.head_hidden",
    "data.dataset",
    "data.image_size",
    "data.batch_size",
    "train.max_steps",
    "train.lr",
    "train.checkpoint_every",
    "train.lr_schedule",
    "train.warmup_steps",
    "train.precision",
    "train.val_every",
    "eval.max_images",
}


def test_the_cpu_default_changes_only_the_budget_of_the_paper_config():
    changed = _diff(SYNTHETIC_CPU, PAPER_FULL)
    assert changed <= CPU_BUDGET, changed - CPU_BUDGET
    assert SYNTHETIC_CPU.loss == PAPER_FULL.loss  # "keeps every loss, weight and joint rule"


# ----------------------------------------------------------------------------- validation

BAD_VALUES = [
    ("loss.mmd_weight", math.nan),
    ("loss.mmd_weight", math.inf),
    ("loss.mask_weight", -0.1),
    ("loss.camera_scale_weight", -1.0),
    ("loss.random_2d_weight", math.nan),
    ("loss.mmd_weight", "0.1"),
    ("loss.mmd_bandwidths", (-1.0,)),
    ("loss.mmd_bandwidths", (0.2, math.inf)),
    ("loss.mmd_bandwidths", ()),
    ("loss.uncertain_threshold", 2.0),
    ("loss.visibility_threshold", -0.1),
    ("loss.heatmap_min_confidence", math.nan),
    ("loss.nll_noise", -0.005),
    ("loss.num_samples", 1),
    ("loss.mmd_reduction", "mean"),
    ("loss.random_2d_loss", "some"),
    ("loss.shape_reduction", "median"),
    ("loss.orth_reduction", "both"),
    ("loss.mask_normalization", "pixel"),
    ("loss.keypoint_2d_set", "h36m"),
    ("loss.nll_per_dimension", 1),
    ("train.lr", 0.0),
    ("train.lr", math.nan),
    ("train.weight_decay", -1e-4),
    ("train.checkpoint_every", 0),
    ("train.gradient_clip", -1.0),
    ("train.max_steps", 0),
    ("train.precision", "fp8"),
    ("train.accelerator", "abacus"),
    ("data.ratios", (1.0, 2.0)),  # two ratios, one data set
    ("data.ratios", (-1.0,)),
    ("data.dataset", "bedlam++agora"),
    ("data.test_dataset", "h36m"),
    ("data.batch_size", 0),
    ("data.num_workers", -1),
    ("model.flow.kind", "foo"),
    ("model.encoder", "resnet"),
    ("model.flow.clamp", 0.0),
    ("model.flow.num_layers", 0),
    ("model.flow.zero_init", "yes"),
    ("eval.test_focal", "exif"),
    ("eval.num_hypotheses", 0),
    ("eval.uncertain_threshold_mm", -5.0),
    ("body", "smurf"),
]


@pytest.mark.parametrize(("field", "value"), BAD_VALUES)
def test_each_bad_value_raises_naming_its_field_wherever_the_config_comes_from(field, value, tmp_path):
    named = re.escape(field) + ":"
    with pytest.raises(ValueError, match=named):
        override(SYNTHETIC_CPU, {field: value})
    # The same value in a config.json (lists and all, as JSON writes them).
    data = dataclasses.asdict(SYNTHETIC_CPU)
    *sections, leaf = field.split(".")
    where = data
    for section in sections:  # model.flow.kind: the flow's section inside the model's
        where = where[section]
    where[leaf] = list(value) if isinstance(value, tuple) else value
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=named):
        load_config(tmp_path / "config.json")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model.flow.kind", "foo"], "--model.flow.kind: expected one of realnvp, glow, found 'foo'"),
        (["--flow", "foo"], "--flow: expected one of realnvp, glow, found 'foo'"),
        (["--loss.mmd_weight", "nan"], "loss.mmd_weight: expected a finite value >= 0, found nan"),
        (["--loss.mmd_bandwidths", "-1"], "loss.mmd_bandwidths: expected a finite value > 0"),
        (["--loss.uncertain_threshold", "2"], "loss.uncertain_threshold: expected a value in [0, 1]"),
        (["--data.ratios", "1,2"], "data.ratios: expected 1 values, one per '+'-joined name"),
    ],
)
def test_the_recipes_refuse_a_bad_flag_naming_it_before_any_folder_exists(argv, message, tmp_path, capsys):
    from humr.experiment.recipe import main_full

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exited:
        main_full(["--tiny", "--output-dir", str(out), *argv])
    assert exited.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()


def test_an_unknown_data_set_is_named_before_the_body_or_any_folder(tmp_path):
    from humr.experiment.recipe import main_full

    out = tmp_path / "run"
    with pytest.raises(ValueError, match="data.dataset: unknown training set 'foo'"):
        main_full(["--data", "foo", "--output-dir", str(out)])
    assert not out.exists()


def test_fields_checked_together_change_together_in_any_order():
    for order in (("data.dataset", "data.ratios"), ("data.ratios", "data.dataset")):
        values = {"data.dataset": "bedlam+agora", "data.ratios": (1.0, 3.0)}
        config = override(PAPER_FULL, {k: values[k] for k in order})
        assert (config.data.dataset, config.data.ratios) == ("bedlam+agora", (1.0, 3.0))
    config = override(SYNTHETIC_CPU, {"model.image_features": 720, "model.encoder": "hrnet_w48"})
    assert config.model.encoder == "hrnet_w48"


def test_config_names_agree_with_the_code_that_uses_them():
    from lightning.fabric.connector import _PRECISION_INPUT_STR

    from humr.bodies.factory import BODY_NAMES
    from humr.config import BodyName, Precision, TestSetName
    from humr.experiment.real_data import TEST_SETS
    from humr.flows import FLOW_KINDS
    from humr.training.precision import NATIVE_BF16_FLAGS, resolve_precision

    assert set(typing.get_args(BodyName)) == set(BODY_NAMES)
    assert set(typing.get_args(dict(_leaves(ExperimentConfig))["model.flow.kind"])) == set(FLOW_KINDS)
    assert set(typing.get_args(TestSetName)) == set(TEST_SETS)
    # "auto" is humr's own and resolves to one of Lightning's names (humr.training.precision)
    assert set(typing.get_args(Precision)) - {"auto"} <= set(typing.get_args(_PRECISION_INPUT_STR))
    flag_sets = (frozenset(), NATIVE_BF16_FLAGS)
    resolved = {resolve_precision("auto", "cpu", cpu_flags=flags) for flags in flag_sets}
    assert resolved <= set(typing.get_args(_PRECISION_INPUT_STR))


@pytest.mark.parametrize("recipe", ["paper_full", "ablation_table3"])
def test_help_lists_tiny_and_keeps_the_recipes_line_breaks(recipe, monkeypatch, capsys):
    import sys

    from humr.experiment.recipe import main_full, main_rows

    source = (ROOT / "recipes" / f"{recipe}.py").read_text()
    doc = ast.get_docstring(ast.parse(source), clean=False)  # what Python makes of it
    monkeypatch.setattr(sys.modules["__main__"], "__doc__", doc)  # as when the recipe runs
    with pytest.raises(SystemExit) as exited:
        if recipe == "paper_full":
            main_full(["--help"])
        else:
            main_rows(table3_rows, "Table 3", "runs/table3", ["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and re.search(r"^\s+--tiny\s", out, re.MULTILINE)
    lines = set(out.splitlines())
    written = source.split('"""')[1].strip()  # the docstring as written, line by line
    for line in written.splitlines():
        assert not line.strip() or line.rstrip() in lines, line
