"""Maximum Mean Discrepancy between sample sets (paper Sec. 4.2, Eq. 4 and 8).

All functions are batched over leading dimensions, differentiable, and device/dtype
agnostic. A kernel is any callable ``kernel(x (..., N, D), y (..., M, D)) -> (..., N, M)``;
use ``functools.partial`` to fix its parameters.

For radial kernels (the built-in ones) ``mmd2`` runs a fused path: the three Gram blocks
are computed without autograd, together with the kernel's derivative, and the backward is
explicit sums over pairs (see :class:`_FusedRadialMMD`). This keeps one ``(N, M)`` array
per block in memory instead of every elementwise intermediate of the kernel. Other
kernels go through autograd on the joint ``(N+M) x (N+M)`` Gram matrix.

Numerics. Both paths take the pairwise differences from the coordinates as given (no shared
centring, which would erase a small set's spread next to a large one), and the unbiased
estimator zeroes the Gram diagonals instead of subtracting them from the full sums. The fused
value then matches the plain one to float rounding at every scale. Inputs must be finite and,
so that every pairwise difference is finite too, at most half the dtype's largest value in
magnitude (``1.7e38`` in float32); anything else raises ``ValueError``.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> pred, target = torch.randn(4, 17, 25, 2, generator=g), torch.randn(4, 17, 25, 2, generator=g)
    >>> mmd2(pred, target).shape
    torch.Size([4, 17])
    >>> round(float(joint_mmd(pred, pred, unbiased=False)), 6)
    0.0
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

__all__ = [
    "squared_distances",
    "imq_kernel",
    "gaussian_kernel",
    "IMQKernel",
    "GaussianKernel",
    "mmd2",
    "joint_mmd",
]

Kernel = Callable[[Tensor, Tensor], Tensor]


def _coordinate_limit(dtype: torch.dtype) -> float:
    """Largest magnitude whose pairwise differences stay finite: half the dtype's maximum."""
    dtype = dtype if dtype.is_floating_point else torch.get_default_dtype()
    return torch.finfo(dtype).max / 2


def _check_finite(
    named: Sequence[tuple[str, Tensor]],
    hints: dict[str, str] | None = None,
    extra: Sequence[tuple[Tensor, str]] = (),
) -> None:
    """Raise ``ValueError`` naming the first tensor with a NaN, an infinity or a coordinate beyond
    :func:`_coordinate_limit`, or the message of the first ``extra`` (ok flag, message) whose flag is
    False; one host synchronisation for all of them."""
    named = [(name, t) for name, t in named if t.is_floating_point()]  # integers are finite
    flags = [(t.abs() <= _coordinate_limit(t.dtype)).all() for _, t in named] + [ok for ok, _ in extra]
    if not flags or bool(torch.stack(flags).all()):
        return
    for (name, t), ok in zip(named, flags):
        if not bool(ok):
            bad = t[~(t.abs() <= _coordinate_limit(t.dtype))]
            found = "NaN" if bool(bad.isnan().any()) else ("inf" if bool(bad.isinf().any()) else
                                                            f"{float(bad.abs().max()):.3g}")
            raise ValueError(f"{name}: expected finite values of magnitude <= "
                             f"{_coordinate_limit(t.dtype):.3g}, found {found}{(hints or {}).get(name, '')}")
    for ok, message in extra:
        if not bool(ok):
            raise ValueError(message)


def _check_sets(x: Tensor, y: Tensor, xname: str = "x", yname: str = "y", finite: bool = True) -> None:
    for name, t in ((xname, x), (yname, y)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor of shape (..., N, D), "
                             f"found {type(t).__name__}")
        if t.dim() < 2:
            raise ValueError(f"{name}: expected shape (..., N, D), found {tuple(t.shape)}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"{yname}: expected point dimension D = {x.shape[-1]} (from {xname}), "
                         f"found shape {tuple(y.shape)}")
    if x.device != y.device:
        raise ValueError(f"{yname}: expected device {x.device} (from {xname}), found {y.device}")
    if finite:
        _check_finite(((xname, x), (yname, y)))


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """Pairwise squared Euclidean distances ``(..., N, D), (..., M, D) -> (..., N, M)``.

    For low dimensions (D <= 4, the 2D keypoints here) the differences are summed per
    coordinate: exact, non-negative and exactly 0 for identical points, without the
    ``(..., N, M, D)`` intermediate (and faster than a matmul with an inner size of 2).
    Higher dimensions use the ``|x|^2 - 2 x.y + |y|^2`` expansion (one batched matmul)
    clamped at 0 against rounding.
    """
    d = x.shape[-1]
    if d <= 4:
        out = None
        for i in range(d):  # loop over coordinates only
            diff = x[..., :, None, i] - y[..., None, :, i]
            out = diff * diff if out is None else out + diff * diff
        return out
    xx = (x * x).sum(-1, keepdim=True)
    yy = (y * y).sum(-1).unsqueeze(-2)
    return (xx - 2.0 * (x @ y.transpose(-1, -2)) + yy).clamp_min(0.0)


def _squared_distances_nograd(x: Tensor, y: Tensor) -> Tensor:
    """:func:`squared_distances` with in-place accumulation, for use without autograd."""
    if x.shape[-1] > 4:
        return squared_distances(x, y)
    out = None
    for i in range(x.shape[-1]):
        diff = x[..., :, None, i] - y[..., None, :, i]
        if out is None:
            out = diff.mul_(diff)
        else:
            out.addcmul_(diff, diff)
    return out


def _as_tuple(value: float | Sequence[float], name: str) -> tuple[float, ...]:
    vals = (float(value),) if isinstance(value, (int, float)) else tuple(float(v) for v in value)
    if len(vals) == 0 or not all(math.isfinite(v) and v > 0 for v in vals):
        raise ValueError(f"{name}: expected finite positive number(s), found {value!r}")
    return vals


class _RadialKernel(abc.ABC):
    """A sum of radial terms of the squared distance, callable as ``kernel(x, y) -> (..., N, M)``."""

    @abc.abstractmethod
    def _terms(self, d2: Tensor) -> Iterator[Tensor]:
        """One ``(..., N, M)`` term per bandwidth of the squared distances ``d2``."""

    def __call__(self, x: Tensor, y: Tensor) -> Tensor:
        _check_sets(x, y)
        d2 = squared_distances(x, y)
        out = None
        for term in self._terms(d2):
            out = term if out is None else out + term
        return out


class IMQKernel(_RadialKernel):
    """Mixture of inverse multiquadratics (Eq. 8), ``k = sum_a a^2 / (a^2 + d^2)``.

    Callable as ``kernel(x (..., N, D), y (..., M, D)) -> (..., N, M)``; :meth:`profile`
    gives the value and derivative as functions of the squared distance, which lets
    :func:`mmd2` use its fused path.
    """

    def __init__(self, bandwidths: float | Sequence[float] = (0.05, 0.2, 0.9)) -> None:
        self.bandwidths = _as_tuple(bandwidths, "bandwidths")

    def __repr__(self) -> str:
        return f"IMQKernel(bandwidths={self.bandwidths})"

    def _terms(self, d2: Tensor) -> Iterator[Tensor]:
        return ((a * a) / (d2 + a * a) for a in self.bandwidths)

    def profile(self, d2: Tensor, derivative: bool) -> tuple[Tensor, Tensor | None]:
        """``(k(d2), dk/d(d2) or None)``, elementwise, without autograd (``d2`` is consumed)."""
        k = dk = None
        for a in self.bandwidths:
            a2 = a * a
            r = (d2 + a2).reciprocal_()  # 1 / (a^2 + d^2)
            if k is None:
                k = r * a2
                if derivative:
                    dk = (r * r).mul_(-a2)  # d/d(d2) a^2 / (a^2 + d2) = -a^2 r^2
            else:
                k.add_(r, alpha=a2)
                if derivative:
                    dk.addcmul_(r, r, value=-a2)
        return k, dk


class GaussianKernel(_RadialKernel):
    """Gaussian kernel ``k = sum_s exp(-d^2 / (2 s^2))``; callable like :class:`IMQKernel`."""

    def __init__(self, sigma: float | Sequence[float] = 0.2) -> None:
        self.sigma = _as_tuple(sigma, "sigma")

    def __repr__(self) -> str:
        return f"GaussianKernel(sigma={self.sigma})"

    def _terms(self, d2: Tensor) -> Iterator[Tensor]:
        return (torch.exp(d2 * (-0.5 / (s * s))) for s in self.sigma)

    def profile(self, d2: Tensor, derivative: bool) -> tuple[Tensor, Tensor | None]:
        """``(k(d2), dk/d(d2) or None)``, elementwise, without autograd."""
        k = dk = None
        for s in self.sigma:
            c = -0.5 / (s * s)
            e = torch.exp(d2 * c)
            if k is None:
                k = e
                dk = e * c if derivative else None
            else:
                k = k + e
                if derivative:
                    dk.add_(e, alpha=c)
        return k, dk


def imq_kernel(x: Tensor, y: Tensor, bandwidths: float | Sequence[float] = (0.05, 0.2, 0.9)) -> Tensor:
    """Mixture of inverse multiquadratics (Eq. 8): ``sum_a a^2 / (a^2 + |x - y|^2)``.

    Args:
        x: ``(..., N, D)``; y: ``(..., M, D)``.
        bandwidths: the set ``B`` of scales ``a`` (paper: 0.05, 0.2, 0.9 in crop units).

    Returns:
        ``(..., N, M)``; each term lies in (0, 1], so ``k(x, x) = len(bandwidths)``.
    """
    return IMQKernel(bandwidths)(x, y)


def gaussian_kernel(x: Tensor, y: Tensor, sigma: float | Sequence[float] = 0.2) -> Tensor:
    """Gaussian kernel ``exp(-|x - y|^2 / (2 sigma^2))`` (summed over ``sigma`` if a sequence).

    Args:
        x: ``(..., N, D)``; y: ``(..., M, D)``.
        sigma: standard deviation(s). ``geomloss.SamplesLoss("gaussian", blur=sigma)`` is half
            the biased ``mmd2`` with this kernel.

    Returns:
        ``(..., N, M)``.
    """
    return GaussianKernel(sigma)(x, y)


def _radial(kernel: Kernel):
    """The kernel's radial form (an object with ``profile``) if it has one, else None."""
    if hasattr(kernel, "profile"):
        return kernel
    known = {imq_kernel: IMQKernel, gaussian_kernel: GaussianKernel}
    if kernel in known:
        return known[kernel]()
    if isinstance(kernel, functools.partial) and kernel.func in known and not kernel.args:
        return known[kernel.func](**kernel.keywords)
    return None


class _FusedRadialMMD(torch.autograd.Function):
    """Squared MMD for a radial kernel, three Gram blocks, analytic backward.

    With ``G = dk/d(d^2)`` per block and block weights ``w``, the gradient is
    ``dL/dx_i = 4 w_xx sum_j G_xx,ij (x_i - x_j) + 4 w_xy sum_j G_xy,ij (x_i - y_j)``
    (and symmetrically for y). For ``D <= 4`` the sums take the differences per coordinate
    from the raw inputs (as autograd through the plain kernel would); for larger ``D`` they are
    batched matmuls on coordinates centred per set. Diagonals (``x_i - x_i = 0``) are zeroed,
    so that they neither enter the unbiased sums nor cancel in the matmuls.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, radial, unbiased: bool) -> Tensor:
        n, m = x.shape[-2], y.shape[-2]
        gx, gy = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # No centring here: distances from the raw coordinates, exactly as the plain path.
        kxx, dxx = radial.profile(_squared_distances_nograd(x, x), gx)
        kyy, dyy = radial.profile(_squared_distances_nograd(y, y), gy)
        kxy, dxy = radial.profile(_squared_distances_nograd(x, y), gx or gy)
        if unbiased:  # Eq. 4: sums over i != j. Masking (not subtracting) keeps small sums exact.
            kxx.diagonal(dim1=-2, dim2=-1).zero_()
            kyy.diagonal(dim1=-2, dim2=-1).zero_()
            wxx, wyy = 1.0 / (n * (n - 1)), 1.0 / (m * (m - 1))
        else:
            wxx, wyy = 1.0 / (n * n), 1.0 / (m * m)
        wxy = -1.0 / (n * m)
        for d in (dxx, dyy):
            if d is not None:
                d.diagonal(dim1=-2, dim2=-1).zero_()
        ctx.save_for_backward(x if (gx or gy) else None, y if (gx or gy) else None, dxx, dyy, dxy)
        ctx.weights = (wxx, wyy, wxy)
        sxx, syy, sxy = kxx.sum((-2, -1)), kyy.sum((-2, -1)), kxy.sum((-2, -1))
        return wxx * sxx + wyy * syy + 2.0 * wxy * sxy

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        x, y, dxx, dyy, dxy = ctx.saved_tensors
        wxx, wyy, wxy = ctx.weights
        need_x, need_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if x.shape[-1] <= 4:
            grad_x, grad_y = _pair_sums_per_coordinate(x, y, dxx, dyy, dxy, need_x, need_y)
        else:
            grad_x, grad_y = _pair_sums_matmul(x, y, dxx, dyy, dxy, need_x, need_y)
        g = (4.0 * grad_out)[..., None, None]
        if need_x:
            grad_x = (wxx * grad_x[0] + wxy * grad_x[1]) * g
        if need_y:
            grad_y = (wyy * grad_y[0] + wxy * grad_y[1]) * g
        return grad_x, grad_y, None, None


def _pair_sums_per_coordinate(x, y, dxx, dyy, dxy, need_x: bool, need_y: bool):
    """``(sum_j Gxx_ij (x_i - x_j), sum_j Gxy_ij (x_i - y_j))`` for x and the same for y, from
    per-coordinate differences of the raw inputs (no cancellation between large terms)."""

    def within(p: Tensor, gram: Tensor) -> Tensor:
        cols = []
        for i in range(p.shape[-1]):  # loop over coordinates only
            diff = p[..., :, None, i] - p[..., None, :, i]
            cols.append(diff.mul_(gram).sum(-1))
        return torch.stack(cols, -1)

    cross_x, cross_y = [], []
    for i in range(x.shape[-1]):
        prod = (x[..., :, None, i] - y[..., None, :, i]).mul_(dxy)  # G_ij (x_i - y_j)
        if need_x:
            cross_x.append(prod.sum(-1))
        if need_y:
            cross_y.append(-prod.sum(-2))
    grad_x = (within(x, dxx), torch.stack(cross_x, -1)) if need_x else None
    grad_y = (within(y, dyy), torch.stack(cross_y, -1)) if need_y else None
    return grad_x, grad_y


def _midrange(p: Tensor) -> Tensor:
    """``(..., 1, D)`` centre of the bounding box; max/2 + min/2 cannot overflow."""
    return p.amax(-2, keepdim=True) * 0.5 + p.amin(-2, keepdim=True) * 0.5


def _pair_sums_matmul(x, y, dxx, dyy, dxy, need_x: bool, need_y: bool):
    """:func:`_pair_sums_per_coordinate` by batched matmuls, for large ``D``.

    ``sum_j G_ij (p_i - q_j) = (sum_j G_ij) p_i - (G q)_i`` is translation invariant, so each set
    is centred on its own box centre; the cross terms add the difference of the two centres.
    """
    cx, cy = _midrange(x), _midrange(y)
    xc, yc, delta = x - cx, y - cy, cx - cy  # x_i - y_j = xc_i - yc_j + delta
    grad_x = grad_y = None
    if need_x:
        rows = dxy.sum(-1, keepdim=True)
        shift = torch.where(rows != 0, rows * delta, torch.zeros((), dtype=x.dtype, device=x.device))
        grad_x = (dxx.sum(-1, keepdim=True) * xc - dxx @ xc, rows * xc - dxy @ yc + shift)
    if need_y:
        cols = dxy.sum(-2).unsqueeze(-1)
        shift = torch.where(cols != 0, cols * delta, torch.zeros((), dtype=y.dtype, device=y.device))
        grad_y = (dyy.sum(-1, keepdim=True) * yc - dyy @ yc, cols * yc - dxy.transpose(-1, -2) @ xc - shift)
    return grad_x, grad_y


def _block_weights(n: int, m: int, unbiased: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``(N+M, N+M)`` weights W with ``mmd2 = sum(W * Gram([x; y]))``."""
    w = torch.empty(n + m, n + m, dtype=dtype, device=device)
    if unbiased:
        w[:n, :n] = 1.0 / (n * (n - 1))
        w[n:, n:] = 1.0 / (m * (m - 1))
        w.fill_diagonal_(0.0)  # Eq. 4: within-set sums over i != j
    else:
        w[:n, :n] = 1.0 / (n * n)
        w[n:, n:] = 1.0 / (m * m)
    w[:n, n:] = -1.0 / (n * m)  # the cross term -2/(nm) sum k(x_i, y_j), split over two blocks
    w[n:, :n] = -1.0 / (n * m)
    return w


def mmd2(x: Tensor, y: Tensor, kernel: Kernel = imq_kernel, unbiased: bool = True) -> Tensor:
    """Squared MMD between sample sets ``x`` and ``y`` (Eq. 4).

    Args:
        x: ``(..., N, D)``, y: ``(..., M, D)`` with broadcastable leading dimensions.
        kernel: ``kernel(a (..., P, D), b (..., Q, D)) -> (..., P, Q)``, symmetric. The
            built-in kernels (``imq_kernel``, ``gaussian_kernel``, ``functools.partial`` of
            them, :class:`IMQKernel`, :class:`GaussianKernel`, or any object with their
            ``profile`` method) take a fused path with an analytic backward (first order
            only); other callables go through autograd on the joint ``(N+M)^2`` Gram matrix.
        unbiased: True: the U-statistic of Eq. 4, within-set sums over ``i != j`` divided by
            ``N(N-1)`` and ``M(M-1)``, cross term ``2/(NM) sum_ij k(x_i, y_j)`` (unbiased,
            can be negative; needs N, M >= 2). False: the V-statistic (diagonals included,
            ``1/N^2``, ``1/M^2``), non-negative for a positive definite kernel.

    Returns:
        ``(...)``.

    Raises:
        ValueError: a NaN, an infinity or a coordinate beyond half the dtype's maximum in ``x`` or
            ``y`` (see the module's Numerics), mismatched shapes or devices, too few samples.
    """
    _check_sets(x, y)
    return _mmd2(x, y, kernel, unbiased)


def _mmd2(x: Tensor, y: Tensor, kernel: Kernel, unbiased: bool) -> Tensor:
    """:func:`mmd2` after the finiteness check."""
    n, m = x.shape[-2], y.shape[-2]
    min_size = 2 if unbiased else 1
    if n < min_size:
        raise ValueError(f"x: expected at least {min_size} samples (unbiased={unbiased}), found shape "
                         f"{tuple(x.shape)}")
    if m < min_size:
        raise ValueError(f"y: expected at least {min_size} samples (unbiased={unbiased}), found shape "
                         f"{tuple(y.shape)}")
    try:
        lead = torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except RuntimeError as err:
        raise ValueError(f"y: expected leading dimensions broadcastable with x's {tuple(x.shape[:-2])}, "
                         f"found {tuple(y.shape[:-2])}") from err
    dtype = torch.promote_types(x.dtype, y.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    d = x.shape[-1]
    x = x.to(dtype).expand(*lead, n, d)
    y = y.to(dtype).expand(*lead, m, d)
    radial = _radial(kernel)
    if radial is not None:
        return _FusedRadialMMD.apply(x, y, radial, unbiased)
    z = torch.cat([x, y], -2)
    gram = kernel(z, z)  # (..., N+M, N+M)
    w = _block_weights(n, m, unbiased, gram.dtype, gram.device)
    return (gram * w).sum((-2, -1))


def joint_mmd(
    pred: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    kernel: Kernel = imq_kernel,
    unbiased: bool = True,
    reduction: str = "active",
) -> Tensor:
    """Joint-wise MMD loss (Sec. 4.2): per-joint ``mmd2``, weighted and reduced over joints.

    Fidelity. The paper computes the MMD per joint (Eq. 4, unbiased) and does not say how the
    per-joint values are combined. The published implementation averages over all ``B x 17``
    entries with the inactive ones counted as 0 (and uses the biased V-statistic); the paper's
    weight 5e-2 was tuned under that reduction, so the objective's default is
    ``reduction="all"`` with the paper's unbiased estimator (``LossConfig.mmd_unbiased``).
    ``"active"`` (the mean over active joints only) is larger by the inverse share of active
    joints.

    Args:
        pred: ``(B, K, N, 2)`` projected hypotheses (crop coordinates).
        target: ``(B, K, M, 2)`` heatmap samples or ground-truth copies (crop coordinates).
        weight: ``(B, K)`` non-negative finite float or bool; None means all ones. A joint is
            active when its weight is > 0. NaN or negative weights are errors.
        kernel: see :func:`mmd2`.
        unbiased: see :func:`mmd2`.
        reduction: ``"active"``: ``sum(w * mmd2) / sum(w)`` over active joints, exactly 0
            (with a gradient path to ``pred``) when none is active. ``"all"``: the reference
            implementation's ``sum(w * mmd2) / (B K)``, inactive entries counted as zero (use
            with ``unbiased=False`` for its biased estimator). ``"none"``: ``(B, K)``,
            ``w * mmd2`` with inactive entries 0.

    Returns:
        A scalar, or ``(B, K)`` for ``reduction="none"``.

    Raises:
        ValueError: naming ``pred``, ``target`` or ``weight`` for a wrong shape or device, a NaN
            or infinite value (coordinates: see :func:`mmd2`), or a negative weight.
    """
    if not isinstance(pred, Tensor) or pred.dim() != 4:
        found = tuple(pred.shape) if isinstance(pred, Tensor) else type(pred).__name__
        raise ValueError(f"pred: expected shape (B, K, N, D), found {found}")
    b, k = pred.shape[:2]
    if not isinstance(target, Tensor) or target.dim() != 4 or tuple(target.shape[:2]) != (b, k) \
            or target.shape[-1] != pred.shape[-1]:
        found = tuple(target.shape) if isinstance(target, Tensor) else type(target).__name__
        raise ValueError(f"target: expected shape ({b}, {k}, M, {pred.shape[-1]}), found {found}")
    if target.device != pred.device:
        raise ValueError(f"target: expected device {pred.device} (from pred), found {target.device}")
    if reduction not in ("active", "all", "none"):
        raise ValueError(f"reduction: expected 'active', 'all' or 'none', found {reduction!r}")
    if weight is None:
        weight = torch.ones(b, k, dtype=pred.dtype, device=pred.device)
    elif not isinstance(weight, Tensor) or tuple(weight.shape) != (b, k):
        found = tuple(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
        raise ValueError(f"weight: expected shape ({b}, {k}), found {found}")
    elif weight.device != pred.device:
        raise ValueError(f"weight: expected device {pred.device} (from pred), found {weight.device}")
    extra = []
    if weight.is_floating_point():  # NaN fails both comparisons
        ok = ((weight >= 0) & (weight <= torch.finfo(weight.dtype).max)).all()
        extra.append((ok, "weight: expected finite non-negative weights, found NaN, inf or a negative value"))
    _check_finite([("pred", pred), ("target", target)],
                  {"target": " (fill invalid samples, e.g. with ground-truth copies)"}, extra)
    weight = weight.to(pred.dtype)
    active = weight > 0
    per = _mmd2(pred, target, kernel, unbiased)  # (B, K)
    zero = torch.zeros((), dtype=per.dtype, device=per.device)
    weighted = torch.where(active, weight * per, zero)
    if reduction == "none":
        return weighted
    if reduction == "all":
        return weighted.sum() / (b * k)
    # Sum of active weights, clamped so that "nothing active" gives 0 / 1 = 0 (still a graph).
    den = torch.where(active, weight, zero).sum()
    return weighted.sum() / torch.where(den > 0, den, torch.ones_like(den))
