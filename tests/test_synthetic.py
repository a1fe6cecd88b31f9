"""The embedded synthetic data set: rasterizer, objects, simulated detector, generation, cache."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.bodies.base import BODY_JOINT_PARENTS
from humr.bodies.kinematics import forward_kinematics
from humr.cameras import crop_to_image
from humr.data import detector_sim as dsim
from humr.data.fields import FIELDS, OPTIONAL_FIELDS, check_sample
from humr.data.heatmaps import expand_box_to_aspect, image_to_heatmap
from humr.data.render import OBJECT_KINDS as SHAPES
from humr.data.render import object_mask, rasterize
from humr.rotations import axis_angle_to_matrix

pytest.importorskip("anny")

SMALL = dict(num_train=16, num_test=8, chunk_size=16, num_alternatives=256)


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


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(SHAPES), st.floats(5, 35), st.floats(5, 35), st.floats(3, 20), st.floats(3, 20),
       st.floats(0, 3.1))
def test_object_mask_agrees_with_opencv_drawing(shape, cx, cy, a, b, angle):
    pad = 40  # a canvas large enough that no outline is cut by the border
    mask = object_mask(40 + 2 * pad, SHAPES.index(shape), (cx + pad, cy + pad), (a, b), angle)
    ref = np.zeros((40 + 2 * pad, 40 + 2 * pad), np.uint8)
    x, y = cx + pad, cy + pad
    if shape == "ellipse":
        cv2.ellipse(ref, (round(x * 16), round(y * 16)), (round(a * 16), round(b * 16)), np.degrees(angle),
                    0, 360, 1, -1, cv2.LINE_8, 4)  # 4 fractional bits
    else:
        if shape == "band":  # the half plane below the line: a rectangle far beyond it
            a, b, x, y = 400.0, 200.0, x - 200 * np.sin(angle), y + 200 * np.cos(angle)
        box = cv2.boxPoints(((x, y), (2 * a, 2 * b), np.degrees(angle)))
        cv2.fillConvexPoly(ref, np.round(box * 16).astype(np.int32), 1, cv2.LINE_8, 4)
    # OpenCV fills outline pixels by its own rule: compare 2 pixels away from its outline
    kernel = np.ones((5, 5), np.uint8)
    outline = cv2.dilate(ref, kernel) != cv2.erode(ref, kernel)
    assert (mask == ref.astype(bool))[~outline].all()
    assert mask[~outline].any()


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
        else:  # from the bone ending at the nearest visible keypoint (its twist is free)
            start = rots.index(dsim.COCO_ATTACH[kps[first - 1]]) - 1
            out |= set(rots[max(start, 0):])
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
    draws = torch.randn(3, 2, 22, 3, generator=g, dtype=torch.float64)
    same = dsim.alternative_keypoints(pose, rec, local, torch.zeros(3, 22, dtype=torch.bool), draws)
    assert torch.allclose(same, kp[:, None].expand_as(same), atol=1e-9)
    # redrawing the left elbow moves the left wrist (and the elbow keypoint's offset, rigidly
    # attached to the elbow's frame) and nothing else, by forward kinematics
    mask = torch.zeros(3, 22, dtype=torch.bool)
    mask[:, 18] = True  # left_elbow
    moved = dsim.alternative_keypoints(pose, rec, local, mask, draws)
    alt_pose = pose[:, None].repeat(1, 2, 1, 1, 1)
    alt_pose[:, :, 18] = axis_angle_to_matrix(draws[:, :, 18])
    world, joints = forward_kinematics(alt_pose, rec[:, None], BODY_JOINT_PARENTS)
    wrist = joints[..., 20, :] + (world[..., 20, :, :] @ local[:, None, 9, :, None])[..., 0]
    assert torch.allclose(moved[..., 9, :], wrist, atol=1e-9)
    others = [k for k in range(17) if k not in (7, 9)]
    assert torch.allclose(moved[..., others, :], kp[:, None, others].expand(-1, 2, -1, -1), atol=1e-9)


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
        assert set(sample) == set(FIELDS) | set(OPTIONAL_FIELDS)
        check_sample(sample, 22, 6)
        assert int(sample["index"]) == i
        assert sample["image"].shape == (3, config.image_size, config.image_size)
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    batch = next(iter(loader))
    assert batch["heatmap_samples"].shape == (4, 17, config.num_heatmap_samples, 2)


def _crop_pixel(kp: np.ndarray, r: int) -> np.ndarray:
    return np.clip(np.floor((kp + 1) / 2 * r).astype(int), 0, r - 1)


def _camera_mesh(ds, i: int, which: str) -> tuple[np.ndarray, np.ndarray]:
    """The full Anny mesh of a frame's target or second person: crop coordinates (V, 2), depth (V,)."""
    from humr.data.synthetic import generator_body

    body, a = generator_body(ds.config.render_mesh), ds.arrays
    pose, shape, t = (("pose", "shape", "translation") if which == "target"
                      else ("second_pose", "second_shape", "second_translation"))
    with torch.no_grad():
        v = body(torch.from_numpy(np.array(a[pose][i]))[None], torch.from_numpy(np.array(a[shape][i]))[None])
    cam = v.vertices[0].double().numpy() + np.array(a[t][i], np.float64)
    f, (w, h) = float(a["focal"][i]), np.array(a["image_size"][i], np.float64)
    px = f * cam[:, :2] / cam[:, 2:] + np.array([w, h]) / 2  # pinhole by hand
    return (px - np.array(a["center"][i])) / (float(a["box_size"][i]) / 2), cam[:, 2]


def _front_surface(points: np.ndarray, meshes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """Ray test: which mesh's surface is nearest at each 2D point ``(P, 2)`` (-1: none), brute force."""
    best, owner = np.full(len(points), np.inf), np.full(len(points), -1)
    for m, (xy, z, faces) in enumerate(meshes):
        tri, tz = xy[faces], z[faces]  # (F, 3, 2), (F, 3)
        e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
        det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        det = np.where(np.abs(det) > 1e-12, det, np.nan)
        d = points[:, None] - tri[None, :, 0]  # (P, F, 2): every point against every triangle
        u = (d[..., 0] * e2[:, 1] - d[..., 1] * e2[:, 0]) / det
        v = (e1[:, 0] * d[..., 1] - e1[:, 1] * d[..., 0]) / det
        inside = (u >= 0) & (v >= 0) & (u + v <= 1)
        depth = np.where(inside, (1 - u - v) * tz[:, 0] + u * tz[:, 1] + v * tz[:, 2], np.inf).min(1)
        nearer = depth < best
        best, owner = np.where(nearer, depth, best), np.where(nearer, m, owner)
    return owner


def _inside_object(points: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    """Signed distance-like margin (crop units, > 0 inside) of points ``(P, 2)`` to a frame's object."""
    from humr.data.synthetic import OBJECT_KINDS

    kind, cx, cy, a, b, angle = geometry
    if kind < 0:
        return np.full(len(points), -np.inf)
    d = points - np.array([cx, cy])
    u = np.cos(angle) * d[:, 0] + np.sin(angle) * d[:, 1]
    v = -np.sin(angle) * d[:, 0] + np.cos(angle) * d[:, 1]
    name = OBJECT_KINDS[int(round(kind))]
    if name == "band":
        return v
    if name == "ellipse":
        return (1 - np.sqrt((u / a) ** 2 + (v / b) ** 2)) * min(a, b)
    return np.minimum(a - np.abs(u), b - np.abs(v))


def test_visibility_agrees_with_a_ray_test_against_the_full_meshes_and_the_object_shapes(small):
    """Independent of the rasterized buffer: each keypoint against the full Anny meshes of both
    people (brute-force point-in-triangle, nearest depth) and the stored object geometry."""
    from humr.data.synthetic import generator_body

    ds, config, _ = small
    faces = generator_body(config.render_mesh).faces.numpy()
    a = ds.arrays
    step = 2.5 * 2 / config.image_size  # 2.5 crop pixels: the proxy mesh's and the grid's slack
    offsets = np.array([[0, 0], [step, 0], [-step, 0], [0, step], [0, -step]])
    agree = total = 0
    for i in range(len(ds)):
        kp = np.asarray(a["keypoints_2d"][i], np.float64)
        meshes = [(*_camera_mesh(ds, i, "target"), faces)]
        if bool(a["person_occluder"][i]):
            meshes.append((*_camera_mesh(ds, i, "second"), faces))
        probe = (kp[:, None] + offsets).reshape(-1, 2)
        behind_person = (_front_surface(probe, meshes) == 1).reshape(17, 5)
        margin = _inside_object(kp, np.asarray(a["object_geometry"][i], np.float64))
        inside = (np.abs(kp) < 1).all(-1)
        stable = (behind_person.all(1) | ~behind_person.any(1)) & (np.abs(margin) > step) & (
            np.abs(np.abs(kp) - 1).min(-1) > step)
        expected = inside & ~behind_person[:, 0] & (margin <= 0)
        vis = np.asarray(a["keypoints_2d_visible"][i])
        agree += int((vis == expected)[stable].sum())
        total += int(stable.sum())
    assert total > 0.7 * 17 * len(ds)  # most keypoints are far from every outline
    assert agree / total > 0.97, f"visibility agrees with the ray test on {agree} of {total} keypoints"


def test_body_joints_2d_are_the_projected_anny_joints(small):
    from humr.data.synthetic import generator_body

    ds, config, _ = small
    a, body = ds.arrays, generator_body(config.render_mesh)
    pose, shape = torch.from_numpy(np.array(a["pose"])), torch.from_numpy(np.array(a["shape"]))
    with torch.no_grad():
        joints = body.keypoints(pose, shape, "body_joints").double().numpy()
    joints = joints + np.array(a["translation"])[:, None]
    f, size = np.array(a["focal"])[:, None, None], np.array(a["image_size"])[:, None]
    px = f * joints[..., :2] / joints[..., 2:] + size / 2  # pinhole by hand
    crop = (px - np.array(a["center"])[:, None]) / (np.array(a["box_size"])[:, None, None] / 2)
    assert np.allclose(np.array(a["body_joints_2d"]), crop, atol=1e-4)
    assert np.array(a["body_joints_2d_valid"]).all()


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
    # sampleable: at least sample_min_confidence (the stored heatmaps are rounded to 1/255)
    assert (at_gt >= config.sample_min_confidence - 1 / 255).all()
    # and a real share of the density, not only a floor: most sit near the mode
    peak = hm[f, k].reshape(len(f), -1).max(-1)
    assert np.median(at_gt / peak) > 0.3


def test_distance_map_is_the_exact_distance_to_the_full_mesh_silhouettes(small):
    """The map against brute-force distances to its mask cells, the mask against OpenCV fills of
    the full meshes (independent of the rasterizer and of the proxy mesh), the sample distances
    against brute-force distances from each sample."""
    from humr.data.synthetic import generator_body

    ds, config, _ = small
    faces = generator_body(config.render_mesh).faces.numpy()
    ext = config.render_size / config.image_size
    n = config.distance_map_size
    centres = (np.arange(n) + 0.5) / n * 2 * ext - ext  # cell centres, crop units
    grid = np.stack(np.meshgrid(centres, centres), -1).reshape(-1, 2)
    ious = []
    for i in range(len(ds)):
        sample = ds[i]
        dmap = sample["distance_map"].double().numpy()
        mask = dmap.reshape(-1) == 0
        brute = np.sqrt(((grid[:, None] - grid[None, mask]) ** 2).sum(-1)).min(1)
        assert np.allclose(dmap.reshape(-1), brute, rtol=2e-3, atol=1e-3)
        fill = np.zeros((n, n), np.uint8)  # the full meshes filled by OpenCV on the map's grid
        for which in ("target", "second")[: 1 + bool(ds.arrays["person_occluder"][i])]:
            xy, _ = _camera_mesh(ds, i, which)
            cells = np.round(((xy + ext) / (2 * ext) * n - 0.5) * 16).astype(np.int32)
            for tri in cells[faces]:
                cv2.fillConvexPoly(fill, tri, 1, cv2.LINE_8, 4)
        fill = fill.reshape(-1) > 0
        if not bool(ds.arrays["object_occluder"][i]):  # objects hide person pixels (mask_valid False)
            ious.append((fill & mask).sum() / max(1, (fill | mask).sum()))
        s = sample["heatmap_samples"].double().numpy().reshape(-1, 2)
        inside = (np.abs(s) < ext - 2 * ext / n).all(-1)
        to_mask = np.sqrt(((s[inside][:, None] - grid[None, mask]) ** 2).sum(-1)).min(1)
        got = sample["heatmap_sample_mask_distance"].double().numpy().reshape(-1)[inside]
        assert np.abs(got - to_mask).max() < 2 * ext / n  # bilinear between cell centres
    assert len(ious) >= 3 and np.median(ious) > 0.9


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
    with pytest.raises(ValueError, match="object_kind_probs"):
        SyntheticConfig(object_kind_probs=(0.5, 0.5, 0.5, 0.0))
    with pytest.raises(ValueError, match="distance_map_size"):
        SyntheticConfig(distance_map_size=100)
    with pytest.raises(ValueError, match="split"):
        SyntheticDataset("validation", SyntheticConfig(**SMALL))
