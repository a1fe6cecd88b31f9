"""Tests of humr.cameras against direct formulas, the CLIFF defining property and round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.cameras import (
    bbox_info,
    crop_to_image,
    estimate_focal,
    full_to_weak_camera,
    image_to_crop,
    perspective_project,
    project_to_crop,
    weak_to_full_translation,
)

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def scenes(draw, batch: int = 3):
    """A batch of random CLIFF setups as float64 numpy arrays."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    image_size = rng.uniform(200, 4000, size=(batch, 2))
    center = rng.uniform(0, 1, size=(batch, 2)) * image_size
    box = rng.uniform(30, 1200, size=batch)
    focal = rng.uniform(0.5, 3.0, size=batch) * np.hypot(image_size[:, 0], image_size[:, 1])
    cam = np.stack(
        [rng.uniform(0.3, 1.5, batch), rng.uniform(-0.5, 0.5, batch), rng.uniform(-0.5, 0.5, batch)], -1
    )
    return {"image_size": image_size, "center": center, "box": box, "focal": focal, "cam": cam, "rng": rng}


def t64(x):
    return torch.as_tensor(x, dtype=torch.float64)


@SETTINGS
@given(st.lists(st.floats(1, 1e4), min_size=2, max_size=2))
def test_estimate_focal_is_diagonal(size):
    f = estimate_focal(t64(size))
    assert math.isclose(float(f), math.hypot(*size), rel_tol=1e-12)


@SETTINGS
@given(scenes())
def test_bbox_info_matches_formula(s):
    out = bbox_info(t64(s["center"]), t64(s["box"]), t64(s["focal"]), t64(s["image_size"])).numpy()
    (cx, cy), (w, h) = s["center"].T, s["image_size"].T
    expected = np.stack([(cx - w / 2) / s["focal"], (cy - h / 2) / s["focal"], s["box"] / s["focal"]], -1)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_bbox_info_broadcasts_python_numbers():
    out = bbox_info(torch.tensor([[100.0, 50.0], [0.0, 0.0]]), 80.0, 1000.0, torch.tensor([200.0, 100.0]))
    assert out.shape == (2, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out[0], torch.tensor([0.0, 0.0, 0.08]))
    torch.testing.assert_close(out[1], torch.tensor([-0.1, -0.05, 0.08]))


@SETTINGS
@given(scenes())
def test_weak_to_full_translation_matches_formula(s):
    t = weak_to_full_translation(
        t64(s["cam"]), t64(s["center"]), t64(s["box"]), t64(s["focal"]), t64(s["image_size"])
    ).numpy()
    sc, tx, ty = s["cam"].T
    sb = sc * s["box"]
    expected = np.stack(
        [
            tx + 2 * (s["center"][:, 0] - s["image_size"][:, 0] / 2) / sb,
            ty + 2 * (s["center"][:, 1] - s["image_size"][:, 1] / 2) / sb,
            2 * s["focal"] / sb,
        ],
        -1,
    )
    np.testing.assert_allclose(t, expected, rtol=1e-12)


@SETTINGS
@given(scenes())
def test_root_depth_points_project_like_the_weak_perspective_crop_camera(s):
    """CLIFF's defining property: for P_z = 0, crop = s * (P_xy + [tx, ty]) through the full camera."""
    rng = s["rng"]
    points = np.concatenate([rng.uniform(-1, 1, size=(3, 7, 2)), np.zeros((3, 7, 1))], -1)
    crop = project_to_crop(
        t64(points), t64(s["cam"]), t64(s["center"]), t64(s["box"]), t64(s["focal"]), t64(s["image_size"])
    ).numpy()
    expected = s["cam"][:, None, :1] * (points[..., :2] + s["cam"][:, None, 1:])
    np.testing.assert_allclose(crop, expected, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(scenes())
def test_project_to_crop_matches_pinhole_model_for_any_depth(s):
    """Independent pinhole computation, point by point, with the principal point at the image centre."""
    rng = s["rng"]
    points = rng.uniform(-0.8, 0.8, size=(3, 5, 3))
    crop = project_to_crop(
        t64(points), t64(s["cam"]), t64(s["center"]), t64(s["box"]), t64(s["focal"]), t64(s["image_size"])
    ).numpy()
    for b in range(3):
        sc, tx, ty = s["cam"][b]
        f, box, (cx, cy), (w, h) = s["focal"][b], s["box"][b], s["center"][b], s["image_size"][b]
        depth = 2 * f / (sc * box)
        root = np.array([tx + (cx - w / 2) * depth / f, ty + (cy - h / 2) * depth / f, depth])
        for k in range(5):
            X, Y, Z = points[b, k] + root
            u, v = f * X / Z + w / 2, f * Y / Z + h / 2
            np.testing.assert_allclose(
                crop[b, k], [(u - cx) / (box / 2), (v - cy) / (box / 2)], rtol=1e-9, atol=1e-9
            )


@SETTINGS
@given(scenes())
def test_full_to_weak_camera_inverts_weak_to_full(s):
    args = (t64(s["center"]), t64(s["box"]), t64(s["focal"]), t64(s["image_size"]))
    t = weak_to_full_translation(t64(s["cam"]), *args)
    np.testing.assert_allclose(full_to_weak_camera(t, *args).numpy(), s["cam"], rtol=1e-9, atol=1e-12)


@SETTINGS
@given(scenes())
def test_image_crop_round_trip_and_box_corners(s):
    rng = s["rng"]
    pts = t64(rng.uniform(-3000, 3000, size=(3, 6, 2)))
    c, b = t64(s["center"]), t64(s["box"])
    torch.testing.assert_close(crop_to_image(image_to_crop(pts, c, b), c, b), pts)
    corners = c[:, None, :] + t64([[-0.5, -0.5], [0.5, 0.5], [0.5, -0.5]]) * b[:, None, None]
    torch.testing.assert_close(image_to_crop(corners, c, b), t64([[-1, -1], [1, 1], [1, -1]]).expand(3, 3, 2))


def test_perspective_project_against_manual_and_depth_clamp():
    pts = torch.tensor(
        [[[0.1, -0.2, 0.5], [0.0, 0.0, -4.0], [0.3, 0.3, -3.0]]], dtype=torch.float64, requires_grad=True
    )
    t = torch.tensor([[0.0, 0.0, 3.0]], dtype=torch.float64)
    uv = perspective_project(
        pts,
        t,
        torch.tensor([1000.0], dtype=torch.float64),
        torch.tensor([[320.0, 240.0]], dtype=torch.float64),
        min_depth=1e-3,
    )
    torch.testing.assert_close(
        uv[0, 0], torch.tensor([1000 * 0.1 / 3.5 + 320, -1000 * 0.2 / 3.5 + 240], dtype=torch.float64)
    )
    # behind the camera / at depth 0: clamped to min_depth, finite, gradients finite
    torch.testing.assert_close(uv[0, 1], torch.tensor([320.0, 240.0], dtype=torch.float64))
    torch.testing.assert_close(
        uv[0, 2], torch.tensor([1000 * 0.3 / 1e-3 + 320, 1000 * 0.3 / 1e-3 + 240], dtype=torch.float64)
    )
    uv.sum().backward()
    assert torch.isfinite(pts.grad).all()


def test_project_to_crop_gradcheck_and_dtype():
    g = torch.Generator().manual_seed(0)
    pts = (torch.rand(2, 4, 3, generator=g, dtype=torch.float64) - 0.5).requires_grad_()
    cam = torch.tensor([[0.9, 0.1, -0.1], [1.2, 0.0, 0.2]], dtype=torch.float64, requires_grad=True)
    center = torch.tensor([[300.0, 200.0], [500.0, 100.0]], dtype=torch.float64)
    box = torch.tensor([150.0, 220.0], dtype=torch.float64)
    focal = torch.tensor([900.0, 1200.0], dtype=torch.float64)
    size = torch.tensor([640.0, 480.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p, c: project_to_crop(p, c, center, box, focal, size), (pts, cam))
    out32 = project_to_crop(
        pts.detach().float(), cam.detach().float(), center.float(), box.float(), focal.float(), size.float()
    )
    assert out32.dtype == torch.float32 and out32.shape == (2, 4, 2)
    torch.testing.assert_close(
        out32.double(), project_to_crop(pts, cam, center, box, focal, size).detach(), rtol=1e-4, atol=1e-4
    )


def test_points_broadcast_against_per_camera_batch():
    pts = torch.rand(5, 3) - 0.5  # shared points, two cameras
    cam = torch.tensor([[0.9, 0.0, 0.0], [1.1, 0.1, 0.1]])
    out = project_to_crop(
        pts,
        cam,
        torch.tensor([[100.0, 100.0]]),
        torch.tensor([80.0, 90.0]),
        500.0,
        torch.tensor([200.0, 200.0]),
    )
    assert out.shape == (2, 5, 2)
    single = project_to_crop(
        pts, cam[1], torch.tensor([100.0, 100.0]), 90.0, 500.0, torch.tensor([200.0, 200.0])
    )
    torch.testing.assert_close(out[1], single)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: estimate_focal(torch.tensor([0.0, 10.0])), "image_size"),
        (lambda: estimate_focal(torch.tensor([1.0, 2.0, 3.0])), "image_size"),
        (lambda: bbox_info(torch.zeros(2), 10.0, 0.0, torch.tensor([5.0, 5.0])), "focal"),
        (lambda: bbox_info(torch.zeros(2), -1.0, 1.0, torch.tensor([5.0, 5.0])), "box_size"),
        (lambda: bbox_info(torch.tensor([float("nan"), 0.0]), 1.0, 1.0, torch.tensor([5.0, 5.0])), "center"),
        (lambda: bbox_info(torch.zeros(3), 1.0, 1.0, torch.tensor([5.0, 5.0])), "center"),
        (lambda: bbox_info(torch.zeros(4, 2), torch.ones(3), 1.0, torch.tensor([5.0, 5.0])), "box_size"),
        (
            lambda: weak_to_full_translation(
                torch.tensor([0.0, 0.0, 0.0]), torch.zeros(2), 1.0, 1.0, [5.0, 5.0]
            ),
            "scale s",
        ),
        (
            lambda: weak_to_full_translation(torch.tensor([1.0, 0.0]), torch.zeros(2), 1.0, 1.0, [5.0, 5.0]),
            "cam",
        ),
        (
            lambda: full_to_weak_camera(torch.tensor([0.0, 0.0, -1.0]), torch.zeros(2), 1.0, 1.0, [5.0, 5.0]),
            "depth",
        ),
        (lambda: perspective_project(torch.zeros(4, 2), torch.zeros(3), 1.0, torch.zeros(2)), "points"),
        (
            lambda: perspective_project(
                torch.zeros(4, 3), torch.zeros(3), 1.0, torch.zeros(2), min_depth=0.0
            ),
            "min_depth",
        ),
        (
            lambda: perspective_project(torch.zeros(2, 4, 3), torch.zeros(3, 3), 1.0, torch.zeros(2)),
            "translation",
        ),
        (lambda: image_to_crop(torch.zeros(4, 3), torch.zeros(2), 1.0), "points"),
        (lambda: image_to_crop(torch.zeros(4, 2), torch.zeros(2), torch.tensor(0.0)), "box_size"),
        (lambda: crop_to_image(torch.zeros(4, 2), torch.zeros(2), torch.tensor(float("nan"))), "box_size"),
        (
            lambda: project_to_crop(
                torch.zeros(4, 3), torch.tensor([-1.0, 0, 0]), torch.zeros(2), 1.0, 1.0, [5.0, 5.0]
            ),
            "scale s",
        ),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_mismatched_devices_raise():
    # the meta device stands in for a second device on a CPU-only machine
    with pytest.raises(ValueError, match="center"):
        image_to_crop(torch.zeros(4, 2), torch.zeros(2, device="meta"), 1.0)
    with pytest.raises(ValueError, match="focal"):
        bbox_info(torch.zeros(2), 1.0, torch.ones((), device="meta"), [5.0, 5.0])
