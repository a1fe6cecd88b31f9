"""Tests of humr.losses.mask: distance maps against brute force, look-up, the mask loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st

from humr.losses.mask import default_tolerance, lookup_distance_map, mask_loss, mask_to_distance_map

SETTINGS = settings(max_examples=25, deadline=None)


def _centres(h: int, w: int, extent: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates (y (H,), x (W,)) of the documented convention."""
    xs = -extent + (np.arange(w) + 0.5) * 2 * extent / w
    ys = -extent + (np.arange(h) + 0.5) * 2 * extent / h
    return ys, xs


def _brute_distance_map(mask: np.ndarray, extent: float) -> np.ndarray:
    """Distance from every cell centre to every mask cell centre, minimised."""
    h, w = mask.shape
    ys, xs = _centres(h, w, extent)
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    pts = np.stack([cx.ravel(), cy.ravel()], -1)
    inside = pts[mask.ravel()]
    d = np.sqrt(((pts[:, None] - inside[None]) ** 2).sum(-1)).min(1)
    return d.reshape(h, w)


def _random_mask(rng: np.random.Generator, h: int, w: int, p: float) -> np.ndarray:
    mask = rng.random((h, w)) < p
    mask[rng.integers(h), rng.integers(w)] = True  # never empty
    return mask


@SETTINGS
@given(seed=st.integers(0, 10_000), h=st.integers(1, 12), w=st.integers(1, 12), p=st.floats(0.0, 0.5),
       extent=st.sampled_from([1.0, 0.5, 1.3]))
def test_distance_map_matches_brute_force(seed, h, w, p, extent):
    rng = np.random.default_rng(seed)
    masks = np.stack([_random_mask(rng, h, w, p) for _ in range(3)])
    got = mask_to_distance_map(masks, extent=extent)
    assert got.dtype == torch.float32 and got.shape == (3, h, w)
    for b in range(3):  # the batched transform must not leak across images
        want = _brute_distance_map(masks[b], extent)
        np.testing.assert_allclose(got[b].numpy(), want, rtol=1e-6, atol=1e-6)
    single = mask_to_distance_map(torch.from_numpy(masks[1]), extent=extent)
    assert single.shape == (h, w)
    torch.testing.assert_close(single, got[1])


def test_distance_map_empty_mask_raises():
    masks = np.ones((3, 4, 4), dtype=bool)
    masks[1] = False
    with pytest.raises(ValueError, match=r"^mask:.*\[1\]"):
        mask_to_distance_map(masks)
    with pytest.raises(ValueError, match=r"^mask:"):
        mask_to_distance_map(np.ones(5, dtype=bool))
    with pytest.raises(ValueError, match=r"^extent:"):
        mask_to_distance_map(np.ones((2, 2), dtype=bool), extent=0.0)


@SETTINGS
@given(seed=st.integers(0, 10_000), h=st.integers(2, 10), w=st.integers(2, 10))
def test_lookup_is_exact_at_cell_centres_and_bilinear_between(seed, h, w):
    rng = np.random.default_rng(seed)
    dmap = torch.from_numpy(rng.random((2, h, w))).float()
    extent = 0.8
    ys, xs = _centres(h, w, extent)
    ii, jj = rng.integers(h, size=(2, 7)), rng.integers(w, size=(2, 7))
    pts = torch.from_numpy(np.stack([xs[jj], ys[ii]], -1)).float()  # (2, 7, 2)
    got = lookup_distance_map(pts, dmap, extent=extent)
    want = dmap[torch.arange(2)[:, None], torch.from_numpy(ii), torch.from_numpy(jj)]
    torch.testing.assert_close(got, want)
    # A point a fraction t of the way between two horizontally adjacent centres.
    t = float(rng.random())
    j = int(rng.integers(w - 1))
    i = int(rng.integers(h))
    p = torch.tensor([[[xs[j] + t * (xs[j + 1] - xs[j]), ys[i]]]] * 2).float()
    mid = lookup_distance_map(p, dmap, extent=extent)[:, 0]
    torch.testing.assert_close(mid, (1 - t) * dmap[:, i, j] + t * dmap[:, i, j + 1])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), h=st.integers(1, 16), w=st.integers(1, 16))
@example(seed=9084, h=2, w=9)  # issue 14, item 12: cells 4.5:1 out of square broke the old bound
def test_lookup_outside_is_a_positive_lower_bound(seed, h, w):
    rng = np.random.default_rng(seed)
    mask = _random_mask(rng, h, w, 0.2)
    dmap = mask_to_distance_map(mask)[None].double()
    pts = rng.uniform(-4, 4, size=(1, 50, 2))
    pts = pts[:, np.abs(pts[0]).max(-1) > 1.0]  # outside the square
    got = lookup_distance_map(torch.from_numpy(pts), dmap).numpy()[0]
    ys, xs = _centres(h, w, 1.0)
    cy, cx = np.meshgrid(ys, xs, indexing="ij")
    inside = np.stack([cx[mask], cy[mask]], -1)
    true = np.sqrt(((pts[0][:, None] - inside[None]) ** 2).sum(-1)).min(1)
    assert (got > 0).all()
    # The bound is tight where the nearest mask centre lies on the box edge beside the point, so
    # allow the map's own float32 rounding of its distances (relative 6e-8).
    assert (got <= true * (1 + 1e-6)).all()
    # and never weaker than the plain distance to the square
    excess = np.clip(np.abs(pts[0]) - 1.0, 0, None)
    assert (got >= np.sqrt((excess**2).sum(-1)) - 1e-12).all()


def test_lookup_gradient_is_finite_and_matches_finite_differences():
    rng = np.random.default_rng(0)
    dmap = torch.from_numpy(mask_to_distance_map(_random_mask(rng, 9, 7, 0.2)).numpy()).double()[None]
    pts = torch.tensor([[[0.13, -0.41], [1.7, 0.2], [-1.5, -1.9], [0.31, 0.77]]], dtype=torch.float64)
    pts.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: lookup_distance_map(p, dmap), (pts,))
    edge = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(lookup_distance_map(edge, dmap).sum(), edge)
    assert torch.isfinite(g).all()


def test_lookup_bad_inputs():
    dmap = torch.zeros(2, 4, 4)
    with pytest.raises(ValueError, match=r"^points:"):
        lookup_distance_map(torch.zeros(2, 3, 3), dmap)
    with pytest.raises(ValueError, match=r"^distance_map:"):
        lookup_distance_map(torch.zeros(2, 3, 2), torch.zeros(4, 4))
    with pytest.raises(ValueError, match=r"^distance_map:.*batch"):
        lookup_distance_map(torch.zeros(3, 3, 2), dmap)


# ----------------------------------------------------------------------------- mask loss


def _square_mask_setup(size: int = 8):
    """One image, person = left half of the crop (x < 0), an (8, 8) map (cells of 0.25)."""
    mask = np.zeros((1, size, size), dtype=bool)
    mask[:, :, : size // 2] = True
    return mask_to_distance_map(mask)


def test_mask_loss_zero_inside_and_hand_computed_outside():
    dmap = _square_mask_setup()
    # Joint 0: three hypotheses, two inside the person, one outside at (0.6, 0.1).
    pred = torch.tensor([[[[-0.5, 0.0], [-0.1, 0.9], [0.6, 0.1]]]], requires_grad=True)
    # Samples: in-mask at (-0.2, 0.3) and (-0.7, -0.6); one outside the mask at (0.65, 0.1).
    samples = torch.tensor([[[[-0.2, 0.3], [-0.7, -0.6], [0.65, 0.1]]]])
    sdist = lookup_distance_map(samples, dmap)
    apply = torch.ones(1, 1, dtype=torch.bool)
    loss = mask_loss(pred, samples, sdist, dmap, apply, reduction="none")
    # nearest in-mask sample to (0.6, 0.1) is (-0.2, 0.3): l1 = 0.8 + 0.2 (the outside one is removed)
    torch.testing.assert_close(loss, torch.tensor([[[0.0, 0.0, 1.0]]]))
    mean = mask_loss(pred, samples, sdist, dmap, apply)  # 1.0 / (B x S = 3 hypotheses)
    torch.testing.assert_close(mean, torch.tensor(1.0 / 3))
    torch.testing.assert_close(mask_loss(pred, samples, sdist, dmap, apply, reduction="entry"),
                               torch.tensor(1.0 / 3))  # one applied joint x 3 hypotheses
    (g,) = torch.autograd.grad(mean, pred)
    torch.testing.assert_close(g, torch.tensor([[[[0.0, 0.0], [0.0, 0.0], [1 / 3, -1 / 3]]]]))


def test_mask_loss_same_joint_versus_any_joint_and_exclusions():
    dmap = _square_mask_setup()
    pred = torch.tensor([[[[0.5, 0.5]], [[0.5, -0.5]], [[0.9, 0.9]]]])  # (1, 3, 1, 2), all outside
    samples = torch.tensor([[[[-0.1, 0.5], [-0.9, 0.5]],    # joint 0: in-mask samples
                             [[0.7, -0.5], [0.8, 0.0]],     # joint 1: all outside the mask
                             [[-0.3, -0.3], [-0.3, 0.3]]]])  # joint 2: in-mask, but not applied
    sdist = lookup_distance_map(samples, dmap)
    apply = torch.tensor([[True, True, False]])
    same = mask_loss(pred, samples, sdist, dmap, apply, reduction="none")
    # joint 0: nearest (-0.1, 0.5) -> 0.6; joint 1: no in-mask sample -> nothing; joint 2: not applied
    torch.testing.assert_close(same, torch.tensor([[[0.6], [0.0], [0.0]]]))
    # "entry": the mean over applicable entries only (joint 0's single hypothesis); "reference":
    # the sum over joints per hypothesis, averaged over the B x S = 1 hypotheses
    torch.testing.assert_close(mask_loss(pred, samples, sdist, dmap, apply, reduction="entry"),
                               torch.tensor(0.6))
    torch.testing.assert_close(mask_loss(pred, samples, sdist, dmap, apply), torch.tensor(0.6))
    anyj = mask_loss(pred, samples, sdist, dmap, apply, same_joint=False, reduction="none")
    # joint 1 now takes the closest in-mask sample of any joint: (-0.3, -0.3) -> 0.8 + 0.2
    torch.testing.assert_close(anyj, torch.tensor([[[0.6], [1.0], [0.0]]]))
    torch.testing.assert_close(mask_loss(pred, samples, sdist, dmap, apply, same_joint=False,
                                         reduction="entry"), torch.tensor(0.8))
    torch.testing.assert_close(mask_loss(pred, samples, sdist, dmap, apply, same_joint=False),
                               torch.tensor(1.6))


def _brute_mask_loss(pred, samples, sdist, valid, dmap, apply, keypoints, keypoints_valid, same_joint, tol,
                     extent=1.0):
    """The published formula by loops over (image, hypothesis, joint): per hypothesis the sum over
    its joints of the l1 distance to the nearest (l1) in-mask sample or ground-truth keypoint, for
    hypotheses inside the covered square and outside the mask; returns the ``(B, K, S)`` entries and
    the number of applied joints that have a target."""
    b, k, s, _ = pred.shape
    m = samples.shape[2]
    inside = lookup_distance_map(pred, dmap, extent) <= tol  # the documented inside decision
    entries = torch.zeros(b, k, s, dtype=pred.dtype)
    applied = 0
    for bi in range(b):
        for ki in range(k):
            if not apply[bi, ki]:
                continue
            joints = [ki] if same_joint else range(k)
            targets = [samples[bi, kj, mi] for kj in joints for mi in range(m)
                       if valid[bi, kj, mi] and sdist[bi, kj, mi] <= tol]
            if keypoints is not None:
                targets += [keypoints[bi, kj] for kj in joints if keypoints_valid[bi, kj]]
            if not targets:
                continue
            applied += 1
            for si in range(s):
                p = pred[bi, ki, si]
                if inside[bi, ki, si] or float(p.abs().max()) > extent:
                    continue
                entries[bi, ki, si] = min(float((p - t).abs().sum()) for t in targets)
    return entries, applied


@SETTINGS
@given(seed=st.integers(0, 10_000), same_joint=st.booleans(), with_keypoints=st.booleans())
def test_mask_loss_matches_brute_force(seed, same_joint, with_keypoints):
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    b, k, s, m = 2, 3, 4, 5
    masks = np.stack([_random_mask(rng, 10, 10, 0.3) for _ in range(b)])
    dmap = mask_to_distance_map(masks).double()
    pred = torch.rand(b, k, s, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2  # some outside the square
    samples = torch.rand(b, k, m, 2, generator=g, dtype=torch.float64) * 2 - 1
    sdist = lookup_distance_map(samples, dmap)
    valid = torch.rand(b, k, m, generator=g) < 0.8
    samples = torch.where(valid[..., None], samples, torch.full_like(samples, math.nan))
    apply = torch.rand(b, k, generator=g) < 0.7
    keypoints = keypoints_valid = None
    if with_keypoints:
        keypoints = torch.rand(b, k, 2, generator=g, dtype=torch.float64) * 2.2 - 1.1
        keypoints_valid = torch.rand(b, k, generator=g) < 0.8
        keypoints = torch.where(keypoints_valid[..., None], keypoints, torch.full_like(keypoints, math.nan))
    kwargs = dict(sample_valid=valid, same_joint=same_joint, keypoints=keypoints,
                  keypoints_valid=keypoints_valid)
    want, applied = _brute_mask_loss(pred, samples, sdist, valid, dmap, apply, keypoints, keypoints_valid,
                                     same_joint, default_tolerance(10, 10))
    got = mask_loss(pred, samples, sdist, dmap, apply, reduction="none", **kwargs)
    torch.testing.assert_close(got, want)
    reference = mask_loss(pred, samples, sdist, dmap, apply, **kwargs)
    torch.testing.assert_close(reference, want.sum() / (b * s))
    entry = mask_loss(pred, samples, sdist, dmap, apply, reduction="entry", **kwargs)
    torch.testing.assert_close(entry, want.sum() / max(applied * s, 1))


def test_mask_loss_hypothesis_outside_the_covered_square_contributes_exactly_zero():
    """A truncated joint: its hypothesis beyond the map is never pulled back into the crop, while
    one inside the square and outside the mask is pulled to the nearest target as before."""
    for extent in (1.0, 1.5):  # the crop, and the synthetic set's larger map
        mask = np.zeros((1, 12, 12), dtype=bool)
        mask[:, :, :6] = True  # person = left half of the covered square
        dmap = mask_to_distance_map(mask, extent=extent)
        pred = torch.tensor([[[[extent + 0.3, 0.0], [extent - 0.1, 0.2], [0.0, -extent - 0.01]]]],
                            requires_grad=True)
        samples = torch.tensor([[[[-0.5, 0.2]]]])
        sdist = lookup_distance_map(samples, dmap, extent)
        gt = torch.tensor([[[extent + 0.2, 0.0]]])  # outside the square: still a target
        apply = torch.ones(1, 1, dtype=torch.bool)
        out = mask_loss(pred, samples, sdist, dmap, apply, extent=extent, keypoints=gt, reduction="none")
        # inside hypothesis: l1 to the sample = extent - 0.1 + 0.5; to the GT = 0.3 + 0.2
        inside = min(extent - 0.1 + 0.5, 0.3 + 0.2)
        assert out[0, 0, 0].item() == 0.0 and out[0, 0, 2].item() == 0.0
        assert out[0, 0, 1].item() == pytest.approx(inside, rel=1e-6)
        loss = mask_loss(pred, samples, sdist, dmap, apply, extent=extent, keypoints=gt)
        (grad,) = torch.autograd.grad(loss, pred)
        assert (grad[0, 0, [0, 2]] == 0).all() and (grad[0, 0, 1] != 0).all()


def test_mask_loss_ground_truth_is_a_target_and_the_nearest_is_taken_in_l1():
    dmap = _square_mask_setup()  # person: x < 0
    pred = torch.tensor([[[[0.6, 0.0]]]])
    # In-mask samples: (-0.3, 0.0) at l1 0.9 (Euclidean 0.9); (-0.05, 0.4) at l1 1.05 (Euclidean 0.763).
    samples = torch.tensor([[[[-0.3, 0.0], [-0.05, 0.4]]]])
    sdist = lookup_distance_map(samples, dmap)
    apply = torch.ones(1, 1, dtype=torch.bool)
    l1 = mask_loss(pred, samples, sdist, dmap, apply, reduction="none")
    torch.testing.assert_close(l1, torch.tensor([[[0.9]]]))  # the l1-nearest, not the Euclidean-nearest
    gt = torch.tensor([[[0.55, 0.2]]])  # outside the mask, but always a target
    with_gt = mask_loss(pred, samples, sdist, dmap, apply, keypoints=gt, reduction="none")
    torch.testing.assert_close(with_gt, torch.tensor([[[0.25]]]))
    invalid_gt = mask_loss(pred, samples, sdist, dmap, apply, keypoints=torch.full((1, 1, 2), math.nan),
                           keypoints_valid=torch.zeros(1, 1, dtype=torch.bool), reduction="none")
    torch.testing.assert_close(invalid_gt, torch.tensor([[[0.9]]]))


def test_mask_loss_nothing_applies_is_exact_zero_with_gradient_to_pred_only():
    dmap = _square_mask_setup()
    pred = torch.full((1, 2, 3, 2), 0.9, requires_grad=True)  # all outside
    samples = torch.full((1, 2, 4, 2), -0.5, requires_grad=True)
    sdist = lookup_distance_map(samples.detach(), dmap)
    loss = mask_loss(pred, samples, sdist, dmap, torch.zeros(1, 2, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad
    assert torch.equal(torch.autograd.grad(loss, pred)[0], torch.zeros_like(pred))
    loss = mask_loss(pred, samples, sdist, dmap, torch.ones(1, 2, dtype=torch.bool))
    loss.backward()
    assert samples.grad is None and pred.grad is not None and (pred.grad != 0).all()


def test_mask_loss_bad_inputs():
    dmap = torch.zeros(2, 4, 4)
    pred, samples = torch.zeros(2, 3, 5, 2), torch.zeros(2, 3, 6, 2)
    sdist, apply = torch.zeros(2, 3, 6), torch.ones(2, 3, dtype=torch.bool)
    cases = [
        (dict(pred=torch.zeros(2, 3, 5)), "pred"),
        (dict(heatmap_samples=torch.zeros(2, 4, 6, 2)), "heatmap_samples"),
        (dict(sample_mask_distance=torch.zeros(2, 3, 5)), "sample_mask_distance"),
        (dict(distance_map=torch.zeros(3, 4, 4)), "distance_map"),
        (dict(apply=torch.ones(2, 4, dtype=torch.bool)), "apply"),
        (dict(sample_valid=torch.ones(2, 3)), "sample_valid"),
        (dict(reduction="max"), "reduction"),
        (dict(tolerance=-0.1), "tolerance"),
        (dict(pred=torch.full((2, 3, 5, 2), math.nan)), "pred"),
        # issue 14, item 7: infinities too
        (dict(pred=torch.full((2, 3, 5, 2), math.inf)), "pred"),
        (dict(distance_map=torch.full((2, 4, 4), math.inf)), "distance_map"),
        (dict(heatmap_samples=torch.full((2, 3, 6, 2), -math.inf)), "heatmap_samples"),
        (dict(sample_mask_distance=torch.full((2, 3, 6), math.nan)), "sample_mask_distance"),
        (dict(keypoints=torch.full((2, 3, 2), math.inf)), "keypoints"),
        (dict(keypoints=torch.zeros(2, 4, 2)), "keypoints"),
        (dict(keypoints_valid=torch.ones(2, 3, dtype=torch.bool)), "keypoints_valid"),
        (dict(reduction="mean"), "reduction"),
    ]
    base = dict(pred=pred, heatmap_samples=samples, sample_mask_distance=sdist, distance_map=dmap,
                apply=apply)
    for change, name in cases:
        with pytest.raises(ValueError, match=rf"^{name}:"):
            mask_loss(**{**base, **change})


def test_non_finite_values_are_allowed_only_where_flagged_invalid():
    dmap = _square_mask_setup()
    pred = torch.full((1, 2, 3, 2), 0.6)
    samples = torch.full((1, 2, 4, 2), -0.5)
    samples[0, 1, 2] = math.nan
    sdist = lookup_distance_map(samples.nan_to_num(), dmap)
    sdist[0, 1, 2] = math.inf
    valid = torch.ones(1, 2, 4, dtype=torch.bool)
    valid[0, 1, 2] = False
    keypoints = torch.tensor([[[0.0, 0.0], [math.nan, math.nan]]])
    keypoints_valid = torch.tensor([[True, False]])
    apply = torch.ones(1, 2, dtype=torch.bool)
    loss = mask_loss(pred, samples, sdist, dmap, apply, sample_valid=valid, keypoints=keypoints,
                     keypoints_valid=keypoints_valid)
    assert torch.isfinite(loss) and loss > 0
    with pytest.raises(ValueError, match=r"^heatmap_samples:.*NaN"):
        mask_loss(pred, samples, sdist, dmap, apply, keypoints=keypoints, keypoints_valid=keypoints_valid)
    with pytest.raises(ValueError, match=r"^keypoints:.*NaN"):
        mask_loss(pred, samples, sdist, dmap, apply, sample_valid=valid, keypoints=keypoints)


def test_lookup_rejects_non_finite_points_and_maps():
    dmap = torch.zeros(1, 4, 4)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match=r"^points:"):
            lookup_distance_map(torch.tensor([[[0.1, bad]]]), dmap)
    with pytest.raises(ValueError, match=r"^distance_map:"):
        lookup_distance_map(torch.zeros(1, 1, 2), torch.full((1, 4, 4), math.nan))


def test_distance_map_takes_only_boolean_or_zero_one_masks():
    soft = np.zeros((4, 4))
    soft[1, 1] = 0.3
    for value in (0.3, math.nan, 2.0, -1.0):
        soft[1, 1] = value
        with pytest.raises(ValueError, match=r"^mask:"):
            mask_to_distance_map(soft)
        with pytest.raises(ValueError, match=r"^mask:"):
            mask_to_distance_map(torch.from_numpy(soft))
    soft[1, 1] = 1.0  # exact 0/1 numbers are the boolean mask
    torch.testing.assert_close(mask_to_distance_map(soft), mask_to_distance_map(soft.astype(bool)))
    with pytest.raises(ValueError, match=r"^mask:"):
        mask_to_distance_map(np.array([["a", "b"], ["c", "d"]]))
