"""Per-joint / per-vertex spread (humr.eval.uncertainty, Hypotheses methods) against numpy loops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.eval import metrics as M
from humr.eval.uncertainty import chunked_spread, joint_spread, uncertain
from humr.model.hypotheses import Hypotheses

SETTINGS = settings(max_examples=20, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def _numpy_spread(points: np.ndarray) -> np.ndarray:
    b, s, k, _ = points.shape
    out = np.zeros((b, k))
    for i in range(b):
        for j in range(k):
            mean = points[i, :, j].mean(0)
            out[i, j] = np.mean([np.linalg.norm(points[i, t, j] - mean) for t in range(s)])
    return out


@SETTINGS
@given(seed=seeds, b=st.integers(1, 3), s=st.integers(1, 7), k=st.integers(1, 5), d=st.sampled_from([2, 3]))
def test_joint_spread_matches_a_numpy_loop(seed, b, s, k, d):
    points = np.random.default_rng(seed).normal(0, 0.3, (b, s, k, d))
    np.testing.assert_allclose(joint_spread(torch.from_numpy(points)).numpy(), _numpy_spread(points),
                               rtol=1e-10, atol=1e-12)


@SETTINGS
@given(seed=seeds)
def test_spread_is_translation_invariant_and_zero_for_one_hypothesis(seed):
    g = torch.Generator().manual_seed(seed)
    points = torch.randn(2, 6, 4, 3, generator=g, dtype=torch.float64)
    shift = torch.randn(2, 1, 4, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(joint_spread(points + shift), joint_spread(points))
    assert joint_spread(points[:, :1]).abs().max() == 0


@SETTINGS
@given(seed=seeds)
def test_mean_of_joint_spread_over_a_class_is_the_diversity_metric(seed):
    """The per-joint spread counts the mode as sample_spread does: their class means agree."""
    g = torch.Generator().manual_seed(seed)
    hyps = 0.1 * torch.randn(3, 5, 17, 3, generator=g, dtype=torch.float64)
    visible = torch.rand(3, 17, generator=g) > 0.5
    visible[0, 0], visible[0, 1] = True, False
    vis_mm, invis_mm = M.sample_spread(hyps, visible)
    per_joint = joint_spread(hyps) * 1000
    assert float(per_joint[visible].mean()) == pytest.approx(float(vis_mm), rel=1e-10)
    assert float(per_joint[~visible].mean()) == pytest.approx(float(invis_mm), rel=1e-10)


@pytest.mark.parametrize("chunk", [1, 4, 7, 1000])
def test_chunked_spread_equals_the_whole_batch(chunk):
    g = torch.Generator().manual_seed(3)
    points = torch.randn(5, 3, 11, 3, generator=g, dtype=torch.float64)
    calls = []

    def make(images: slice) -> torch.Tensor:
        calls.append(images)
        assert (images.stop - images.start) * 3 <= max(chunk, 3)  # never more than ~chunk meshes at once
        return points[images]

    torch.testing.assert_close(chunked_spread(make, 5, 3, chunk), joint_spread(points))
    assert sorted(i for c in calls for i in range(c.start, c.stop)) == list(range(5))


def test_uncertain_thresholds_strictly_and_rejects_bad_thresholds():
    spread = torch.tensor([[10.0, 50.0, 50.1]])
    assert uncertain(spread, 50.0).tolist() == [[False, False, True]]
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="threshold"):
            uncertain(spread, bad)


def _hypotheses(body, b: int, s: int, g: torch.Generator) -> Hypotheses:
    from humr.rotations import rot6d_to_matrix

    j = body.num_pose_joints
    pose6d = torch.randn(b, s, j * 6, generator=g)
    rotmat = rot6d_to_matrix(pose6d.reshape(b, s, j, 6))
    shape = 0.3 * torch.randn(b, body.num_shape, generator=g)
    kp3d = body.keypoints(rotmat, shape[:, None].expand(-1, s, -1), "coco17")
    return Hypotheses(pose6d=pose6d, rotmat=rotmat, log_prob=None, shape=shape, regressed_shape=shape,
                      camera=torch.ones(b, 3), translation=torch.zeros(b, 3), keypoints_3d=kp3d,
                      keypoints_2d=kp3d[..., :2] / (kp3d[..., 2:] + 5.0))


def test_hypotheses_methods_agree_with_the_body_and_numpy(tmp_path):
    from humr.bodies.smplx_body import SMPLXBody
    from humr.testing.body_files import write_smplx_npz

    body = SMPLXBody(write_smplx_npz(tmp_path / "SMPLX_NEUTRAL.npz", seed=2))
    g = torch.Generator().manual_seed(0)
    hyps = _hypotheses(body, 2, 4, g)
    np.testing.assert_allclose(hyps.joint_spread().numpy(), _numpy_spread(hyps.keypoints_3d.double().numpy())
                               * 1000, rtol=1e-4)
    np.testing.assert_allclose(hyps.joint_spread_2d().numpy(),
                               _numpy_spread(hyps.keypoints_2d.double().numpy()), rtol=1e-4, atol=1e-7)
    joints = hyps.keypoints(body, "body_joints").double().numpy()
    np.testing.assert_allclose(hyps.joint_spread(body, "body_joints").numpy(), _numpy_spread(joints) * 1000,
                               rtol=1e-4, atol=1e-4)
    verts = hyps.vertices(body).double().numpy()
    spread_v = hyps.vertex_spread(body, chunk=3)
    assert spread_v.shape == (2, body.num_vertices)
    np.testing.assert_allclose(spread_v.numpy(), _numpy_spread(verts) * 1000, rtol=1e-4, atol=1e-3)
    flags = hyps.uncertain_joints(40.0)
    assert torch.equal(flags, hyps.joint_spread() > 40.0)
    with pytest.raises(ValueError, match="body"):
        hyps.joint_spread(names="body_joints")
