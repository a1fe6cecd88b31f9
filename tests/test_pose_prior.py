"""The activity pose prior: limits, correlations, mirror symmetry and its conditional laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from humr.bodies.base import BODY_JOINT_NAMES, BODY_JOINT_PARENTS
from humr.bodies.kinematics import forward_kinematics
from humr.data import detector_sim as dsim
from humr.data.pose_prior import (
    ARM_ACTIVITIES,
    JOINT_LIMITS,
    STANCES,
    Family,
    PosePrior,
    default_prior,
    mirror_rotation_vectors,
    sample_body_pose,
    upright_orientation,
)
from humr.rotations import axis_angle_to_matrix, check_rotation_matrices

J = {n: i for i, n in enumerate(BODY_JOINT_NAMES)}
X, Y, Z = 0, 1, 2


def _component(name: str) -> int:
    return default_prior().names.index(name)


def _limits_written(joint: str) -> np.ndarray:
    """``(3, 2)`` degrees of a body joint, read from the anatomical table and mirrored by hand."""
    base = joint.replace("left_", "").replace("right_", "")
    rows = np.array([r[:2] for r in JOINT_LIMITS[base]], dtype=float)
    if joint.startswith("right_"):  # (x, y, z) -> (x, -y, -z): y and z bounds negate and swap
        rows[1:] = -rows[1:, ::-1]
    return rows


def test_samples_respect_the_written_joint_limits_and_hinges_bend_one_way():
    rv, comp = default_prior().sample(20000, torch.Generator().manual_seed(0), dtype=torch.float64)
    deg = torch.rad2deg(rv).numpy()
    assert np.all(deg[:, 0] == 0)  # the root is the caller's
    for name in BODY_JOINT_NAMES[1:]:
        lim = _limits_written(name)
        v = deg[:, J[name]]
        assert np.all(v >= lim[:, 0] - 1e-9) and np.all(v <= lim[:, 1] + 1e-9), name
    # anatomy, independent of the table: knees and elbows never hyperextend on either side
    assert deg[:, J["left_knee"], X].min() >= 0 and deg[:, J["right_knee"], X].min() >= 0
    assert deg[:, J["left_elbow"], Y].max() <= 0 and deg[:, J["right_elbow"], Y].min() >= 0
    # every component is drawn
    assert set(comp.tolist()) == set(range(default_prior().num_components))


def test_component_covariance_matches_its_basis_within_sampling_error():
    prior, n = default_prior(), 40000
    for name in ("walking + relaxed", "sitting + reaching (mirrored)", "lunging + holding"):
        c = _component(name)
        g = torch.Generator().manual_seed(c)
        rv, _ = prior.sample(n, g, component=c, clip=False, dtype=torch.float64)
        x = rv[:, 1:].reshape(n, -1).numpy()
        emp = np.cov(x, rowvar=False)
        basis, noise = prior.basis[c].numpy(), prior.noise[c].numpy()
        model = basis @ basis.T + np.diag(noise**2)
        se = np.sqrt((np.outer(np.diag(model), np.diag(model)) + model**2) / n)  # Wishart entries
        assert np.abs(emp - model).max() / se.max() < 6, name
        assert np.max(np.abs(emp - model) / se) < 6, name
        assert np.allclose(x.mean(0), prior.mean[c].numpy(), atol=5 * np.sqrt(np.diag(model) / n).max())


def _skeleton(rv: torch.Tensor) -> torch.Tensor:
    """Joint positions ``(n, 22, 3)`` of a rough human rest skeleton (metres, SMPL axes) posed by ``rv``."""
    offsets = {  # child: offset from its parent in the rest T-pose
        "left_hip": (0.09, -0.08, 0), "right_hip": (-0.09, -0.08, 0), "spine1": (0, 0.1, 0),
        "left_knee": (0, -0.4, 0), "right_knee": (0, -0.4, 0), "spine2": (0, 0.12, 0),
        "left_ankle": (0, -0.42, 0), "right_ankle": (0, -0.42, 0), "spine3": (0, 0.06, 0),
        "left_foot": (0, -0.05, 0.12), "right_foot": (0, -0.05, 0.12), "neck": (0, 0.2, 0),
        "left_collar": (0.08, 0.12, 0), "right_collar": (-0.08, 0.12, 0), "head": (0, 0.1, 0),
        "left_shoulder": (0.1, 0.02, 0), "right_shoulder": (-0.1, 0.02, 0),
        "left_elbow": (0.27, 0, 0), "right_elbow": (-0.27, 0, 0),
        "left_wrist": (0.25, 0, 0), "right_wrist": (-0.25, 0, 0),
    }
    local = torch.zeros(22, 3, dtype=torch.float64)
    for name, off in offsets.items():
        local[J[name]] = torch.tensor(off, dtype=torch.float64)
    rest = torch.zeros(22, 3, dtype=torch.float64)
    for j in range(1, 22):  # the rest skeleton, parents first
        rest[j] = rest[BODY_JOINT_PARENTS[j]] + local[j]
    rest = rest.expand(rv.shape[0], -1, -1)
    return forward_kinematics(axis_angle_to_matrix(rv), rest, BODY_JOINT_PARENTS)[1]


def test_walking_stride_moves_the_legs_in_antiphase_and_each_arm_with_the_opposite_leg():
    prior = default_prior()
    c = _component("walking + relaxed")
    rv, _ = prior.sample(20000, torch.Generator().manual_seed(3), component=c, dtype=torch.float64)
    deg = rv.numpy()
    # as written: left hip flexion (x < 0) while the right hip extends
    assert np.corrcoef(deg[:, J["left_hip"], X], deg[:, J["right_hip"], X])[0, 1] < -0.5
    # in space (forward is +z): the left knee forward, the right knee back, the right wrist forward
    pos = _skeleton(rv).numpy()
    fwd = pos[..., Z] - pos[:, :1, Z]
    lk, rk, lw, rw = (fwd[:, J[n]] for n in ("left_knee", "right_knee", "left_wrist", "right_wrist"))
    assert np.corrcoef(lk, rk)[0, 1] < -0.5
    assert np.corrcoef(lk, rw)[0, 1] > 0.2 and np.corrcoef(lk, lw)[0, 1] < -0.2
    # standing: the legs do not move in antiphase
    s = prior.sample(20000, torch.Generator().manual_seed(4), component=_component("standing + relaxed"))[0]
    assert abs(np.corrcoef(s[:, J["left_hip"], X], s[:, J["right_hip"], X])[0, 1]) < 0.2


def test_arms_hang_or_reach_in_front_rather_than_behind():
    rv, _ = default_prior().sample(20000, torch.Generator().manual_seed(5), dtype=torch.float64)
    pos = _skeleton(rv).numpy()
    for side in ("left", "right"):
        ahead = pos[:, J[f"{side}_wrist"], Z] - pos[:, J[f"{side}_shoulder"], Z]
        # wrists rarely behind the shoulders (the joint-by-joint prior of generator 2: 8.9 %, 3.9 %)
        assert np.mean(ahead < -0.1) < 0.08 and np.mean(ahead < -0.2) < 0.035, side
        assert np.mean(ahead) > 0.1, side


def test_mirrored_components_are_the_mirror_image_of_the_written_ones():
    prior = default_prior()
    a, b = _component("standing + reaching"), _component("standing + reaching (mirrored)")
    g = torch.Generator().manual_seed(6)
    ra = prior.sample(20000, g, component=a, clip=False, dtype=torch.float64)[0]
    rb = prior.sample(20000, g, component=b, clip=False, dtype=torch.float64)[0]
    assert torch.allclose(mirror_rotation_vectors(mirror_rotation_vectors(ra)), ra)
    # the left arm reaches forward in one, the right arm in the other
    assert float(ra[:, J["left_shoulder"], Y].mean()) < -1.0
    assert float(rb[:, J["right_shoulder"], Y].mean()) > 1.0
    assert torch.allclose(mirror_rotation_vectors(ra).mean(0), rb.mean(0), atol=0.02)
    assert torch.allclose(mirror_rotation_vectors(ra).std(0), rb.std(0), atol=0.02)


def test_log_marginal_matches_scipy_on_the_kept_block():
    prior = default_prior()
    rv, _ = prior.sample(6, torch.Generator().manual_seed(7), dtype=torch.float64)
    keep = ~dsim.chain_mask([1, 3]).expand(6, -1)
    got = prior.log_marginal(rv, keep)
    kept = keep[:, 1:, None].expand(-1, -1, 3).reshape(6, -1)
    x = rv[:, 1:].reshape(6, -1)
    for i in range(6):
        for c in (0, 12, 48):
            b = kept[i].numpy()
            cov = prior.covariance[c].numpy()[np.ix_(b, b)]
            want = multivariate_normal(prior.mean[c].numpy()[b], cov).logpdf(x[i].numpy()[b])
            want = want + math.log(float(prior.weights[c]))
            assert float(got[i, c]) == pytest.approx(want, rel=1e-8, abs=1e-6)


def test_conditional_of_a_known_component_is_the_gaussian_conditional():
    prior, n = default_prior(), 30000
    c = _component("walking + holding")
    rv = prior._full(prior.mean[c][None].clone())  # the mean pose, well inside every limit
    rv[0, J["left_hip"], X] -= 0.3  # the visible left leg strides forward
    redraw = dsim.chain_mask([4])[None]  # the right leg
    draws, weights = prior.conditional(rv, redraw, n, torch.Generator().manual_seed(8),
                                       component=torch.tensor([c]), clip=False)
    assert torch.all(weights == 1)
    assert torch.equal(draws[0, :, ~redraw[0]], rv[0, ~redraw[0]].expand(n, -1, -1))
    a = redraw[0, 1:, None].expand(-1, 3).reshape(-1).numpy()
    x = rv[0, 1:].reshape(-1).numpy()
    cov, mu = prior.covariance[c].numpy(), prior.mean[c].numpy()
    # Schur complement, computed with numpy
    gain = cov[np.ix_(a, ~a)] @ np.linalg.inv(cov[np.ix_(~a, ~a)])
    want_mean = mu[a] + gain @ (x[~a] - mu[~a])
    want_cov = cov[np.ix_(a, a)] - gain @ cov[np.ix_(~a, a)]
    got = draws[0, :, 1:].reshape(n, -1).numpy()[:, a]
    se = np.sqrt(np.diag(want_cov) / n)
    assert np.all(np.abs(got.mean(0) - want_mean) < 5 * se)
    assert np.allclose(np.cov(got, rowvar=False), want_cov, atol=5 * np.sqrt(2 / n) * np.diag(want_cov).max())
    # the stride: with the left thigh forward, the right one swings back (x > its mean)
    assert want_mean[0] > mu[a][0] + 0.1


def test_conditional_mixes_activities_that_the_rest_cannot_tell_apart():
    # two arm activities that differ only in the left arm: hidden, it may be either
    stance = Family("still", 1.0, "s_knee.x 5", ())
    arms = (Family("down", 0.5, "s_shoulder.z -70", ()),
            Family("up", 0.5, "s_shoulder.z -70 l_shoulder.z 130", ()))
    prior = PosePrior((stance,), arms)
    rv = prior._full(prior.mean[1][None].clone())  # the left arm up
    draws, weights = prior.conditional(rv, dsim.chain_mask([1])[None], 4000, torch.Generator().manual_seed(9))
    up = (draws[0, :, J["left_shoulder"], Z] > 0).double()
    assert float((up * weights[0]).mean()) == pytest.approx(0.5, abs=0.05)  # equal posterior
    assert float(weights.mean()) == pytest.approx(1.0)
    # seen, the arm decides
    draws, weights = prior.conditional(rv, dsim.chain_mask([3])[None], 4000, torch.Generator().manual_seed(9))
    assert torch.all(draws[0, :, J["left_shoulder"], Z] > 0)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.booleans(), min_size=22, max_size=22), st.integers(0, 2**31 - 1))
def test_conditional_keeps_the_kept_joints_and_the_limits(mask, seed):
    prior = default_prior()
    g = torch.Generator().manual_seed(seed)
    rv, _ = prior.sample(3, g)
    redraw = torch.tensor(mask).expand(3, -1).clone()
    draws, weights = prior.conditional(rv, redraw, 16, g)
    keep = ~redraw
    keep[:, 0] = True  # the root is never redrawn
    sel = keep[:, None].expand(-1, 16, -1)
    assert torch.equal(draws[sel], rv[:, None].expand(-1, 16, -1, -1)[sel])
    flat = draws[..., 1:, :].reshape(3, 16, -1).double()
    assert torch.all(flat >= prior.low - 1e-6) and torch.all(flat <= prior.high + 1e-6)
    assert torch.all(weights >= 0) and torch.allclose(weights.mean(1), torch.ones(3, dtype=torch.float64))


def test_tables_are_consistent():
    for table in (STANCES, ARM_ACTIVITIES):
        assert sum(f.weight for f in table) == pytest.approx(1.0)
    assert default_prior().num_components == 49
    with pytest.raises(ValueError, match="stances"):
        PosePrior((Family("x", 0.5, "", ()),), ARM_ACTIVITIES)
    with pytest.raises(ValueError, match="unknown side joint"):
        PosePrior((Family("x", 1.0, "l_spine1.x 3", ()),), ARM_ACTIVITIES)


def test_sample_body_pose_gives_rotations_with_identity_root():
    pose = sample_body_pose(64, torch.Generator().manual_seed(1))
    check_rotation_matrices("pose", pose, atol=1e-5)
    assert torch.allclose(pose[:, 0], torch.eye(3).expand(64, 3, 3))


@settings(max_examples=25, deadline=None)
@given(st.floats(-1.2, 1.2), st.floats(-0.3, 0.3), st.floats(-0.3, 0.3))
def test_upright_orientation_puts_the_body_upright_facing_the_camera(yaw, pitch, roll):
    r = upright_orientation(torch.tensor(yaw, dtype=torch.float64), torch.tensor(pitch, dtype=torch.float64),
                            torch.tensor(roll, dtype=torch.float64))
    up = r @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)  # SMPL up -> camera
    facing = r @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)  # SMPL forward -> camera
    # image up is -y; the body tilts by at most |pitch| + |roll|
    assert float(-up[1]) >= np.cos(abs(pitch) + abs(roll)) - 1e-9
    # facing the camera (-z) up to the yaw
    assert float(-facing[2]) >= np.cos(abs(yaw) + abs(pitch) + abs(roll)) - 1e-9
