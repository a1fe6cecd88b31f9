"""The training objective of Eq. 7, with the joint rules of Sec. 4.5.

Which COCO-17 joint gets what in L_MMD (Sec. 4.5):
- a joint counts only if its ground truth exists and lies inside the crop;
- highly articulated joints (elbows, wrists, knees, ankles) whose detector confidence is
  below ``uncertain_threshold`` (0.7) are compared with ``n`` heatmap samples;
- every other joint is compared with ``n`` copies of its ground truth, and only if it is
  visible (confidence >= ``visibility_threshold``, 0.5).
L_mask applies to invisible joints (confidence < 0.5 or ground truth outside the crop) of
frames whose person mask is valid (no object occlusion).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from humr.config import LossConfig
from humr.losses.mask import mask_loss
from humr.losses.mmd import imq_kernel, joint_mmd
from humr.losses.pose import keypoint_2d_loss, nll_loss, orthonormal_loss, shape_loss
from humr.model.humr_model import HumrModel
from humr.model.hypotheses import Hypotheses

__all__ = ["ARTICULATED_COCO", "LossTerms", "select_mmd_targets", "training_losses"]

#: COCO-17 indices of elbows, wrists, knees and ankles.
ARTICULATED_COCO: tuple[int, ...] = (7, 8, 9, 10, 13, 14, 15, 16)

LOSS_NAMES = ("nll", "keypoint_2d", "shape", "orth", "mmd", "mask", "random_2d")


@dataclass
class LossTerms:
    total: Tensor
    terms: dict[str, Tensor]  #: unweighted value of each loss


def draw_sample_indices(valid: Tensor, n: int, generator: torch.Generator | None = None) -> Tensor:
    """``n`` indices per row of ``valid (..., M)`` bool: distinct valid ones in random order while
    enough exist, cycling through them otherwise (rows with none get arbitrary indices)."""
    keys = torch.rand(valid.shape, generator=generator, device=valid.device)
    keys = torch.where(valid, keys, keys + 2.0)  # invalid entries sort last
    order = keys.argsort(dim=-1)
    count = valid.sum(-1, keepdim=True).clamp_min(1)
    slots = torch.arange(n, device=valid.device) % count  # (..., n)
    return order.gather(-1, slots)


def select_mmd_targets(
    batch: Mapping[str, Tensor], config: LossConfig, n: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """MMD targets ``(B, 17, n, 2)`` and the active-joint mask ``(B, 17)`` (rules above)."""
    conf = batch["detector_keypoints"][..., 2]
    gt = batch["keypoints_2d"]
    inside = batch["keypoints_2d_valid"].bool() & (gt.abs() <= 1).all(-1)
    visible = conf >= config.visibility_threshold
    articulated = torch.zeros(conf.shape[-1], dtype=torch.bool, device=conf.device)
    articulated[list(ARTICULATED_COCO)] = True
    uncertain_articulated = articulated & (conf < config.uncertain_threshold)
    sample_valid = batch["heatmap_sample_valid"].bool()
    has_samples = sample_valid.any(-1)
    # The reference's lower cut sends the least confident joints to ground-truth copies.
    below_cut = uncertain_articulated & (conf < config.heatmap_min_confidence)
    use_samples = uncertain_articulated & has_samples & ~below_cut
    idx = draw_sample_indices(sample_valid, n, generator)  # (B, 17, n)
    drawn = batch["heatmap_samples"].gather(2, idx[..., None].expand(-1, -1, -1, 2))
    copies = gt[:, :, None, :].expand(-1, -1, n, -1)
    target = torch.where(use_samples[..., None, None], drawn, copies)
    active = inside & (use_samples | visible | below_cut)
    return target, active


def invisible_joints(batch: Mapping[str, Tensor], config: LossConfig) -> Tensor:
    """``(B, 17)`` bool: confidence below the visibility threshold or ground truth outside the crop."""
    conf = batch["detector_keypoints"][..., 2]
    outside = ~(batch["keypoints_2d"].abs() <= 1).all(-1)
    return batch["keypoints_2d_valid"].bool() & ((conf < config.visibility_threshold) | outside)


def training_losses(
    model: HumrModel,
    batch: Mapping[str, Tensor],
    config: LossConfig,
    generator: torch.Generator | None = None,
    hypotheses: Callable[..., Hypotheses] | None = None,
    person_mask_loss: Callable[..., Tensor] = mask_loss,
) -> LossTerms:
    """One training step's losses (Eq. 7): NLL, 2D (mode), shape, orthonormality, MMD, mask.

    ``hypotheses(model, batch, num_samples, generator, context)`` and ``person_mask_loss`` (the
    signature of :func:`humr.losses.mask.mask_loss`) replace how hypotheses and the mask loss
    are computed (the reference-style step of :mod:`humr.training.reference_step` uses them).
    """
    n = config.num_samples
    context = model.condition(batch)
    nll = nll_loss(model.pose_log_prob(batch["pose"], context, config.nll_noise, generator))
    if hypotheses is None:
        hyps = model(batch, num_samples=n, generator=generator, context=context)
    else:
        hyps = hypotheses(model, batch, n, generator, context)
    gt_2d, valid = batch["keypoints_2d"], batch["keypoints_2d_valid"]
    terms: dict[str, Tensor] = {
        "nll": nll,
        "keypoint_2d": keypoint_2d_loss(hyps.keypoints_2d[:, 0], gt_2d, valid.to(gt_2d.dtype)),
        "shape": shape_loss(hyps.regressed_shape, batch["shape"].to(hyps.shape.dtype)),
        "orth": orthonormal_loss(hyps.pose6d.reshape(*hyps.pose6d.shape[:2], -1, 6)),
    }
    random_2d = hyps.keypoints_2d[:, 1:].transpose(1, 2)  # (B, 17, n, 2)
    zero = random_2d.sum() * 0.0
    if config.mmd_weight > 0:
        target, active = select_mmd_targets(batch, config, n, generator)
        kernel = partial(imq_kernel, bandwidths=config.mmd_bandwidths)
        terms["mmd"] = joint_mmd(
            random_2d,
            target.to(random_2d.dtype),
            active,
            kernel=kernel,
            unbiased=config.mmd_unbiased,
            reduction=config.mmd_reduction,
        )
    else:
        terms["mmd"] = zero
    if config.mask_weight > 0:
        apply = invisible_joints(batch, config) & batch["mask_valid"].bool()[:, None]
        terms["mask"] = person_mask_loss(
            random_2d,
            batch["heatmap_samples"],
            batch["heatmap_sample_mask_distance"],
            batch["distance_map"],
            apply,
            extent=float(batch["distance_map_extent"][0]),
            sample_valid=batch["heatmap_sample_valid"],
            same_joint=config.mask_same_joint,
        )
    else:
        terms["mask"] = zero
    if config.random_2d_loss != "none" and config.random_2d_weight > 0:
        which = valid if config.random_2d_loss == "all" else valid & ~invisible_joints(batch, config)
        weights = which[:, None].expand(-1, n, -1).to(gt_2d.dtype)
        terms["random_2d"] = keypoint_2d_loss(
            hyps.keypoints_2d[:, 1:].flatten(0, 1),
            gt_2d[:, None].expand(-1, n, -1, -1).flatten(0, 1),
            weights.flatten(0, 1),
        )
    else:
        terms["random_2d"] = zero
    weights = {
        "nll": config.nll_weight,
        "keypoint_2d": config.keypoint_2d_weight,
        "shape": config.shape_weight,
        "orth": config.orth_weight,
        "mmd": config.mmd_weight,
        "mask": config.mask_weight,
        "random_2d": config.random_2d_weight,
    }
    total = sum(weights[name] * value for name, value in terms.items())
    return LossTerms(total=total, terms=terms)


def check_loss_config(config: LossConfig) -> None:
    """Fail before training on impossible settings."""
    if config.num_samples < 2:
        raise ValueError(
            f"loss.num_samples: the unbiased MMD needs at least 2 samples, found {config.num_samples}"
        )
    if config.random_2d_loss not in ("none", "all", "visible"):
        raise ValueError(
            f"loss.random_2d_loss: expected 'none', 'all' or 'visible', found {config.random_2d_loss!r}"
        )
    if config.mmd_reduction not in ("active", "all"):
        raise ValueError(f"loss.mmd_reduction: expected 'active' or 'all', found {config.mmd_reduction!r}")
    for name in (
        "shape_weight",
        "keypoint_2d_weight",
        "nll_weight",
        "orth_weight",
        "mmd_weight",
        "mask_weight",
        "random_2d_weight",
    ):
        if getattr(config, name) < 0:
            raise ValueError(f"loss.{name}: expected >= 0, found {getattr(config, name)}")
