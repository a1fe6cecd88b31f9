"""Tests of humr.losses.pose against closed forms."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.losses.pose import camera_scale_loss, keypoint_2d_loss, nll_loss, orthonormal_loss, shape_loss
from humr.rotations import axis_angle_to_matrix, matrix_to_rot6d

SETTINGS = settings(max_examples=25, deadline=None)


def test_nll_is_negative_mean_and_per_dimension_divides_by_d():
    lp = torch.tensor([[-1.0, 2.0], [0.5, -3.5]])
    assert nll_loss(lp).item() == pytest.approx(0.5)
    assert nll_loss(lp[:, 0]).item() == pytest.approx(0.25)
    assert nll_loss(lp, dim=132).item() == pytest.approx(0.5 / 132)
    assert nll_loss(lp[:, 0], dim=4).item() == pytest.approx(0.25 / 4)


@SETTINGS
@given(seed=st.integers(0, 10_000), scale=st.floats(0.2, 3.0))
def test_orthonormal_loss_zero_for_rotations_and_closed_form_for_scaled(seed, scale):
    g = torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(torch.randn(3, 22, 3, generator=g, dtype=torch.float64) * 2)
    r6 = matrix_to_rot6d(rot)
    assert orthonormal_loss(r6).item() < 1e-24
    # M = c [r1 r2] -> M^T M = c^2 I: two diagonal entries (c^2 - 1)^2, two off-diagonal 0.
    assert orthonormal_loss(scale * r6).item() == pytest.approx((scale**2 - 1) ** 2 / 2, rel=1e-9, abs=1e-15)


def test_orthonormal_loss_columns_not_orthogonal():
    # columns (1, 0, 0) and (1, 0, 0): M^T M = [[1, 1], [1, 1]] -> mean of (0, 1, 1, 0) = 0.5
    r6 = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0])
    assert orthonormal_loss(r6).item() == pytest.approx(0.5)


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_shape_loss_sums_over_coefficients_by_default_and_mean_is_mse(seed):
    g = torch.Generator().manual_seed(seed)
    pred, target = torch.randn(5, 11, generator=g), torch.randn(5, 11, generator=g)
    valid = torch.tensor([True, False, True, True, False])
    # Default "sum" (the published normalisation): summed squared error per image, mean over images.
    rows = [sum((float(pred[b, i]) - float(target[b, i])) ** 2 for i in range(11)) for b in range(5)]
    assert shape_loss(pred, target).item() == pytest.approx(sum(rows) / 5, rel=1e-5)
    want = sum(r for r, ok in zip(rows, valid) if ok) / int(valid.sum())
    assert shape_loss(pred, target, valid).item() == pytest.approx(want, rel=1e-5)
    # "mean": numpy's mean squared error over the entries of the valid rows
    mse = float(((pred[valid].numpy() - target[valid].numpy()) ** 2).mean())
    assert shape_loss(pred, target, valid, reduction="mean").item() == pytest.approx(mse, rel=1e-5)


@SETTINGS
@given(scale=st.lists(st.floats(-1.0, 3.0), min_size=1, max_size=6))
def test_camera_scale_loss_is_mean_of_exp_minus_10s_squared(scale):
    s = torch.tensor(scale, dtype=torch.float64)
    want = sum(math.exp(-10 * v) ** 2 for v in scale) / len(scale)
    assert camera_scale_loss(s).item() == pytest.approx(want, rel=1e-12)
    (g,) = torch.autograd.grad(camera_scale_loss(s.requires_grad_(True)), s)
    assert (g < 0).all()  # always pushes s up, away from 0


def test_shape_loss_invalid_rows_may_be_nan_and_none_valid_is_zero_with_gradient():
    pred = torch.randn(3, 4, requires_grad=True)
    target = torch.randn(3, 4)
    target[1] = math.nan
    valid = torch.tensor([True, False, True])
    loss = shape_loss(pred, target, valid)
    (g,) = torch.autograd.grad(loss, pred)
    assert torch.isfinite(loss) and torch.isfinite(g).all() and (g[1] == 0).all()
    zero = shape_loss(pred, target, torch.zeros(3, dtype=torch.bool))
    assert zero.item() == 0.0 and zero.requires_grad
    assert torch.equal(torch.autograd.grad(zero, pred)[0], torch.zeros_like(pred))


@SETTINGS
@given(seed=st.integers(0, 10_000))
def test_keypoint_2d_loss_is_confidence_weighted_l1_per_image(seed):
    g = torch.Generator().manual_seed(seed)
    pred, target = torch.randn(4, 17, 2, generator=g), torch.randn(4, 17, 2, generator=g)
    conf = torch.rand(4, 17, generator=g)
    want = sum(float(conf[b, k]) * (abs(float(pred[b, k, 0] - target[b, k, 0]))
                                    + abs(float(pred[b, k, 1] - target[b, k, 1])))
               for b in range(4) for k in range(17)) / 4
    assert keypoint_2d_loss(pred, target, conf).item() == pytest.approx(want, rel=1e-5)


def test_keypoint_2d_loss_missing_keypoints_with_nan_targets():
    pred = torch.zeros(1, 3, 2, requires_grad=True)
    target = torch.tensor([[[1.0, -2.0], [math.nan, math.nan], [0.5, 0.5]]])
    conf = torch.tensor([[0.5, 0.0, 1.0]])
    loss = keypoint_2d_loss(pred, target, conf)
    assert loss.item() == pytest.approx(0.5 * 3 + 1.0)
    (g,) = torch.autograd.grad(loss, pred)
    torch.testing.assert_close(g, torch.tensor([[[-0.5, 0.5], [0.0, 0.0], [-1.0, -1.0]]]))


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: nll_loss(torch.zeros(2, 3, 4)), "log_prob"),
        (lambda: nll_loss(torch.zeros(0)), "log_prob"),
        (lambda: nll_loss(torch.tensor([math.nan])), "log_prob"),
        (lambda: nll_loss(torch.zeros(3), dim=0), "dim"),
        (lambda: nll_loss(torch.zeros(3), dim=2.0), "dim"),
        (lambda: shape_loss(torch.zeros(3, 2), torch.zeros(3, 2), reduction="max"), "reduction"),
        (lambda: camera_scale_loss(torch.zeros(2, 3, 4)), "scale"),
        (lambda: camera_scale_loss(torch.tensor([math.nan])), "scale"),
        (lambda: orthonormal_loss(torch.zeros(3, 9)), "rot6d"),
        (lambda: shape_loss(torch.zeros(3), torch.zeros(3)), "pred"),
        (lambda: shape_loss(torch.zeros(3, 2), torch.zeros(3, 4)), "target"),
        (lambda: shape_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.ones(2)), "valid"),
        (lambda: keypoint_2d_loss(torch.zeros(2, 17, 3), torch.zeros(2, 17, 2), torch.ones(2, 17)), "pred"),
        (lambda: keypoint_2d_loss(torch.zeros(2, 17, 2), torch.zeros(2, 16, 2), torch.ones(2, 17)), "target"),
        (lambda: keypoint_2d_loss(torch.zeros(2, 17, 2), torch.zeros(2, 17, 2), torch.ones(17)),
         "confidence"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()
