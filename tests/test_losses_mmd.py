"""Tests of humr.losses.mmd against brute force, geomloss and statistical properties."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from humr.losses.mmd import GaussianKernel, IMQKernel, gaussian_kernel, imq_kernel, joint_mmd, mmd2

SETTINGS = settings(max_examples=25, deadline=None)


def _imq_scalar(a: np.ndarray, b: np.ndarray, bandwidths=(0.05, 0.2, 0.9)) -> float:
    d2 = float(((a - b) ** 2).sum())
    return sum(h * h / (h * h + d2) for h in bandwidths)


def _gauss_scalar(a: np.ndarray, b: np.ndarray, sigma: float) -> float:
    return math.exp(-float(((a - b) ** 2).sum()) / (2 * sigma * sigma))


def _brute_mmd2(x: np.ndarray, y: np.ndarray, k, unbiased: bool) -> float:
    """Eq. 4 by explicit double loops over one pair of sets."""
    n, m = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if not (unbiased and i == j))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if not (unbiased and i == j))
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m))
    if unbiased:
        return sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)
    return sxx / n**2 + syy / m**2 - 2 * sxy / (n * m)


def _sets(seed: int, lead=(3,), n=6, m=8, d=2, dtype=torch.float64, scale=0.5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*lead, n, d, generator=g, dtype=dtype) * scale
    y = torch.randn(*lead, m, d, generator=g, dtype=dtype) * scale + 0.1
    return x, y


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(2, 7), m=st.integers(2, 7), d=st.sampled_from([1, 2, 3, 5]),
       unbiased=st.booleans())
def test_mmd2_matches_brute_force_double_loop(seed, n, m, d, unbiased):
    x, y = _sets(seed, lead=(2,), n=n, m=m, d=d)
    got = mmd2(x, y, unbiased=unbiased)
    sigma = 0.4
    got_g = mmd2(x, y, kernel=functools.partial(gaussian_kernel, sigma=sigma), unbiased=unbiased)
    for b in range(2):
        xb, yb = x[b].numpy(), y[b].numpy()
        assert got[b].item() == pytest.approx(_brute_mmd2(xb, yb, _imq_scalar, unbiased), abs=1e-12)
        gk = functools.partial(_gauss_scalar, sigma=sigma)
        assert got_g[b].item() == pytest.approx(_brute_mmd2(xb, yb, gk, unbiased), abs=1e-12)


def test_kernels_closed_form():
    x = torch.tensor([[0.0, 0.0], [0.3, -0.4]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    k = imq_kernel(x, y)  # distances 0 and 0.5
    assert k.shape == (2, 1)
    assert k[0, 0].item() == pytest.approx(3.0)
    expected = sum(a * a / (a * a + 0.25) for a in (0.05, 0.2, 0.9))
    assert k[1, 0].item() == pytest.approx(expected, rel=1e-12)
    assert gaussian_kernel(x, y, sigma=0.5)[1, 0].item() == pytest.approx(math.exp(-0.25 / 0.5), rel=1e-12)
    assert imq_kernel(x, y, bandwidths=0.5)[1, 0].item() == pytest.approx(0.5, rel=1e-12)


@SETTINGS
@given(seed=st.integers(0, 10_000), sigma=st.floats(0.1, 2.0), n=st.integers(1, 9), m=st.integers(1, 9))
def test_biased_gaussian_mmd_is_twice_geomloss(seed, sigma, n, m):
    geomloss = pytest.importorskip("geomloss")
    x, y = _sets(seed, lead=(4,), n=n, m=m)
    ref = geomloss.SamplesLoss("gaussian", blur=sigma, backend="tensorized")(x, y)
    got = mmd2(x, y, kernel=GaussianKernel(sigma), unbiased=False)
    torch.testing.assert_close(got, 2 * ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("unbiased", [True, False])
@pytest.mark.parametrize("kernel", [imq_kernel, functools.partial(gaussian_kernel, sigma=(0.1, 0.7))])
def test_fused_path_matches_autograd_path(kernel, unbiased):
    """The analytic backward of the fused path equals autograd through the plain kernel."""
    x, y = _sets(1, lead=(2, 3), n=5, m=7)
    x.requires_grad_(True)
    y.requires_grad_(True)
    plain = lambda a, b: kernel(a, b)  # noqa: E731 -- an opaque callable takes the autograd path
    fused_val = mmd2(x, y, kernel, unbiased)
    gx, gy = torch.autograd.grad(fused_val.sum(), (x, y))
    plain_val = mmd2(x, y, plain, unbiased)
    px, py = torch.autograd.grad(plain_val.sum(), (x, y))
    torch.testing.assert_close(fused_val, plain_val)
    torch.testing.assert_close(gx, px)
    torch.testing.assert_close(gy, py)
    assert torch.autograd.gradcheck(lambda a, b: mmd2(a, b, kernel, unbiased), (x[0, :1], y[0, :1]))


@SETTINGS
@given(seed=st.integers(0, 10_000), n=st.integers(1, 8), m=st.integers(1, 8), shift=st.floats(0.0, 2.0))
def test_biased_estimator_is_non_negative(seed, n, m, shift):
    x, y = _sets(seed, lead=(5,), n=n, m=m)
    for kernel in (imq_kernel, GaussianKernel(0.3)):
        assert (mmd2(x, y + shift, kernel, unbiased=False) >= -1e-12).all()


@SETTINGS
@given(seed=st.integers(0, 10_000), unbiased=st.booleans())
def test_symmetry_and_permutation_invariance(seed, unbiased):
    x, y = _sets(seed, n=6, m=5)
    g = torch.Generator().manual_seed(seed)
    v = mmd2(x, y, unbiased=unbiased)
    torch.testing.assert_close(mmd2(y, x, unbiased=unbiased), v)
    px, py = torch.randperm(6, generator=g), torch.randperm(5, generator=g)
    torch.testing.assert_close(mmd2(x[:, px], y[:, py], unbiased=unbiased), v)


def test_identical_sets_give_zero_biased_and_positive_for_different():
    x, _ = _sets(3, lead=(4, 17), n=25, m=25, dtype=torch.float32)
    torch.testing.assert_close(mmd2(x, x.clone(), unbiased=False), torch.zeros(4, 17), atol=1e-6, rtol=0)
    assert (mmd2(x, x + 0.5, unbiased=False) > 1e-3).all()


def test_unbiased_estimator_mean_is_zero_under_the_null():
    """Over many pairs drawn from one distribution, E[unbiased mmd2] = 0 (biased: > 0)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 8, 2, generator=g, dtype=torch.float64) * 0.3
    y = torch.randn(4000, 8, 2, generator=g, dtype=torch.float64) * 0.3
    u = mmd2(x, y, unbiased=True)
    se = u.std() / math.sqrt(len(u))
    assert abs(u.mean().item()) < 4 * se.item()
    v = mmd2(x, y, unbiased=False)
    assert v.mean().item() > 20 * se.item()


def test_broadcast_leading_dims_and_dtype():
    x, y = _sets(5, lead=(3, 1), n=4, m=6)
    yb = torch.cat([y, y + 1], 1)  # (3, 2, 6, 2)
    out = mmd2(x, yb)
    assert out.shape == (3, 2)
    torch.testing.assert_close(out[:, 1], mmd2(x[:, 0], y[:, 0] + 1))
    assert mmd2(x.float(), yb.float()).dtype == torch.float32


def _manual_joint(pred, target, weight, unbiased, reduction):
    per = torch.stack([torch.stack([mmd2(pred[b, k], target[b, k], unbiased=unbiased)
                                    for k in range(pred.shape[1])]) for b in range(pred.shape[0])])
    w = weight.clone()
    if reduction == "all":
        return (w * per).sum() / w.numel()
    return (w * per).sum() / w.sum()


@SETTINGS
@given(seed=st.integers(0, 10_000), unbiased=st.booleans(), reduction=st.sampled_from(["active", "all"]))
def test_joint_mmd_weighting_against_manual(seed, unbiased, reduction):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randn(3, 4, 5, 2, generator=g, dtype=torch.float64)
    target = torch.randn(3, 4, 6, 2, generator=g, dtype=torch.float64)
    weight = torch.rand(3, 4, generator=g, dtype=torch.float64) * 1.5
    weight[torch.rand(3, 4, generator=g) < 0.3] = 0.0  # some inactive
    weight[0, 0] = 1.0
    got = joint_mmd(pred, target, weight, unbiased=unbiased, reduction=reduction)
    want = _manual_joint(pred, target, weight, unbiased, reduction)
    torch.testing.assert_close(got, want)
    none = joint_mmd(pred, target, weight, unbiased=unbiased, reduction="none")
    assert none.shape == (3, 4) and (none[weight == 0] == 0).all()


def test_joint_mmd_bool_weight_is_active_mean_and_default_is_plain_mean():
    g = torch.Generator().manual_seed(2)
    pred, target = torch.randn(2, 3, 5, 2, generator=g), torch.randn(2, 3, 5, 2, generator=g)
    per = mmd2(pred, target)
    active = torch.tensor([[True, False, True], [False, False, True]])
    torch.testing.assert_close(joint_mmd(pred, target, active), per[active].mean())
    torch.testing.assert_close(joint_mmd(pred, target), per.mean())


def test_joint_mmd_no_active_joint_is_exact_zero_with_gradient():
    pred = torch.randn(2, 3, 5, 2, requires_grad=True)
    target = torch.randn(2, 3, 5, 2)
    for reduction in ("active", "all"):
        loss = joint_mmd(pred, target, torch.zeros(2, 3), reduction=reduction)
        assert loss.item() == 0.0 and loss.requires_grad
        (grad,) = torch.autograd.grad(loss, pred)
        assert torch.equal(grad, torch.zeros_like(pred))


def test_joint_mmd_gradient_moves_prediction_towards_target():
    g = torch.Generator().manual_seed(4)
    target = torch.randn(1, 1, 25, 2, generator=g) * 0.1
    pred = (torch.randn(1, 1, 25, 2, generator=g) * 0.1 + 0.3).requires_grad_(True)
    opt = torch.optim.SGD([pred], lr=0.05)
    before = joint_mmd(pred, target).item()
    for _ in range(50):
        opt.zero_grad()
        joint_mmd(pred, target).backward()
        opt.step()
    assert joint_mmd(pred, target).item() < 0.5 * before


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: mmd2(torch.zeros(3, 2), torch.zeros(3, 3)), "y"),
        (lambda: mmd2(torch.zeros(1, 2), torch.zeros(3, 2)), "x"),
        (lambda: mmd2(torch.zeros(3, 2), torch.zeros(1, 2)), "y"),
        (lambda: mmd2(torch.zeros(2, 3, 2), torch.zeros(4, 3, 2)), "y"),
        (lambda: mmd2(torch.zeros(2), torch.zeros(3, 2)), "x"),
        (lambda: imq_kernel(torch.zeros(3, 2), torch.zeros(3, 2), bandwidths=(0.1, -1.0)), "bandwidths"),
        (lambda: IMQKernel(()), "bandwidths"),
        (lambda: joint_mmd(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4, 2)), "pred"),
        (lambda: joint_mmd(torch.zeros(2, 3, 4, 2), torch.zeros(2, 4, 4, 2)), "target"),
        (lambda: joint_mmd(torch.zeros(2, 3, 4, 2), torch.zeros(2, 3, 4, 2), torch.ones(3, 2)), "weight"),
        (lambda: joint_mmd(torch.full((2, 3, 4, 2), math.nan), torch.zeros(2, 3, 4, 2)), "pred"),
        (lambda: joint_mmd(torch.zeros(2, 3, 4, 2), torch.full((2, 3, 4, 2), math.nan)), "target"),
        (lambda: joint_mmd(torch.zeros(2, 3, 4, 2), torch.zeros(2, 3, 4, 2), reduction="max"), "reduction"),
        # issue 14 item 7: every non-finite input is an error, and so are NaN or negative weights
        (lambda: mmd2(torch.full((3, 2), math.inf), torch.zeros(3, 2)), "x"),
        (lambda: mmd2(torch.zeros(3, 2), torch.tensor([[0.0, 0.0], [-math.inf, 1.0]])), "y"),
        (lambda: mmd2(torch.zeros(3, 2), torch.full((3, 2), math.nan)), "y"),
        (lambda: imq_kernel(torch.zeros(3, 2), torch.zeros(3, 2), bandwidths=math.inf), "bandwidths"),
        (lambda: imq_kernel(torch.zeros(3, 2), torch.zeros(3, 2), bandwidths=(0.1, math.nan)), "bandwidths"),
        (lambda: imq_kernel(torch.full((3, 2), math.inf), torch.zeros(3, 2)), "x"),
        (lambda: gaussian_kernel(torch.zeros(3, 2), torch.full((3, 2), -math.inf)), "y"),
        (lambda: joint_mmd(torch.full((2, 3, 4, 2), math.inf), torch.zeros(2, 3, 4, 2)), "pred"),
        (lambda: joint_mmd(torch.zeros(2, 3, 4, 2), torch.full((2, 3, 4, 2), -math.inf)), "target"),
        (lambda: joint_mmd(torch.zeros(4, 17, 3, 2), torch.zeros(4, 17, 3, 2),
                           weight=torch.full((4, 17), math.nan)), "weight"),
        (lambda: joint_mmd(torch.zeros(4, 17, 3, 2), torch.zeros(4, 17, 3, 2),
                           weight=torch.full((4, 17), math.inf)), "weight"),
        (lambda: joint_mmd(torch.zeros(2, 3, 4, 2), torch.zeros(2, 3, 4, 2),
                           weight=-torch.ones(2, 3)), "weight"),
        # beyond half the float32 maximum a pairwise difference would overflow
        (lambda: mmd2(torch.full((3, 2), 3e38), torch.zeros(3, 2)), "x"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call()


# ------------------------------------------------------- the fused path at every scale (issue 14, item 8)


def _brute_mmd2_float64(x: torch.Tensor, y: torch.Tensor, unbiased: bool) -> tuple[float, float]:
    """Eq. 4 in float64 by explicit loops over pairs, for one pair of sets, and the sum of the
    absolute values of its weighted terms (the scale that float32 rounding is relative to)."""
    x, y = x.double().tolist(), y.double().tolist()
    n, m = len(x), len(y)

    def k(a, b):
        return _imq_scalar(np.asarray(a), np.asarray(b))

    sxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if not (unbiased and i == j))
    syy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if not (unbiased and i == j))
    sxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m))
    wxx, wyy = (1 / (n * (n - 1)), 1 / (m * (m - 1))) if unbiased else (1 / n**2, 1 / m**2)
    return wxx * sxx + wyy * syy - 2 * sxy / (n * m), wxx * sxx + wyy * syy + 2 * sxy / (n * m)


def test_the_issue_example_fused_equals_plain_at_scale_1e8():
    """``mmd2(a * 1e8, b)``: the fused path gave 0.409 where the plain kernel gives 0.347."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(17, 25, 2, generator=g), torch.randn(17, 25, 2, generator=g)
    fused = mmd2(a * 1e8, b)
    plain = mmd2(a * 1e8, b, kernel=lambda p, q: imq_kernel(p, q))  # opaque callable: plain path
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), log_scale=st.floats(-30, 37), log_offset=st.floats(-3, 30),
       unbiased=st.booleans(), which=st.sampled_from(["x", "y", "both"]))
def test_fused_value_and_gradient_match_float64_at_every_scale(seed, log_scale, log_offset, unbiased, which):
    """float32 coordinates from 1e-30 to 1e37 (one set scaled, both offset): the fused value agrees
    with a float64 brute force to 1e-6 of its terms' magnitude, as does the plain path, and its
    gradient agrees with float64 autograd through the plain kernel to 1e-5 of the largest entry."""
    g = torch.Generator().manual_seed(seed)
    scale, offset = 10.0**log_scale, 10.0**log_offset
    x, y = torch.randn(2, 7, 2, generator=g), torch.randn(2, 9, 2, generator=g)
    x = x * scale if which in ("x", "both") else x
    y = y * scale if which in ("y", "both") else y
    x, y = x + min(offset, 1e37), y + min(offset, 1e37)
    x.requires_grad_(True)
    y.requires_grad_(True)
    fused = mmd2(x, y, unbiased=unbiased)
    plain = mmd2(x, y, kernel=lambda p, q: imq_kernel(p, q), unbiased=unbiased)
    for i in range(2):
        want, magnitude = _brute_mmd2_float64(x[i].detach(), y[i].detach(), unbiased)
        tol = 1e-6 * max(magnitude, 1e-30)
        assert abs(fused[i].item() - want) <= tol, (fused[i].item(), want, magnitude)
        assert abs(plain[i].item() - want) <= tol, (plain[i].item(), want, magnitude)
    gx, gy = torch.autograd.grad(fused.sum(), (x, y))
    xd, yd = x.detach().double().requires_grad_(True), y.detach().double().requires_grad_(True)
    px, py = torch.autograd.grad(mmd2(xd, yd, kernel=lambda p, q: imq_kernel(p, q), unbiased=unbiased).sum(),
                                 (xd, yd))
    assert torch.isfinite(gx).all() and torch.isfinite(gy).all()
    largest = max(float(px.abs().max()), float(py.abs().max()))
    torch.testing.assert_close(gx.double(), px, rtol=0, atol=1e-5 * largest + 1e-30)
    torch.testing.assert_close(gy.double(), py, rtol=0, atol=1e-5 * largest + 1e-30)


@pytest.mark.parametrize("unbiased", [True, False])
def test_fused_gradient_of_a_wide_set_uses_differences_not_matmul_cancellation(unbiased):
    """Two close points inside a set spread over 1e6: their mutual pull (the only non-negligible
    gradient) survives in float32 (a sum-then-subtract backward loses it to cancellation)."""
    x = torch.tensor([[1000.0, 0.0], [1000.01, 0.0], [1e6, 0.0], [-1e6, 3e5]], requires_grad=True)
    y = torch.tensor([[5e5, 5e5], [6e5, 5e5]])
    (gx,) = torch.autograd.grad(mmd2(x, y, unbiased=unbiased), x)
    xd = x.detach().double().requires_grad_(True)
    (px,) = torch.autograd.grad(mmd2(xd, y.double(), kernel=lambda p, q: imq_kernel(p, q), unbiased=unbiased),
                                xd)
    torch.testing.assert_close(gx.double(), px, rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("d", [2, 6])
def test_fused_gradient_matches_plain_for_large_and_small_point_dimensions(d):
    x, y = _sets(11, lead=(2,), n=6, m=5, d=d, dtype=torch.float64, scale=0.3)
    x, y = (x + 50.0).requires_grad_(True), (y + 50.0).requires_grad_(True)
    fused = torch.autograd.grad(mmd2(x, y).sum(), (x, y))
    plain = torch.autograd.grad(mmd2(x, y, kernel=lambda p, q: imq_kernel(p, q)).sum(), (x, y))
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
