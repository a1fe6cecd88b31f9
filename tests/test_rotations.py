"""Tests of humr.rotations against scipy's rotations, closed forms and round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from humr.rotations import (
    axis_angle_to_matrix,
    check_rotation_matrices,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    rot6d_to_matrix,
)

SETTINGS = settings(max_examples=30, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)
BATCH = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)


def random_rotvecs(seed: int, batch: tuple[int, ...], max_angle: float = np.pi - 1e-3) -> np.ndarray:
    """Rotation vectors ``(*batch, 3)`` with uniform random axes and angles in [0, max_angle]."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=(*batch, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return axis * rng.uniform(0, max_angle, size=(*batch, 1))


@SETTINGS
@given(seed=SEEDS, batch=BATCH)
def test_axis_angle_to_matrix_matches_scipy(seed, batch):
    rv = random_rotvecs(seed, batch)
    R = axis_angle_to_matrix(torch.tensor(rv)).numpy()
    expected = Rotation.from_rotvec(rv.reshape(-1, 3)).as_matrix().reshape(*batch, 3, 3)
    np.testing.assert_allclose(R, expected, atol=1e-12)


@SETTINGS
@given(seed=SEEDS, batch=BATCH)
def test_axis_angle_round_trip_below_pi(seed, batch):
    rv = torch.tensor(random_rotvecs(seed, batch))
    torch.testing.assert_close(matrix_to_axis_angle(axis_angle_to_matrix(rv)), rv, atol=1e-9, rtol=1e-9)


@SETTINGS
@given(seed=SEEDS, batch=BATCH)
def test_rot6d_round_trip_and_layout(seed, batch):
    R = axis_angle_to_matrix(torch.tensor(random_rotvecs(seed, batch)))
    x = matrix_to_rot6d(R)
    assert x.shape == (*batch, 6)
    torch.testing.assert_close(x, R[..., :, :2].reshape(*batch, 6), rtol=0, atol=0)
    # row-major pairs of the first two columns: [R00, R01, R10, R11, R20, R21]
    flat = R.reshape(-1, 3, 3)
    explicit = torch.stack(
        [flat[:, 0, 0], flat[:, 0, 1], flat[:, 1, 0], flat[:, 1, 1], flat[:, 2, 0], flat[:, 2, 1]], -1
    )
    torch.testing.assert_close(x.reshape(-1, 6), explicit, rtol=0, atol=0)
    torch.testing.assert_close(rot6d_to_matrix(x), R, atol=1e-12, rtol=0)


@SETTINGS
@given(seed=SEEDS, batch=BATCH, dtype=st.sampled_from([torch.float32, torch.float64]))
def test_gram_schmidt_of_any_6d_vector_is_a_rotation(seed, batch, dtype):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(*batch, 3, 2, generator=g, dtype=torch.float64) * 3).to(dtype)
    # keep the two columns well apart: near-parallel pairs are ill-conditioned in float32
    sin = torch.linalg.cross(x[..., 0], x[..., 1]).norm(dim=-1) / (
        x[..., 0].norm(dim=-1) * x[..., 1].norm(dim=-1)
    )
    assume(bool((sin > 0.05).all()))
    R = rot6d_to_matrix(x.reshape(*batch, 6))
    assert R.dtype == dtype and R.shape == (*batch, 3, 3)
    check_rotation_matrices("R", R)
    # independent Gram-Schmidt in numpy: b1 = a1 / |a1|, b2 = normalized a2 minus its b1 part, b3 = b1 x b2
    a = x.double().numpy()
    a1, a2 = a[..., 0], a[..., 1]
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    b2 = a2 - (b1 * a2).sum(-1, keepdims=True) * b1
    b2 /= np.linalg.norm(b2, axis=-1, keepdims=True)
    expected = np.stack([b1, b2, np.cross(b1, b2)], -1)
    np.testing.assert_allclose(R.double().numpy(), expected, atol=1e-4 if dtype == torch.float32 else 1e-10)


def test_rot6d_to_matrix_is_differentiable():
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    assert torch.autograd.gradcheck(rot6d_to_matrix, (x,))


@SETTINGS
@given(seed=SEEDS, scale=st.floats(1.05, 3.0))
def test_check_rotation_matrices_accepts_rotations_rejects_others(seed, scale):
    R = axis_angle_to_matrix(torch.tensor(random_rotvecs(seed, (5,))))
    check_rotation_matrices("pose", R)
    check_rotation_matrices("pose", R.float())
    with pytest.raises(ValueError, match="pose"):
        check_rotation_matrices("pose", R * scale)
    reflected = R.clone()
    reflected[2] = -reflected[2]  # det -1
    with pytest.raises(ValueError, match="pose"):
        check_rotation_matrices("pose", reflected)
    broken = R.clone()
    broken[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="pose.*NaN"):
        check_rotation_matrices("pose", broken)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: rot6d_to_matrix(torch.zeros(4, 5)), "rot6d"),
        (lambda: matrix_to_rot6d(torch.zeros(4, 3, 2)), "matrix"),
        (lambda: axis_angle_to_matrix(torch.zeros(4)), "axis_angle"),
        (lambda: matrix_to_axis_angle(torch.zeros(3)), "matrix"),
        (lambda: check_rotation_matrices("global_orient", torch.eye(4)), "global_orient"),
        (lambda: rot6d_to_matrix(np.zeros(6)), "rot6d"),
    ],
)
def test_bad_shapes_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_degenerate_6d_vectors_decode_to_the_documented_rotations_with_finite_gradients():
    g = torch.Generator().manual_seed(0)
    a1 = torch.randn(50, 3, generator=g, dtype=torch.float64)
    scale = torch.randn(50, 1, generator=g, dtype=torch.float64)
    scale[:5] = 0.0  # a zero second column is parallel to anything
    cases = {
        "zeros": torch.zeros(4, 3, 2, dtype=torch.float64),
        "parallel": torch.stack([a1, scale * a1], -1),
        "zero first column": torch.stack([torch.zeros_like(a1), a1], -1),
    }
    for name, columns in cases.items():
        for dtype in (torch.float32, torch.float64):
            x = columns.reshape(-1, 6).to(dtype).requires_grad_(True)
            R = rot6d_to_matrix(x)
            check_rotation_matrices(name, R.detach(), atol=1e-5)
            weights = torch.randn(R.shape, generator=g, dtype=torch.float64).to(dtype)
            (R * weights).sum().backward()
            assert torch.isfinite(x.grad).all(), name
            # b1 follows a non-zero first column; a zero one gives e_x.
            first = columns[..., 0].to(dtype)
            norm = first.norm(dim=-1, keepdim=True)
            e_x = torch.tensor([1.0, 0.0, 0.0], dtype=dtype)
            expected = torch.where(norm > 0, first / norm.clamp_min(1e-300), e_x)
            torch.testing.assert_close(R[..., 0].detach(), expected)
            # b2: a2's part orthogonal to b1 where it has one (the zero-first-column case), else the
            # documented fallback: the axis where b1 is smallest, made orthogonal to b1.
            b1, a2 = expected.double(), columns[..., 1]
            axis = torch.nn.functional.one_hot(b1.abs().argmin(-1), 3).double()
            fallback = axis - (b1 * axis).sum(-1, keepdim=True) * b1
            rest = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
            has_rest = rest.norm(dim=-1, keepdim=True) > 1e-6 * a2.norm(dim=-1, keepdim=True)
            b2 = torch.where(has_rest, rest, fallback)
            b2 = (b2 / b2.norm(dim=-1, keepdim=True)).to(dtype)
            torch.testing.assert_close(R[..., 1].detach(), b2)
    torch.testing.assert_close(rot6d_to_matrix(torch.zeros(6)), torch.eye(3))


@SETTINGS
@given(seed=SEEDS, dtype=st.sampled_from([torch.float32, torch.float64]), c=st.floats(-3.0, 3.0))
def test_nearly_parallel_columns_still_decode_to_rotations(seed, dtype, c):
    g = torch.Generator().manual_seed(seed)
    a1 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    tilt = 1e3 * torch.finfo(dtype).eps  # a few hundred ulps off parallel
    a2 = c * a1 + tilt * a1.norm(dim=-1, keepdim=True) * torch.randn(64, 3, generator=g, dtype=torch.float64)
    R = rot6d_to_matrix(torch.stack([a1, a2], -1).reshape(64, 6).to(dtype))
    check_rotation_matrices("R", R, atol=50 * torch.finfo(dtype).eps)
    torch.testing.assert_close(R[..., 0], (a1 / a1.norm(dim=-1, keepdim=True)).to(dtype))


def test_non_finite_6d_vectors_stay_non_finite():
    x = torch.zeros(3, 6)
    x[0, 0], x[1, 3], x[2, 5] = float("nan"), float("inf"), float("nan")
    assert torch.isnan(rot6d_to_matrix(x)).flatten(1).any(-1).all()
