"""Tests of humr.flows: invertibility, densities, the shared-context computation, learning, validation."""

from __future__ import annotations

import math
import warnings
from functools import cache

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nflows.transforms.base import CompositeTransform
from nflows.transforms.coupling import AffineCouplingTransform
from nflows.transforms.lu import LULinear as NflowsLULinear
from nflows.transforms.normalization import ActNorm as NflowsActNorm
from nflows.transforms.permutations import Permutation, ReversePermutation
from torch import nn

from humr.flows import (
    ActNorm,
    AdditiveCoupling,
    ConditionalGlow,
    ConditionalRealNVP,
    FixedPermutation,
    FlowConfig,
    LULinear,
    SoftClampAffineCoupling,
    build_flow,
    seeded_permutation,
    soft_clamp,
    standard_normal_log_prob,
)

HYP = settings(max_examples=12, deadline=None)
D, C = 6, 4


# These flows are tiny: intra-op threads only add synchronisation, which on a shared, loaded
# machine costs 30x (measured). tests/conftest.py sets it for this module and restores it.
TORCH_THREADS = 1


def randomize(module: nn.Module, seed: int, gain: float = 1.0) -> nn.Module:
    """Overwrite every parameter with random values (local generator) so the flow is far from identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan_in = p.shape[-1] if p.dim() == 2 else 1
            scale = gain / math.sqrt(fan_in) if p.dim() == 2 else 0.3 * gain
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return module


@cache
def small_flow(kind: str, dtype: torch.dtype = torch.float64, layers: int = 2, seed: int = 0):
    flow = build_flow(FlowConfig(kind=kind, num_layers=layers, hidden_features=16), D, C)
    return randomize(flow.to(dtype), seed)


def data(seed: int, batch: int, samples: int | None, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, D) if samples is None else (batch, samples, D)
    return torch.randn(shape, generator=g, dtype=dtype), torch.randn(batch, C, generator=g, dtype=dtype)


KINDS = ("realnvp", "glow")


# -- invertibility and consistency --------------------------------------------------------------
@HYP
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 10_000), batch=st.integers(1, 5),
       samples=st.sampled_from([None, 1, 7]))
def test_transform_inverts_inverse_float32(kind, seed, batch, samples):
    flow = small_flow(kind, torch.float32)
    x, ctx = data(seed, batch, samples, torch.float32)
    with torch.no_grad():
        z = flow.inverse(x, ctx)
        assert z.shape == x.shape
        torch.testing.assert_close(flow.transform(z, ctx), x, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(flow.inverse(flow.transform(x, ctx), ctx), x, atol=1e-5, rtol=1e-5)
        # log p(x) through the data->noise pass equals the value through the noise->data pass
        x_back, logp = flow.transform_and_log_prob(z, ctx)
        torch.testing.assert_close(logp, flow.log_prob(x, ctx), atol=1e-4, rtol=1e-5)


@HYP
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 10_000), samples=st.integers(1, 9))
def test_sample_and_log_prob_matches_log_prob(kind, seed, samples):
    flow = small_flow(kind)
    _, ctx = data(seed, 3, None)
    with torch.no_grad():
        x, logp = flow.sample_and_log_prob(samples, ctx, generator=torch.Generator().manual_seed(seed))
        assert x.shape == (3, samples, D) and logp.shape == (3, samples)
        torch.testing.assert_close(logp, flow.log_prob(x, ctx), atol=1e-9, rtol=1e-9)
        # the same generator seed reproduces the draws
        x2 = flow.sample(samples, ctx, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(x, x2, atol=0, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_log_det_equals_autograd_jacobian(kind):
    flow = small_flow(kind)
    x, ctx = data(3, 4, None)
    logdet = flow.log_prob(x, ctx) - standard_normal_log_prob(flow.inverse(x, ctx))
    for i in range(x.shape[0]):
        def f(v, i=i):
            return flow.inverse(v[None], ctx[i : i + 1])[0]

        jac = torch.autograd.functional.jacobian(f, x[i])
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign != 0
        torch.testing.assert_close(logdet[i], logabs, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_density_integrates_to_one(kind):
    # features = 2, a fixed context, a fine grid (Riemann sum of exp(log p)).
    flow = build_flow(FlowConfig(kind=kind, num_layers=2, hidden_features=16), 2, 3).double()
    flow = randomize(flow, 7, gain=0.5)
    ctx = torch.tensor([[0.3, -1.0, 0.5]], dtype=torch.float64)
    with torch.no_grad():
        draws = flow.sample(20_000, ctx, generator=torch.Generator().manual_seed(0))[0]
        lo, hi = draws.min(0).values - 3.0, draws.max(0).values + 3.0
        n = 600
        gx, gy = (torch.linspace(lo[i], hi[i], n, dtype=torch.float64) for i in range(2))
        grid = torch.stack(torch.meshgrid(gx, gy, indexing="ij"), -1).reshape(1, -1, 2)
        mass = flow.log_prob(grid, ctx).exp().sum() * (gx[1] - gx[0]) * (gy[1] - gy[0])
    assert abs(float(mass) - 1.0) < 0.01


def test_mode_is_deterministic_and_equals_transform_of_zero():
    for kind in KINDS:
        flow = small_flow(kind)
        _, ctx = data(5, 4, None)
        with torch.no_grad():
            mode = flow.mode(ctx)
            assert mode.shape == (4, D)
            torch.testing.assert_close(flow.mode(ctx), mode, atol=0, rtol=0)
            torch.testing.assert_close(flow.transform(torch.zeros(4, D, dtype=ctx.dtype), ctx), mode)
            # the mode is also the first of a (B, S, D) batch whose first latent is 0
            z = torch.randn(4, 3, D, dtype=ctx.dtype, generator=torch.Generator().manual_seed(1))
            z[:, 0] = 0
            torch.testing.assert_close(flow.transform_and_log_prob(z, ctx)[0][:, 0], mode)


@pytest.mark.parametrize("kind", KINDS)
def test_samples_depend_on_context_and_not_on_global_rng(kind):
    flow = small_flow(kind)
    _, ctx = data(11, 2, None)
    state = torch.random.get_rng_state()
    with torch.no_grad():
        a = flow.sample(5, ctx[:1], generator=torch.Generator().manual_seed(3))
        b = flow.sample(5, ctx[1:], generator=torch.Generator().manual_seed(3))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert (a - b).abs().min() > 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_zero_init_is_standard_normal(kind):
    flow = build_flow(FlowConfig(kind=kind, num_layers=3, hidden_features=8), D, C).double()
    x, ctx = data(2, 5, 4)
    with torch.no_grad():
        torch.testing.assert_close(flow.log_prob(x, ctx), standard_normal_log_prob(x))
        torch.testing.assert_close(flow.mode(ctx), torch.zeros(5, D, dtype=torch.float64))


def test_glow_is_volume_preserving_in_the_couplings():
    # Only ActNorm and the LU layers change volume: log|det| is one constant for all x and contexts.
    flow = small_flow("glow")
    x, ctx = data(4, 6, 3)
    with torch.no_grad():
        logdet = flow.log_prob(x, ctx) - standard_normal_log_prob(flow.inverse(x, ctx))
        expected = sum(
            m.log_scale.sum() if isinstance(m, ActNorm) else m.log_diag.sum()
            for m in flow.modules()
            if isinstance(m, (ActNorm, LULinear))
        )
    torch.testing.assert_close(logdet, expected.expand(6, 3))


# -- soft clamp --------------------------------------------------------------------------------
@HYP
@given(s=st.floats(-1e30, 1e30), alpha=st.floats(0.1, 10.0))
def test_soft_clamp_is_bounded_and_odd(s, alpha):
    t = torch.tensor([s, -s], dtype=torch.float64)
    out = soft_clamp(t, alpha)
    assert out.abs().max() <= alpha * (1 + 1e-12)  # rounding of (2 alpha / pi) * (pi / 2)
    assert float(out[0]) == -float(out[1])
    if abs(s) < 1e-4 * alpha:  # slope 2 / pi at 0: (2 alpha / pi) atan(s / alpha) ~ (2 / pi) s
        assert abs(float(out[0]) - 2 / math.pi * s) <= 1e-7 * abs(s) + 1e-300


def test_soft_clamp_bounds_log_scales_even_with_huge_weights():
    clamp = 1.5
    flow = randomize(ConditionalRealNVP(D, C, num_layers=2, hidden_features=16, clamp=clamp), 0, gain=1e4)
    x, ctx = data(0, 8, 5, torch.float32)
    x, ctx = 100 * x, 100 * ctx
    with torch.no_grad():
        for m in flow.modules():  # huge log-scales, no shifts (huge shifts would overflow x itself)
            if isinstance(m, SoftClampAffineCoupling):
                m.conditioner.output_layer.weight[: m.num_transform_features] = 0
                m.conditioner.output_layer.bias[: m.num_transform_features] = 0
        for m in flow.modules():
            if isinstance(m, SoftClampAffineCoupling):
                ident = x[..., D // 2 :] if m.transform_first else x[..., : D // 2]
                raw = m.conditioner(ident, ctx)[..., m.num_transform_features :]
                assert raw.abs().max() > 100 * clamp  # the clamp really is active
                _, log_scale = m.shift_and_log_scale(ident, ctx)
                assert log_scale.abs().max() <= clamp * (1 + 1e-6)
        logdet = flow.log_prob(x, ctx) - standard_normal_log_prob(flow.inverse(x, ctx))
    # each block transforms every feature once: |log det| <= layers * D * clamp
    assert torch.isfinite(logdet).all() and logdet.abs().max() <= 2 * D * clamp * (1 + 1e-5)


# -- the shared-context computation against plain per-sample references ----------------------------
class _ConcatMLP(nn.Module):
    """Plain conditioner on cat([x_id, context]) with one first Linear, as nflows calls it."""

    def __init__(self, mine):
        super().__init__()
        w_x, w_c = mine.input_layer.weight, mine.context_layer.weight
        first = nn.Linear(w_x.shape[1] + w_c.shape[1], w_x.shape[0], dtype=w_x.dtype)
        with torch.no_grad():
            first.weight.copy_(torch.cat([w_x, w_c], 1))
            first.bias.copy_(mine.context_layer.bias)
        self.net = nn.Sequential(first, nn.ReLU(), mine.hidden_layer, nn.ReLU(), mine.output_layer)

    def forward(self, inputs, context):
        return self.net(torch.cat([inputs, context], dim=-1))


class _SoftClampNflowsCoupling(AffineCouplingTransform):
    def __init__(self, mask, net, clamp):
        super().__init__(mask, lambda i, o: net)
        self.clamp = clamp

    def _scale_and_shift(self, params):
        n = self.num_transform_features
        return torch.exp(soft_clamp(params[:, n:], self.clamp)), params[:, :n]


class _NflowsAdditive(AffineCouplingTransform):
    def __init__(self, mask, net):
        super().__init__(mask, lambda i, o: net)

    def _transform_dim_multiplier(self):
        return 1

    def _scale_and_shift(self, params):
        return torch.ones_like(params), params


def _mask(coupling):
    mask = torch.zeros(coupling.features)
    if coupling.transform_first:
        mask[: coupling.features // 2] = 1
    else:
        mask[coupling.features // 2 :] = 1
    return mask


def nflows_reference(flow) -> CompositeTransform:
    """The same flow assembled from nflows' stock pieces (context repeated per row)."""
    pieces = []
    for m in flow._transform._transforms:
        if isinstance(m, SoftClampAffineCoupling):
            pieces.append(_SoftClampNflowsCoupling(_mask(m), _ConcatMLP(m.conditioner), m.clamp))
        elif isinstance(m, AdditiveCoupling):
            pieces.append(_NflowsAdditive(_mask(m), _ConcatMLP(m.conditioner)))
        elif isinstance(m, FixedPermutation):
            pieces.append(Permutation(m.permutation))
        elif isinstance(m, ActNorm):
            ref = NflowsActNorm(m.features).double()
            with torch.no_grad():
                ref.initialized.fill_(True)
                ref.log_scale.copy_(m.log_scale)
                ref.shift.copy_(m.shift)
            pieces.append(ref)
        elif isinstance(m, LULinear):
            ref = NflowsLULinear(m.features, identity_init=True).double()
            lower, upper = m.factors()
            with torch.no_grad():
                ref.lower_entries.copy_(lower[ref.lower_indices[0], ref.lower_indices[1]])
                ref.upper_entries.copy_(upper[ref.upper_indices[0], ref.upper_indices[1]])
                diag = torch.diagonal(upper) - ref.eps  # nflows: softplus(u) + eps
                ref.unconstrained_upper_diag.copy_(torch.log(torch.expm1(diag)))
                ref.bias.copy_(m.bias)
            pieces.append(ref)
        else:
            raise AssertionError(type(m))
    return CompositeTransform(pieces).to(torch.float64)


@pytest.mark.parametrize("kind", KINDS)
def test_shared_context_equals_repeated_context_reference(kind):
    flow = small_flow(kind, layers=3, seed=1)
    ref = nflows_reference(flow)
    x, ctx = data(9, 4, 5)
    flat_ctx = ctx.repeat_interleave(5, dim=0)
    with torch.no_grad():
        z_ref, ld_ref = ref(x.reshape(-1, D), flat_ctx)
        torch.testing.assert_close(flow.inverse(x, ctx), z_ref.reshape(4, 5, D), atol=1e-12, rtol=1e-10)
        logp_ref = (standard_normal_log_prob(z_ref) + ld_ref).reshape(4, 5)
        torch.testing.assert_close(flow.log_prob(x, ctx), logp_ref, atol=1e-10, rtol=1e-10)
        with warnings.catch_warnings():  # nflows' LULinear.inverse uses the deprecated triangular_solve
            warnings.simplefilter("ignore", UserWarning)
            x_ref, ild_ref = ref.inverse(x.reshape(-1, D), flat_ctx)
        xs, logp = flow.transform_and_log_prob(x, ctx)
        torch.testing.assert_close(xs, x_ref.reshape(4, 5, D), atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(logp, standard_normal_log_prob(x) - ild_ref.reshape(4, 5))


def test_gradients_match_repeated_context_reference():
    flow = small_flow("realnvp", layers=2, seed=2)
    ref = nflows_reference(flow)
    x, ctx = data(1, 3, 4)
    ctx_a, ctx_b = ctx.clone().requires_grad_(), ctx.clone().requires_grad_()
    flow.log_prob(x, ctx_a).sum().backward()
    z, ld = ref(x.reshape(-1, D), ctx_b.repeat_interleave(4, dim=0))
    (standard_normal_log_prob(z) + ld).sum().backward()
    torch.testing.assert_close(ctx_a.grad, ctx_b.grad, atol=1e-10, rtol=1e-10)
    first = next(m for m in flow.modules() if isinstance(m, SoftClampAffineCoupling)).conditioner
    assert first.context_layer.weight.grad is not None
    flow.zero_grad()


def test_couplings_compose_with_nflows_stock_transforms():
    coupling = randomize(SoftClampAffineCoupling(D, C, transform_first=False, hidden_features=8), 4).double()
    composite = CompositeTransform([coupling, ReversePermutation(D), LULinear(D).double()])
    x, ctx = data(6, 5, None)
    with torch.no_grad():
        z, logdet = composite(x, ctx)
        x_back, inv_logdet = composite.inverse(z, ctx)
        torch.testing.assert_close(x_back, x)
        torch.testing.assert_close(inv_logdet, -logdet)
        torch.testing.assert_close(logdet, coupling(x, ctx)[1])


# -- learning -----------------------------------------------------------------------------------
def test_learns_a_conditional_gaussian_to_its_entropy():
    # x | c ~ N(A c + b, L L^T): true conditional entropy 0.5 D log(2 pi e) + log|det L|.
    A = torch.tensor([[1.0, -0.5], [0.3, 0.8]])
    b = torch.tensor([0.2, -0.1])
    L = torch.tensor([[0.5, 0.0], [0.3, 0.2]])
    entropy = math.log(2 * math.pi * math.e) + math.log(0.5 * 0.2)
    g = torch.Generator().manual_seed(0)

    def draw(n):
        c = torch.rand(n, 2, generator=g) * 2 - 1
        return c @ A.T + b + torch.randn(n, 2, generator=g) @ L.T, c

    with torch.random.fork_rng():  # deterministic initialisation without touching the caller's RNG
        torch.manual_seed(0)
        flow = ConditionalRealNVP(2, 2, num_layers=2, hidden_features=32)
    opt = torch.optim.Adam(flow.parameters(), lr=5e-3)
    for _ in range(300):
        x, c = draw(256)
        loss = -flow.log_prob(x, c).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, c = draw(20_000)
    with torch.no_grad():
        nll = -flow.log_prob(x, c).mean().item()
    assert -0.03 < nll - entropy < 0.1, (nll, entropy)


# -- size -----------------------------------------------------------------------------------------
def test_paper_configuration_has_about_36m_parameters():
    features, context, blocks, hidden = 132, 979, 8, 1024
    half = features // 2
    conditioner = (half + context) * hidden + hidden + hidden * hidden + hidden + hidden * 2 * half + 2 * half
    expected = blocks * 2 * conditioner
    with torch.device("meta"):
        flow = build_flow(FlowConfig(), features, context)
    assert sum(p.numel() for p in flow.parameters()) == expected
    assert 35.5e6 < expected < 36.5e6
    actnorm, lu = 2 * features, features * features + features
    glow_coupling = (half + context) * hidden + hidden + (hidden * hidden + hidden) + (hidden * half + half)
    with torch.device("meta"):
        glow = build_flow(FlowConfig(kind="glow", num_layers=4), features, context)
    assert sum(p.numel() for p in glow.parameters()) == 4 * (actnorm + lu + glow_coupling)


def test_permutations_are_fixed_and_touch_no_global_rng():
    state = torch.random.get_rng_state()
    p1 = seeded_permutation(132, 3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(p1, seeded_permutation(132, 3))
    assert torch.equal(torch.sort(p1).values, torch.arange(132))
    a, b = (ConditionalRealNVP(8, 2, num_layers=3, hidden_features=4) for _ in range(2))
    perms = [[m.permutation for m in f.modules() if isinstance(m, FixedPermutation)] for f in (a, b)]
    assert all(torch.equal(u, v) for u, v in zip(*perms))
    assert not torch.equal(perms[0][0], perms[0][1])


# -- validation ---------------------------------------------------------------------------------
def _bad_calls():
    x, ctx = data(0, 3, None, torch.float32)
    nan_x = x.clone()
    nan_x[1, 2] = float("nan")
    nan_ctx = ctx.clone()
    nan_ctx[0, 0] = float("inf")
    return [
        ("x", lambda f: f.log_prob(torch.randn(3, D + 1), ctx)),
        ("x", lambda f: f.log_prob(torch.randn(3, 2, 2, D), ctx)),
        ("context", lambda f: f.log_prob(x, torch.randn(3, C + 2))),
        ("context", lambda f: f.log_prob(x, torch.randn(4, C))),
        ("context", lambda f: f.transform(torch.randn(3, 5, D), torch.randn(2, C))),
        ("context", lambda f: f.sample(2, torch.randn(C))),
        ("context", lambda f: f.mode(torch.randn(3, C + 1))),
        ("context", lambda f: f.log_prob(x, ctx.double())),
        ("context", lambda f: f.log_prob(x, None)),
        ("x", lambda f: f.log_prob(nan_x, ctx)),
        ("context", lambda f: f.log_prob(x, nan_ctx)),
        ("context", lambda f: f.sample(2, nan_ctx)),
        ("z", lambda f: f.transform(nan_x, ctx)),
        ("num_samples", lambda f: f.sample(0, ctx)),
        ("num_samples", lambda f: f.sample_and_log_prob(2.5, ctx)),
    ]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_inputs_raise_value_error_naming_the_argument(kind, case):
    flow = small_flow(kind, torch.float32)
    name, call = _bad_calls()[case]
    with pytest.raises(ValueError, match=rf"^{name}:"):
        call(flow)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("kind", lambda: FlowConfig(kind="maf")),
        ("num_layers", lambda: FlowConfig(num_layers=0)),
        ("hidden_features", lambda: FlowConfig(hidden_features=-1)),
        ("clamp", lambda: FlowConfig(clamp=float("nan"))),
        ("clamp", lambda: FlowConfig(kind="glow", clamp=3.0)),  # Glow has no clamp: not ignored
        ("permutation_seed", lambda: FlowConfig(kind="glow", permutation_seed=1)),  # nor permutations
        ("permutation_seed", lambda: FlowConfig(permutation_seed=-1)),
        ("zero_init", lambda: FlowConfig(zero_init="yes")),
        ("clamp", lambda: ConditionalRealNVP(D, C, clamp=0.0)),
        ("features", lambda: ConditionalRealNVP(1, C)),
        ("context_features", lambda: ConditionalGlow(D, 0)),
        ("permutation", lambda: FixedPermutation(torch.tensor([0, 0, 1]))),
        ("config", lambda: build_flow({"kind": "realnvp"}, D, C)),
    ],
)
def test_bad_construction_raises_value_error(name, make):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        make()


def test_soft_clamp_slope_at_zero_is_two_over_pi_and_scaling_the_input_gives_freia_0_2s_clamp():
    alpha = 2.0
    s = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (slope,) = torch.autograd.grad(soft_clamp(s, alpha).sum(), s)
    assert float(slope) == pytest.approx(2 / math.pi, rel=1e-12)
    # FrEIA 0.2's GLOWCouplingBlock, clamp_activation="ATAN": clamp * 0.636 * atan(s_raw)
    u = torch.linspace(-50, 50, 1001, dtype=torch.float64)
    freia = alpha * 0.636 * torch.atan(u)
    ours = soft_clamp(alpha * u, alpha)
    torch.testing.assert_close(ours * (0.636 * math.pi / 2), freia, rtol=1e-12, atol=0)
