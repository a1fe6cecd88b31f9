"""humr.eval.metrics and humr.eval.accumulator against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import roma
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation
from torch import Tensor

from humr.bodies.base import H36M14_NAMES, SMPL24_NAMES
from humr.eval import metrics as M
from humr.eval.accumulator import TABLE_COLUMNS, MetricAccumulator, format_table
from humr.losses.mask import mask_to_distance_map

SETTINGS = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- accuracy


def _scipy_pa_mpjpe(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Similarity Procrustes of x (N, 3) onto y via scipy; returns (error in m, det R)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    r, sv_sum = orthogonal_procrustes(xc, yc)  # argmin |xc R - yc|
    s = sv_sum / (xc**2).sum()
    return float(np.linalg.norm(s * xc @ r - yc, axis=1).mean()), float(np.linalg.det(r))


@SETTINGS
@given(seed=seeds, n=st.integers(4, 20), noise=st.floats(0.0, 0.05), scale=st.floats(0.3, 3.0))
def test_pa_mpjpe_matches_scipy_procrustes(seed, n, noise, scale):
    rng = np.random.default_rng(seed)
    b, s = 2, 3
    gt = rng.normal(0, 0.4, (b, n, 3))
    rot = Rotation.random(b * s, random_state=seed).as_matrix().reshape(b, s, 3, 3)
    pred = scale * np.einsum("bsij,bnj->bsni", rot, gt) + rng.normal(0, 1, (b, s, 1, 3))
    pred = pred + rng.normal(0, noise, pred.shape)
    ours = M.pa_mpjpe(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    for i in range(b):
        for j in range(s):
            ref, det = _scipy_pa_mpjpe(pred[i, j], gt[i])
            assume(det > 0)  # scipy allows reflections; at this noise level the optimum is a rotation
            assert ours[i, j] == pytest.approx(ref * 1000.0, rel=1e-6, abs=1e-6)


@SETTINGS
@given(seed=seeds, scale=st.floats(0.2, 5.0))
def test_pa_mpjpe_is_zero_for_a_similarity_transform(seed, scale):
    rng = np.random.default_rng(seed)
    gt = torch.from_numpy(rng.normal(0, 0.5, (3, 14, 3)))
    rot = torch.from_numpy(Rotation.random(3 * 5, random_state=seed).as_matrix().reshape(3, 5, 3, 3))
    pred = scale * torch.einsum("bsij,bnj->bsni", rot, gt) + torch.from_numpy(rng.normal(0, 2, (3, 5, 1, 3)))
    assert M.pa_mpjpe(pred, gt).abs().max() < 1e-6
    # float32 too, to a looser tolerance
    assert M.pa_mpjpe(pred.float(), gt.float()).abs().max() < 0.05


@SETTINGS
@given(seed=seeds)
def test_mpjpe_brute_force_and_root_alignment(seed):
    rng = np.random.default_rng(seed)
    gt = rng.normal(0, 0.5, (2, 14, 3))
    pred = gt[:, None] + rng.normal(0, 0.05, (2, 4, 14, 3))
    ref = np.array([[np.mean([np.linalg.norm(pred[b, s, n] - gt[b, n]) for n in range(14)])
                     for s in range(4)] for b in range(2)]) * 1000
    ours = M.mpjpe(torch.from_numpy(pred), torch.from_numpy(gt)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    # with a root, a per-hypothesis translation of pred (and of gt) changes nothing
    shifted = pred + rng.normal(0, 1, (2, 4, 1, 3))
    moved_gt = gt + rng.normal(0, 1, (2, 1, 3))
    a = M.mpjpe(torch.from_numpy(pred), torch.from_numpy(gt), root="3dpw")
    b = M.mpjpe(torch.from_numpy(shifted), torch.from_numpy(moved_gt), root="3dpw")
    torch.testing.assert_close(a, b)


def test_protocol_roots_are_the_hip_midpoints():
    for name, names, hips in (("3dpw", H36M14_NAMES, ("h36m_left_hip", "h36m_right_hip")),
                              ("emdb", SMPL24_NAMES, ("left_hip", "right_hip"))):
        pts = torch.randn(2, 3, len(names), 3, generator=_gen(0))
        expected = (pts[..., names.index(hips[0]), :] + pts[..., names.index(hips[1]), :]) / 2
        torch.testing.assert_close(M.root_point(pts, name), expected)
    with pytest.raises(ValueError, match="points"):
        M.root_point(torch.zeros(2, 24, 3), "3dpw")


def test_pve_aligns_on_given_roots():
    g = _gen(1)
    gt = torch.randn(2, 50, 3, generator=g, dtype=torch.float64)
    pred = gt[:, None] + 0.01 * torch.randn(2, 3, 50, 3, generator=g, dtype=torch.float64)
    gt_root = torch.randn(2, 3, generator=g, dtype=torch.float64)
    pred_root = torch.randn(2, 3, 3, generator=g, dtype=torch.float64)
    plain = M.pve(pred, gt)
    # shifting everything by its root and passing the roots undoes the shift
    moved = M.pve(pred + pred_root[:, :, None], gt + gt_root[:, None], pred_root, gt_root)
    torch.testing.assert_close(plain, moved)
    ref = (pred - gt[:, None]).pow(2).sum(-1).sqrt().mean(-1) * 1000
    torch.testing.assert_close(plain, ref)
    with pytest.raises(ValueError, match="pred_root"):
        M.pve(pred, gt, pred_root, None)


@SETTINGS
@given(seed=seeds, b=st.integers(1, 5), s=st.integers(1, 30))
def test_min_of_n_equals_brute_force(seed, b, s):
    errors = torch.rand(b, s, generator=_gen(seed))
    curve = M.min_of_n(errors)
    for n in range(1, s + 1):
        torch.testing.assert_close(curve[:, n - 1], errors[:, :n].min(1).values)
    mode, best = M.mode_and_best(errors)
    torch.testing.assert_close(mode, errors[:, 0])
    torch.testing.assert_close(best, curve[:, -1])


# ----------------------------------------------------------------------------- consistency


@SETTINGS
@given(seed=seeds, s=st.integers(2, 6), crop=st.sampled_from([224, 256]))
def test_keypoint_2d_error_brute_force(seed, s, crop):
    rng = np.random.default_rng(seed)
    b, k = 3, 17
    pred, gt = rng.uniform(-1, 1, (b, s, k, 2)), rng.uniform(-1, 1, (b, k, 2))
    conf = rng.uniform(0, 1, (b, k))
    vis = M.visible_from_confidence(torch.from_numpy(conf))
    assume(bool(vis.any()))
    mode_terms, sample_terms = [], []
    for i in range(b):
        for j in range(k):
            if conf[i, j] >= 0.5:
                mode_terms.append(math.dist(pred[i, 0, j] * crop / 2, gt[i, j] * crop / 2))
                sample_terms += [math.dist(pred[i, h, j] * crop / 2, gt[i, j] * crop / 2)
                                 for h in range(1, s)]
    mode, samples = M.keypoint_2d_error(torch.from_numpy(pred), torch.from_numpy(gt), vis, crop_pixels=crop)
    assert float(mode) == pytest.approx(np.mean(mode_terms), rel=1e-10)
    assert float(samples) == pytest.approx(np.mean(sample_terms), rel=1e-10)


def test_visibility_threshold_is_configurable():
    conf = torch.tensor([[0.2, 0.5, 0.7]])
    assert M.visible_from_confidence(conf).tolist() == [[False, True, True]]
    assert M.visible_from_confidence(conf, threshold=0.6).tolist() == [[False, False, True]]


# ----------------------------------------------------------------------------- diversity


@SETTINGS
@given(seed=seeds, s=st.integers(1, 8))
def test_spread_of_identical_hypotheses_is_zero(seed, s):
    one = torch.randn(2, 1, 17, 3, generator=_gen(seed), dtype=torch.float64)
    vis = torch.rand(2, 17, generator=_gen(seed + 1)) > 0.5
    vis[0, 0], vis[0, 1] = True, False  # both classes present
    v, iv = M.sample_spread(one.expand(2, s, 17, 3), vis)
    assert float(v) == pytest.approx(0.0, abs=1e-9) and float(iv) == pytest.approx(0.0, abs=1e-9)


@SETTINGS
@given(seed=seeds)
def test_spread_of_two_mirrored_hypotheses_is_their_half_distance(seed):
    g = _gen(seed)
    c = torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64)
    d = torch.randn(1, 1, 3, 3, generator=g, dtype=torch.float64)
    hyps = torch.cat([c + d, c - d], dim=1)  # (1, 2, 3, 3)
    vis = torch.tensor([[True, False, False]])
    v, iv = M.sample_spread(hyps, vis)
    half = (2 * d).norm(dim=-1)[0, 0] / 2 * 1000  # (3,) per joint
    assert float(v) == pytest.approx(float(half[0]), rel=1e-10)
    assert float(iv) == pytest.approx(float(half[1:].mean()), rel=1e-10)


@SETTINGS
@given(seed=seeds, s=st.integers(2, 6))
def test_spread_brute_force_per_class_normalisation(seed, s):
    rng = np.random.default_rng(seed)
    hyps = rng.normal(0, 0.1, (3, s, 5, 3))
    vis = rng.random((3, 5)) > 0.6
    assume(vis.any() and (~vis).any())
    terms = {True: [], False: []}
    for b in range(3):
        for k in range(5):
            mean = hyps[b, :, k].mean(0)
            terms[bool(vis[b, k])] += [np.linalg.norm(hyps[b, h, k] - mean) * 1000 for h in range(s)]
    v, iv = M.sample_spread(torch.from_numpy(hyps), torch.from_numpy(vis))
    assert float(v) == pytest.approx(np.mean(terms[True]), rel=1e-10)
    assert float(iv) == pytest.approx(np.mean(terms[False]), rel=1e-10)


# ----------------------------------------------------------------------------- plausibility


def _cell_centres(h: int, w: int, extent: float = 1.0) -> np.ndarray:
    ys = -extent + (np.arange(h) + 0.5) * 2 * extent / h
    xs = -extent + (np.arange(w) + 0.5) * 2 * extent / w
    return np.stack(np.meshgrid(xs, ys), -1)  # (h, w, 2) as (x, y)


@SETTINGS
@given(seed=seeds, h=st.integers(3, 9), dw=st.integers(0, 8), s=st.integers(1, 6))
def test_mask_plausibility_against_distance_to_every_mask_pixel(seed, h, dw, s):
    # cells at most twice as wide as high: the default tolerance (half the larger side) then
    # stays below the distance to any neighbouring cell centre
    w = h + dw % h
    rng = np.random.default_rng(seed)
    b, k = 2, 4
    masks = rng.random((b, h, w)) > 0.6
    masks[:, rng.integers(h), rng.integers(w)] = True
    dmap = mask_to_distance_map(torch.from_numpy(masks)).double()
    centres = _cell_centres(h, w)
    # hypotheses at cell centres, where the map is exact
    rows, cols = rng.integers(0, h, (b, s, k)), rng.integers(0, w, (b, s, k))
    pts = centres[rows, cols]  # (b, s, k, 2)
    invisible = rng.random((b, k)) > 0.4
    assume(invisible.any())
    dists, inside = [], []
    for i in range(b):
        mask_pts = centres[masks[i]]  # every mask pixel centre
        for j in range(s):
            for q in range(k):
                if invisible[i, q]:
                    d = np.linalg.norm(mask_pts - pts[i, j, q], axis=1).min()
                    dists.append(d)
                    inside.append(d == 0)
    perc, min_dist = M.mask_plausibility(torch.from_numpy(pts), dmap, torch.from_numpy(invisible))
    assert float(perc) == pytest.approx(100 * np.mean(inside), abs=1e-9)
    assert float(min_dist) == pytest.approx(np.mean(dists), rel=1e-5, abs=1e-6)
    _, px = M.mask_plausibility(torch.from_numpy(pts), dmap, torch.from_numpy(invisible), unit="pixels",
                                crop_pixels=224)
    assert float(px) == pytest.approx(np.mean(dists) * 112, rel=1e-5, abs=1e-5)


@SETTINGS
@given(seed=seeds, h=st.integers(4, 9), w=st.integers(4, 9))
def test_mask_plausibility_anywhere_is_within_one_cell_of_brute_force(seed, h, w):
    rng = np.random.default_rng(seed)
    mask = rng.random((1, h, w)) > 0.5
    mask[0, rng.integers(h), rng.integers(w)] = True
    dmap = mask_to_distance_map(torch.from_numpy(mask)).double()
    pts = rng.uniform(-1.3, 1.3, (1, 20, 1, 2))
    mask_pts = _cell_centres(h, w)[mask[0]]
    brute = np.linalg.norm(mask_pts[None] - pts[0, :, 0, None], axis=-1).min(1)  # (20,)
    cell_diag = math.hypot(2 / h, 2 / w)
    outside = np.linalg.norm(np.clip(np.abs(pts[0, :, 0]) - 1.0, 0.0, None), axis=-1)  # distance to the map
    for j in range(20):
        one = torch.ones(1, 1, dtype=torch.bool)
        _, d = M.mask_plausibility(torch.from_numpy(pts[:, j:j + 1]), dmap, one)
        if outside[j] == 0:
            assert abs(float(d) - brute[j]) <= cell_diag
        else:  # beyond the map the lookup is a lower bound that still counts the way out of the map
            assert outside[j] - 1e-9 <= float(d) <= brute[j] + cell_diag
    # points near a mask pixel centre whose 3 x 3 neighbourhood is all mask count as inside
    full = np.zeros((1, h, w), dtype=bool)
    full[0, 1:4, 1:4] = True
    perc, _ = M.mask_plausibility(torch.from_numpy(_cell_centres(h, w)[2, 2][None, None, None]
                                                   + rng.uniform(-0.4, 0.4, (1, 1, 1, 2)) * [2 / w, 2 / h]),
                                  mask_to_distance_map(torch.from_numpy(full)).double(),
                                  torch.ones(1, 1, dtype=torch.bool))
    assert float(perc) == 100.0


# ----------------------------------------------------------------------------- accumulator


def _random_eval_batch(g: torch.Generator, b: int, s: int = 5):
    gt_j = torch.randn(b, 14, 3, generator=g, dtype=torch.float64) * 0.3
    pred_j = gt_j[:, None] + 0.05 * torch.randn(b, s, 14, 3, generator=g, dtype=torch.float64)
    gt_v = torch.randn(b, 30, 3, generator=g, dtype=torch.float64) * 0.3
    pred_v = gt_v[:, None] + 0.05 * torch.randn(b, s, 30, 3, generator=g, dtype=torch.float64)
    gt_2d = torch.rand(b, 17, 2, generator=g, dtype=torch.float64) * 2 - 1
    pred_2d = gt_2d[:, None] + 0.1 * torch.randn(b, s, 17, 2, generator=g, dtype=torch.float64)
    vis = torch.rand(b, 17, generator=g) > 0.4
    hyps3d = 0.1 * torch.randn(b, s, 17, 3, generator=g, dtype=torch.float64)
    masks = torch.rand(b, 12, 12, generator=g) > 0.5
    masks[:, 6, 6] = True
    return dict(pred_j=pred_j, gt_j=gt_j, pred_v=pred_v, gt_v=gt_v, pred_2d=pred_2d, gt_2d=gt_2d, vis=vis,
                hyps3d=hyps3d, dmap=mask_to_distance_map(masks).double(),
                sel=torch.randint(0, s, (b,), generator=g))


def _feed(acc: MetricAccumulator, d) -> None:
    acc.update_accuracy(d["pred_j"], d["gt_j"], protocol="3dpw", pred_vertices=d["pred_v"],
                        gt_vertices=d["gt_v"], selected=d["sel"])
    acc.update_consistency(d["pred_2d"], d["gt_2d"], d["vis"])
    acc.update_diversity(d["hyps3d"], d["vis"])
    acc.update_plausibility(d["pred_2d"], d["dmap"], ~d["vis"])


@settings(max_examples=10, deadline=None)
@given(seed=seeds, sizes=st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_accumulator_over_uneven_batches_equals_concatenated_data(seed, sizes):
    g = _gen(seed)
    batches = [_random_eval_batch(g, b) for b in sizes]
    whole = {key: torch.cat([d[key] for d in batches]) for key in batches[0]}
    acc = MetricAccumulator()
    for d in batches:
        _feed(acc, d)
    got = acc.compute()
    # independent: the pure functions on the concatenated data
    root_p, root_g = M.root_point(whole["pred_j"], "3dpw"), M.root_point(whole["gt_j"], "3dpw")
    errs = {"mpjpe": M.mpjpe(whole["pred_j"], whole["gt_j"], root="3dpw"),
            "pa_mpjpe": M.pa_mpjpe(whole["pred_j"], whole["gt_j"]),
            "pve": M.pve(whole["pred_v"], whole["gt_v"], root_p, root_g)}
    expected = {}
    for name, e in errs.items():
        expected[f"{name}_mode"] = float(e[:, 0].mean())
        expected[f"{name}_best"] = float(e.min(1).values.mean())
        expected[f"{name}_selected"] = float(np.mean([e[i, j] for i, j in enumerate(whole["sel"].tolist())]))
        torch.testing.assert_close(acc.curve(name), M.min_of_n(e).mean(0))
    kp2d = M.keypoint_2d_error(whole["pred_2d"], whole["gt_2d"], whole["vis"])
    spread = M.sample_spread(whole["hyps3d"], whole["vis"])
    plaus = M.mask_plausibility(whole["pred_2d"], whole["dmap"], ~whole["vis"])
    expected["kp2d_mode"], expected["kp2d_samples"] = map(float, kp2d)
    expected["spread_vis"], expected["spread_invis"] = map(float, spread)
    expected["perc_in"], expected["min_dist"] = map(float, plaus)
    assert set(got) == set(expected)
    for key, value in expected.items():
        if math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, rel=1e-9), key
    # merging two accumulators equals one over everything
    a, b = MetricAccumulator(), MetricAccumulator()
    for i, d in enumerate(batches):
        _feed(a if i % 2 else b, d)
    a.merge(b)
    merged = a.compute()
    for key in got:
        assert merged[key] == pytest.approx(got[key], rel=1e-9, nan_ok=True), key


def test_selected_indices_are_checked():
    acc = MetricAccumulator()
    pred, gt = torch.zeros(2, 3, 14, 3), torch.zeros(2, 14, 3)
    with pytest.raises(ValueError, match=r"selected: expected indices in \[0, 3\)"):
        acc.update_accuracy(pred, gt, selected=torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="selected: expected an integer tensor of shape"):
        acc.update_accuracy(pred, gt, selected=torch.zeros(2))


def test_accumulator_rejects_changing_curve_length():
    acc = MetricAccumulator()
    acc.add_curve("pve", torch.rand(2, 5))
    with pytest.raises(ValueError, match="N=5"):
        acc.add_curve("pve", torch.rand(2, 6))


def test_format_table_puts_each_value_in_its_column():
    rows = {"Ours": {"mpjpe_mode": 62.2, "pa_mpjpe_mode": 40.9, "pve_mode": 73.9, "mpjpe_best": 46.2,
                     "pa_mpjpe_best": 29.8, "pve_best": 54.4, "kp2d_mode": 5.02, "kp2d_samples": 6.34,
                     "spread_vis": 40.8, "spread_invis": 87.8, "perc_in": 91.4, "min_dist": 0.616,
                     "mpjpe_selected": 58.1, "pa_mpjpe_selected": 38.0, "pve_selected": 70.2,
                     "calib_spearman": 0.41, "calib_spearman_vis": 0.22, "calib_spearman_invis": 0.35,
                     "calib_coverage_50": 0.31, "calib_coverage_90": 0.74, "calib_flag_recall": 0.66,
                     "calib_flagged": 0.3},
            "Baseline w/o mask": {"mpjpe_mode": 71.7, "perc_in": float("nan")}}
    text = format_table(rows, num_hypotheses=100, title="EMDB")
    lines = text.splitlines()
    assert lines[0] == "EMDB" and "Best of 100" in text
    keys = [key for _, cols in TABLE_COLUMNS for _, key, _ in cols]
    for name, metrics in rows.items():
        line = next(line for line in lines if line.startswith(name))
        cells = line[len(name):].replace("|", " ").replace("/", " ").split()
        assert len(cells) == len(keys)
        for cell, key in zip(cells, keys):
            value = metrics.get(key, float("nan"))
            assert (cell == "-") if math.isnan(value) else float(cell) == pytest.approx(value, abs=1e-9), key


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_raise_value_errors_naming_the_argument():
    pred, gt = torch.zeros(2, 3, 14, 3), torch.zeros(2, 14, 3)
    with pytest.raises(ValueError, match=r"gt: expected shape \(2, 14, 3\)"):
        M.mpjpe(pred, torch.zeros(2, 13, 3))
    with pytest.raises(ValueError, match="pred: expected shape"):
        M.mpjpe(torch.zeros(3, 14, 3), gt)
    bad = pred.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="pred: contains NaN"):
        M.pa_mpjpe(bad, gt)
    with pytest.raises(ValueError, match="root"):
        M.mpjpe(pred, gt, root="h36m")
    with pytest.raises(ValueError, match="visible: expected a bool"):
        M.sample_spread(torch.zeros(2, 3, 17, 3), torch.ones(2, 17))
    with pytest.raises(ValueError, match=r"visible: expected shape \(2, 17\)"):
        M.keypoint_2d_error(torch.zeros(2, 3, 17, 2), torch.zeros(2, 17, 2),
                            torch.ones(2, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="distance_map"):
        M.mask_plausibility(torch.zeros(2, 3, 17, 2), torch.zeros(3, 8, 8),
                            torch.ones(2, 17, dtype=torch.bool))
    with pytest.raises(ValueError, match="unit"):
        M.mask_plausibility(torch.zeros(1, 3, 2, 2), torch.zeros(1, 8, 8), torch.ones(1, 2, dtype=torch.bool),
                            unit="mm")


def test_empty_class_gives_nan_not_an_error():
    v, iv = M.sample_spread(torch.randn(1, 4, 3, 3), torch.ones(1, 3, dtype=torch.bool))
    assert math.isfinite(float(v)) and math.isnan(float(iv))


# ----------------------------------------------------------------------------- torso-aligned spread


def _random_rigid(g: torch.Generator, shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    rot = roma.rotvec_to_rotmat(torch.randn(*shape, 3, generator=g, dtype=torch.float64))
    return rot, torch.randn(*shape, 3, generator=g, dtype=torch.float64)


@settings(max_examples=20, deadline=None)
@given(seed=seeds, b=st.integers(1, 3), s=st.integers(2, 6))
def test_torso_alignment_removes_rigid_motion_and_only_it(seed, b, s):
    g = _gen(seed)
    pose = torch.randn(b, 1, 17, 3, generator=g, dtype=torch.float64)
    rot, trans = _random_rigid(g, (b, s))
    rot[:, 0], trans[:, 0] = torch.eye(3, dtype=torch.float64), 0.0  # the mode stays where it is
    moved = pose @ rot.transpose(-1, -2) + trans[..., None, :]  # (B, S, 17, 3): rigid copies of one pose
    aligned = M.torso_aligned(moved)
    assert torch.allclose(aligned, pose.expand_as(moved), atol=1e-8)  # every copy back onto the mode
    vis = torch.rand(b, 17, generator=g) < 0.5
    spread = M.sample_spread(aligned, vis)
    assert all(float(x) < 1e-5 or x.isnan() for x in spread)
    # Limb changes that leave the torso alone survive the alignment unchanged, even after a rigid motion.
    limbs = pose.expand(b, s, 17, 3).clone()
    limbs[:, 1:, 9] += torch.randn(b, s - 1, 3, generator=g, dtype=torch.float64)
    limbs_moved = limbs @ rot.transpose(-1, -2) + trans[..., None, :]
    assert torch.allclose(M.torso_aligned(limbs_moved), limbs, atol=1e-8)


def test_torso_alignment_checks_its_arguments():
    with pytest.raises(ValueError, match="torso: expected at least 3 indices"):
        M.torso_aligned(torch.zeros(1, 2, 17, 3), torso=(5, 6))
    with pytest.raises(ValueError, match="torso: expected at least 3 indices"):
        M.torso_aligned(torch.zeros(1, 2, 4, 3))
    with pytest.raises(ValueError, match="hyps"):
        M.torso_aligned(torch.zeros(2, 17, 3))


def test_accumulator_torso_spread_is_the_spread_of_the_aligned_hypotheses():
    g = _gen(3)
    hyps = torch.randn(4, 8, 17, 3, generator=g)
    vis = torch.rand(4, 17, generator=g) < 0.6
    acc = MetricAccumulator()
    acc.update_diversity(hyps, vis, torso=M.TORSO_COCO17)
    out = acc.compute()
    expected = M.sample_spread(M.torso_aligned(hyps), vis)
    assert out["spread_vis_torso"] == pytest.approx(float(expected[0]))
    assert out["spread_invis_torso"] == pytest.approx(float(expected[1]))
    assert out["spread_vis"] == pytest.approx(float(M.sample_spread(hyps, vis)[0]))
