"""Pose, shape and keypoint losses of the training objective (paper Sec. 4.4, Eq. 5-7).

Example:
    >>> import torch
    >>> from humr.rotations import axis_angle_to_matrix, matrix_to_rot6d
    >>> rot6d = matrix_to_rot6d(axis_angle_to_matrix(torch.randn(4, 22, 3)))
    >>> float(orthonormal_loss(rot6d)) < 1e-12
    True
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["nll_loss", "orthonormal_loss", "shape_loss", "keypoint_2d_loss", "camera_scale_loss"]


def _tensor(name: str, x, expected: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape {expected}, found {type(x).__name__}")
    return x


def _no_nan(name: str, x: Tensor) -> None:
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        raise ValueError(f"{name}: expected finite values, found NaN")


def nll_loss(log_prob: Tensor, dim: int | None = None) -> Tensor:
    """Negative log-likelihood (Eq. 5, ``L_NLL``), averaged over the batch, optionally per dimension.

    Fidelity. Eq. 5 writes ``L_NLL = -log p(theta | c)``. The published implementation divides it
    by the flow's dimension ``D`` (``mean(-log p) / D``, D = 132 for 22 joints in 6D), and the
    paper's weight 0.1 was tuned with that division; summed over D, the term is D times stronger
    relative to every other loss. The objective passes ``dim = D`` by default
    (``LossConfig.nll_per_dimension``). (The reference also leaves out the constant
    ``0.5 log(2 pi)`` per dimension of the Gaussian log-density; a constant has no gradient.)

    Args:
        log_prob: ``(B,)`` or ``(B, S)`` log-likelihoods of the ground-truth poses.
        dim: None: ``-mean(log_prob)``; an int ``D >= 1``: ``-mean(log_prob) / D``.

    Returns:
        Scalar.
    """
    _tensor("log_prob", log_prob, "(B,) or (B, S)")
    if log_prob.dim() not in (1, 2) or log_prob.numel() == 0:
        raise ValueError(f"log_prob: expected a non-empty (B,) or (B, S) tensor, "
                         f"found {tuple(log_prob.shape)}")
    if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
        raise ValueError(f"dim: expected None or a positive int (the flow's dimension), found {dim!r}")
    _no_nan("log_prob", log_prob)
    nll = -log_prob.mean()
    return nll if dim is None else nll / dim


def orthonormal_loss(rot6d: Tensor) -> Tensor:
    """Orthonormality regulariser of 6D rotations (``L_orth``, ProHMR).

    With ``M = rot6d.reshape(..., 3, 2)`` (the two columns, see :mod:`humr.rotations`), the
    loss is the mean over all entries of ``(M^T M - I_2)^2``: 0 exactly when both columns
    are unit vectors and orthogonal.

    Fidelity. The paper only names ``L_orth`` (following ProHMR). The published implementation
    applies it as ``w L(mode) + w L(random samples)``, each a mean over its own hypotheses, so
    the mode weighs as much as all random samples together; the objective does the same by
    default (``LossConfig.orth_reduction="split"``; ``"joint"`` is one mean over all).

    Args:
        rot6d: ``(..., 6)``.

    Returns:
        Scalar.
    """
    _tensor("rot6d", rot6d, "(..., 6)")
    if rot6d.dim() < 1 or rot6d.shape[-1] != 6 or rot6d.numel() == 0:
        raise ValueError(f"rot6d: expected a non-empty tensor of shape (..., 6), found {tuple(rot6d.shape)}")
    m = rot6d.reshape(*rot6d.shape[:-1], 3, 2)
    eye = torch.eye(2, dtype=rot6d.dtype, device=rot6d.device)
    return ((m.transpose(-1, -2) @ m - eye) ** 2).mean()


def shape_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None, reduction: str = "sum") -> Tensor:
    """Shape loss (Eq. 5, ``L_beta``): squared error over the valid samples.

    Fidelity. Eq. 5 is the squared norm ``|beta - beta_hat|^2``, i.e. summed over the
    coefficients; the published implementation sums over its 11 coefficients and averages over
    the batch, the normalisation that the weight 5e-4 goes with. That is the default
    (``LossConfig.shape_reduction``); ``"mean"`` (the mean over coefficients too) is ``P`` times
    weaker at the same weight.

    Args:
        pred: ``(B, P)`` predicted shape coefficients.
        target: ``(B, P)`` ground truth.
        valid: optional ``(B,)`` bool or 0/1 weights; None means all valid.
        reduction: ``"sum"``: ``sum_b valid_b |pred_b - target_b|^2 / sum_b valid_b``; ``"mean"``:
            that divided by ``P`` (the mean over the entries of the valid rows).

    Returns:
        Scalar; exactly 0, with a gradient path, when no row is valid.
    """
    _tensor("pred", pred, "(B, P)")
    if pred.dim() != 2:
        raise ValueError(f"pred: expected shape (B, P), found {tuple(pred.shape)}")
    _tensor("target", target, f"{tuple(pred.shape)}")
    if target.shape != pred.shape:
        raise ValueError(f"target: expected shape {tuple(pred.shape)} (from pred), "
                         f"found {tuple(target.shape)}")
    if target.device != pred.device:
        raise ValueError(f"target: expected device {pred.device} (from pred), found {target.device}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction: expected 'sum' or 'mean', found {reduction!r}")
    b, p = pred.shape
    if valid is None:
        w = torch.ones(b, dtype=pred.dtype, device=pred.device)
    else:
        _tensor("valid", valid, f"({b},)")
        if tuple(valid.shape) != (b,):
            raise ValueError(f"valid: expected shape ({b},), found {tuple(valid.shape)}")
        if valid.device != pred.device:
            raise ValueError(f"valid: expected device {pred.device} (from pred), found {valid.device}")
        w = valid.to(pred.dtype)
    _no_nan("pred", pred)
    # Rows that are not valid may hold garbage (even NaN): replace their target by the
    # (detached) prediction so that neither the value nor the gradient sees it.
    tgt = torch.where((w > 0)[:, None], target.to(pred.dtype), pred.detach())
    sq = (pred - tgt) ** 2
    den = w.sum() * (p if reduction == "mean" else 1)
    return (w[:, None] * sq).sum() / torch.where(den > 0, den, torch.ones_like(den))


def camera_scale_loss(scale: Tensor) -> Tensor:
    """Camera-scale regulariser ``mean(exp(-10 s)^2)`` of weak-perspective scales ``s``.

    Not in the paper; the published implementation adds it (unweighted) over all hypotheses'
    scales, which keeps ``s`` away from 0 (the weak-perspective to perspective conversion divides
    by ``s``). All hypotheses of an image share one camera, so the mean over images equals the
    mean over hypotheses. ``exp(-20 s)`` overflows float32 for ``s < -4.4``.

    Args:
        scale: ``(B,)`` or ``(B, S)`` raw (unclamped) scales.

    Returns:
        Scalar ``mean(exp(-20 s))``.
    """
    _tensor("scale", scale, "(B,) or (B, S)")
    if scale.dim() not in (1, 2) or scale.numel() == 0 or not scale.is_floating_point():
        raise ValueError(f"scale: expected a non-empty float (B,) or (B, S) tensor, found "
                         f"{tuple(scale.shape)} {scale.dtype}")
    _no_nan("scale", scale)
    return torch.exp(-20.0 * scale).mean()


def keypoint_2d_loss(pred: Tensor, target: Tensor, confidence: Tensor) -> Tensor:
    """Confidence-weighted l1 loss on 2D keypoints (Eq. 6, ``L_2D``), for the mode only.

    Args:
        pred: ``(B, K, 2)`` projected keypoints of the mode (crop coordinates).
        target: ``(B, K, 2)`` ground-truth keypoints (crop coordinates).
        confidence: ``(B, K)`` non-negative weights (0 for missing keypoints, whose target
            may then be NaN).

    Returns:
        Scalar: ``mean_b sum_k confidence_bk (|dx| + |dy|)``, a per-image sum over
        keypoints and coordinates averaged over images (ProHMR's normalisation, the one the
        paper's weight 1e-2 goes with).
    """
    _tensor("pred", pred, "(B, K, 2)")
    if pred.dim() != 3 or pred.shape[-1] != 2 or pred.shape[0] == 0:
        raise ValueError(f"pred: expected a non-empty tensor of shape (B, K, 2), found {tuple(pred.shape)}")
    b, k, _ = pred.shape
    _tensor("target", target, f"({b}, {k}, 2)")
    if tuple(target.shape) != (b, k, 2):
        raise ValueError(f"target: expected shape ({b}, {k}, 2), found {tuple(target.shape)}")
    _tensor("confidence", confidence, f"({b}, {k})")
    if tuple(confidence.shape) != (b, k):
        raise ValueError(f"confidence: expected shape ({b}, {k}), found {tuple(confidence.shape)}")
    for name, t in (("target", target), ("confidence", confidence)):
        if t.device != pred.device:
            raise ValueError(f"{name}: expected device {pred.device} (from pred), found {t.device}")
    _no_nan("pred", pred)
    _no_nan("confidence", confidence)
    conf = confidence.to(pred.dtype)
    # Missing keypoints may have NaN targets: replace them by the detached prediction.
    tgt = torch.where((conf > 0)[..., None], target.to(pred.dtype), pred.detach())
    l1 = (pred - tgt).abs().sum(-1)  # (B, K)
    return (conf * l1).sum() / b
