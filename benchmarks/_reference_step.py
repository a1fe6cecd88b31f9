"""The training step computed the published reference implementation's way, for benchmarks.

Same losses, same random draws and the same values as
:func:`humr.training.objective.training_losses` (up to float rounding), but with the two costs
the reference pays every step (``docs/design.md``). It lives beside the benchmark that uses it
(``bench_train_step.py``) and composes the objective's public pieces
(:func:`~humr.training.objective.flow_nll`, :func:`~humr.training.objective.hypothesis_terms`,
:func:`~humr.training.objective.mask_loss_arguments`,
:func:`~humr.training.objective.weighted_total`), replacing two of them:

- every hypothesis goes through the body's full forward (for SMPL-X: linear blend skinning of
  all 10,475 vertices of each of the ``B x (1 + n)`` bodies) and its keypoints are read from the
  skinned mesh (:meth:`~humr.bodies.base.BodyModel.keypoints_from_output`), instead of forward
  kinematics plus the few vertex keypoints;
- whether a hypothesis lies outside the person mask is decided from its distances to every
  pixel of the mask (a ``(B, K n, H W)`` matrix, ``64 x 425 x 50,176`` at the paper's sizes)
  instead of one bilinear read of a precomputed distance map.

Mask rule. A point is inside when it lies on a mask pixel: its Chebyshev distance to some mask
pixel centre, in units of half a pixel, is at most 1 (mask pixels are the distance map's zero
cells). The library's look-up (distance-map value above half a cell) gives the same decision
wherever the 2 x 2 cells around the point are all mask or all background; the two rules differ
only within a pixel of the mask's boundary. Everything after that decision (in-mask heatmap
samples as targets, the nearest one, the l1 loss and its normalisation) is
:func:`humr.losses.mask.mask_loss`'s definition, computed here with brute-force distances too.

:func:`reference_hypotheses` is a deliberate parallel of :meth:`HumrModel.decode
<humr.model.humr_model.HumrModel.decode>`: its point is to compute the keypoints another way
(and to keep the flow's dtype throughout, as the reference does).

Example (from ``benchmarks/``, or with it on ``sys.path``)::

    from _reference_step import reference_training_losses
    losses = reference_training_losses(model, batch, config.loss)
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from humr.cameras import weak_to_full_translation
from humr.config import LossConfig
from humr.losses.mask import default_tolerance
from humr.model.humr_model import HumrModel
from humr.model.hypotheses import Hypotheses
from humr.rotations import rot6d_to_matrix
from humr.training.objective import (
    LossTerms,
    flow_nll,
    hypothesis_terms,
    mask_loss_arguments,
    weighted_total,
)

__all__ = ["reference_hypotheses", "pixel_mask_inside", "reference_mask_loss", "reference_training_losses"]


def reference_hypotheses(
    model: HumrModel,
    batch: Mapping[str, Tensor],
    num_samples: int,
    generator: torch.Generator | None = None,
    context: Tensor | None = None,
) -> Hypotheses:
    """:meth:`HumrModel.forward` with keypoints read from full meshes of every hypothesis.

    Returns the same :class:`Hypotheses` (``keypoints_3d (B, 1 + n, 17, 3)``, ``keypoints_2d
    (B, 1 + n, 17, 2)``, ...) and draws the same latents from ``generator``.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples: expected >= 0, found {num_samples}")
    if context is None:
        context = model.condition(batch)
    z = model.latents(context, num_samples, generator)
    pose6d = model.flow.transform(z, context) + model.pose_offset.to(context.dtype)
    rotmat = rot6d_to_matrix(pose6d.reshape(*pose6d.shape[:2], model.num_pose_joints, 6))
    regressed_shape, regressed_camera = model.head(context)
    shape = model.body.constrain_shape(regressed_shape)
    camera = model.clamp_camera(regressed_camera)
    samples = pose6d.shape[1]
    output = model.body(rotmat, shape[:, None].expand(-1, samples, -1))  # every vertex of every body
    keypoints_3d = model.body.keypoints_from_output(output, "coco17")
    keypoints_2d = model.project(keypoints_3d, camera, batch)
    translation = weak_to_full_translation(
        camera, batch["center"], batch["box_size"], batch["focal"], batch["image_size"]
    )
    return Hypotheses(
        pose6d=pose6d,
        rotmat=rotmat,
        log_prob=None,
        shape=shape,
        regressed_shape=regressed_shape,
        camera=camera,
        translation=translation,
        keypoints_3d=keypoints_3d,
        keypoints_2d=keypoints_2d,
        regressed_camera=regressed_camera,
    )


def pixel_mask_inside(points: Tensor, distance_map: Tensor, extent: float = 1.0, chunk: int = 4) -> Tensor:
    """Whether each point lies on a mask pixel, from its distances to every pixel of the mask.

    Args:
        points: ``(B, P, 2)`` crop coordinates ``(x, y)``.
        distance_map: ``(B, H, W)`` covering ``[-extent, extent]^2``; its zero cells are the mask.
        extent: half side of the square the map covers.
        chunk: images per ``(chunk, P, H W)`` distance block (the reference held all ``B`` at once).

    Returns:
        ``(B, P)`` bool: some mask pixel centre ``c`` has ``|x - c_x| <= w/2`` and ``|y - c_y| <= h/2``
        (``w, h`` the pixel sides). Points outside the square are never inside.
    """
    if points.dim() != 3 or points.shape[-1] != 2:
        raise ValueError(f"points: expected shape (B, P, 2), found {tuple(points.shape)}")
    if distance_map.dim() != 3 or distance_map.shape[0] != points.shape[0]:
        raise ValueError(
            f"distance_map: expected shape ({points.shape[0]}, H, W), found {tuple(distance_map.shape)}"
        )
    if distance_map.device != points.device:
        raise ValueError(
            f"distance_map: expected device {points.device} (from points), found {distance_map.device}"
        )
    if chunk < 1:
        raise ValueError(f"chunk: expected >= 1, found {chunk}")
    b, h, w = distance_map.shape
    half_w, half_h = extent / w, extent / h
    dtype = points.dtype if points.is_floating_point() else torch.float32
    # Coordinates in half-pixel units, so that "on the pixel" is a Chebyshev distance of at most 1.
    # Pixel centres -extent + (2j + 1) half_w, divided by half_w: 2j + 1 - w.
    cx = (torch.arange(w, device=points.device, dtype=dtype) * 2 + 1) - w
    cy = (torch.arange(h, device=points.device, dtype=dtype) * 2 + 1) - h
    background = (distance_map != 0).reshape(b, h * w)
    # Background pixels get an infinite centre: their distance is inf without a masking pass.
    gx = torch.where(background, float("inf"), cx.repeat(h))  # (B, H W), row-major pixels
    gy = torch.where(background, float("inf"), cy.repeat_interleave(w))
    p = points.detach().to(dtype)
    x, y = p[..., 0:1] / half_w, p[..., 1:2] / half_h  # (B, P, 1)
    parts = []
    for i in range(0, b, chunk):  # chunks of images: memory, not a per-image loop
        sl = slice(i, i + chunk)
        d = (x[sl] - gx[sl, None]).abs_()  # (c, P, H W)
        d = torch.maximum(d, (y[sl] - gy[sl, None]).abs_(), out=d)
        parts.append(d.amin(-1) <= 1.0)
    return torch.cat(parts)


def reference_mask_loss(
    pred: Tensor,
    heatmap_samples: Tensor,
    sample_mask_distance: Tensor,
    distance_map: Tensor,
    apply: Tensor,
    extent: float = 1.0,
    tolerance: float | None = None,
    sample_valid: Tensor | None = None,
    same_joint: bool = True,
    reduction: str = "reference",
    keypoints: Tensor | None = None,
    keypoints_valid: Tensor | None = None,
    chunk: int = 4,
) -> Tensor:
    """:func:`humr.losses.mask.mask_loss` (reductions "reference" and "entry") with the inside test
    of :func:`pixel_mask_inside` and brute-force nearest targets.

    Args:
        pred: ``(B, K, S, 2)``; heatmap_samples: ``(B, K, M, 2)``; sample_mask_distance: ``(B, K, M)``;
        distance_map: ``(B, H, W)``; apply: ``(B, K)`` bool; sample_valid: ``(B, K, M)`` bool or None.
        tolerance: a sample is an in-mask target when its mask distance is at most this (default
            half a cell, as the library).
        same_joint: nearest sample of the same joint (paper) or of any joint (reference).
        reduction: ``"reference"`` (sum over ``B * S``) or ``"entry"`` (over ``S`` times the applied
            joints with a target), as the library.
        keypoints, keypoints_valid: optional ``(B, K, 2)`` ground truth, always a target, and
            ``(B, K)`` which exist.
        chunk: images per block of the mask-pixel distances.

    Returns:
        Scalar: the l1 distance of every outside hypothesis (inside the map's square) of an applied
        joint to its nearest (l1) target, summed and normalised as ``reduction`` says.
    """
    if pred.dim() != 4 or pred.shape[-1] != 2:
        raise ValueError(f"pred: expected shape (B, K, S, 2), found {tuple(pred.shape)}")
    b, k, s, _ = pred.shape
    m = heatmap_samples.shape[2]
    if tolerance is None:
        tolerance = default_tolerance(distance_map.shape[1], distance_map.shape[2], extent)
    inside = pixel_mask_inside(pred.reshape(b, k * s, 2), distance_map, extent, chunk).reshape(b, k, s)
    with torch.no_grad():
        cand = sample_mask_distance <= tolerance
        if sample_valid is not None:
            cand = cand & sample_valid.bool()
        targets = torch.where(cand[..., None], heatmap_samples, 0.0).to(pred.dtype)
        if keypoints is not None:
            gt_ok = torch.ones(b, k, dtype=torch.bool, device=pred.device) if keypoints_valid is None \
                else keypoints_valid.bool()
            targets = torch.cat([targets, torch.where(gt_ok[..., None], keypoints, 0.0)[:, :, None]], 2)
            cand = torch.cat([cand, gt_ok[..., None]], 2)
            m += 1
        if same_joint:
            pool, pool_ok, has = targets, cand, cand.any(-1)
        else:
            pool = targets.reshape(b, 1, k * m, 2).expand(b, k, k * m, 2)
            pool_ok = cand.reshape(b, 1, k * m).expand(b, k, k * m)
            has = cand.reshape(b, -1).any(-1, keepdim=True).expand(b, k)
        dist = torch.cdist(pred.detach(), pool, p=1.0)  # (B, K, S, P), l1
        dist = dist.masked_fill(~pool_ok[:, :, None], float("inf"))
        nearest = pool.gather(2, dist.argmin(-1)[..., None].expand(b, k, s, 2))
        applied = apply.bool() & has
        in_square = (pred.detach().abs() <= extent).all(-1)
        active = ~inside & in_square & applied[..., None]
        count = b * s if reduction == "reference" else applied.sum() * s
    zero = torch.zeros((), dtype=pred.dtype, device=pred.device)
    entry = torch.where(active, (pred - nearest).abs().sum(-1), zero)
    return entry.sum() / torch.as_tensor(count).clamp_min(1).to(pred.dtype)


def reference_training_losses(
    model: HumrModel,
    batch: Mapping[str, Tensor],
    config: LossConfig,
    generator: torch.Generator | None = None,
    mask_chunk: int = 4,
) -> LossTerms:
    """:func:`~humr.training.objective.training_losses` the reference's way (full meshes, per-pixel
    mask distances); same terms, same draws from ``generator`` in the same order, same weights."""
    context = model.condition(batch)
    nll = flow_nll(model, batch, context, config, generator)
    hyps = reference_hypotheses(model, batch, config.num_samples, generator, context)
    terms = {"nll": nll, **hypothesis_terms(model, hyps, batch, config, generator)}
    random_2d = hyps.keypoints_2d[:, 1:].transpose(1, 2)  # (B, 17, n, 2)
    if config.mask_weight > 0:
        terms["mask"] = reference_mask_loss(random_2d, **mask_loss_arguments(batch, config), chunk=mask_chunk)
    else:
        terms["mask"] = random_2d.sum() * 0.0
    return weighted_total(terms, config)
