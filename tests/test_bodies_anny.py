"""AnnyBody: fast keypoints against Anny's own full forward, rest-pose mapping, gradients, errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

anny = pytest.importorskip("anny")

from humr.bodies.anny_body import (  # noqa: E402
    ANNY_BONE_MAP,
    ANNY_PHENOTYPES,
    AnnyBody,
    _sample_gamma,
    load_anny_model,
    sample_adult_phenotypes,
)
from humr.bodies.base import BODY_JOINT_NAMES, COCO17_NAMES, SMPL24_NAMES  # noqa: E402
from humr.rotations import axis_angle_to_matrix  # noqa: E402

J = {n: i for i, n in enumerate(SMPL24_NAMES)}
SMPL_FROM_ANNY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], dtype=torch.float64)


@pytest.fixture(scope="module")
def body() -> AnnyBody:
    return AnnyBody(dtype=torch.float64)


def random_pose(n: int, scale: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(scale * torch.randn(n, 22, 3, generator=g, dtype=torch.float64))


def identity(n: int = 1) -> torch.Tensor:
    return torch.eye(3, dtype=torch.float64).expand(n, 22, 3, 3).clone()


def anny_reference_joints(shape: torch.Tensor) -> torch.Tensor:
    """Independent: Anny's own identity-pose (A-pose) bone heads, SMPL axes, root at its rest head."""
    model = load_anny_model("warp")
    with torch.no_grad():
        out = model(None, shape.double())
    heads = out["bone_poses"][0, :, :3, 3] + out["rest_bone_heads"][0, 0]
    heads = heads @ SMPL_FROM_ANNY.T
    index = {label: i for i, label in enumerate(model.bone_labels)}
    return torch.stack([heads[[index[b] for b in ANNY_BONE_MAP[n]]].mean(0) for n in BODY_JOINT_NAMES])


# ---------------------------------------------------------------- fast path == full forward
@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.0, 0.3, 1.0]))
def test_fast_keypoints_equal_full_forward(body, seed, scale):
    g = torch.Generator().manual_seed(seed)
    pose = random_pose(3, scale, seed)
    shape = torch.rand(3, 6, generator=g, dtype=torch.float64)
    shape[0] = torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0])  # range ends
    out = body(pose, shape)
    for names in ("coco17", "body_joints", "smpl24", ["coco_left_heel", "right_hand", "coco_nose", "neck"]):
        fast = body.keypoints(pose, shape, names)
        ref = body.keypoints_from_output(out, names)
        assert fast.shape == ref.shape
        assert (fast - ref).abs().max() < 1e-5, names


def test_output_shapes_and_faces(body):
    pose, shape = random_pose(4, 0.3, 0).reshape(2, 2, 22, 3, 3), torch.rand(2, 2, 6, dtype=torch.float64)
    out = body(pose, shape)
    assert out.vertices.shape == (2, 2, 13718, 3) and out.joints.shape == (2, 2, 24, 3)
    assert body.keypoints(pose, shape, "coco17").shape == (2, 2, 17, 3)
    faces = body.faces
    assert faces.shape == (27420, 3) and faces.dtype == torch.int64
    assert faces.min() == 0 and faces.max() == 13717 and faces.unique().numel() == 13718
    # Triangles are non-degenerate on the rest mesh.
    v = out.vertices[0, 0]
    area = torch.linalg.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]]).norm(dim=-1)
    assert (area > 0).all()


def test_shape_broadcasts_over_hypotheses(body):
    pose = random_pose(6, 0.5, 1).reshape(2, 3, 22, 3, 3)
    shape = torch.rand(2, 1, 6, dtype=torch.float64)
    dense = body.keypoints(pose, shape.expand(2, 3, 6).clone(), "coco17")
    assert torch.allclose(body.keypoints(pose, shape, "coco17"), dense, atol=1e-12)
    assert torch.allclose(body.keypoints(pose, shape.expand(2, 3, 6), "coco17"), dense, atol=1e-12)
    out = body(pose, shape)
    assert (body.keypoints_from_output(out, "coco17") - dense).abs().max() < 1e-5


# ---------------------------------------------------------------- rest pose
def test_identity_is_a_t_pose(body):
    joints = body.keypoints(identity(), body.mean_shape(1), "smpl24")[0]
    for side in ("left", "right"):
        arm = joints[[J[f"{side}_{n}"] for n in ("shoulder", "elbow", "wrist", "hand")]]
        # Straight and horizontal: same height and depth all along, pointing outwards.
        assert (arm[:, 1:] - arm[0, 1:]).abs().max() < 1e-6
        steps = arm[1:, 0] - arm[:-1, 0]
        assert (steps * (1 if side == "left" else -1) > 0.05).all()
        # Straight vertical legs in the sagittal plane, knee on the hip-ankle line.
        hip, knee, ankle = joints[[J[f"{side}_{n}"] for n in ("hip", "knee", "ankle")]]
        assert abs(float(knee[2] - hip[2])) < 1e-6 and abs(float(ankle[2] - hip[2])) < 1e-6
        u, w = knee - hip, ankle - knee
        assert float(torch.dot(u, w) / (u.norm() * w.norm())) > 1 - 1e-9
    # Mirror symmetry of the neutral body.
    left = joints[[J[n] for n in SMPL24_NAMES if n.startswith("left")]]
    right = joints[[J[n] for n in SMPL24_NAMES if n.startswith("right")]]
    assert torch.allclose(left * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64), right, atol=1e-6)


def test_identity_keeps_uncorrected_rest_joints(body):
    """Joints above the corrected ones (pelvis, hips, spine, neck, head, collars) are Anny's own."""
    shape = body.mean_shape(1)
    joints = body.keypoints(identity(), shape, "body_joints")[0]
    ref = anny_reference_joints(shape)
    names = ["pelvis", "left_hip", "right_hip", "spine1", "spine2", "spine3", "neck", "head",
             "left_collar", "right_collar", "left_shoulder", "right_shoulder"]
    idx = [J[n] for n in names]
    # Collars are levelled: the shoulder joint moves up by the collar's small drop, nothing else does.
    moved = (joints[idx] - ref[idx]).norm(dim=-1)
    assert moved[:-2].max() < 1e-9 and moved[-2:].max() < 0.05
    # Segment lengths are those of Anny's rest skeleton whatever the correction.
    for child, parent in ((J["left_elbow"], J["left_shoulder"]), (J["left_wrist"], J["left_elbow"]),
                          (J["left_knee"], J["left_hip"]), (J["left_ankle"], J["left_knee"])):
        assert abs(float((joints[child] - joints[parent]).norm() - (ref[child] - ref[parent]).norm())) < 1e-9


def test_anny_rest_pose_is_annys_a_pose():
    body = AnnyBody(dtype=torch.float64, rest_pose="anny")
    shape = torch.tensor([[0.2, 0.8, 0.4, 0.6, 0.3, 0.7]], dtype=torch.float64)
    joints = body.keypoints(identity(), shape, "body_joints")[0]
    assert (joints - anny_reference_joints(shape)).abs().max() < 1e-9


def test_elbow_flexion_moves_the_wrist_as_on_smpl(body):
    shape = body.mean_shape(1)
    rest = body(identity(), shape)
    pose = identity()
    # On SMPL's T-pose, rotating the left elbow by -90 deg about y (right: +90) brings the forearm
    # from pointing outwards (+-x) to pointing forwards (+z).
    flex = torch.tensor([0.0, math.pi / 2, 0.0], dtype=torch.float64)
    pose[0, J["left_elbow"]] = axis_angle_to_matrix(-flex)
    pose[0, J["right_elbow"]] = axis_angle_to_matrix(flex)
    out = body(pose, shape)
    for side in ("left", "right"):
        e, w = J[f"{side}_elbow"], J[f"{side}_wrist"]
        length = (rest.joints[0, w] - rest.joints[0, e]).norm()
        expected = out.joints[0, e] + length * torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        assert (out.joints[0, w] - expected).norm() < 1e-6
        assert (out.joints[0, e] - rest.joints[0, e]).norm() < 1e-9
        # The mesh follows: the COCO wrist (regressed from the skinned mesh) moved forwards too.
        k = COCO17_NAMES.index(f"coco_{side}_wrist")
        before = body.keypoints_from_output(rest, "coco17")[0, k]
        after = body.keypoints_from_output(out, "coco17")[0, k]
        assert after[2] - before[2] > 0.8 * length and abs(float(after[1] - before[1])) < 0.05


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_root_rotation_rotates_about_the_root(body, seed):
    g = torch.Generator().manual_seed(seed)
    pose, shape = random_pose(2, 0.4, seed), torch.rand(2, 6, generator=g, dtype=torch.float64)
    q = axis_angle_to_matrix(2.0 * torch.randn(2, 3, generator=g, dtype=torch.float64))
    turned = pose.clone()
    turned[:, 0] = q @ pose[:, 0]
    names = list(COCO17_NAMES) + list(SMPL24_NAMES)
    kp, kp_turned = body.keypoints(pose, shape, names), body.keypoints(turned, shape, names)
    root = kp[:, J["pelvis"] + 17 : J["pelvis"] + 18]
    assert torch.allclose(kp_turned[:, 17 + J["pelvis"]], kp[:, 17 + J["pelvis"]], atol=1e-12)
    expected = root + torch.einsum("nxy,nky->nkx", q, kp - root)
    # Anny's regressor rows sum to 1 only to float32 precision, hence not 1e-12.
    assert (kp_turned - expected).abs().max() < 1e-6


# ---------------------------------------------------------------- gradients
def test_gradients_match_the_full_forward(body):
    g = torch.Generator().manual_seed(3)
    pose0 = random_pose(2, 0.5, 3)
    shape0 = 0.1 + 0.8 * torch.rand(2, 6, generator=g, dtype=torch.float64)
    weights = torch.randn(2, 17 + 22, 3, generator=g, dtype=torch.float64)
    names = list(COCO17_NAMES) + list(BODY_JOINT_NAMES)
    grads = []
    for fast in (True, False):
        pose, shape = pose0.clone().requires_grad_(), shape0.clone().requires_grad_()
        if fast:
            kp = body.keypoints(pose, shape, names)
        else:
            kp = body.keypoints_from_output(body(pose, shape), names)
        (weights * kp).sum().backward()
        grads.append((pose.grad, shape.grad))
    for a, b in zip(*grads):
        assert torch.isfinite(a).all() and a.abs().max() > 0
        assert (a - b).abs().max() < 1e-6 * max(1.0, float(b.abs().max()))


def test_float32_default_and_to():
    body = AnnyBody()
    pose, shape = random_pose(2, 0.3, 4).float(), body.mean_shape(2)
    assert shape.dtype == torch.float32 and torch.all(shape == 0.5)
    kp = body.keypoints(pose, shape, "coco17")
    assert kp.dtype == torch.float32
    out = body(pose, shape)
    assert out.vertices.dtype == torch.float32
    assert (kp - body.keypoints_from_output(out, "coco17")).abs().max() < 1e-4
    body64 = body.to(torch.float64)
    assert body64.keypoints(pose.double(), shape.double(), "coco17").dtype == torch.float64
    assert load_anny_model("warp").dtype == torch.float64  # the shared cached model did not move


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "pose_shape, shape_value, names, word",
    [
        ((2, 21, 3, 3), 0.5, "coco17", "pose"),
        ((2, 22, 3, 3), 1.5, "coco17", "shape"),
        ((2, 22, 3, 3), -0.1, "coco17", "shape"),
        ((2, 22, 3, 3), 0.5, "h36m14", "names"),
        ((2, 22, 3, 3), 0.5, "no_such_set", "names"),
        ((2, 22, 3, 3), 0.5, ["coco_nose", "h36m_neck"], "names"),
    ],
)
def test_bad_inputs_raise(body, pose_shape, shape_value, names, word):
    pose = torch.eye(3, dtype=torch.float64).expand(*pose_shape).clone()
    shape = torch.full((2, 6), shape_value, dtype=torch.float64)
    with pytest.raises(ValueError, match=word):
        body.keypoints(pose, shape, names)
    if word != "names":
        with pytest.raises(ValueError, match=word):
            body(pose, shape)


def test_nan_and_batch_mismatch_raise(body):
    pose, shape = identity(2), body.mean_shape(2)
    bad = pose.clone()
    bad[0, 3, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="pose"):
        body.keypoints(bad, shape)
    bad_shape = shape.clone()
    bad_shape[1, 2] = float("nan")
    with pytest.raises(ValueError, match="shape"):
        body.keypoints(pose, bad_shape)
    with pytest.raises(ValueError, match="shape"):
        body.keypoints(pose, body.mean_shape(3))
    with pytest.raises(ValueError, match="shape"):
        body.keypoints(pose, torch.full((2, 10), 0.5, dtype=torch.float64))
    with pytest.raises(ValueError, match="pose: expected device"):
        body.keypoints(torch.empty(2, 22, 3, 3, dtype=torch.float64, device="meta"), shape)
    with pytest.raises(ValueError, match="rest_pose"):
        AnnyBody(rest_pose="apose")


# ---------------------------------------------------------------- shape sampling
def test_sample_shapes_reproducible_adult_and_in_range(body):
    a = body.sample_shapes(2000, generator=torch.Generator().manual_seed(0))
    b = body.sample_shapes(2000, generator=torch.Generator().manual_seed(0))
    c = body.sample_shapes(2000, generator=torch.Generator().manual_seed(1))
    assert a.shape == (2000, 6) and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    age = a[:, ANNY_PHENOTYPES.index("age")]
    # Anny's calibration maps 18 years to age 0.77 and 64 years to 0.83 (110 years: 1.0).
    assert age.min() >= 0.77 - 1e-9 and age.max() <= 0.83 + 16 / 46 * 0.17 + 1e-9
    assert abs(float(a[:, 0].mean()) - 0.5) < 0.05  # gender uniform
    heights = a[:, ANNY_PHENOTYPES.index("height")]
    assert 0.2 < float(heights.mean()) < 0.8 and float(heights.std()) > 0.02
    body.keypoints(identity(8), a[:8], "coco17")  # valid phenotypes


@settings(max_examples=8, deadline=None)
@given(alpha=st.floats(0.05, 60.0))
def test_gamma_sampler_moments(alpha):
    """Gamma(alpha, 1) has mean and variance alpha."""
    n = 20000
    x = _sample_gamma(torch.full((n,), alpha, dtype=torch.float64), torch.Generator().manual_seed(7))
    assert (x >= 0).all()
    assert abs(float(x.mean()) - alpha) < 5 * math.sqrt(alpha / n) + 1e-12
    assert abs(float(x.var()) / alpha - 1) < 0.15 + 5 / math.sqrt(n) * (1 + 6 / alpha)


def test_sample_adult_phenotypes_dtype():
    x = sample_adult_phenotypes(5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    assert x.dtype == torch.float64 and x.shape == (5, 6)
    with pytest.raises(ValueError, match="n"):
        sample_adult_phenotypes(-1)


def test_validate_rotations_refuses_non_rotations_like_smplx(body):
    from humr.bodies import build_body

    checked = build_body("anny", dtype=torch.float64, validate_rotations=True)
    pose, shape = random_pose(3, 0.5, seed=4), body.mean_shape(3)
    torch.testing.assert_close(checked.keypoints(pose, shape), body.keypoints(pose, shape))
    for bad in (1e6 * identity(3), identity(3).flip(-1), 1.05 * pose):  # scaled, reflected, stretched
        with pytest.raises(ValueError, match="pose: expected rotation matrices"):
            checked.keypoints(bad, shape)
        with pytest.raises(ValueError, match="pose: expected rotation matrices"):
            checked(bad, shape)
    body.keypoints(1.05 * pose, shape)  # unchecked by default: the check costs a host sync
