"""Calibration of the spread (humr.eval.calibration, MetricAccumulator.update_calibration) against
scipy and numpy on hand-built hypothesis sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from humr.eval import calibration as C
from humr.eval.accumulator import MetricAccumulator, format_table

SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**31 - 1)


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")  # constant inputs: NaN expected
@SETTINGS
@given(seed=seeds, n=st.integers(2, 60), ties=st.booleans())
def test_spearman_matches_scipy(seed, n, ties):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    if ties:  # heavy ties on both sides: average ranks matter
        x, y = np.round(x), np.round(y * 2) / 2
    ref = spearmanr(x, y).statistic
    ours = float(C.spearman_correlation(torch.from_numpy(x), torch.from_numpy(y)))
    if math.isnan(ref):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(ref, abs=1e-12)


def test_spearman_of_monotone_data_is_one_and_undefined_cases_are_nan():
    x = torch.linspace(0, 1, 30, dtype=torch.float64)
    assert float(C.spearman_correlation(x, x.exp())) == pytest.approx(1.0)
    assert float(C.spearman_correlation(x, -x**3)) == pytest.approx(-1.0)
    assert math.isnan(float(C.spearman_correlation(x[:1], x[:1])))
    assert math.isnan(float(C.spearman_correlation(x, torch.ones_like(x))))


@SETTINGS
@given(seed=seeds, n=st.integers(1, 40))
def test_average_ranks_match_scipy_rankdata(seed, n):
    from scipy.stats import rankdata

    x = np.round(np.random.default_rng(seed).normal(size=n) * 2)
    np.testing.assert_array_equal(C.average_ranks(torch.from_numpy(x)).numpy(), rankdata(x))


def _numpy_coverage(points: np.ndarray, gt: np.ndarray, levels) -> np.ndarray:
    b, s, k, _ = points.shape
    out = np.zeros((b, k, len(levels)), bool)
    for i in range(b):
        for j in range(k):
            mean = points[i, :, j].mean(0)
            d = np.linalg.norm(points[i, :, j] - mean, axis=1)
            for q, level in enumerate(levels):
                out[i, j, q] = np.linalg.norm(gt[i, j] - mean) <= np.quantile(d, level)
    return out


@SETTINGS
@given(seed=seeds, s=st.integers(1, 30))
def test_coverage_matches_numpy_quantiles(seed, s):
    rng = np.random.default_rng(seed)
    points = rng.normal(0, 0.1, (3, s, 4, 3))
    gt = rng.normal(0, 0.1, (3, 4, 3))
    levels = C.COVERAGE_LEVELS
    ours = C.coverage(torch.from_numpy(points), torch.from_numpy(gt), levels).numpy()
    np.testing.assert_array_equal(ours, _numpy_coverage(points, gt, levels))


def test_a_set_concentrated_on_the_truth_covers_at_every_level():
    gt = torch.randn(4, 17, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    hyps = gt[:, None].expand(4, 10, 17, 3)
    assert C.coverage(hyps, gt).all()


def test_a_shifted_ring_has_the_coverage_of_its_radius_quantiles():
    """Hypotheses at distances 1 .. S/2 (in pairs around the mean, so the mean stays put), truth at
    distance r from the mean: covered exactly at the levels whose quantile radius reaches r."""
    s = 20
    radii = np.repeat(np.arange(1, s // 2 + 1), 2).astype(np.float64) * 0.01  # each radius twice
    signs = np.tile([1.0, -1.0], s // 2)
    points = np.zeros((1, s, 1, 3))
    points[0, :, 0, 0] = radii * signs
    for r in (0.0, 0.035, 0.055, 0.2):
        gt = np.array([[[0.0, r, 0.0]]])
        got = C.coverage(torch.from_numpy(points), torch.from_numpy(gt)).numpy()[0, 0]
        expected = [r <= np.quantile(radii, q) for q in C.COVERAGE_LEVELS]
        assert got.tolist() == expected, r
    # closed form: the sorted radii are 1, 1, 2, 2, ... cm; 5.25 cm lies a quarter of the way from
    # order statistic 9 (5 cm) to 10 (6 cm), so the ball reaches it from level 9.25 / 19 on.
    got = C.coverage(torch.from_numpy(points), torch.tensor([[[0.0, 0.0525, 0.0]]], dtype=torch.float64))
    levels = np.array(C.COVERAGE_LEVELS)
    assert got[0, 0].numpy().tolist() == (levels >= 9.25 / 19).tolist()
    assert got[0, 0].numpy().mean() == pytest.approx(11 / 20)


def _random_calibration_batch(g: torch.Generator, b: int):
    s, k = 6, 17
    scale = torch.rand(b, 1, k, 1, generator=g, dtype=torch.float64) * 0.2
    hyps = scale * torch.randn(b, s, k, 3, generator=g, dtype=torch.float64)
    gt = scale[:, 0] * 1.3 * torch.randn(b, k, 3, generator=g, dtype=torch.float64)
    visible = torch.rand(b, k, generator=g) > 0.5
    return hyps, gt, visible


@pytest.mark.filterwarnings("ignore::scipy.stats.ConstantInputWarning")
@settings(max_examples=10, deadline=None)
@given(seed=seeds, sizes=st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_accumulated_calibration_equals_scipy_and_numpy_on_everything(seed, sizes):
    g = torch.Generator().manual_seed(seed)
    batches = [_random_calibration_batch(g, b) for b in sizes]
    threshold = 60.0
    acc, a, b = MetricAccumulator(), MetricAccumulator(), MetricAccumulator()
    for i, (hyps, gt, vis) in enumerate(batches):
        acc.update_calibration(hyps, gt, threshold, visible=vis)
        (a if i % 2 else b).update_calibration(hyps, gt, threshold, visible=vis)
    got = acc.compute()
    hyps = torch.cat([x[0] for x in batches]).numpy()
    gt = torch.cat([x[1] for x in batches]).numpy()
    vis = torch.cat([x[2] for x in batches]).numpy()
    mean = hyps.mean(1)
    spread = np.linalg.norm(hyps - mean[:, None], axis=-1).mean(1) * 1000
    error = np.linalg.norm(hyps[:, 0] - gt, axis=-1) * 1000
    pooled = spearmanr(spread.ravel(), error.ravel()).statistic
    assert got["calib_spearman"] == pytest.approx(pooled, abs=1e-9)
    for name, sel in (("vis", vis), ("invis", ~vis)):
        ref = spearmanr(spread[sel], error[sel]).statistic if sel.sum() > 1 else float("nan")
        assert got[f"calib_spearman_{name}"] == pytest.approx(ref, abs=1e-9, nan_ok=True)
    cover = _numpy_coverage(hyps, gt, C.COVERAGE_LEVELS)
    levels = list(C.COVERAGE_LEVELS)
    assert got["calib_coverage_50"] == pytest.approx(cover[..., levels.index(0.5)].mean())
    assert got["calib_coverage_90"] == pytest.approx(cover[..., levels.index(0.9)].mean())
    np.testing.assert_allclose(acc.coverage_curve("invisible")[1].numpy(), cover[~vis].mean(0))
    large = error > 100
    recall = ((spread > threshold) & large).sum() / large.sum() if large.any() else float("nan")
    assert got["calib_flag_recall"] == pytest.approx(recall, nan_ok=True)
    assert got["calib_flagged"] == pytest.approx((spread > threshold).mean())
    a.merge(b)
    merged = a.compute()
    for key, value in got.items():
        assert merged[key] == pytest.approx(value, abs=1e-9, nan_ok=True), key


def test_valid_and_unknown_visibility_entries():
    g = torch.Generator().manual_seed(1)
    hyps, gt, vis = _random_calibration_batch(g, 4)
    valid = torch.rand(4, 17, generator=g) > 0.3
    known = torch.zeros(17, dtype=torch.bool)
    known[:9] = True
    acc = MetricAccumulator()
    acc.update_calibration(hyps, gt, 50.0, visible=vis, valid=valid, visibility_known=known)
    got = acc.compute()
    spread = (hyps - hyps.mean(1, keepdim=True)).norm(dim=-1).mean(1) * 1000
    error = (hyps[:, 0] - gt).norm(dim=-1) * 1000
    assert got["calib_spearman"] == pytest.approx(spearmanr(spread[valid], error[valid]).statistic)
    sel = valid & vis & known
    assert got["calib_spearman_vis"] == pytest.approx(spearmanr(spread[sel], error[sel]).statistic)


def test_table_prints_the_calibration_group():
    acc = MetricAccumulator()
    hyps, gt, vis = _random_calibration_batch(torch.Generator().manual_seed(2), 3)
    acc.update_calibration(hyps, gt, 50.0, visible=vis)
    text = format_table({"m": acc.compute()})
    assert "Calibration" in text and "cov90" in text


def test_protocol_joints_take_the_visibility_of_their_coco_namesakes():
    from humr.bodies.base import COCO17_NAMES, H36M14_NAMES, SMPL24_NAMES
    from humr.experiment.evaluation import coco_visibility_index

    h36m = coco_visibility_index(H36M14_NAMES).tolist()
    assert [COCO17_NAMES[i] for i in h36m[:12]] == ["coco_" + n[len("h36m_"):] for n in H36M14_NAMES[:12]]
    assert h36m[12:] == [-1, -1]  # neck and head top have no COCO keypoint
    smpl = dict(zip(SMPL24_NAMES, coco_visibility_index(SMPL24_NAMES).tolist()))
    assert smpl["left_knee"] == COCO17_NAMES.index("coco_left_knee") and smpl["pelvis"] == -1
    assert sum(v >= 0 for v in smpl.values()) == 12
