"""Choosing a hypothesis without ground truth (humr.eval.select)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.eval.select import (
    SelectionConfig,
    consensus_risk,
    heatmap_log_likelihood,
    mask_score,
    select_hypotheses,
)
from humr.losses.mask import mask_to_distance_map
from humr.model.hypotheses import Hypotheses

seeds = st.integers(0, 2**31 - 1)


def _hyps(kp2d: torch.Tensor, kp3d: torch.Tensor | None = None, log_prob=None) -> Hypotheses:
    b, s, k, _ = kp2d.shape
    kp3d = torch.zeros(b, s, k, 3) if kp3d is None else kp3d
    z = torch.zeros(b, s, 6)
    return Hypotheses(pose6d=z, rotmat=torch.eye(3).expand(b, s, 1, 3, 3), log_prob=log_prob,
                      shape=torch.zeros(b, 2), regressed_shape=torch.zeros(b, 2), camera=torch.ones(b, 3),
                      translation=torch.zeros(b, 3), keypoints_3d=kp3d, keypoints_2d=kp2d)


def _planted(seed: int, b: int = 3, s: int = 12, m: int = 40):
    """Random hypotheses; in each image one of them projects exactly onto the heatmap peaks."""
    g = torch.Generator().manual_seed(seed)
    peaks = torch.rand(b, 17, 2, generator=g) * 1.6 - 0.8
    conf = torch.rand(b, 17, generator=g) * 0.5 + 0.5
    conf[:, :4] = 0.1  # a few low-confidence joints
    samples = peaks[:, :, None] + 0.03 * torch.randn(b, 17, m, 2, generator=g)
    kp2d = peaks[:, None] + 0.25 * torch.randn(b, s, 17, 2, generator=g)
    planted = torch.randint(0, s, (b,), generator=g)
    kp2d[torch.arange(b), planted] = peaks
    batch = {"detector_keypoints": torch.cat([peaks, conf[..., None]], -1), "heatmap_samples": samples,
             "heatmap_sample_valid": torch.ones(b, 17, m, dtype=torch.bool)}
    return kp2d, batch, planted


@settings(max_examples=20, deadline=None)
@given(seed=seeds, density=st.sampled_from(["samples", "peak"]),
       temperature=st.sampled_from([None, 1.0]))
def test_selection_picks_the_hypothesis_on_the_heatmap_peaks(seed, density, temperature):
    kp2d, batch, planted = _planted(seed)
    g = torch.Generator().manual_seed(seed + 1)
    kp3d = torch.randn(*kp2d.shape[:3], 3, generator=g)
    config = SelectionConfig(density=density, temperature=temperature)
    chosen = select_hypotheses(_hyps(kp2d, kp3d), batch, config)
    assert torch.equal(chosen.index, planted)
    assert chosen.scores.shape == kp2d.shape[:2]


def test_heatmap_likelihood_is_a_kernel_density_over_the_valid_samples():
    g = torch.Generator().manual_seed(0)
    b, s, m, h = 2, 3, 7, 0.1
    points = torch.randn(b, s, 17, 2, generator=g, dtype=torch.float64)
    samples = torch.randn(b, 17, m, 2, generator=g, dtype=torch.float64)
    valid = torch.rand(b, 17, m, generator=g) > 0.3
    valid[:, 5] = False  # joint 5 has no sample: the peak's Gaussian stands in
    det = torch.cat([torch.randn(b, 17, 2, generator=g, dtype=torch.float64),
                     torch.rand(b, 17, 1, generator=g, dtype=torch.float64)], -1)
    config = SelectionConfig(bandwidth=h, invisible_weight=0.25)
    got = heatmap_log_likelihood(points, det, samples, valid, config).numpy()
    p, x, v, d = points.numpy(), samples.numpy(), valid.numpy(), det.numpy()
    ref = np.zeros((b, s))
    for i in range(b):
        for t in range(s):
            for k in range(17):
                if v[i, k].any():
                    dens = np.mean([np.exp(-np.sum((p[i, t, k] - x[i, k, j]) ** 2) / (2 * h * h))
                                    for j in range(m) if v[i, k, j]]) / (2 * math.pi * h * h)
                else:
                    sq = np.sum((p[i, t, k] - d[i, k, :2]) ** 2)
                    dens = np.exp(-sq / (2 * h * h)) / (2 * math.pi * h * h)
                ref[i, t] += (1.0 if d[i, k, 2] >= 0.5 else 0.25) * np.log(dens)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_mask_score_counts_only_invisible_joints_outside_the_mask():
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 8:24, 8:24] = True  # the person: the central half of the crop
    dmap = mask_to_distance_map(mask)
    points = torch.zeros(1, 2, 17, 2)
    points[0, 1, 3] = torch.tensor([0.95, 0.0])  # hypothesis 1 puts joint 3 outside the mask
    invisible = torch.zeros(1, 17, dtype=torch.bool)
    score = mask_score(points, dmap, invisible)
    assert score.abs().max() == 0  # no invisible joint: nothing to score
    invisible[0, 3] = True
    score = mask_score(points, dmap, invisible)
    assert score[0, 0] == 0 and score[0, 1] == pytest.approx(-(0.95 - 0.5 + 1 / 32), abs=0.04)


def test_mask_and_flow_terms_choose_among_equal_heatmap_scores():
    kp2d = torch.zeros(1, 3, 17, 2)
    kp2d[0, 0, 0] = torch.tensor([0.95, 0.0])  # hypothesis 0: invisible joint 0 off the person
    batch = {"detector_keypoints": torch.cat([torch.zeros(1, 17, 2), torch.ones(1, 17, 1)], -1)}
    batch["detector_keypoints"][0, 0, 2] = 0.0
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 8:24, 8:24] = True
    batch |= {"distance_map": mask_to_distance_map(mask), "distance_map_extent": torch.ones(1),
              "mask_valid": torch.ones(1, dtype=torch.bool)}
    log_prob = torch.tensor([[5.0, 1.0, 2.0]])
    hyps = _hyps(kp2d, log_prob=log_prob)
    argmax = dict(heatmap=0, temperature=None)
    assert select_hypotheses(hyps, batch, SelectionConfig(flow=1, mask=0, **argmax)).index.item() == 0
    # the mask term outweighs the flow's preference for hypothesis 0
    assert select_hypotheses(hyps, batch, SelectionConfig(flow=1, mask=100, **argmax)).index.item() == 2
    with pytest.raises(ValueError, match="with_log_prob"):
        select_hypotheses(_hyps(kp2d), batch, SelectionConfig(flow=1))


def test_consensus_risk_is_the_weighted_mean_pairwise_mpjpe():
    g = torch.Generator().manual_seed(4)
    points = torch.randn(2, 5, 4, 3, generator=g, dtype=torch.float64)
    weights = torch.softmax(torch.randn(2, 5, generator=g, dtype=torch.float64), 1)
    got = consensus_risk(points, weights)
    ref = torch.zeros(2, 5, dtype=torch.float64)
    for b in range(2):
        for s in range(5):
            for t in range(5):
                ref[b, s] += weights[b, t] * (points[b, s] - points[b, t]).norm(dim=-1).mean()
    torch.testing.assert_close(got, ref)
    # uniform weights and a high temperature: the medoid of the set
    kp3d = torch.zeros(1, 4, 1, 3)
    kp3d[0, :, 0, 0] = torch.tensor([0.0, 1.0, 1.2, 5.0])
    hyps = _hyps(torch.zeros(1, 4, 17, 2), kp3d.expand(1, 4, 17, 3).clone())
    batch = {"detector_keypoints": torch.zeros(1, 17, 3)}
    assert select_hypotheses(hyps, batch, SelectionConfig(heatmap=0, temperature=1.0)).index.item() == 1


@pytest.mark.parametrize("field, value", [("heatmap", -1.0), ("bandwidth", 0.0), ("density", "kde"),
                                          ("temperature", 0.0), ("visibility_threshold", 2.0),
                                          ("flow", float("nan"))])
def test_bad_selection_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        SelectionConfig(**{field: value})
