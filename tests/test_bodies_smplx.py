"""SMPL-X / SMPL bodies, their fast keypoint path, kinematics helpers and SMPL-X -> SMPL conversion.

The licensed model files cannot be downloaded: fixtures write model files with the real keys,
shapes and kinematic trees and random values (``humr.testing.body_files``). References are
independent computations: ``smplx``'s own layers, a brute-force 4x4 kinematic chain, dense
linear blend skinning of every vertex, numpy on the raw file arrays.
"""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import roma
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.bodies import SMPLBody, SMPLXBody, build_body
from humr.bodies.base import (
    BODY_JOINT_NAMES,
    COCO17_NAMES,
    H36M14_NAMES,
    SMPL24_NAMES,
    resolve_keypoint_names,
)
from humr.bodies.conversion import (
    H36M17_TO_LSP14,
    load_h36m_regressor,
    load_smplx_to_smpl,
    smplx_to_smpl_vertices,
)
from humr.bodies.kinematics import (
    RegressedKeypoints,
    fold_skinning_weights,
    forward_kinematics,
    kinematic_levels,
    nearest_ancestors,
    pose_feature,
)
from humr.bodies.smpl_body import SMPL_FACE_VERTICES
from humr.bodies.smplx_body import SMPLX_FACE_VERTICES, SMPLX_JOINT_NAMES
from humr.testing.body_files import (
    SMPL_PARENTS,
    SMPLX_PARENTS,
    write_h36m_regressor,
    write_smpl_npz,
    write_smplx_npz,
    write_smplx_to_smpl_pkl,
)

SETTINGS = settings(max_examples=8, deadline=None)
ATOL = 1e-5


def random_pose(batch, joints, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return roma.rotvec_to_rotmat(scale * torch.randn(*batch, joints, 3, generator=g))


def random_shape(batch, n, seed):
    g = torch.Generator().manual_seed(seed + 1000)
    return torch.randn(*batch, n, generator=g)


def sparse_smplx_to_smpl(num_smpl, num_smplx, seed=0):
    """A (num_smpl, num_smplx) sparse matrix whose rows are barycentric weights on 3 vertices."""
    g = torch.Generator().manual_seed(seed)
    cols = torch.randint(0, num_smplx, (num_smpl, 3), generator=g)
    vals = torch.rand(num_smpl, 3, generator=g) + 0.1
    vals = vals / vals.sum(1, keepdim=True)
    rows = torch.arange(num_smpl)[:, None].expand(-1, 3)
    return torch.sparse_coo_tensor(
        torch.stack([rows.reshape(-1), cols.reshape(-1)]),
        vals.reshape(-1),
        (num_smpl, num_smplx),
        check_invariants=True,
    ).coalesce()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bodies")
    smplx_dir = d / "smplx"
    write_smplx_npz(smplx_dir / "SMPLX_NEUTRAL.npz", seed=1)
    smpl_dir = d / "smpl"
    write_smpl_npz(smpl_dir / "SMPL_NEUTRAL.npz", seed=2)
    h36m = write_h36m_regressor(d / "J_regressor_h36m.npy", seed=3, support=300)
    return {"dir": d, "smplx": smplx_dir, "smpl": smpl_dir, "h36m": h36m}


@pytest.fixture(scope="module")
def m_smplx():
    return sparse_smplx_to_smpl(6890, 10475, seed=4)


@pytest.fixture(scope="module")
def smplx_body(files, m_smplx):
    return SMPLXBody(files["smplx"], h36m_regressor=files["h36m"], smplx_to_smpl=m_smplx)


@pytest.fixture(scope="module")
def smpl_body(files):
    return SMPLBody(files["smpl"], h36m_regressor=files["h36m"])


# ----------------------------------------------------------------------------- fast == full forward
@SETTINGS
@given(
    seed=st.integers(0, 10_000), names=st.sampled_from(["coco17", "body_joints", "smpl24", "h36m14", "mixed"])
)
def test_smplx_fast_keypoints_equal_full_forward(smplx_body, seed, names):
    if names == "mixed":  # kinematic, at-rest, vertex and regressor keypoints, interleaved, one repeated
        names = ["coco_nose", "right_thumb3", "pelvis", "h36m_head_top", "jaw", "coco_left_ear", "pelvis"]
    pose, shape = random_pose((2, 3), 22, seed), random_shape((2, 3), 11, seed)
    fast = smplx_body.keypoints(pose, shape, names)
    ref = smplx_body.keypoints_from_output(smplx_body(pose, shape), names)
    assert fast.shape == ref.shape == (2, 3, len(resolve_keypoint_names(names)), 3)
    torch.testing.assert_close(fast, ref, atol=ATOL, rtol=0)


@SETTINGS
@given(
    seed=st.integers(0, 10_000),
    joints=st.sampled_from([22, 24]),
    names=st.sampled_from(["coco17", "smpl24", "h36m14"]),
)
def test_smpl_fast_keypoints_equal_full_forward(smpl_body, seed, joints, names):
    pose, shape = random_pose((5,), joints, seed), random_shape((5,), 10, seed)
    fast = smpl_body.keypoints(pose, shape, names)
    ref = smpl_body.keypoints_from_output(smpl_body(pose, shape), names)
    torch.testing.assert_close(fast, ref, atol=ATOL, rtol=0)


def test_full_forward_equals_smplx_layers(smplx_body, smpl_body):
    """Our full forward is smplx's: compare with SMPLXLayer / SMPLLayer.forward themselves."""
    pose, shape = random_pose((4,), 22, 0), random_shape((4,), 11, 0)
    ours = smplx_body(pose, shape)
    theirs = smplx_body.layer(betas=shape, global_orient=pose[:, :1], body_pose=pose[:, 1:])
    torch.testing.assert_close(ours.vertices, theirs.vertices, atol=1e-6, rtol=0)
    torch.testing.assert_close(ours.joints, theirs.joints[:, :55], atol=1e-6, rtol=0)
    # smplx appends the face vertices nose, reye, leye, rear, lear after the 55 joints.
    coco = smplx_body.keypoints(
        pose, shape, ["coco_nose", "coco_right_eye", "coco_left_eye", "coco_right_ear", "coco_left_ear"]
    )
    torch.testing.assert_close(coco, theirs.joints[:, 55:60], atol=ATOL, rtol=0)

    pose24, shape10 = random_pose((4,), 24, 1), random_shape((4,), 10, 1)
    ours = smpl_body(pose24, shape10)
    theirs = smpl_body.layer(betas=shape10, global_orient=pose24[:, :1], body_pose=pose24[:, 1:])
    torch.testing.assert_close(ours.vertices, theirs.vertices, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        smpl_body.keypoints(pose24, shape10, "smpl24"), theirs.joints[:, :24], atol=ATOL, rtol=0
    )


def test_h36m_keypoints_equal_regressor_on_converted_mesh(smplx_body, smpl_body, files, m_smplx):
    """H36M-14 on SMPL-X = LSP rows of the regressor applied to the SMPL mesh converted from SMPL-X."""
    reg = torch.from_numpy(np.load(files["h36m"]))[list(H36M17_TO_LSP14)]
    pose, shape = random_pose((3,), 22, 5), random_shape((3,), 11, 5)
    smpl_vertices = smplx_to_smpl_vertices(smplx_body(pose, shape).vertices, m_smplx)
    expected = torch.einsum("kv,bvc->bkc", reg, smpl_vertices)
    torch.testing.assert_close(smplx_body.keypoints(pose, shape, "h36m14"), expected, atol=ATOL, rtol=0)

    pose, shape = random_pose((3,), 24, 6), random_shape((3,), 10, 6)
    expected = torch.einsum("kv,bvc->bkc", reg, smpl_body(pose, shape).vertices)
    torch.testing.assert_close(smpl_body.keypoints(pose, shape, "h36m14"), expected, atol=ATOL, rtol=0)


# ----------------------------------------------------------------------------- closed-form properties
def test_rest_pose_gives_rest_joints_and_template_vertices(smplx_body, smpl_body, files):
    for body, directory, name, faces, n_pose, n_shape in (
        (smplx_body, files["smplx"], "SMPLX_NEUTRAL.npz", SMPLX_FACE_VERTICES, 22, 11),
        (smpl_body, files["smpl"], "SMPL_NEUTRAL.npz", SMPL_FACE_VERTICES, 24, 10),
    ):
        raw = np.load(directory / name)
        rest_joints = raw["J_regressor"].astype(np.float64) @ raw["v_template"].astype(np.float64)
        pose = torch.eye(3).expand(2, n_pose, 3, 3)
        shape = torch.zeros(2, n_shape)
        joints = body.keypoints(pose, shape, list(body.joint_names))
        np.testing.assert_allclose(joints[0].numpy(), rest_joints, atol=1e-5)
        face = body.keypoints(pose, shape, list(faces))
        np.testing.assert_allclose(face[1].numpy(), raw["v_template"][list(faces.values())], atol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_root_rotation_rotates_every_keypoint_about_the_root(smplx_body, seed):
    pose, shape = random_pose((3,), 22, seed), random_shape((3,), 11, seed)
    turn = random_pose((3,), 1, seed + 7)[:, 0]
    names = list(COCO17_NAMES) + list(H36M14_NAMES) + ["left_hand", "pelvis"]
    before = smplx_body.keypoints(pose, shape, names)
    turned = pose.clone()
    turned[:, 0] = turn @ pose[:, 0]
    after = smplx_body.keypoints(turned, shape, names)
    root = before[:, -1:]  # the root stays at its shaped rest position
    torch.testing.assert_close(after[:, -1:], root, atol=ATOL, rtol=0)
    expected = torch.einsum("bij,bkj->bki", turn, before - root) + root
    torch.testing.assert_close(after, expected, atol=ATOL, rtol=0)


def test_gradients_equal_full_forward_gradients(smplx_body):
    pose0, shape0 = random_pose((4,), 22, 11), random_shape((4,), 11, 11)
    names = list(COCO17_NAMES) + list(H36M14_NAMES)
    w = torch.randn(4, len(names), 3, generator=torch.Generator().manual_seed(0))
    grads = []
    for fast in (True, False):
        pose, shape = pose0.clone().requires_grad_(), shape0.clone().requires_grad_()
        kp = (
            smplx_body.keypoints(pose, shape, names)
            if fast
            else smplx_body.keypoints_from_output(smplx_body(pose, shape), names)
        )
        (kp * w).sum().backward()
        grads.append((pose.grad, shape.grad))
    assert grads[0][0].abs().sum() > 0 and grads[0][1].abs().sum() > 0
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-4, rtol=1e-4)


def test_float64_inputs_follow_through(smplx_body):
    pose, shape = random_pose((2,), 22, 3).double(), random_shape((2,), 11, 3).double()
    fast = smplx_body.keypoints(pose, shape, "coco17")
    assert fast.dtype == torch.float64
    torch.testing.assert_close(
        fast, smplx_body.keypoints_from_output(smplx_body(pose, shape), "coco17"), atol=1e-6, rtol=0
    )


def test_keypoint_sets_and_names(smplx_body, smpl_body):
    assert smplx_body.num_pose_joints == 22 and smplx_body.num_shape == 11
    assert smpl_body.num_pose_joints == 24 and smpl_body.num_shape == 10
    assert smplx_body.joint_names == SMPLX_JOINT_NAMES and smplx_body.joint_names[:22] == BODY_JOINT_NAMES
    assert tuple(smplx_body.layer.parents.tolist()[1:]) == SMPLX_PARENTS[1:]
    assert tuple(smpl_body.layer.parents.tolist()[1:]) == smpl_body.parents[1:] == SMPL_PARENTS[1:]
    for body in (smplx_body, smpl_body):
        assert set(COCO17_NAMES + SMPL24_NAMES + H36M14_NAMES) <= set(body.keypoint_names)
    pose, shape = random_pose((2,), 22, 1), random_shape((2,), 11, 1)
    # SMPL's hand joints map to SMPL-X's middle-finger roots; COCO shoulders are the kinematic shoulders.
    torch.testing.assert_close(
        smplx_body.keypoints(pose, shape, ["left_hand", "coco_right_shoulder"]),
        smplx_body.keypoints(pose, shape, ["left_middle1", "right_shoulder"]),
    )
    assert smplx_body.faces.shape == (20908, 3) and smpl_body.faces.shape == (13776, 3)
    # Model data never goes into checkpoints.
    assert not smplx_body.state_dict() and not smpl_body.state_dict()


def test_batch_shapes_unbatched_and_empty(smplx_body):
    pose, shape = random_pose((3,), 22, 2), random_shape((3,), 11, 2)
    batched = smplx_body.keypoints(pose, shape, "coco17")
    torch.testing.assert_close(smplx_body.keypoints(pose[1], shape[1], "coco17"), batched[1])
    assert smplx_body.keypoints(pose[:0], shape[:0], "smpl24").shape == (0, 24, 3)


# ----------------------------------------------------------------------------- generic kinematics
def brute_force_fk(rot, rest, parents):
    """Global 4x4 transforms by recursion over the tree, one joint at a time."""
    n = len(parents)
    out = [None] * n

    def get(j):
        if out[j] is None:
            local = torch.eye(4, dtype=rot.dtype).repeat(rot.shape[0], 1, 1)
            local[:, :3, :3] = rot[:, j]
            local[:, :3, 3] = rest[:, j] - (rest[:, parents[j]] if parents[j] >= 0 else 0)
            out[j] = local if parents[j] < 0 else get(parents[j]) @ local
        return out[j]

    return torch.stack([get(j) for j in range(n)], 1)


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 12))
def test_forward_kinematics_matches_brute_force(seed, n):
    rng = np.random.default_rng(seed)
    # A random tree in a random joint order (parents may come after children), with two roots.
    order = rng.permutation(n)
    parents = [-1] * n
    for i in range(1, n):
        parents[order[i]] = -1 if i == 1 else int(order[rng.integers(0, i)])
    rot = random_pose((3,), n, seed).double()
    rest = torch.from_numpy(rng.standard_normal((3, n, 3)))
    g_rot, posed = forward_kinematics(rot, rest, parents)
    ref = brute_force_fk(rot, rest, parents)
    torch.testing.assert_close(g_rot, ref[..., :3, :3])
    torch.testing.assert_close(posed, ref[..., :3, 3])
    levels = kinematic_levels(parents)
    assert sorted(j for joints, _ in levels for j in joints) == list(range(n))


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_regressed_keypoints_equal_dense_lbs(seed):
    """Closed-form keypoints against skinning every vertex of a small random LBS model with joints at rest."""
    rng = np.random.default_rng(seed)
    parents = (-1, 0, 1, 2, 1, 4, 5, 0)
    posed = [0, 1, 2, 4, 7]  # joints 3, 5, 6 stay at rest
    v, s, k = 40, 4, 6
    t = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
    v_template, shapedirs = t(rng.standard_normal((v, 3))), t(0.1 * rng.standard_normal((v, 3, s)))
    weights = t(rng.dirichlet(np.ones(len(parents)), v))
    j_reg = t(rng.dirichlet(np.ones(v), len(parents)))
    n_feat = 9 * (len(parents) - 1)
    posedirs = t(0.05 * rng.standard_normal((v, 3, n_feat)))
    regressor = t(rng.random((k, v)) * (rng.random((k, v)) < 0.3))
    beta = t(rng.standard_normal((2, s)))
    rot_all = random_pose((2,), len(parents), seed).double()
    rest_mask = torch.tensor([j not in posed for j in range(len(parents))])
    rot_all[:, rest_mask] = torch.eye(3, dtype=torch.float64)

    # Dense reference: every vertex, every joint, 4x4 chain.
    v_shaped = v_template + torch.einsum("vcs,bs->bvc", shapedirs, beta)
    rest_joints = torch.einsum("jv,bvc->bjc", j_reg, v_shaped)
    feats = pose_feature(rot_all[:, 1:])
    v_posed = v_shaped + torch.einsum("vcf,bf->bvc", posedirs, feats)
    chain = brute_force_fk(rot_all, rest_joints, parents)
    a = chain.clone()
    a[..., :3, 3] -= torch.einsum("bjrc,bjc->bjr", chain[..., :3, :3], rest_joints)
    verts = torch.einsum("vj,bjrc,bvc->bvr", weights, a[..., :3, :3], v_posed) + torch.einsum(
        "vj,bjr->bvr", weights, a[..., :3, 3]
    )
    expected = torch.einsum("kv,bvc->bkc", regressor, verts)

    # Fast: FK of the posed joints only, weights folded, pose features of posed non-root joints only.
    pj = list(posed)
    anc = nearest_ancestors(parents, pj)
    sub_parents = [-1 if parents[j] < 0 else pj.index(anc[parents[j]]) for j in pj]
    g_rot, joints = forward_kinematics(rot_all[:, pj], rest_joints[:, pj], sub_parents)
    feat_rows = [9 * (j - 1) + i for j in pj[1:] for i in range(9)]
    module = RegressedKeypoints(
        regressor,
        v_template,
        shapedirs,
        posedirs[:, :, feat_rows],
        fold_skinning_weights(weights, nearest_ancestors(parents, pj), pj),
    )
    fast = module(g_rot, joints, rest_joints[:, pj], beta, feats[:, feat_rows])
    torch.testing.assert_close(fast, expected, atol=1e-10, rtol=0)
    torch.testing.assert_close(
        module(g_rot, joints, rest_joints[:, pj], beta, feats[:, feat_rows], [4, 0, 4]),
        expected[:, [4, 0, 4]],
        atol=1e-10,
        rtol=0,
    )


def test_kinematics_bad_inputs():
    with pytest.raises(ValueError, match="parents"):
        forward_kinematics(torch.eye(3).expand(2, 3, 3), torch.zeros(2, 3), [-1, 5])
    with pytest.raises(ValueError, match="cycle"):
        kinematic_levels([-1, 2, 1])
    with pytest.raises(ValueError, match="rotations"):
        forward_kinematics(torch.eye(3).expand(3, 3, 3), torch.zeros(2, 3), [-1, 0])
    with pytest.raises(ValueError, match="posed"):
        nearest_ancestors([-1, 0], [1])


# ----------------------------------------------------------------------------- conversion
def test_smplx_to_smpl_identity_like_and_barycentric(tmp_path):
    g = torch.Generator().manual_seed(0)
    verts = torch.randn(2, 3, 12, 3, generator=g, requires_grad=True)
    pick = torch.tensor([3, 0, 11, 7, 7])
    selection = torch.zeros(5, 12)
    selection[torch.arange(5), pick] = 1
    path = write_smplx_to_smpl_pkl(tmp_path / "smplx2smpl.pkl", matrix=selection.numpy())
    m = load_smplx_to_smpl(path, num_smpl_vertices=5, num_smplx_vertices=12)
    assert m.is_sparse and m.shape == (5, 12)
    out = smplx_to_smpl_vertices(verts, m)
    torch.testing.assert_close(out, verts[..., pick, :])
    out.sum().backward()  # gradient flows: vertex 7 was picked twice, vertex 1 never
    assert verts.grad[0, 0, 7, 0] == 2 and verts.grad[0, 0, 1, 0] == 0

    path = write_smplx_to_smpl_pkl(tmp_path / "bary.pkl", num_smpl_vertices=9, num_smplx_vertices=12, seed=3)
    with open(path, "rb") as f:
        dense = torch.from_numpy(pickle.load(f)["matrix"])
    m = load_smplx_to_smpl(path, num_smpl_vertices=9, num_smplx_vertices=12)
    v = verts.detach()
    expected = torch.stack([sum(dense[i, j] * v[..., j, :] for j in range(12)) for i in range(9)], -2)
    torch.testing.assert_close(smplx_to_smpl_vertices(v, m), expected)
    torch.testing.assert_close(smplx_to_smpl_vertices(v, dense), expected)
    torch.testing.assert_close(dense.sum(1), torch.ones(9))


def test_conversion_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="smplx2smpl.*BEDLAM"):
        load_smplx_to_smpl(tmp_path / "missing.pkl")
    with open(tmp_path / "wrong_key.pkl", "wb") as f:
        pickle.dump({"mat": np.eye(3)}, f)
    with pytest.raises(ValueError, match="'matrix'"):
        load_smplx_to_smpl(tmp_path / "wrong_key.pkl")
    write_smplx_to_smpl_pkl(tmp_path / "small.pkl", num_smpl_vertices=4, num_smplx_vertices=6)
    with pytest.raises(ValueError, match=r"\(6890, 10475\)"):
        load_smplx_to_smpl(tmp_path / "small.pkl")
    with pytest.raises(ValueError, match="vertices"):
        smplx_to_smpl_vertices(torch.zeros(2, 5, 3), torch.eye(6))
    with pytest.raises(FileNotFoundError, match="J_regressor_h36m.*SPIN"):
        load_h36m_regressor(tmp_path / "J_regressor_h36m.npy")
    np.save(tmp_path / "bad.npy", np.zeros((14, 6890)))
    with pytest.raises(ValueError, match=r"\(17, 6890\)"):
        load_h36m_regressor(tmp_path / "bad.npy")


# ----------------------------------------------------------------------------- errors and factory
def test_bad_inputs_raise_clear_errors(smplx_body, files):
    shape = torch.zeros(2, 11)
    with pytest.raises(ValueError, match=r"pose: expected shape \(\.\.\., 22, 3, 3\)"):
        smplx_body.keypoints(torch.eye(3).expand(2, 21, 3, 3), shape)
    with pytest.raises(ValueError, match="shape: expected"):
        smplx_body.keypoints(torch.eye(3).expand(2, 22, 3, 3), torch.zeros(2, 10))
    nan_pose = torch.eye(3).repeat(2, 22, 1, 1)
    nan_pose[0, 3, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        smplx_body(nan_pose, shape)
    with pytest.raises(ValueError, match="unknown keypoint 'nose'"):
        smplx_body.keypoints(torch.eye(3).expand(2, 22, 3, 3), shape, ["nose"])
    scaled = 1.5 * torch.eye(3).expand(2, 22, 3, 3)
    smplx_body.keypoints(scaled, shape)  # no check by default (it costs a host sync)
    checked = SMPLXBody(files["smplx"], validate_rotations=True)
    with pytest.raises(ValueError, match="rotation matrices"):
        checked.keypoints(scaled, shape)
    with pytest.raises(ValueError, match="J_regressor_h36m"):  # h36m14 needs a regressor
        checked.keypoints(torch.eye(3).expand(2, 22, 3, 3), shape, "h36m14")
    with pytest.raises(ValueError, match="smplx_to_smpl"):
        SMPLXBody(files["smplx"], h36m_regressor=files["h36m"])


def test_model_file_errors(tmp_path, files):
    with pytest.raises(FileNotFoundError, match=r"SMPLX_NEUTRAL\.npz.*smpl-x\.is\.tue\.mpg\.de"):
        SMPLXBody(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"SMPLX_FEMALE\.npz"):
        SMPLXBody(files["smplx"], gender="female")
    (tmp_path / "SMPLX_NEUTRAL.pkl").write_bytes(b"not read")
    with pytest.raises(ValueError, match=r"chumpy.*numpy 2.*\.npz"):
        SMPLXBody(tmp_path)
    (tmp_path / "SMPL_NEUTRAL.pkl").write_bytes(pickle.dumps(1)[:-1])  # a truncated pickle
    with pytest.raises(ValueError, match=r"chumpy.*numpy 2"):
        SMPLBody(tmp_path)
    small = write_smplx_npz(
        tmp_path / "small" / "SMPLX_NEUTRAL.npz", num_vertices=300, num_shape_components=20
    )
    with pytest.raises(ValueError, match="300 shape components"):
        SMPLXBody(small, num_shape=11)
    with pytest.raises(ValueError, match="vertices, too few"):
        SMPLXBody(small, num_shape=10)
    np.savez(tmp_path / "partial.npz", v_template=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="lacks the keys"):
        SMPLXBody(tmp_path / "partial.npz")


def test_build_body(files):
    with pytest.raises(ValueError, match="model_path.*smpl-x"):
        build_body("smplx")
    with pytest.raises(ValueError, match="name"):
        build_body("smplh", files["smplx"])
    with pytest.raises(ValueError, match="anny"):
        build_body("anny", files["smplx"])
    assert isinstance(build_body("smpl", files["smpl"]), SMPLBody)


def test_importing_bodies_does_not_import_anny_or_smplx():
    code = (
        "import sys, humr.bodies as b; assert 'anny' not in sys.modules and 'smplx' not in sys.modules; "
        "assert 'AnnyBody' in b.__all__"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
def test_a_damaged_model_file_is_named_and_said_damaged(tmp_path, how):
    from humr.testing.body_files import write_damaged_copy

    good = write_smplx_npz(tmp_path / "good" / "SMPLX_NEUTRAL.npz", num_vertices=300, num_shape_components=3)
    bad = write_damaged_copy(good, tmp_path / how / "SMPLX_NEUTRAL.npz", how)
    with pytest.raises(ValueError, match=rf"model_path: {bad} is damaged"):
        SMPLXBody(bad.parent, num_shape=10)
    smpl = write_smpl_npz(tmp_path / "good_smpl" / "SMPL_NEUTRAL.npz", num_vertices=7000)
    bad = write_damaged_copy(smpl, tmp_path / f"{how}_smpl" / "SMPL_NEUTRAL.npz", how)
    with pytest.raises(ValueError, match=rf"model_path: {bad} is damaged"):
        SMPLBody(bad.parent)


@pytest.mark.parametrize("key", ["v_template", "shapedirs", "posedirs", "J_regressor", "weights"])
def test_nan_inside_a_model_file_is_caught_when_it_is_loaded(tmp_path, key):
    def poison(arrays):
        arrays[key].flat[7] = np.inf if key == "posedirs" else np.nan

    path = write_smpl_npz(tmp_path / "SMPL_NEUTRAL.npz", edit=poison)
    with pytest.raises(ValueError, match=rf"{path} is damaged: NaN or infinite values in "):
        SMPLBody(path)
    if key == "v_template":  # SMPL-X loads through the same check
        path = write_smplx_npz(tmp_path / "SMPLX_NEUTRAL.npz", num_shape_components=20, edit=poison)
        with pytest.raises(ValueError, match=rf"{path} is damaged: NaN or infinite values in v_template"):
            SMPLXBody(path, num_shape=10)
