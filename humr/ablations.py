"""The paper's ablations as config diffs from a full config (Table 3, Table S2, Fig. S2).

Each function takes the full configuration (``SYNTHETIC_CPU`` or ``PAPER_FULL``) and returns
``[(row label, config), ...]`` in the paper's row order.
"""

from __future__ import annotations

from dataclasses import replace

from humr.config import ExperimentConfig

__all__ = ["table3_rows", "table_s2_rows", "sample_count_rows"]


def _with(
    config: ExperimentConfig,
    name: str,
    model: dict | None = None,
    loss: dict | None = None,
) -> ExperimentConfig:
    return replace(
        config,
        name=name,
        model=replace(config.model, **(model or {})),
        loss=replace(config.loss, **(loss or {})),
    )


def table3_rows(full: ExperimentConfig) -> list[tuple[str, ExperimentConfig]]:
    """Table 3: from the ProHMR baseline, components added one after the other.

    The baseline is the Glow-style volume-preserving flow conditioned on image features only,
    trained without L_MMD and L_mask (random hypotheses unsupervised, as in the supplementary's
    baseline); each row switches one component on.
    """
    steps = [
        (
            "ProHMR (baseline)",
            {"flow": "glow", "use_bbox_info": False, "use_pose_condition": False},
            {"mmd_weight": 0.0, "mask_weight": 0.0},
        ),
        (
            "+ bbox info",
            {"flow": "glow", "use_pose_condition": False},
            {"mmd_weight": 0.0, "mask_weight": 0.0},
        ),
        ("+ 2D pose condition", {"flow": "glow"}, {"mmd_weight": 0.0, "mask_weight": 0.0}),
        ("+ RealNVP", {}, {"mmd_weight": 0.0, "mask_weight": 0.0}),
        ("+ L_MMD", {}, {"mask_weight": 0.0}),
        ("+ L_mask (full)", {}, {}),
    ]
    return [(label, _with(full, f"table3_{i}", model, loss)) for i, (label, model, loss) in enumerate(steps)]


def table_s2_rows(
    full: ExperimentConfig,
    weights: tuple[float, ...] = (1e-3, 5e-3, 1e-2),
) -> list[tuple[str, ExperimentConfig]]:
    """Table S2: ways of supervising random hypotheses (L_mask off in every row)."""
    rows = [("no supervision", _with(full, "tableS2_none", loss={"mmd_weight": 0.0, "mask_weight": 0.0}))]
    for which in ("all", "visible"):
        for w in weights:
            rows.append(
                (
                    f"L_2D-{'all' if which == 'all' else 'vis'}, lambda={w:g}",
                    _with(
                        full,
                        f"tableS2_{which}_{w:g}",
                        loss={
                            "mmd_weight": 0.0,
                            "mask_weight": 0.0,
                            "random_2d_loss": which,
                            "random_2d_weight": w,
                        },
                    ),
                )
            )
    rows.append(("L_MMD (ours)", _with(full, "tableS2_mmd", loss={"mask_weight": 0.0})))
    return rows


def sample_count_rows(
    full: ExperimentConfig,
    counts: tuple[int, ...] = (2, 5, 10, 25, 50),
) -> list[tuple[str, ExperimentConfig]]:
    """Fig. S2: the number n of heatmap samples (and random hypotheses) in L_MMD."""
    return [(f"n = {n}", _with(full, f"figS2_n{n}", loss={"num_samples": n})) for n in counts]
