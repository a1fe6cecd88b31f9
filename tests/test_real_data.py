"""Real-data readers, augmentation, masks, mixtures and heatmap-sample stores on miniature data
sets written in the real formats (humr.testing.real_files)."""

from __future__ import annotations

import gzip
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.cameras import image_to_crop
from humr.data.augment import (
    NO_AUGMENT,
    PAPER_AUGMENT,
    AugmentConfig,
    Photometric,
    crop_affine,
    crop_image,
    sample_box,
)
from humr.data.bedlam_cliff import (
    COCO25_TO_COCO17,
    BedlamCliffDataset,
    FilterConfig,
    filter_rows,
    load_annotations,
)
from humr.data.fields import check_sample
from humr.data.masks import (
    AGORA_BACKGROUND,
    MaskDistance,
    crop_mask,
    detect_object_occlusion,
    read_person_mask,
)
from humr.data.mixture import MixtureDataset
from humr.data.sample_store import (
    ArrayStore,
    HeatmapSampleStore,
    ReferenceSampleStore,
    read_reference_samples,
    reference_sample_path,
    write_reference_samples,
)
from humr.testing.real_files import write_fake_dataset

NO_FILTER = FilterConfig(enabled=False)


def rodrigues(aa: np.ndarray) -> np.ndarray:
    """Axis-angle (J, 3) -> (J, 3, 3) with OpenCV (independent of roma)."""
    return np.stack([cv2.Rodrigues(v.reshape(3, 1))[0] for v in aa])


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("data")
    out = {}
    for seed, kind in enumerate(
        ("bedlam", "bedlam_closeup", "agora", "3dpw_train", "3dpw_test", "emdb_occl")
    ):
        layout = "humr" if kind == "agora" else "reference"
        out[kind] = write_fake_dataset(
            root / kind, kind, num_rows=4, seed=seed, samples_layout=layout, occluded_rows=(3,)
        )
    return out


# ---------------------------------------------------------------------------- readers


@pytest.mark.parametrize(
    "kind", ["bedlam", "bedlam_closeup", "agora", "3dpw_train", "3dpw_test", "emdb_occl"]
)
def test_items_follow_contract_and_annotations(fakes, kind):
    fake = fakes[kind]
    ds = BedlamCliffDataset(fake.spec, filter=NO_FILTER)
    joints, shape = (24, 10) if kind in ("3dpw_test", "emdb_occl") else (22, 11)
    assert (ds.num_pose_joints, ds.num_shape) == (joints, shape)
    a = fake.annotation
    for i in range(len(ds)):
        item = ds[i]
        check_sample(item, joints, shape)
        row = int(item["index"])
        assert item["image"].shape == (3, 224, 224)
        c, b = a["center"][row], a["scale"][row] * 200
        np.testing.assert_allclose(item["center"].numpy(), c, rtol=1e-6)
        assert float(item["box_size"]) == pytest.approx(b, rel=1e-6)
        # Ground-truth COCO keypoints (from the writer, not via the OpenPose table) in crop units.
        np.testing.assert_allclose(
            item["keypoints_2d"].numpy(), (fake.keypoints[row] - c) / (b / 2), atol=1e-5
        )
        # ViTPose is stored (y, x, conf).
        vit = a["vitpose"][row]
        np.testing.assert_allclose(
            item["detector_keypoints"][:, 0].numpy(), (vit[:, 1] - c[0]) / (b / 2), atol=1e-5
        )
        np.testing.assert_allclose(
            item["detector_keypoints"][:, 1].numpy(), (vit[:, 0] - c[1]) / (b / 2), atol=1e-5
        )
        np.testing.assert_allclose(item["detector_keypoints"][:, 2].numpy(), vit[:, 2], atol=1e-6)
        np.testing.assert_allclose(
            item["pose"].numpy(), rodrigues(a["pose_cam"][row, : 3 * joints].reshape(-1, 3)), atol=1e-5
        )
        np.testing.assert_allclose(
            item["shape"].numpy()[: a["shape"].shape[1]], a["shape"][row][:shape], atol=1e-6
        )
        np.testing.assert_allclose(
            item["translation"].numpy(), a["trans_cam"][row] + a["cam_ext"][row, :3, 3], atol=1e-5
        )
        assert float(item["focal"]) == pytest.approx(a["cam_int"][row, 0, 0], rel=1e-6)
        if joints == 22:  # SMPL-X files carry gtkps: the first 22 (body) joints in crop units
            np.testing.assert_allclose(
                item["body_joints_2d"].numpy(), (a["gtkps"][row, :22, :2] - c) / (b / 2), atol=1e-5
            )
            assert bool(item["body_joints_2d_valid"].all())
        else:
            assert "body_joints_2d" not in item and "body_joints_2d_valid" not in item
        h, w = a["orig_shape"][row]
        assert item["image_size"].tolist() == [w, h]
        occluded = row == 3
        assert bool(item["object_occluded"]) == occluded
        assert bool(item["mask_valid"]) == (ds.spec.mask_layout is not None and not occluded)


def test_body_joints_validity_and_options(tmp_path):
    def edit(d):
        d["gtkps"][0, 3, 0] = np.nan  # not finite
        d["gtkps"][1, 5, 2] = 0.0  # confidence 0
        d["gtkps"][1, 30, 2] = 0.0  # beyond the 22 body joints: irrelevant

    def write(name, kind, edit):
        return write_fake_dataset(tmp_path / name, kind, num_rows=2, samples_layout=None, edit=edit)

    fake = write("a", "agora", edit)
    ds = BedlamCliffDataset(fake.spec, filter=NO_FILTER)
    a = fake.annotation
    for row, bad in ((0, 3), (1, 5)):
        item = ds[row]
        check_sample(item, 22, 11)
        expect = np.ones(22, bool)
        expect[bad] = False
        np.testing.assert_array_equal(item["body_joints_2d_valid"].numpy(), expect)
        assert item["body_joints_2d"][bad].tolist() == [0.0, 0.0]
        c, b = a["center"][row], a["scale"][row] * 200
        ref = (a["gtkps"][row, :22, :2] - c) / (b / 2)
        np.testing.assert_allclose(item["body_joints_2d"].numpy()[expect], ref[expect], atol=1e-5)
    assert "body_joints_2d" not in BedlamCliffDataset(fake.spec, filter=NO_FILTER, body_joints_2d=False)[0]
    # Two columns (no confidence): valid where finite.
    two = write("b", "bedlam", lambda d: d.update(gtkps=d["gtkps"][..., :2]))
    assert bool(BedlamCliffDataset(two.spec, filter=NO_FILTER)[0]["body_joints_2d_valid"].all())
    # A file without gtkps: absent by default, all invalid when asked for (mixtures).
    none = write("c", "3dpw_train", lambda d: d.pop("gtkps"))
    assert "body_joints_2d" not in BedlamCliffDataset(none.spec, filter=NO_FILTER)[0]
    item = BedlamCliffDataset(none.spec, filter=NO_FILTER, body_joints_2d=True)[0]
    check_sample(item, 22, 11)
    assert not item["body_joints_2d_valid"].any() and not item["body_joints_2d"].any()
    few = write("d", "bedlam", lambda d: d.update(gtkps=d["gtkps"][:, :20]))
    with pytest.raises(ValueError, match="'gtkps' expected at least 22 joints"):
        BedlamCliffDataset(few.spec, filter=NO_FILTER)
    smpl = write("e", "3dpw_test", None)
    with pytest.raises(ValueError, match="body_joints_2d: .* SMPL-X"):
        BedlamCliffDataset(smpl.spec, body_joints_2d=True)


def test_focal_option_estimates_from_the_image_size(fakes):
    for kind in ("bedlam", "3dpw_test"):
        fake = fakes[kind]
        ds = BedlamCliffDataset(fake.spec, filter=NO_FILTER, focal="estimate")
        for i in range(len(ds)):
            item = ds[i]
            h, w = fake.annotation["orig_shape"][int(item["index"])]
            assert float(item["focal"]) == pytest.approx(np.sqrt(float(w) ** 2 + float(h) ** 2), rel=1e-6)
            assert abs(float(item["focal"]) - fake.annotation["cam_int"][int(item["index"]), 0, 0]) > 1
    with pytest.raises(ValueError, match="focal: expected one of"):
        BedlamCliffDataset(fakes["bedlam"].spec, focal="cam_int")


def test_check_sample_checks_optional_fields_when_present(fakes):
    item = BedlamCliffDataset(fakes["bedlam"].spec, filter=NO_FILTER)[0]
    check_sample(item, 22, 11)
    cases = [
        ({"body_joints_2d": item["body_joints_2d"][:21]}, "body_joints_2d"),
        ({"body_joints_2d_valid": item["body_joints_2d_valid"].float()}, "expected a bool"),
        ({"body_joints_2d": torch.full((22, 2), float("nan"))}, "NaN"),
    ]
    for change, match in cases:
        with pytest.raises(ValueError, match=match):
            check_sample({**item, **change}, 22, 11)
    for drop in ("body_joints_2d", "body_joints_2d_valid"):
        with pytest.raises(ValueError, match="present without"):
            check_sample({k: v for k, v in item.items() if k != drop}, 22, 11)
    check_sample({k: v for k, v in item.items() if not k.startswith("body_joints_2d")}, 22, 11)


def test_coco25_table_matches_openpose_names():
    openpose = [
        "nose",
        "neck",
        "right_shoulder",
        "right_elbow",
        "right_wrist",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
        "mid_hip",
        "right_hip",
        "right_knee",
        "right_ankle",
        "left_hip",
        "left_knee",
        "left_ankle",
        "right_eye",
        "left_eye",
        "right_ear",
        "left_ear",
    ]
    from humr.bodies.base import COCO17_NAMES

    assert [openpose[i] for i in COCO25_TO_COCO17] == [n[len("coco_") :] for n in COCO17_NAMES]


def test_image_crop_shows_the_person_where_keypoints_say(fakes):
    # Bones are drawn in (220, 120, 90): the crop pixel at each keypoint must have that colour.
    for kind in ("bedlam", "bedlam_closeup"):
        ds = BedlamCliffDataset(fakes[kind].spec, filter=NO_FILTER)
        item = ds[0]
        u = ((item["keypoints_2d"].numpy() + 1) * 224 / 2 - 0.5).round().astype(int)
        colours = item["image"].numpy()[:, u[:, 1], u[:, 0]].T * 255
        assert np.abs(colours - [220, 120, 90]).max(axis=1).mean() < 20


# ---------------------------------------------------------------------------- masks


def test_mask_files_read_as_union_of_persons(fakes):
    from humr.data.masks import mask_path

    for kind in ("bedlam", "bedlam_closeup", "agora", "emdb_occl"):
        fake = fakes[kind]
        spec = fake.spec
        for row in range(2):
            m = read_person_mask(
                mask_path(spec.mask_layout, spec.mask_dir, fake.annotation["imgname"][row]),
                spec.mask_layout,
                spec.rotate_clockwise,
            )
            np.testing.assert_array_equal(m, fake.masks[row])
    gray = cv2.imread(
        str(
            mask_path(
                "agora_all_person", fakes["agora"].spec.mask_dir, fakes["agora"].annotation["imgname"][0]
            )
        ),
        cv2.IMREAD_GRAYSCALE,
    )
    assert (gray == AGORA_BACKGROUND).any() and (gray != AGORA_BACKGROUND).any()


def test_distance_map_is_zero_exactly_on_the_cropped_mask(fakes):
    fake = fakes["bedlam"]
    ds = BedlamCliffDataset(fake.spec, filter=NO_FILTER, mask_dilation=0)
    item = ds[0]
    row = int(item["index"])
    c, b = item["center"].numpy().astype(np.float64), float(item["box_size"])
    # Brute force: nearest full-image pixel of every crop-pixel centre.
    u = np.arange(224)
    xs = c[0] + (u + 0.5 - 112) * b / 224
    ys = c[1] + (u + 0.5 - 112) * b / 224
    h, w = fake.masks[row].shape
    xi, yi = np.clip(np.round(xs).astype(int), 0, w - 1), np.clip(np.round(ys).astype(int), 0, h - 1)
    brute = fake.masks[row][yi[:, None], xi[None, :]]
    brute &= ((xs >= -0.5) & (xs < w - 0.5))[None] & ((ys >= -0.5) & (ys < h - 0.5))[:, None]
    inside = item["distance_map"].numpy() == 0
    iou = (inside & brute).sum() / (inside | brute).sum()
    assert iou > 0.9
    # Outside, the distance is the Euclidean one to the nearest person pixel (k-d tree, crop units).
    from scipy.spatial import cKDTree

    py, px = np.nonzero(fake.masks[row])
    ref, _ = cKDTree(np.stack([px, py], -1)).query(np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2))
    ref = ref.reshape(224, 224) / (b / 2)
    far = ~inside
    assert np.abs(item["distance_map"].numpy()[far] - ref[far]).mean() < 2 * 2 / 224


def test_dilation_grows_the_mask_and_shrinks_sample_distances(fakes):
    fake = fakes["agora"]
    plain = BedlamCliffDataset(fake.spec, filter=NO_FILTER, mask_dilation=0)[0]
    grown = BedlamCliffDataset(fake.spec, filter=NO_FILTER, mask_dilation=3)[0]
    z0, z3 = plain["distance_map"] == 0, grown["distance_map"] == 0
    assert bool((z3 | ~z0).all()) and int(z3.sum()) > int(z0.sum())
    valid = plain["heatmap_sample_valid"]
    d0, d3 = plain["heatmap_sample_mask_distance"][valid], grown["heatmap_sample_mask_distance"][valid]
    np.testing.assert_allclose(d3.numpy(), np.clip(d0.numpy() - 3 * 2 / 224, 0, None), atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31))
def test_point_mask_distance_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((30, 40)) < 0.02
    mask[rng.integers(30), rng.integers(40)] = True
    pts = rng.uniform(-15, 55, (200, 2))
    d = MaskDistance(mask)(pts)
    ys, xs = np.nonzero(mask)
    gap = np.clip(np.abs(pts[:, None] - np.stack([xs, ys], -1)[None]) - 0.5, 0, None)
    brute = np.sqrt((gap**2).sum(-1)).min(-1)  # distance to the nearest mask pixel square
    assert (d >= brute - 1e-9).all() and (d - brute).max() <= 0.71
    assert np.isnan(MaskDistance(np.zeros((3, 3), bool))(pts)).all()
    inside = np.argwhere(mask)[:, ::-1] + rng.uniform(-0.5, 0.5, (int(mask.sum()), 2))
    assert (MaskDistance(mask)(inside) == 0).all()


def test_object_occlusion_detection():
    sil = np.zeros((20, 20), bool)
    sil[5:15, 5:15] = True
    mask = sil.copy()
    assert not detect_object_occlusion(sil, mask)
    mask[5:15, 5:8] = False  # 30 % hidden by an object
    assert detect_object_occlusion(sil, mask, min_inside=0.9)
    assert not detect_object_occlusion(sil, mask, min_inside=0.6)


# ---------------------------------------------------------------------------- crops and augmentation


@settings(max_examples=25, deadline=None)
@given(cx=st.floats(20, 180), cy=st.floats(20, 100), b=st.floats(8, 300), size=st.sampled_from([16, 25, 64]))
def test_crop_pixel_mapping_matches_crop_coordinates(cx, cy, b, size):
    # Ramp images I = x and I = y: the crop holds, at each pixel, the image point it samples.
    h, w = 120, 200
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.stack([xx, yy], -1)
    crop = crop_image(ramp, np.array([cx, cy]), b, size, border_value=-1)
    u = np.arange(size)
    pts = np.stack(np.meshgrid(u, u), -1).reshape(-1, 2).astype(np.float64)
    ncoords = (pts + 0.5) * 2 / size - 1  # crop coordinates of crop-pixel centres
    img = ncoords * b / 2 + [cx, cy]
    # Independent forward check of the affine against humr.cameras.image_to_crop.
    m = crop_affine([cx, cy], b, size)
    back = torch.from_numpy(img) @ torch.from_numpy(m[:, :2]).T + torch.from_numpy(m[:, 2])
    np.testing.assert_allclose(back.numpy(), pts, atol=1e-6)
    np.testing.assert_allclose(
        image_to_crop(torch.from_numpy(img)[None], torch.tensor([cx, cy], dtype=torch.float64), b)[0].numpy(),
        ncoords,
        atol=1e-9,
    )
    margin = 1 + b / size  # an output pixel averages image points up to half its footprint away
    ok = ((img >= margin) & (img <= np.array([w - 1, h - 1]) - margin)).all(-1)
    # Bilinear on a ramp is exact up to cv2's 1/32-pixel fixed-point weights; area averaging of
    # k x k sub-pixels keeps the centre value.
    np.testing.assert_allclose(crop.reshape(-1, 2)[ok], img[ok], atol=0.04 * max(1.0, b / size))


def _marker_dataset(tmp_path: Path, point: np.ndarray):
    """A BEDLAM fake whose row 0 shows one bright blob at ``point`` (also its mask, samples, left wrist)."""
    fake = write_fake_dataset(tmp_path, "bedlam", num_rows=1, seed=3, occluded_rows=())
    spec, a = fake.spec, fake.annotation
    h, w = a["orig_shape"][0]
    img = np.zeros((h, w, 3), np.uint8)
    cv2.circle(img, tuple(int(v) for v in point), 2, (255, 255, 255), -1)
    cv2.imwrite(str(Path(spec.image_dir) / a["imgname"][0]), img)
    from humr.data.masks import mask_path

    env = np.full((h, w), 255, np.uint8)
    cv2.circle(env, tuple(int(v) for v in point), 2, 0, -1)
    cv2.imwrite(str(mask_path(spec.mask_layout, spec.mask_dir, a["imgname"][0])), env)
    ref = read_reference_samples(reference_sample_path(spec.samples, spec.name, 0))
    ref[:, :, :2] = point
    ref[:, :, 2] = 0.9
    ref[:, :, 3] = 0.0  # inside the (new) mask blob
    write_reference_samples(reference_sample_path(spec.samples, spec.name, 0), ref)
    gt = a["gt_coco_25j"].copy()
    gt[0, COCO25_TO_COCO17[9]] = point  # left wrist
    vit = a["vitpose"].copy()
    vit[0, 9, :2] = point[::-1]
    gtkps = a["gtkps"].copy()
    gtkps[0, 20, :2] = point  # SMPL-X left wrist
    np.savez(spec.annotation, **{**a, "gt_coco_25j": gt, "vitpose": vit, "gtkps": gtkps})
    return spec


MARKER = np.array([150.0, 80.0])


@pytest.fixture(scope="module")
def marker_spec(tmp_path_factory):
    return _marker_dataset(tmp_path_factory.mktemp("marker"), MARKER)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_one_point_through_every_transform(marker_spec, seed):
    point, spec = MARKER, marker_spec
    aug = AugmentConfig(scale_factor=0.25, crop_prob=0.5, crop_factor=0.3, photometric_prob=0.0)
    ds = BedlamCliffDataset(spec, augment=aug, filter=NO_FILTER, mask_dilation=0)
    item = ds.get(0, rng=np.random.default_rng(seed))
    kp = item["keypoints_2d"][9].numpy()
    # The augmented box is part of the item; recompute the point's crop coordinates from it.
    expect = (point - item["center"].numpy()) / (float(item["box_size"]) / 2)
    np.testing.assert_allclose(kp, expect, atol=1e-5)
    np.testing.assert_allclose(item["detector_keypoints"][9, :2].numpy(), expect, atol=1e-5)
    np.testing.assert_allclose(item["body_joints_2d"][20].numpy(), expect, atol=1e-5)
    np.testing.assert_allclose(
        item["heatmap_samples"][9].numpy(), np.broadcast_to(expect, (150, 2)), atol=1e-5
    )
    if np.abs(expect).max() < 0.9:
        img = item["image"][0].numpy()
        ys, xs = np.mgrid[0:224, 0:224]
        wgt = np.where(img > 0.5 * img.max(), img, 0.0)  # the blob's centroid, not a plateau corner
        centroid = np.array([(xs * wgt).sum(), (ys * wgt).sum()]) / wgt.sum()
        tol = 2 * (1.0 / 224 + 1.0 / float(item["box_size"]))  # one crop pixel + one image pixel
        assert np.abs((centroid + 0.5) * 2 / 224 - 1 - expect).max() < tol
        from humr.losses.mask import lookup_distance_map

        d = lookup_distance_map(
            torch.tensor(expect, dtype=torch.float32)[None, None], item["distance_map"][None]
        )
        assert float(d) < 4 * 2 / 224 * max(1, float(item["box_size"]) / 224)
        assert float(item["heatmap_sample_mask_distance"][9].max()) < 1e-3 + 2.0 / float(item["box_size"])


def test_condition_comes_from_the_original_crop(fakes):
    # Even when the augmented crop cuts joints off, the detector pose is neither zeroed nor re-weighted.
    fake = fakes["bedlam"]
    aug = AugmentConfig(scale_factor=0.0, crop_prob=1.0, crop_factor=0.5, photometric_prob=0.0)
    ds = BedlamCliffDataset(fake.spec, augment=aug, filter=NO_FILTER)
    item = ds.get(0, rng=np.random.default_rng(1))
    row = int(item["index"])
    assert float(item["box_size"]) == pytest.approx(fake.annotation["scale"][row] * 100)
    det = item["detector_keypoints"].numpy()
    assert (np.abs(det[:, :2]) > 1).any()  # some joints left the crop ...
    np.testing.assert_allclose(det[:, 2], fake.annotation["vitpose"][row, :, 2], atol=1e-6)  # ... conf kept
    outside = (np.abs(item["keypoints_2d"].numpy()) > 1).any(-1)
    assert not item["keypoints_2d_visible"][torch.from_numpy(outside)].any()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31), cx=st.floats(0, 640), cy=st.floats(0, 360), b=st.floats(20, 400))
def test_sample_box_stays_in_bounds(seed, cx, cy, b):
    rng = np.random.default_rng(seed)
    c, s = sample_box(np.array([cx, cy]), b, (640, 360), PAPER_AUGMENT, rng)
    assert 0.5 * 0.75 * b - 1e-9 <= s <= 1.25 * b + 1e-9
    ok_box = (
        (c[0] - s / 2 + 10 <= 640)
        and (c[0] + s / 2 - 10 >= 0)
        and (c[1] - s / 2 + 10 <= 360)
        and (c[1] + s / 2 - 10 >= 0)
    )
    assert ok_box or (np.allclose(c, [cx, cy]) and s == b)
    assert abs(c[0] - cx) < 1e-9  # the random crop is vertical only


def test_photometric_is_reproducible_and_changes_pixels():
    img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    photo = Photometric(AugmentConfig(photometric_prob=1.0))
    a = photo(img, np.random.default_rng(5))
    b = photo(img, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    assert a.shape == img.shape and a.dtype == np.uint8
    changed = [not np.array_equal(photo(img, np.random.default_rng(s)), img) for s in range(6)]
    assert sum(changed) >= 3
    np.testing.assert_array_equal(Photometric(NO_AUGMENT)(img, np.random.default_rng(0)), img)


# ---------------------------------------------------------------------------- filter and mixture


def test_filter_matches_brute_force(tmp_path):
    def edit(d):
        d["vitpose"][1, :, :2] += 40  # far from the ground truth
        d["vitpose"][2, :12, 2] = 0.1  # only 5 confident joints
        d["vitpose"][3, 0, 1] = -500  # x far outside the image

    fake = write_fake_dataset(tmp_path, "bedlam", num_rows=6, edit=edit, samples_layout=None)
    ann = load_annotations(fake.spec.annotation)
    keep = filter_rows(ann, FilterConfig())
    a = fake.annotation
    expect = []
    for r in range(6):
        det = a["vitpose"][r][:, [1, 0]]
        conf = np.clip(a["vitpose"][r][:, 2], 0, 1)
        gt = a["gt_coco_25j"][r][list(COCO25_TO_COCO17)]
        err = sum(np.hypot(*(gt[k] - det[k])) * (conf[k] > 0.2) for k in range(17)) / 17
        ok = err / a["scale"][r] < 13 and sum(conf > 0.5) > 8
        h, w = a["orig_shape"][r]
        ok &= all(-100 <= det[k, 0] <= w + 100 and -100 <= det[k, 1] <= h + 100 for k in range(17))
        expect.append(ok)
    assert keep.tolist() == expect and not any(expect[1:4])
    assert len(BedlamCliffDataset(fake.spec)) == sum(expect)
    assert len(BedlamCliffDataset(replace(fake.spec, split="test"))) == 6  # test sets are never filtered


def test_mixture_loader_collates_real_items(fakes):
    sets = [BedlamCliffDataset(fakes[k].spec, filter=NO_FILTER) for k in ("bedlam", "agora", "3dpw_train")]
    mixture = MixtureDataset(sets, [1.0, 1.0, 2.0], length=4, seed=1)
    loader = torch.utils.data.DataLoader(mixture, batch_size=4, shuffle=True,
                                         generator=torch.Generator().manual_seed(1))
    batch = next(iter(loader))
    assert batch["image"].shape == (4, 3, 224, 224) and batch["pose"].shape == (4, 22, 3, 3)
    assert batch["heatmap_samples"].shape == (4, 17, 150, 2) and batch["distance_map"].shape == (4, 224, 224)


# ---------------------------------------------------------------------------- sample stores


def test_reference_samples_round_trip_and_units(fakes, tmp_path):
    arr = np.random.default_rng(0).normal(100, 20, (150, 17, 4)).astype(np.float32)
    path = reference_sample_path(tmp_path, "set", 12)
    assert path.name == "0000012.npy.gz"
    write_reference_samples(path, arr)
    np.testing.assert_array_equal(read_reference_samples(path), arr)
    with gzip.open(path, "rb") as f:  # a plain gzip-compressed .npy, readable without humr
        assert np.load(f).shape == (150, 17, 4)
    s = ReferenceSampleStore(tmp_path, "set")(12, box_size=448.0)
    np.testing.assert_array_equal(s.xy, arr.transpose(1, 0, 2)[..., :2])
    inside = arr[..., 3].T <= 0.71
    np.testing.assert_allclose(s.mask_distance[~inside], arr[..., 3].T[~inside] * 2.0, rtol=1e-6)
    assert (s.mask_distance[inside] == 0).all()


def test_reference_and_humr_stores_give_the_same_items(tmp_path):
    ref = write_fake_dataset(tmp_path / "a", "bedlam", num_rows=3, seed=7, samples_layout="reference")
    own = write_fake_dataset(tmp_path / "b", "bedlam", num_rows=3, seed=7, samples_layout="humr")
    a = BedlamCliffDataset(ref.spec, filter=NO_FILTER, mask_dilation=0)[1]
    b = BedlamCliffDataset(own.spec, filter=NO_FILTER, mask_dilation=0)[1]
    for key in ("heatmap_samples", "heatmap_sample_valid"):
        torch.testing.assert_close(a[key], b[key])
    # The reference rounds distances within half a pixel diagonal to 0.
    torch.testing.assert_close(
        a["heatmap_sample_mask_distance"],
        b["heatmap_sample_mask_distance"],
        atol=0.71 * 2 / 224 + 1e-6,
        rtol=0,
    )


def test_array_store_random_access_and_resume(tmp_path):
    rng = np.random.default_rng(0)
    full = rng.normal(size=(10, 17, 5, 4)).astype(np.float32)
    kps = rng.normal(size=(10, 17, 3)).astype(np.float32)
    w = HeatmapSampleStore.create(tmp_path / "s", 10, num_samples=5)
    w.write([7, 2], samples=full[[7, 2]], keypoints=kps[[7, 2]])
    w.flush()
    w.write([0, 1], samples=full[[0, 1]], keypoints=kps[[0, 1]])  # never flushed: a crash here
    del w
    w = HeatmapSampleStore.create(tmp_path / "s", 10, num_samples=5)  # resume
    assert w.missing().tolist() == [0, 1, 3, 4, 5, 6, 8, 9]
    np.testing.assert_array_equal(w.read("samples", 7), full[7])
    rest = w.missing()
    w.write(rest, samples=full[rest], keypoints=kps[rest])
    w.flush()
    r = HeatmapSampleStore(tmp_path / "s")
    for i in rng.permutation(10):
        s = r(int(i))
        np.testing.assert_array_equal(s.xy, full[i, ..., :2])
        np.testing.assert_array_equal(r.keypoints(int(i)), kps[i])
    assert isinstance(np.load(tmp_path / "s" / "samples.npy", mmap_mode="r"), np.memmap)
    with pytest.raises(ValueError, match="different layout"):
        HeatmapSampleStore.create(tmp_path / "s", 11, num_samples=5)
    fresh = ArrayStore.create(tmp_path / "f", {"x": ((2,), "float32")}, 3)
    with pytest.raises(ValueError, match="never written"):
        ArrayStore.open(fresh.root).read("x", 0)


# ---------------------------------------------------------------------------- corrupt inputs


def test_truncated_annotation_names_the_file(tmp_path):
    fake = write_fake_dataset(tmp_path, "bedlam", num_rows=2, samples_layout=None)
    path = Path(fake.spec.annotation)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=path.name):
        load_annotations(path)
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        load_annotations(tmp_path / "nope.npz")


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.pop("vitpose"), "'vitpose'"),
        (lambda d: d.pop("gt_coco_25j"), "'gt_coco_25j'"),
        (lambda d: d.update(center=d["center"][:-1]), "'center'"),
        (lambda d: d.update(vitpose=d["vitpose"][:, :16]), "'vitpose'"),
        (lambda d: d.update(pose_cam=d["pose_cam"][:, :30]), "'pose_cam'"),
        (lambda d: d.update(scale=-d["scale"]), "'scale'"),
    ],
)
def test_bad_keys_name_file_and_key(tmp_path, edit, match):
    fake = write_fake_dataset(tmp_path, "bedlam", num_rows=3, samples_layout=None, edit=edit)
    with pytest.raises(ValueError, match=match) as info:
        load_annotations(fake.spec.annotation)
    assert Path(fake.spec.annotation).name in str(info.value)


def test_missing_files_name_file_and_row(tmp_path):
    fake = write_fake_dataset(tmp_path, "bedlam", num_rows=3)
    name = fake.annotation["imgname"][1]
    (Path(fake.spec.image_dir) / name).unlink()
    ds = BedlamCliffDataset(fake.spec, filter=NO_FILTER)
    with pytest.raises(FileNotFoundError, match="row 1") as info:
        ds[1]
    assert Path(name).name in str(info.value)
    from humr.data.masks import mask_path

    mask_path("bedlam_env", fake.spec.mask_dir, fake.annotation["imgname"][2]).unlink()
    with pytest.raises(FileNotFoundError, match="row 2"):
        ds[2]
    sample = reference_sample_path(fake.spec.samples, fake.spec.name, 0)
    sample.write_bytes(sample.read_bytes()[:40])
    with pytest.raises(ValueError, match="0000000.npy.gz") as info:
        ds[0]
    assert "row 0" in str(info.value)
    (Path(fake.spec.image_dir) / fake.annotation["imgname"][0]).write_bytes(b"not an image")
    with pytest.raises(ValueError, match="row 0"):
        ds[0]


def test_crop_mask_area_scales_with_box():
    m = np.zeros((100, 100), bool)
    m[40:60, 40:60] = True
    for box, size in ((40.0, 20), (80.0, 40), (20.0, 40)):
        crop = crop_mask(m, np.array([49.5, 49.5]), box, size, dilate_iterations=0)
        expect = min(size, round(20 * size / box)) ** 2
        assert abs(int(crop.sum()) - expect) <= 2 * round(20 * size / box) + 1
