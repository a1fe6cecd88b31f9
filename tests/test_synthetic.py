"""The embedded synthetic data set: pose prior, rasterizer, simulated detector, generation, cache."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.bodies.base import BODY_JOINT_NAMES, BODY_JOINT_PARENTS
from humr.bodies.kinematics import forward_kinematics
from humr.cameras import crop_to_image, perspective_project
from humr.data import detector_sim as dsim
from humr.data.fields import FIELDS, check_sample
from humr.data.heatmaps import expand_box_to_aspect, image_to_heatmap
from humr.data.pose_prior import prior_table, sample_body_pose, sample_rotation_vectors, upright_orientation
from humr.data.render import rasterize
from humr.rotations import axis_angle_to_matrix, check_rotation_matrices

pytest.importorskip("anny")

SMALL = dict(num_train=16, num_test=8, chunk_size=16, num_alternatives=256)


# --------------------------------------------------------------------------- pose prior


def test_prior_samples_lie_in_their_bounds_and_right_mirrors_left():
    table = prior_table(torch.float64)
    rv = sample_rotation_vectors(4000, torch.Generator().manual_seed(0), dtype=torch.float64)
    lo, hi = table[..., 2], table[..., 3]
    assert bool(((rv >= lo - 1e-12) & (rv <= hi + 1e-12)).all())
    for j, name in enumerate(BODY_JOINT_NAMES):
        if name.startswith("left_"):
            r = BODY_JOINT_NAMES.index("right_" + name[5:])
            # mirror in x = 0: (x, y, z) -> (x, -y, -z) maps the left law onto the right one
            mirrored = rv[:, j] * torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64)
            assert torch.allclose(mirrored.mean(0), rv[:, r].mean(0), atol=0.03)
            flip = torch.tensor([1.0, -1, -1], dtype=torch.float64)
            assert torch.allclose(table[r, :, 0], table[j, :, 0] * flip)
    # a truncated normal: the sample mean moves towards the inside of a one-sided bound
    knee = BODY_JOINT_NAMES.index("left_knee")
    assert float(rv[:, knee, 0].min()) >= 0.0 and float(rv[:, knee, 0].mean()) > float(table[knee, 0, 0])


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


# --------------------------------------------------------------------------- rasterizer


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_rasterize_matches_brute_force_nearest_face(seed):
    rng = np.random.default_rng(seed)
    h, w, nf = 12, 10, 6
    pts = rng.uniform(-2, 12, size=(1, nf * 3, 2))
    depth = rng.uniform(1, 5, size=(1, nf * 3))
    faces = np.arange(nf * 3).reshape(nf, 3)
    buf = rasterize(torch.from_numpy(pts), torch.from_numpy(depth), torch.from_numpy(faces), (h, w))
    buf = buf[0].numpy()
    expected = np.full((h, w), -1)
    for i in range(h):  # brute force: every pixel centre against every face
        for j in range(w):
            best = np.inf
            for f in range(nf):
                a, b, c = pts[0, faces[f]]
                m = np.array([[b[0] - a[0], c[0] - a[0]], [b[1] - a[1], c[1] - a[1]]])
                if abs(np.linalg.det(m)) < 1e-9:
                    continue
                u, v = np.linalg.solve(m, np.array([j - a[0], i - a[1]]))
                bary = np.array([1 - u - v, u, v])
                if (bary < -1e-7).any():
                    continue
                z = 1.0 / (bary / depth[0, faces[f]]).sum()
                if z < best:
                    best, expected[i, j] = z, f
    # pixels within 1e-6 of an edge may go either way; everything else must agree
    assert (buf == expected).mean() > 0.97
    assert ((buf >= 0) == (expected >= 0)).mean() > 0.97


def test_rasterize_rejects_bad_shapes():
    with pytest.raises(ValueError, match="points"):
        rasterize(torch.zeros(3, 2), torch.ones(1, 3), torch.zeros(1, 3, dtype=torch.long), (4, 4))
    with pytest.raises(ValueError, match="depth"):
        rasterize(torch.zeros(1, 3, 2), torch.ones(1, 4), torch.zeros(1, 3, dtype=torch.long), (4, 4))


# --------------------------------------------------------------------------- detector simulation


def _resample_rule(visible: list[bool]) -> set[int]:
    """The documented rule, written out per chain (independent of the table implementation)."""
    out: set[int] = set()
    for kps, rots in dsim.CHAINS:
        hidden = [not visible[k] for k in kps]
        if not any(hidden):
            continue
        if kps[0] == 0:  # the face: neck and head
            out |= set(rots)
            continue
        first = hidden.index(True)
        if first == 0:
            out |= set(rots)
        else:
            start = rots.index(dsim.COCO_ATTACH[kps[first - 1]])
            out |= set(rots[start:])
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.booleans(), min_size=17, max_size=17))
def test_resample_mask_follows_the_chain_rule(visible):
    mask = dsim.resample_mask(torch.tensor(visible))
    assert set(torch.nonzero(mask).flatten().tolist()) == _resample_rule(visible)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_rest_joints_from_posed_inverts_forward_kinematics(seed):
    g = torch.Generator().manual_seed(seed)
    rest = torch.randn(3, 22, 3, generator=g, dtype=torch.float64)
    pose = axis_angle_to_matrix(torch.randn(3, 22, 3, generator=g, dtype=torch.float64))
    _, posed = forward_kinematics(pose, rest, BODY_JOINT_PARENTS)
    rec, world = dsim.rest_joints_from_posed(pose, posed)
    assert torch.allclose(rec, rest, atol=1e-9)
    # and the attached keypoints come back under the same pose
    kp = torch.randn(3, 17, 3, generator=g, dtype=torch.float64)
    local = dsim.attach_keypoints(kp, posed, world)
    same = dsim.alternative_keypoints(pose, rec, local, torch.zeros(3, 22, dtype=torch.bool), 2, g)
    assert torch.allclose(same, kp[:, None].expand_as(same), atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 47.0), st.floats(0.0, 63.0), st.floats(0.1, 0.49))
def test_heatmap_builders_peak_where_the_points_are(x, y, peak):
    xy = torch.tensor([x, y], dtype=torch.float64)
    g = dsim.gaussian_heatmaps(xy, torch.tensor(peak, dtype=torch.float64), 1.5, (48, 64))
    i, j = divmod(int(g.argmax()), 48)
    assert abs(j - x) <= 0.5 + 1e-9 and abs(i - y) <= 0.5 + 1e-9
    d = dsim.density_heatmaps(xy.expand(5, 2), torch.ones(5, dtype=torch.float64),
                              torch.tensor(peak, dtype=torch.float64), 1.0, (48, 64))
    assert abs(float(d.max()) - peak) < 1e-9
    i, j = divmod(int(d.argmax()), 48)
    assert abs(j - x) <= 1.0 and abs(i - y) <= 1.0


def test_accept_draws_keeps_hidden_hidden_and_visible_near():
    # one frame, two draws, evidence of every chain; draw 0 equals the ground truth
    e = dsim.EVIDENCE_WEIGHTS.shape[0]
    gt = torch.rand(1, e, 2)
    gt_hidden = torch.zeros(1, e, dtype=torch.bool)
    wrist = 9  # left wrist: make it hidden in the ground truth
    row = int(torch.nonzero(dsim.EVIDENCE_WEIGHTS[:, wrist] == 1).flatten()[0])
    gt_hidden[0, row] = True
    draws = gt[:, None].repeat(1, 2, 1, 1)
    draw_hidden = gt_hidden[:, None].repeat(1, 2, 1)
    draw_hidden[0, 1, row] = False  # draw 1 shows the wrist somewhere
    keep = dsim.accept_draws(draws, draw_hidden, gt, gt_hidden, 0.05)
    assert bool(keep[0, 0].all())
    chain = dsim.KEYPOINT_CHAIN[wrist]
    assert not bool(keep[0, 1, dsim.KEYPOINT_CHAIN == chain].any())
    assert bool(keep[0, 1, dsim.KEYPOINT_CHAIN != chain].all())


# --------------------------------------------------------------------------- generated data


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from humr.data.synthetic import SyntheticConfig, SyntheticDataset

    root = tmp_path_factory.mktemp("synthetic")
    config = SyntheticConfig(**SMALL)
    ds = SyntheticDataset("train", config, root=root, progress=False, workers=1)
    return ds, config, root


def test_every_sample_meets_the_batch_contract(small):
    ds, config, _ = small
    assert len(ds) == config.num_train
    for i in range(len(ds)):
        sample = ds[i]
        assert set(sample) == set(FIELDS)
        check_sample(sample, 22, 6)
        assert int(sample["index"]) == i
        assert sample["image"].shape == (3, config.image_size, config.image_size)
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    batch = next(iter(loader))
    assert batch["heatmap_samples"].shape == (4, 17, config.num_heatmap_samples, 2)


def _crop_pixel(kp: np.ndarray, r: int) -> np.ndarray:
    return np.clip(np.floor((kp + 1) / 2 * r).astype(int), 0, r - 1)


def _full_mesh_silhouette(ds, i: int) -> np.ndarray:
    """The target's full Anny mesh drawn by OpenCV (not our rasterizer, not the proxy mesh)."""
    from humr.data.synthetic import _Generator

    body = _Generator.get(ds.config.render_mesh).body  # the process-wide Anny (full mesh)
    a = ds.arrays
    with torch.no_grad():
        out = body(torch.from_numpy(np.array(a["pose"][i]))[None],
                   torch.from_numpy(np.array(a["shape"][i]))[None])
    t = torch.from_numpy(np.array(a["translation"][i]))
    f = torch.tensor(float(a["focal"][i]))
    px = perspective_project(out.vertices[0].double(), t.double(), f.double(),
                             torch.from_numpy(np.array(a["image_size"][i])).double() / 2)
    c, b = np.array(a["center"][i]), float(a["box_size"][i])
    r = ds.config.image_size
    grid = ((px.numpy() - c) / (b / 2) + 1) / 2 * r - 0.5
    sil = np.zeros((r, r), np.uint8)
    tri = np.round(grid[body.faces.numpy()] * 16).astype(np.int32)
    for poly in tri:
        cv2.fillConvexPoly(sil, poly, 1, cv2.LINE_8, 4)
    return sil.astype(bool)


def test_visible_keypoints_lie_on_the_rendered_body_and_not_under_an_occluder(small):
    ds, config, _ = small
    r = config.image_size
    seg = np.asarray(ds.extras["segmentation"])
    checked = 0
    for i in range(len(ds)):
        vis = np.asarray(ds.arrays["keypoints_2d_visible"][i])
        kp = np.asarray(ds.arrays["keypoints_2d"][i])
        px = _crop_pixel(kp, r)
        labels = seg[i][px[:, 1], px[:, 0]]
        assert not np.isin(labels[vis], (2, 3)).any(), f"frame {i}: a visible keypoint under an occluder"
        # hidden keypoints inside the crop are covered by an occluder
        inside = (np.abs(kp) < 1).all(-1)
        assert np.isin(labels[~vis & inside], (2, 3)).all()
        if i < 3:  # independent check on a few frames: OpenCV fill of the full mesh
            sil = cv2.dilate(_full_mesh_silhouette(ds, i).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
            assert sil[px[vis, 1], px[vis, 0]].all(), f"frame {i}: a visible keypoint off the body"
            checked += int(vis.sum())
    assert checked > 0


def _hidden_region(seg: np.ndarray, tolerance_px: int) -> np.ndarray:
    occ = np.isin(seg, (2, 3)).astype(np.uint8)
    k = 2 * tolerance_px + 1
    return cv2.dilate(occ, np.ones((k, k), np.uint8)) > 0


def test_hidden_keypoints_get_low_peaks_with_mass_where_they_can_hide(small):
    ds, config, _ = small
    a = ds.arrays
    vis = np.asarray(a["keypoints_2d_visible"])
    conf = np.asarray(a["detector_keypoints"])[..., 2]
    assert (conf[vis] >= 0.5).all() and (conf[~vis] < 0.5).all()
    assert (~vis).any(), "the small set should contain hidden keypoints"
    r = config.image_size
    seg = np.asarray(ds.extras["segmentation"])
    hidden_share, visible_share = [], []
    for i in range(len(ds)):
        region = _hidden_region(seg[i], tolerance_px=4)  # blur and the rigid-limb approximation
        s = np.asarray(a["heatmap_samples"][i])  # (17, M, 2)
        out = ~(np.abs(s) < 1).all(-1)
        px = _crop_pixel(s, r)
        ok = out | region[px[..., 1], px[..., 0]]
        hidden_share += list(ok[~vis[i]].mean(-1))
        visible_share += list(ok[vis[i]].mean(-1))
    assert np.mean(hidden_share) > 0.75
    assert np.mean(hidden_share) > np.mean(visible_share) + 0.5


def test_ground_truth_of_hidden_keypoints_has_heatmap_density(small):
    ds, config, _ = small
    a = ds.arrays
    hm = np.asarray(ds.extras["heatmaps"]).astype(np.float32) / 255.0
    kp = torch.from_numpy(np.array(a["keypoints_2d"]))
    center = torch.from_numpy(np.array(a["center"]))
    box = torch.from_numpy(np.array(a["box_size"]))
    img = crop_to_image(kp, center, box)
    det = expand_box_to_aspect(torch.stack([box, box], -1), config.detector_input_size,
                               config.detector_padding)
    cell = torch.round(image_to_heatmap(img, config.heatmap_size, center, det)).long().numpy()
    w, h = config.heatmap_size
    vis = np.asarray(a["keypoints_2d_visible"])
    inside = (cell[..., 0] >= 0) & (cell[..., 0] < w) & (cell[..., 1] >= 0) & (cell[..., 1] < h)
    f, k = np.nonzero(~vis & inside)
    assert len(f) > 0
    at_gt = hm[f, k, cell[f, k, 1], cell[f, k, 0]]
    # sampleable: at least heatmap_min_confidence (the stored heatmaps are rounded to 1/255)
    assert (at_gt >= config.heatmap_min_confidence - 1 / 255).all()
    # and a real share of the density, not only a floor: most sit near the mode
    peak = hm[f, k].reshape(len(f), -1).max(-1)
    assert np.median(at_gt / peak) > 0.3


def test_distance_map_and_sample_distances_agree_with_the_segmentation(small):
    ds, config, _ = small
    sample = ds[0]
    ext = float(sample["distance_map_extent"])
    assert ext == pytest.approx(config.distance_map_extent)
    seg = np.asarray(ds.extras["segmentation"][0])
    dmap = sample["distance_map"].numpy()
    n = dmap.shape[0]
    inner = slice(round(n * (ext - 1) / (2 * ext)), round(n * (ext + 1) / (2 * ext)))
    union = dmap[inner, inner] == 0
    person = np.isin(seg, (1, 2))
    k = person.shape[0] // union.shape[0]
    pooled = person.reshape(union.shape[0], k, union.shape[1], k).any((1, 3))
    assert (pooled == union).all()
    assert (sample["heatmap_sample_mask_distance"] >= 0).all()


def test_same_seed_same_bytes_and_seeds_differ():
    from humr.data.synthetic import SyntheticConfig, generate_split

    config = SyntheticConfig(**(SMALL | dict(num_train=8, chunk_size=4)))
    a = generate_split(config, "train", progress=False, workers=1)
    b = generate_split(config, "train", progress=False, workers=2)
    for key in a:
        assert a[key].tobytes() == b[key].tobytes(), key
    c = generate_split(replace(config, seed=1, num_train=4), "train", progress=False, workers=1)
    assert a["image"][:4].tobytes() != c["image"].tobytes()
    assert not np.allclose(a["pose"][:4], c["pose"])
    t = generate_split(replace(config, num_test=4), "test", progress=False, workers=1)
    assert not np.allclose(a["pose"][:4], t["pose"])


def test_corrupt_or_stale_cache_is_detected_and_rebuilt(small, caplog):
    from humr.data.synthetic import SyntheticDataset

    ds, config, root = small
    directory = ds.directory
    original = np.load(directory / "pose.npy").tobytes()
    # corrupt: flip bytes in an array
    raw = bytearray((directory / "pose.npy").read_bytes())
    raw[-8:] = bytes(8)
    (directory / "pose.npy").write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        again = SyntheticDataset("train", config, root=root, progress=False, workers=1)
    assert "checksum" in caplog.text
    assert np.load(again.directory / "pose.npy").tobytes() == original
    # stale: a manifest from another generator version
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["generator_version"] = -1
    (directory / "manifest.json").write_text(json.dumps(manifest))
    caplog.clear()
    with caplog.at_level("WARNING"):
        SyntheticDataset("train", config, root=root, progress=False, workers=1)
    assert "stale" in caplog.text
    assert json.loads((directory / "manifest.json").read_text())["generator_version"] != -1


def test_config_rejects_bad_values():
    from humr.data.synthetic import SyntheticConfig, SyntheticDataset

    with pytest.raises(ValueError, match="occluded_peak_range"):
        SyntheticConfig(occluded_peak_range=(0.3, 0.6))
    with pytest.raises(ValueError, match="distance_map_size"):
        SyntheticConfig(distance_map_size=100)
    with pytest.raises(ValueError, match="split"):
        SyntheticDataset("val", SyntheticConfig(**SMALL))
