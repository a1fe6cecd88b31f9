"""Statistics of the synthetic set: definitions against loops, and the world's ambiguity structure."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humr.bodies.base import ARTICULATED_COCO17
from humr.data import synthetic_stats as S

pytest.importorskip("anny")


def _loop_spread(samples: np.ndarray, valid: np.ndarray) -> np.ndarray:
    out = np.full(samples.shape[:2], np.nan)
    for i in range(samples.shape[0]):
        for k in range(samples.shape[1]):
            pts = [samples[i, k, m] for m in range(samples.shape[2]) if valid[i, k, m]]
            if pts:
                centre = sum(pts) / len(pts)
                out[i, k] = sum(float(np.hypot(*(p - centre))) for p in pts) / len(pts)
    return out


def test_sample_spread_matches_a_loop_and_ignores_invalid_samples():
    rng = np.random.default_rng(0)
    samples = rng.normal(size=(3, 4, 7, 2))
    valid = rng.uniform(size=(3, 4, 7)) < 0.7
    valid[0, 0] = False  # no valid sample: NaN
    got = S.sample_spread(samples, valid)
    want = _loop_spread(samples, valid)
    assert np.isnan(got[0, 0]) and np.isnan(want[0, 0])
    assert np.allclose(got[~np.isnan(want)], want[~np.isnan(want)])
    # a ring of radius r around any centre has spread r
    theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    ring = 0.3 * np.stack([np.cos(theta), np.sin(theta)], -1) + np.array([0.2, -0.5])
    assert S.sample_spread(ring[None, None])[0, 0] == pytest.approx(0.3)


def _fake_split(n: int = 40, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vis = rng.uniform(size=(n, 17)) < 0.7
    radius = np.where(vis, 0.1, 0.25)[..., None]  # hidden joints: wider rings
    theta = rng.uniform(0, 2 * np.pi, size=(n, 17, 1)) + np.linspace(0, 2 * np.pi, 30, endpoint=False)
    samples = radius[..., None] * np.stack([np.cos(theta), np.sin(theta)], -1)
    conf = np.where(vis, 0.9, 0.3)
    kp = rng.uniform(-1.2, 1.2, size=(n, 17, 2))
    return {
        "keypoints_2d_visible": vis, "keypoints_2d": kp,
        "heatmap_samples": samples, "heatmap_sample_valid": np.ones((n, 17, 30), bool),
        "detector_keypoints": np.concatenate([kp, conf[..., None]], -1),
        "person_occluder": rng.uniform(size=n) < 0.4, "object_occluder": rng.uniform(size=n) < 0.3,
        "object_occluded": rng.uniform(size=n) < 0.3, "mask_valid": rng.uniform(size=n) < 0.6,
        "truncated": rng.uniform(size=n) < 0.2,
        "object_geometry": np.stack([rng.integers(-1, 4, size=n)] + [np.zeros(n)] * 5, -1).astype(np.float32),
        "accepted_draws": rng.integers(0, 100, size=(n, 17)),
        "pose": np.zeros((n, 22, 3, 3)),
    }


def test_spread_summary_and_shares_match_direct_counts():
    a = _fake_split()
    sp = S.sample_spread_summary(a)
    spread = _loop_spread(a["heatmap_samples"], a["heatmap_sample_valid"])
    vis = a["keypoints_2d_visible"]
    hidden = [spread[i, k] for i in range(len(vis)) for k in range(17) if not vis[i, k]]
    assert sp["hidden"] == pytest.approx(float(np.median(hidden)))
    assert sp["hidden"] == pytest.approx(0.25) and sp["visible"] == pytest.approx(0.1)
    assert sp["ratio"] == pytest.approx(2.5) and sp["ratio_articulated"] == pytest.approx(2.5)
    sh = S.occlusion_shares(a)
    n = len(vis)
    inside = [[abs(a["keypoints_2d"][i, k, 0]) < 1 and abs(a["keypoints_2d"][i, k, 1]) < 1 for k in range(17)]
              for i in range(n)]
    assert sh["hidden"] == pytest.approx(sum(not v for row in vis for v in row) / (17 * n))
    assert sh["occluded"] == pytest.approx(
        sum(not vis[i, k] and inside[i][k] for i in range(n) for k in range(17)) / (17 * n))
    assert sh["hidden_articulated"] == pytest.approx(
        sum(not vis[i, k] for i in range(n) for k in ARTICULATED_COCO17) / (8 * n))
    assert sh["mask_valid"] == pytest.approx(sum(a["mask_valid"]) / n)
    assert sh["object_band"] == pytest.approx(sum(a["object_geometry"][:, 0] == 3) / n)
    assert np.allclose(sh["hidden_per_joint"], [np.mean(~vis[:, k]) for k in range(17)])
    assert "hidden 0.250 / visible 0.100 = 2.50x" in S.format_report("fake", a)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    from humr.data.synthetic import SyntheticConfig, generator_body, load_split

    config = SyntheticConfig(num_train=8, num_test=48, chunk_size=48, num_alternatives=256)
    arrays = load_split(config, "test", root=tmp_path_factory.mktemp("synthetic"), progress=False, workers=1)
    return arrays, config, generator_body(config.render_mesh)


def test_without_alternatives_the_alternative_spread_is_zero(split):
    a, config, body = split

    def ground_truth_only(rotvec, redraw, num_draws, generator):
        return rotvec[:, None].expand(-1, num_draws, -1, -1), torch.ones(rotvec.shape[0], num_draws)

    out = S.alternative_spread(a, config, body, np.arange(12), 8, conditional=ground_truth_only)
    assert out["visible_mm"] == pytest.approx(0.0, abs=1e-3)
    assert out["hidden_mm"] == pytest.approx(0.0, abs=1e-3)
    assert out["visible_kept"] == pytest.approx(1.0) and out["visible_measured"] == pytest.approx(1.0)


def test_hidden_limbs_are_more_ambiguous_than_visible_ones(split):
    """The world's point: the image pins a visible limb down, a hidden one keeps its spread."""
    a, config, body = split
    frames = np.arange(len(a["pose"]))
    out = S.alternative_spread(a, config, body, frames, 512, torch.Generator().manual_seed(0))
    assert out["hidden_count"] > 20 and out["visible_count"] > 100
    # generator 2 (joint-by-joint prior, small occluders): 68 / 116 mm on its default test split
    assert out["hidden_mm"] > 1.9 * out["visible_mm"] and out["visible_mm"] < 60
    sp = S.sample_spread_summary(a)
    assert sp["hidden_articulated"] > sp["visible_articulated"]
    sh = S.occlusion_shares(a)
    assert 0.15 < sh["hidden"] < 0.5 and sh["mask_valid"] > 0.5


def test_contact_sheet_writes_a_png(split, tmp_path):
    a, config, _ = split
    path = tmp_path / "sheet.png"
    S.contact_sheet(a, config, str(path), 3)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
