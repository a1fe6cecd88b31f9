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

__all__ = ["nll_loss", "orthonormal_loss", "shape_loss", "keypoint_2d_loss"]


def _tensor(name: str, x, expected: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a torch.Tensor of shape {expected}, found {type(x).__name__}")
    return x


def _no_nan(name: str, x: Tensor) -> None:
    if x.is_floating_point() and bool(torch.isnan(x).any()):
        raise ValueError(f"{name}: expected finite values, found NaN")


def nll_loss(log_prob: Tensor) -> Tensor:
    """Negative log-likelihood (Eq. 5, ``L_NLL``), averaged.

    Args:
        log_prob: ``(B,)`` or ``(B, S)`` log-likelihoods of the ground-truth poses.

    Returns:
        Scalar ``-mean(log_prob)``.
    """
    _tensor("log_prob", log_prob, "(B,) or (B, S)")
    if log_prob.dim() not in (1, 2) or log_prob.numel() == 0:
        raise ValueError(f"log_prob: expected a non-empty (B,) or (B, S) tensor, "
                         f"found {tuple(log_prob.shape)}")
    _no_nan("log_prob", log_prob)
    return -log_prob.mean()


def orthonormal_loss(rot6d: Tensor) -> Tensor:
    """Orthonormality regulariser of 6D rotations (``L_orth``, ProHMR).

    With ``M = rot6d.reshape(..., 3, 2)`` (the two columns, see :mod:`humr.rotations`), the
    loss is the mean over all entries of ``(M^T M - I_2)^2``: 0 exactly when both columns
    are unit vectors and orthogonal.

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


def shape_loss(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Shape loss (Eq. 5, ``L_beta``): mean squared error over the valid samples.

    Args:
        pred: ``(B, P)`` predicted shape coefficients.
        target: ``(B, P)`` ground truth.
        valid: optional ``(B,)`` bool or 0/1 weights; None means all valid.

    Returns:
        Scalar: ``sum_b valid_b |pred_b - target_b|^2 / (P sum_b valid_b)``, i.e. the mean
        over the entries of the valid rows; exactly 0, with a gradient path, when no row is
        valid. (Eq. 5's squared norm is this times ``P``; the loss weight absorbs it.)
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
    den = w.sum() * p
    return (w[:, None] * sq).sum() / torch.where(den > 0, den, torch.ones_like(den))


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
