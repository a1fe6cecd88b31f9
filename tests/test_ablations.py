"""The paper's ablation rows as config diffs: each row changes exactly what the paper's row names."""

from __future__ import annotations

import dataclasses

import pytest

from humr.ablations import PROHMR_FLOW_LAYERS, table3_rows, table_s2_rows
from humr.config import PAPER_FULL, SYNTHETIC_CPU, ExperimentConfig


def flat(config: ExperimentConfig | dict) -> dict:
    """Every leaf by its dotted name (sections nest: ``model.flow.kind``)."""
    out = {}
    for name, value in (dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config).items():
        if isinstance(value, dict):
            out.update({f"{name}.{k}": v for k, v in flat(value).items()})
        else:
            out[name] = value
    return out


def diff(a: ExperimentConfig, b: ExperimentConfig) -> dict[str, tuple]:
    fa, fb = flat(a), flat(b)
    return {k: (fa[k], fb[k]) for k in fa if fa[k] != fb[k] and k != "name"}


#: What each Table 3 row adds, in the paper's words, as the fields that say it.
NAMED = {
    "+ bbox info": {"model.use_bbox_info"},
    "+ 2D pose condition": {"model.use_pose_condition"},
    # the flow: RealNVP instead of ProHMR's Glow, at the full model's depth instead of ProHMR's
    "+ RealNVP": {"model.flow.kind", "model.flow.num_layers"},
    # L_MMD replaces the baseline's L_2D-all on random hypotheses
    "+ L_MMD": {"loss.mmd_weight", "loss.random_2d_loss", "loss.random_2d_weight"},
    "+ L_mask (full)": {"loss.mask_weight"},
}


@pytest.mark.parametrize("full", [SYNTHETIC_CPU, PAPER_FULL], ids=["synthetic", "paper"])
def test_table3_rows_differ_in_exactly_the_fields_the_papers_rows_name(full):
    rows = table3_rows(full)
    assert [label for label, _ in rows] == ["ProHMR (baseline)", *NAMED]
    for (prev_label, prev), (label, cur) in zip(rows, rows[1:]):
        changed = diff(prev, cur)
        print(f"{prev_label} -> {label}: {changed}")
        assert set(changed) <= NAMED[label], label
        assert NAMED[label] - {"model.flow.num_layers"} <= set(changed), label  # the depth may already match
    assert diff(rows[-1][1], full) == {}  # the last row is the full model
    realnvp = dict(rows)["+ RealNVP"]
    assert ("model.flow.num_layers" in diff(dict(rows)["+ 2D pose condition"], realnvp)) == (
        full.model.flow.num_layers != PROHMR_FLOW_LAYERS)


@pytest.mark.parametrize("full", [SYNTHETIC_CPU, PAPER_FULL], ids=["synthetic", "paper"])
def test_table3_baseline_rows_are_prohmr_with_l2d_all_at_1e_3(full):
    rows = dict(table3_rows(full))
    for label in ("ProHMR (baseline)", "+ bbox info", "+ 2D pose condition", "+ RealNVP"):
        loss = rows[label].loss
        assert (loss.random_2d_loss, loss.random_2d_weight, loss.mmd_weight, loss.mask_weight) == (
            "all", 1e-3, 0.0, 0.0), label
    for label in ("ProHMR (baseline)", "+ bbox info", "+ 2D pose condition"):
        assert (rows[label].model.flow.kind, rows[label].model.flow.num_layers) == ("glow", 4), label
    assert (rows["+ L_MMD"].loss.random_2d_weight, rows["+ L_MMD"].loss.mmd_weight) == (
        full.loss.random_2d_weight, full.loss.mmd_weight)
    baseline = rows["ProHMR (baseline)"].model
    assert not baseline.use_bbox_info and not baseline.use_pose_condition


@pytest.mark.parametrize("full", [SYNTHETIC_CPU, PAPER_FULL], ids=["synthetic", "paper"])
def test_table3_realnvp_and_mmd_rows_are_the_table_s2_rows_the_papers_numbers_match(full):
    """Table 3 "+ RealNVP" = Table S2 "L_2D-all, 1e-3" and "+ L_MMD" = "L_MMD (ours)" (same numbers
    in the paper): the configs are the same too."""
    t3, s2 = dict(table3_rows(full)), dict(table_s2_rows(full))
    assert diff(t3["+ RealNVP"], s2["L_2D-all, lambda=0.001"]) == {}
    assert diff(t3["+ L_MMD"], s2["L_MMD (ours)"]) == {}
