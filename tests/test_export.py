"""humr.export: the npz round trip and meshes that load back through trimesh."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from humr.bodies.base import COCO17_NAMES
from humr.export import NPZ_KEYS, load_npz, mesh_colors, save_meshes, save_npz
from humr.model.hypotheses import Hypotheses

trimesh = pytest.importorskip("trimesh")


@pytest.fixture(scope="module")
def body(tmp_path_factory):
    from humr.bodies.smplx_body import SMPLXBody
    from humr.testing.body_files import write_smplx_npz

    return SMPLXBody(write_smplx_npz(tmp_path_factory.mktemp("smplx") / "SMPLX_NEUTRAL.npz", seed=5))


def _hyps_and_batch(body, b: int = 2, s: int = 5, seed: int = 0):
    from humr.rotations import rot6d_to_matrix

    g = torch.Generator().manual_seed(seed)
    j = body.num_pose_joints
    pose6d = torch.randn(b, s, j * 6, generator=g)
    rotmat = rot6d_to_matrix(pose6d.reshape(b, s, j, 6))
    shape = 0.5 * torch.randn(b, body.num_shape, generator=g)
    kp3d = body.keypoints(rotmat, shape[:, None].expand(-1, s, -1), "coco17")
    translation = torch.tensor([0.0, 0.0, 5.0]) + 0.1 * torch.randn(b, 3, generator=g)
    hyps = Hypotheses(pose6d=pose6d, rotmat=rotmat, log_prob=torch.randn(b, s, generator=g), shape=shape,
                      regressed_shape=shape, camera=torch.rand(b, 3, generator=g),
                      translation=translation, keypoints_3d=kp3d,
                      keypoints_2d=torch.rand(b, s, 17, 2, generator=g) * 2 - 1)
    batch = {"center": torch.rand(b, 2, generator=g) * 500, "box_size": torch.rand(b, generator=g) * 200 + 50,
             "focal": torch.full((b,), 1000.0), "image_size": torch.tensor([[640.0, 480.0]]).expand(b, 2),
             "detector_keypoints": torch.cat([hyps.keypoints_2d[:, 2], torch.ones(b, 17, 1)], -1)}
    return hyps, batch


def test_npz_round_trip_is_exact(body, tmp_path):
    hyps, batch = _hyps_and_batch(body)
    path = save_npz(tmp_path / "sub" / "h.npz", hyps, body, batch)
    out = load_npz(path)
    assert set(out) == set(NPZ_KEYS) and out["body"] == "smplx" and out["format"] == "humr.hypotheses/1"
    assert out["keypoint_names"].tolist() == list(COCO17_NAMES)
    assert out["joint_names"].shape == (body.num_pose_joints,)
    for key in ("rotmat", "shape", "camera", "translation"):
        np.testing.assert_array_equal(out[key], getattr(hyps, key).numpy())
    np.testing.assert_array_equal(out["log_likelihood"], hyps.log_prob.numpy())
    np.testing.assert_array_equal(out["focal"], batch["focal"].numpy())
    # camera-frame keypoints and image pixels, independently of the code's formulas
    camera_frame = hyps.keypoints_3d + hyps.translation[:, None, None]
    np.testing.assert_allclose(out["keypoints_3d"], camera_frame.numpy(), rtol=0, atol=1e-6)
    px = batch["center"][:, None, None] + hyps.keypoints_2d * batch["box_size"][:, None, None, None] / 2
    np.testing.assert_allclose(out["keypoints_2d"], px.numpy(), rtol=1e-6, atol=1e-4)
    kp = hyps.keypoints_3d.numpy()
    spread = np.linalg.norm(kp - kp.mean(1, keepdims=True), axis=-1).mean(1) * 1000
    np.testing.assert_allclose(out["joint_spread"], spread, rtol=1e-4)
    # the detector peaks are hypothesis 2's projections: the selection finds it
    assert out["mode_index"].tolist() == [0, 0] and out["selected_index"].tolist() == [2, 2]
    # saving what was loaded gives the same file contents
    again = load_npz(save_npz(tmp_path / "again.npz", hyps, body, batch, selected=torch.tensor([2, 2])))
    for key in NPZ_KEYS:
        np.testing.assert_array_equal(np.asarray(again[key]), np.asarray(out[key]))


def test_load_npz_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", rotmat=np.zeros(3))
    with pytest.raises(ValueError, match="not a humr.hypotheses/1 file"):
        load_npz(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="save_npz"):
        load_npz(tmp_path / "none.npz")


def test_meshes_load_back_with_the_body_topology_and_spread_colours(body, tmp_path):
    hyps, batch = _hyps_and_batch(body, b=2, s=5)
    written = save_meshes(tmp_path, hyps, body, k=2, batch=batch, names=["a", "b"])
    tags = ["mode", "selected", "sample01", "sample02"]
    assert sorted(p.name for p in written) == sorted(f"{n}_{t}.{f}" for n in "ab" for t in tags
                                                     for f in ("obj", "glb"))
    faces = body.faces.numpy()
    verts = body(hyps.rotmat[0, 1:2], hyps.shape[:1]).vertices[0].numpy() + hyps.translation[0].numpy()
    for path in written:
        # maintain_order: the OBJ reader otherwise drops vertices no face uses (the stand-in body has some)
        mesh = trimesh.load(path, process=False, force="mesh", maintain_order=True)
        assert mesh.vertices.shape == (body.num_vertices, 3) and mesh.faces.shape == faces.shape, path
        colors = np.asarray(mesh.visual.vertex_colors)
        assert colors.shape == (body.num_vertices, 4) and colors.dtype == np.uint8
        assert colors[:, 3].min() == 255 and 0 < len(np.unique(colors[:, :3], axis=0))
        if path.suffix == ".obj":
            np.testing.assert_array_equal(mesh.faces, faces)
        if path.name == "a_sample01.obj":  # hypothesis 1 of person 0 in the camera frame
            np.testing.assert_allclose(mesh.vertices, verts, atol=1e-5)
    # colours follow the spread: the least uncertain vertex is the bluest
    spread = hyps.vertex_spread(body)[0].numpy()
    glb = trimesh.load(tmp_path / "a_mode.glb", process=False, force="mesh")
    colors = np.asarray(glb.visual.vertex_colors)
    np.testing.assert_array_equal(colors, mesh_colors(spread))
    assert colors[spread.argmin(), 2] >= colors[spread.argmax(), 2]


def test_mesh_colour_ramp_is_monotone_in_red_minus_blue():
    c = mesh_colors(np.linspace(-10, 200, 50)).astype(int)
    assert ((c[:, 0] - c[:, 2])[1:] >= (c[:, 0] - c[:, 2])[:-1]).all()
    assert c.min() >= 0 and c.max() <= 255
    with pytest.raises(ValueError, match="spread_range_mm"):
        mesh_colors(np.zeros(3), (5.0, 5.0))
    with pytest.raises(ValueError, match="which"):
        save_meshes(".", *_dummy(), which="best")


def _dummy():
    class _Body:
        pass

    from dataclasses import fields

    hyps = Hypotheses(**{f.name: torch.zeros(1, 1, 1) for f in fields(Hypotheses)})
    return hyps, _Body()
