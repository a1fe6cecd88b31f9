"""Aggregate the distribution metrics over a data set with each metric's own weights.

Every metric is kept as a running ``(sum, count)`` pair, so that uneven batches weigh
exactly as the metric defines:

========================  ==========================================================
metric                    one entry is
========================  ==========================================================
``mpjpe_mode`` etc.       an image (its mode's error, the mean over joints/vertices)
``mpjpe_best`` etc.       an image (its best hypothesis' error)
``mpjpe_selected`` etc.   an image (the error of the hypothesis chosen without ground truth)
``kp2d_mode``             a visible joint of an image
``kp2d_samples``          a visible joint of a random hypothesis (index >= 1)
``spread_vis/invis``      a (joint, hypothesis) pair of that visibility class
``spread_*_torso``        the same, after the torso alignment
``perc_in/min_dist``      an invisible (joint, hypothesis) pair
``*_min_of_n`` curves     an image (one best-of-N value per N)
``calib_flag_recall``     a joint entry whose mode error exceeds 100 mm
``calib_flagged``         a joint entry
========================  ==========================================================

The calibration metrics (:meth:`MetricAccumulator.update_calibration`) need every joint
entry at once (ranks, quantiles): per entry, the spread, the mode error, the visibility and
the coverage at each level are kept (a few numbers per joint; cheap next to the images).

Example:
    >>> import torch
    >>> acc = MetricAccumulator()
    >>> gt = torch.zeros(3, 14, 3)
    >>> acc.update_accuracy(gt[:, None] + 0.01 * torch.rand(3, 4, 14, 3), gt, protocol="3dpw")
    >>> sorted(acc.compute())[:3]
    ['mpjpe_best', 'mpjpe_mode', 'pa_mpjpe_best']
    >>> acc.curve("mpjpe").shape
    torch.Size([4])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from humr.eval import calibration as C
from humr.eval import metrics as M
from humr.eval.uncertainty import joint_spread, uncertain

__all__ = ["MetricAccumulator", "TABLE_COLUMNS", "format_table"]


def _describe(x) -> object:
    return tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__


def _check_selected(selected, b: int, s: int) -> None:
    if not isinstance(selected, Tensor) or tuple(selected.shape) != (b,) or selected.is_floating_point():
        raise ValueError(f"selected: expected an integer tensor of shape ({b},), found {_describe(selected)}")
    if ((selected < 0) | (selected >= s)).any():
        raise ValueError(f"selected: expected indices in [0, {s}), found {selected.tolist()}")


class MetricAccumulator:
    """Running sums and counts of metrics over a data set (CPU float64, device-agnostic inputs)."""

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, Tensor] = {}
        self._curves: dict[str, Tensor] = {}
        self._curve_counts: dict[str, int] = {}
        self._entries: dict[str, list[Tensor]] = {}

    # ------------------------------------------------------------------ generic

    def add(self, name: str, total: Tensor | float, count: Tensor | int) -> None:
        """Add ``total`` over ``count`` entries to metric ``name``."""
        total = torch.as_tensor(total).detach().to("cpu", torch.float64)
        count = torch.as_tensor(count).detach().to("cpu", torch.int64)
        if total.dim() != 0 or count.dim() != 0:
            raise ValueError(f"total, count: expected 0-d values for {name!r}, found shapes "
                             f"{tuple(total.shape)} and {tuple(count.shape)}")
        if count < 0:
            raise ValueError(f"count: expected a non-negative number for {name!r}, found {int(count)}")
        self._sums[name] = self._sums.get(name, torch.zeros((), dtype=torch.float64)) + total
        self._counts[name] = self._counts.get(name, torch.zeros((), dtype=torch.int64)) + count

    def add_sum_count(self, name: str, value: M.SumCount) -> None:
        """Add a :class:`humr.eval.metrics.SumCount` to metric ``name``."""
        self.add(name, value.total, value.count)

    def add_per_image(self, name: str, values: Tensor) -> None:
        """Add one value per image: ``(B,)``."""
        if not isinstance(values, Tensor) or values.dim() != 1:
            raise ValueError(f"values: expected shape (B,) for {name!r}, found {_describe(values)}")
        self.add(name, values.sum(), values.shape[0])

    def add_curve(self, name: str, values: Tensor) -> None:
        """Add per-image curves ``(B, N)`` (e.g. :func:`humr.eval.metrics.min_of_n`); N fixed per name."""
        if not isinstance(values, Tensor) or values.dim() != 2:
            raise ValueError(f"values: expected shape (B, N) for curve {name!r}, found {_describe(values)}")
        total = values.detach().to("cpu", torch.float64).sum(0)
        if name in self._curves and self._curves[name].shape != total.shape:
            raise ValueError(f"values: curve {name!r} has N={self._curves[name].shape[0]} so far, "
                             f"found N={total.shape[0]}; use the same number of hypotheses throughout")
        self._curves[name] = self._curves.get(name, torch.zeros_like(total)) + total
        self._curve_counts[name] = self._curve_counts.get(name, 0) + values.shape[0]

    # ------------------------------------------------------------------ metric groups

    def update_accuracy(
        self,
        pred_joints: Tensor,
        gt_joints: Tensor,
        protocol: str | None = None,
        pred_vertices: Tensor | None = None,
        gt_vertices: Tensor | None = None,
        root: str | int | Sequence[int] | None = None,
        curves: bool = True,
        selected: Tensor | None = None,
    ) -> None:
        """MPJPE, PA-MPJPE and (with vertices) PVE: mode, best (and selected) per image, min-of-N curves.

        Args:
            pred_joints: ``(B, S, N, 3)`` metres, mode at index 0.
            gt_joints: ``(B, N, 3)`` metres.
            protocol: a name of :data:`humr.eval.metrics.PROTOCOLS` giving the root; or pass
                ``root`` (see :func:`humr.eval.metrics.mpjpe`); neither = already aligned.
            pred_vertices: ``(B, S, V, 3)`` metres, aligned on the joints' root.
            gt_vertices: ``(B, V, 3)`` metres.
            curves: also accumulate ``mpjpe``/``pa_mpjpe``/``pve`` best-of-N curves.
            selected: ``(B,)`` int, a hypothesis per image chosen without ground truth
                (:func:`humr.eval.select.select_hypotheses`): adds ``*_selected``.
        """
        if protocol is not None and root is not None:
            raise ValueError(f"protocol, root: expected at most one, found {protocol!r} and {root!r}")
        root = protocol if protocol is not None else root
        errors = {"mpjpe": M.mpjpe(pred_joints, gt_joints, root),
                  "pa_mpjpe": M.pa_mpjpe(pred_joints, gt_joints)}
        if (pred_vertices is None) != (gt_vertices is None):
            raise ValueError("pred_vertices, gt_vertices: expected both or neither")
        if pred_vertices is not None:
            if root is None:
                errors["pve"] = M.pve(pred_vertices, gt_vertices)
            else:
                errors["pve"] = M.pve(pred_vertices, gt_vertices, M.root_point(pred_joints, root),
                                      M.root_point(gt_joints, root))
        if selected is not None:
            _check_selected(selected, *errors["mpjpe"].shape)
        for name, err in errors.items():
            mode, best = M.mode_and_best(err)
            self.add_per_image(f"{name}_mode", mode)
            self.add_per_image(f"{name}_best", best)
            if selected is not None:
                self.add_per_image(f"{name}_selected", err.gather(1, selected.to(err.device)[:, None])[:, 0])
            if curves:
                self.add_curve(name, M.min_of_n(err))

    def update_consistency(self, pred_2d: Tensor, gt_2d: Tensor, visible: Tensor,
                           crop_pixels: int = 256) -> None:
        """2DKP error: ``pred_2d (B, S, K, 2)``, ``gt_2d (B, K, 2)`` crop coordinates, ``visible (B, K)``."""
        mode, samples = M.keypoint_2d_error_sums(pred_2d, gt_2d, visible, crop_pixels)
        self.add_sum_count("kp2d_mode", mode)
        self.add_sum_count("kp2d_samples", samples)

    def update_diversity(self, hyps_3d: Tensor, visible: Tensor, torso: Sequence[int] | None = None) -> None:
        """3D spread: ``hyps_3d (B, S, K, 3)`` metres (root-relative), ``visible (B, K)`` bool.

        With ``torso`` (joint indices, e.g. :data:`humr.eval.metrics.TORSO_COCO17`) also
        ``spread_vis_torso`` / ``spread_invis_torso``: the spread after
        :func:`humr.eval.metrics.torso_aligned` (not a paper metric: the limbs' own diversity).
        """
        vis, invis = M.sample_spread_sums(hyps_3d, visible)
        self.add_sum_count("spread_vis", vis)
        self.add_sum_count("spread_invis", invis)
        if torso is not None:
            vis, invis = M.sample_spread_sums(M.torso_aligned(hyps_3d, torso), visible)
            self.add_sum_count("spread_vis_torso", vis)
            self.add_sum_count("spread_invis_torso", invis)

    def update_plausibility(self, points: Tensor, distance_map: Tensor, invisible: Tensor, **kwargs) -> None:
        """PercIn and MinDist: arguments of :func:`humr.eval.metrics.mask_plausibility`."""
        perc, dist = M.mask_plausibility_sums(points, distance_map, invisible, **kwargs)
        self.add_sum_count("perc_in", perc)
        self.add_sum_count("min_dist", dist)

    def update_calibration(
        self,
        hyps_3d: Tensor,
        gt_3d: Tensor,
        threshold_mm: float,
        visible: Tensor | None = None,
        valid: Tensor | None = None,
        visibility_known: Tensor | None = None,
        large_error_mm: float = C.LARGE_ERROR_MM,
    ) -> None:
        """Spread vs mode error per joint entry, coverage, and how many large errors the spread flags.

        Args:
            hyps_3d: ``(B, S, K, 3)`` metres, mode at index 0.
            gt_3d: ``(B, K, 3)`` metres, in the hypotheses' frame (aligned on the same root).
            threshold_mm: a joint is flagged uncertain when its spread exceeds this (mm).
            visible: ``(B, K)`` bool, for the visible / invisible Spearman correlations.
            valid: ``(B, K)`` bool: entries with a ground truth (default all).
            visibility_known: ``(B, K)`` or ``(K,)`` bool: entries whose visibility is defined
                (default all when ``visible`` is given); the others count in the pooled values only.
            large_error_mm: mode errors above it are the failures ``calib_flag_recall`` counts.
        """
        error = C.mode_joint_errors(hyps_3d, gt_3d) * M.M_TO_MM  # checks both shapes
        b, k = error.shape
        spread = joint_spread(hyps_3d) * M.M_TO_MM
        covered = C.coverage(hyps_3d, gt_3d)
        keep = torch.ones(b, k, dtype=torch.bool, device=hyps_3d.device)
        if valid is not None:
            keep = M._check_bool("valid", valid, (b, k), "hyps_3d", hyps_3d).clone()
        code = torch.full((b, k), -1, dtype=torch.int8, device=hyps_3d.device)
        if visible is not None:
            vis = M._check_bool("visible", visible, (b, k), "hyps_3d", hyps_3d)
            known = torch.ones(b, k, dtype=torch.bool, device=hyps_3d.device)
            if visibility_known is not None:
                if not isinstance(visibility_known, Tensor) or visibility_known.dtype != torch.bool:
                    raise ValueError("visibility_known: expected a bool tensor (B, K) or (K,), found "
                                     f"{_describe(visibility_known)}")
                known = known & visibility_known.to(known.device).expand(b, k)
            code = torch.where(known, vis.to(torch.int8), code)
        flagged = uncertain(spread, threshold_mm) & keep
        large = (error > large_error_mm) & keep
        self.add("calib_flag_recall", (flagged & large).sum(), large.sum())
        self.add("calib_flagged", flagged.sum(), keep.sum())
        for name, value in (("spread", spread), ("error", error), ("visibility", code), ("covered", covered)):
            self._entries.setdefault(name, []).append(value[keep].detach().cpu())

    def _entry(self, name: str) -> Tensor:
        return torch.cat(self._entries[name]) if name in self._entries else torch.zeros(0)

    def coverage_curve(self, visibility: str = "all") -> tuple[Tensor, Tensor]:
        """``(levels (Q,), coverage (Q,))`` over the calibration entries of ``visibility``.

        ``visibility``: ``"all"``, ``"visible"`` or ``"invisible"``; NaN where there is no entry.
        """
        if visibility not in ("all", "visible", "invisible"):
            raise ValueError(f"visibility: expected 'all', 'visible' or 'invisible', found {visibility!r}")
        levels = torch.tensor(C.COVERAGE_LEVELS, dtype=torch.float64)
        covered, code = self._entry("covered"), self._entry("visibility")
        if covered.numel() and visibility != "all":
            covered = covered[code == (1 if visibility == "visible" else 0)]
        if covered.shape[0] == 0:
            return levels, torch.full_like(levels, float("nan"))
        return levels, covered.to(torch.float64).mean(0)

    def _calibration(self) -> dict[str, float]:
        if "spread" not in self._entries:
            return {}
        spread, error, code = self._entry("spread"), self._entry("error"), self._entry("visibility")
        out = {"calib_spearman": float(C.spearman_correlation(spread, error))}
        for suffix, value in (("vis", 1), ("invis", 0)):
            sel = code == value
            out[f"calib_spearman_{suffix}"] = float(C.spearman_correlation(spread[sel], error[sel]))
        levels, cov = self.coverage_curve()
        for level, value in zip(levels.tolist(), cov.tolist()):
            if round(level * 100) in (50, 90):
                out[f"calib_coverage_{round(level * 100)}"] = value
        return out

    # ------------------------------------------------------------------ results

    def merge(self, other: MetricAccumulator) -> None:
        """Add another accumulator's sums and counts (e.g. from another worker)."""
        for name in other._sums:
            self.add(name, other._sums[name], other._counts[name])
        for name in other._curves:
            n = other._curve_counts[name]
            if name in self._curves and self._curves[name].shape != other._curves[name].shape:
                raise ValueError(f"other: curve {name!r} has a different N "
                                 f"({other._curves[name].shape[0]} vs {self._curves[name].shape[0]})")
            mine = self._curves.get(name, torch.zeros_like(other._curves[name]))
            self._curves[name] = mine + other._curves[name]
            self._curve_counts[name] = self._curve_counts.get(name, 0) + n
        for name, values in other._entries.items():
            self._entries.setdefault(name, []).extend(values)

    def counts(self) -> dict[str, int]:
        """Number of entries behind each metric."""
        return {k: int(v) for k, v in self._counts.items()}

    def compute(self) -> dict[str, float]:
        """Weighted means ``sum / count`` of every metric (NaN where the count is 0), and the
        calibration values (``calib_spearman[_vis|_invis]``, ``calib_coverage_50|90``)."""
        out = {k: float(self._sums[k] / self._counts[k]) if self._counts[k] > 0 else float("nan")
               for k in self._sums}
        out.update(self._calibration())
        return dict(sorted(out.items()))

    def curve(self, name: str) -> Tensor:
        """Mean best-of-N curve ``(N,)`` of ``name`` (``"mpjpe"``, ``"pa_mpjpe"``, ``"pve"``)."""
        if name not in self._curves:
            raise ValueError(f"name: no curve {name!r}; have {sorted(self._curves)}")
        return self._curves[name] / self._curve_counts[name]

    def curves(self) -> dict[str, Tensor]:
        """Every mean best-of-N curve, by name."""
        return {k: self.curve(k) for k in sorted(self._curves)}


#: Columns of :func:`format_table`: (group title, [(sub-title, metric key, decimals), ...]).
TABLE_COLUMNS: tuple[tuple[str, tuple[tuple[str, str, int], ...]], ...] = (
    ("Mode", (("MPJPE", "mpjpe_mode", 1), ("PA-MPJPE", "pa_mpjpe_mode", 1), ("PVE", "pve_mode", 1))),
    ("Selected", (("MPJPE", "mpjpe_selected", 1), ("PA-MPJPE", "pa_mpjpe_selected", 1),
                  ("PVE", "pve_selected", 1))),
    ("Best of {S}", (("MPJPE", "mpjpe_best", 1), ("PA-MPJPE", "pa_mpjpe_best", 1), ("PVE", "pve_best", 1))),
    ("2DKP Mode / Samples", (("", "kp2d_mode", 2), ("", "kp2d_samples", 2))),
    ("Spread Vis. / Invis.", (("", "spread_vis", 1), ("", "spread_invis", 1))),
    ("PercIn / MinDist", (("", "perc_in", 1), ("", "min_dist", 3))),
    ("Calibration", (("rho", "calib_spearman", 2), ("rho vis", "calib_spearman_vis", 2),
                     ("rho inv", "calib_spearman_invis", 2), ("cov50", "calib_coverage_50", 2),
                     ("cov90", "calib_coverage_90", 2), ("flag>100", "calib_flag_recall", 2),
                     ("flagged", "calib_flagged", 2))),
)


def _mean(value) -> float:
    """A cell's value: a number, or the mean of a ``(mean, std, n)`` summary over seeds."""
    return float(value[0]) if isinstance(value, tuple) else float(value)


def _fmt(value, decimals: int) -> str:
    if value is None:
        return "-"
    mean = _mean(value)
    if mean != mean:
        return "-"
    if isinstance(value, tuple):  # (mean, std, n) over seeds (humr.eval.seeds)
        std = float(value[1])
        return f"{mean:.{decimals}f}" + (f"±{std:.{decimals}f}" if std == std else "")
    return f"{mean:.{decimals}f}"


def format_table(rows: Mapping[str, Mapping[str, float]], num_hypotheses: int | str = "S",
                 title: str | None = None) -> str:
    """A plain-text table shaped like the paper's Tables 1 and 2.

    Rows are models, columns MPJPE / PA-MPJPE / PVE of the mode, of the hypothesis selected
    without ground truth and of the best of S hypotheses (mm), 2DKP mode / samples (px), 3DKP
    spread visible / invisible (mm), PercIn (%) / MinDist, and the calibration: Spearman's rho
    of per-joint spread and mode error (all, visible, invisible joints), the coverage at the
    50 % and 90 % levels (calibrated: 0.50 and 0.90), the share of mode errors above 100 mm
    flagged uncertain, and the share of all joints flagged. A missing or NaN metric prints as
    ``-`` (as the paper's 3DPW plausibility cells); column groups no row has are left out.

    Args:
        rows: model name -> metrics (e.g. :meth:`MetricAccumulator.compute`); a metric may also be
            a ``(mean, std, n)`` summary over seeds (:func:`humr.eval.seeds.aggregate_rows`),
            printed as ``mean±std``.
        num_hypotheses: S in the "Best of S" header.
        title: an optional first line (e.g. the data set).

    Returns:
        The table as a string (print it).
    """
    if not rows:
        raise ValueError("rows: expected at least one model, found none")

    def present(key: str) -> bool:
        return any(key in m and m[key] is not None and _mean(m[key]) == _mean(m[key]) for m in rows.values())

    groups = [(g.format(S=num_hypotheses), cols) for g, cols in TABLE_COLUMNS
              if any(present(key) for _, key, _ in cols)]
    name_w = max(len("Model"), *(len(r) for r in rows))
    cells: dict[str, list[str]] = {}
    header1, header2 = [], []
    for gtitle, cols in groups:
        if all(sub for sub, _, _ in cols):  # one column per metric (Table 1 style)
            texts = {r: [_fmt(m.get(key), d) for _, key, d in cols] for r, m in rows.items()}
            widths = [max(len(sub), *(len(t[i]) for t in texts.values()))
                      for i, (sub, _, _) in enumerate(cols)]
            block_w = max(sum(widths) + 2 * (len(cols) - 1), len(gtitle))
            widths[-1] += block_w - (sum(widths) + 2 * (len(cols) - 1))
            header2.append("  ".join(sub.rjust(w) for (sub, _, _), w in zip(cols, widths)))
            for r, t in texts.items():
                cells.setdefault(r, []).append("  ".join(x.rjust(w) for x, w in zip(t, widths)))
        else:  # "a / b" pairs in one column (Table 2 style)
            texts = {r: " / ".join(_fmt(m.get(key), d) for _, key, d in cols) for r, m in rows.items()}
            block_w = max(len(gtitle), *(len(t) for t in texts.values()))
            header2.append(" " * block_w)
            for r, t in texts.items():
                cells.setdefault(r, []).append(t.rjust(block_w))
        header1.append(gtitle.center(block_w))
    sep = " | "
    lines = [title] if title else []
    lines.append(" " * name_w + sep + sep.join(header1))
    if any(h.strip() for h in header2):
        lines.append("Model".ljust(name_w) + sep + sep.join(header2))
    else:
        lines[-1] = "Model".ljust(name_w) + lines[-1][name_w:]
    rule = "-" * max(len(line) for line in lines)
    lines.append(rule)
    lines.extend(r.ljust(name_w) + sep + sep.join(cells[r]) for r in rows)
    return "\n".join(lines)
