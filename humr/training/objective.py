"""The training objective of Eq. 7, with the joint rules of Sec. 4.5.

Which COCO-17 joint gets what in L_MMD (Sec. 4.5):
- a joint counts only if its ground truth exists and lies inside the crop;
- highly articulated joints (elbows, wrists, knees, ankles) whose detector confidence is
  below ``uncertain_threshold`` (0.7) are compared with ``n`` heatmap samples;
- every other joint is compared with ``n`` copies of its ground truth, and only if it is
  visible (confidence >= ``visibility_threshold``, 0.5).
L_mask applies to invisible joints (confidence < 0.5 or ground truth outside the crop) of
frames whose person mask is valid (no object occlusion).

Fidelity. The paper's weights (supplementary A) were tuned under the published
implementation's normalisations, so the defaults of :class:`~humr.config.LossConfig` follow
them where the paper does not say (each loss's docstring gives the details):

- ``L_NLL`` per dimension, ``-mean_b log p / D`` with ``D = 6 J`` (``nll_per_dimension``);
- ``L_beta`` summed over the shape coefficients, mean over images (``shape_reduction="sum"``);
- ``L_orth`` as ``L(mode) + L(random samples)`` (``orth_reduction="split"``);
- ``L_MMD`` averaged over all ``B x 17`` entries, inactive ones 0 (``mmd_reduction="all"``),
  with the paper's unbiased estimator of Eq. 4;
- ``L_mask`` summed over joints per hypothesis and divided by ``B n``, the ground-truth
  keypoint among the targets (``mask_normalization="reference"``); hypotheses outside the
  distance map's square never count;
- ``L_2D`` on the mode's projected body joints where the batch has their 2D ground truth
  (``keypoint_2d_set="auto"``; the reference's 24 SMPL-X joints are its 22 body joints plus
  the jaw and the left eye, humr uses the body's ``"body_joints"``), COCO-17 elsewhere;
- the reference's camera-scale term ``mean(exp(-10 s)^2)`` on the raw scale
  (``camera_scale_weight=1``).

What the paper states stays as stated: Eq. 4's unbiased MMD, the joint rules above, Eq. 8's
kernel, the nearest target of the same joint in ``L_mask``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from humr.bodies.base import ARTICULATED_COCO17
from humr.config import LossConfig
from humr.losses.mask import mask_loss
from humr.losses.mmd import imq_kernel, joint_mmd
from humr.losses.pose import camera_scale_loss, keypoint_2d_loss, nll_loss, orthonormal_loss, shape_loss
from humr.model.humr_model import HumrModel
from humr.model.hypotheses import Hypotheses

__all__ = [
    "LOSS_NAMES",
    "REGRESSOR_TERMS",
    "LossTerms",
    "select_mmd_targets",
    "training_losses",
    "flow_nll",
    "hypothesis_terms",
    "mask_loss_arguments",
    "weighted_total",
    "mode_keypoint_loss",
    "keypoint_2d_source",
    "regression_losses",
]

#: The regressor pose head's 3D supervision (0 for the flow head).
REGRESSOR_TERMS = ("pose_regression", "joints_3d")
#: Every term :func:`training_losses` reports, in the order of :attr:`LossTerms.terms` and of the
#: weighted sum; the weight of term ``name`` is the field ``<name>_weight`` of :class:`LossConfig`.
LOSS_NAMES = ("nll", "keypoint_2d", "shape", "orth", "mmd", "mask", "random_2d", "camera_scale",
              *REGRESSOR_TERMS)


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
    articulated[list(ARTICULATED_COCO17)] = True
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
) -> LossTerms:
    """One training step's losses (Eq. 7): NLL, 2D (mode), shape, orthonormality, MMD, mask, plus
    the optional 2D loss on random hypotheses (Table S2) and the camera-scale term.

    Returns the unweighted terms named by ``LOSS_NAMES`` and their weighted sum. The pieces are
    public (:func:`flow_nll`, :func:`hypothesis_terms`, :func:`mask_loss_arguments`,
    :func:`weighted_total`) so that a variant of the step can compose them.
    """
    context = model.condition(batch)
    nll = flow_nll(model, batch, context, config, generator)
    hyps = model(batch, num_samples=config.num_samples, generator=generator, context=context)
    terms = {"nll": nll, **hypothesis_terms(model, hyps, batch, config, generator)}
    random_2d = hyps.keypoints_2d[:, 1:].transpose(1, 2)  # (B, 17, n, 2)
    terms["mask"] = (mask_loss(random_2d, **mask_loss_arguments(batch, config)) if config.mask_weight > 0
                     else random_2d.sum() * 0.0)
    return weighted_total(terms, config)


def flow_nll(
    model: HumrModel,
    batch: Mapping[str, Tensor],
    context: Tensor,
    config: LossConfig,
    generator: torch.Generator | None = None,
) -> Tensor:
    """``L_NLL`` of the ground-truth pose ``batch["pose"]`` under the flow given ``context (B, C)``
    (0 for the deterministic regressor, which has no likelihood to maximise)."""
    if model.flow is None:
        return context.sum() * 0.0
    dim = 6 * model.num_pose_joints if config.nll_per_dimension else None
    return nll_loss(model.pose_log_prob(batch["pose"], context, config.nll_noise, generator), dim=dim)


def hypothesis_terms(
    model: HumrModel,
    hyps: Hypotheses,
    batch: Mapping[str, Tensor],
    config: LossConfig,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """The unweighted terms computed from the hypotheses ``hyps`` (``1 + n`` per image), every
    term of ``LOSS_NAMES`` but ``nll`` and ``mask``; the MMD targets are drawn from ``generator``."""
    random_2d = hyps.keypoints_2d[:, 1:].transpose(1, 2)  # (B, 17, n, 2)
    zero = random_2d.sum() * 0.0
    terms = {
        "keypoint_2d": mode_keypoint_loss(model, hyps, batch, config),
        "shape": shape_loss(hyps.regressed_shape, batch["shape"].to(hyps.shape.dtype),
                            reduction=config.shape_reduction),
        "orth": _orthonormality(hyps.pose6d, config),
        "mmd": _mmd_term(random_2d, batch, config, generator) if config.mmd_weight > 0 else zero,
        "random_2d": _random_2d_term(hyps, batch, config),
        "camera_scale": _camera_term(hyps) if config.camera_scale_weight > 0 else zero,
    }
    # the regressor's 3D supervision (0 for the flow, which learns the pose by its likelihood)
    terms.update(regression_losses(model, hyps, batch) if model.flow is None
                 else {"pose_regression": zero, "joints_3d": zero})
    return terms


def weighted_total(terms: Mapping[str, Tensor], config: LossConfig) -> LossTerms:
    """The terms of ``LOSS_NAMES`` (in that order) and their sum weighted by ``config``."""
    missing = [name for name in LOSS_NAMES if name not in terms]
    if missing or len(terms) != len(LOSS_NAMES):
        raise ValueError(f"terms: expected exactly {LOSS_NAMES}, found {tuple(terms)}")
    ordered = {name: terms[name] for name in LOSS_NAMES}
    total = sum(getattr(config, f"{name}_weight") * value for name, value in ordered.items())
    return LossTerms(total=total, terms=ordered)


def regression_losses(model: HumrModel, hyps: Hypotheses, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The deterministic regressor's 3D supervision (BEDLAM-CLIFF style), on the mode.

    ``pose_regression``: mean squared error of the rotation matrices, summed over the 9 entries,
    mean over images and joints. ``joints_3d``: l1 distance (metres, summed over x, y, z) of the
    body joints aligned at the pelvis (joint 0), mean over images and joints.
    """
    gt_pose = batch["pose"].to(hyps.rotmat.dtype)
    pose_term = ((hyps.rotmat[:, 0] - gt_pose) ** 2).sum((-2, -1)).mean()
    with torch.autocast(device_type=hyps.rotmat.device.type, enabled=False):
        body = model.body
        pred = body.keypoints(hyps.rotmat[:, :1].float(), hyps.shape[:, None].float(), "body_joints")[:, 0]
        gt = body.keypoints(gt_pose[:, None].float(), batch["shape"][:, None].float(), "body_joints")[:, 0]
    pred, gt = pred - pred[:, :1], gt - gt[:, :1]
    return {"pose_regression": pose_term, "joints_3d": (pred - gt).abs().sum(-1).mean()}


def keypoint_2d_source(batch: Mapping[str, Tensor], config: LossConfig) -> str:
    """Which keypoints ``L_2D`` compares on the mode: ``"body_joints"`` or ``"coco17"``."""
    which = config.keypoint_2d_set
    if which == "auto":
        return "body_joints" if "body_joints_2d" in batch else "coco17"
    if which == "body_joints" and not ("body_joints_2d" in batch and "body_joints_2d_valid" in batch):
        raise ValueError("loss.keypoint_2d_set: 'body_joints' needs the batch fields 'body_joints_2d' and "
                         "'body_joints_2d_valid', which this data set does not provide (use 'auto' or "
                         "'coco17')")
    if which not in ("body_joints", "coco17"):
        raise ValueError(f"loss.keypoint_2d_set: expected 'auto', 'body_joints' or 'coco17', found {which!r}")
    return which


def mode_keypoint_loss(
    model: HumrModel, hyps: Hypotheses, batch: Mapping[str, Tensor], config: LossConfig
) -> Tensor:
    """``L_2D`` (Eq. 6) on the mode (hypothesis 0), per-image sum over keypoints, mean over images.

    COCO-17: the mode's projected COCO keypoints against ``keypoints_2d`` (weight
    ``keypoints_2d_valid``). Body joints: the mode's body joints (only the mode's are computed)
    projected by the same camera, against ``body_joints_2d (B, J, 2)``, weight 1 where
    ``body_joints_2d_valid (B, J)``. With ``keypoint_2d_set="auto"`` an image without any valid
    body joint (e.g. a mixture member whose files lack them) falls back to its COCO-17 keypoints.
    """
    coco_gt, coco_valid = batch["keypoints_2d"], batch["keypoints_2d_valid"].to(batch["keypoints_2d"].dtype)
    if keypoint_2d_source(batch, config) == "coco17":
        return keypoint_2d_loss(hyps.keypoints_2d[:, 0], coco_gt, coco_valid)
    body_term, has_body = _body_joint_loss(model, hyps, batch)
    if config.keypoint_2d_set == "body_joints" or bool(has_body.all()):
        return body_term
    # per-image fallback: both losses are per-image sums divided by B, so their sum mixes them per image
    coco_weight = coco_valid * (~has_body)[:, None].to(coco_valid.dtype)
    return body_term + keypoint_2d_loss(hyps.keypoints_2d[:, 0], coco_gt, coco_weight)


def _body_joint_loss(
    model: HumrModel, hyps: Hypotheses, batch: Mapping[str, Tensor]
) -> tuple[Tensor, Tensor]:
    """The body-joint ``L_2D`` of the mode and which images ``(B,)`` have any valid body joint."""
    with torch.autocast(device_type=hyps.rotmat.device.type, enabled=False):  # the body stays in float32
        rotmat, shape, camera = hyps.rotmat[:, :1].float(), hyps.shape[:, None].float(), hyps.camera.float()
        joints = model.body.keypoints(rotmat, shape, "body_joints")  # (B, 1, J, 3)
        pred = model.project(joints, camera, batch)[:, 0]  # (B, J, 2)
    gt, valid = batch["body_joints_2d"], batch["body_joints_2d_valid"]
    if tuple(gt.shape) != tuple(pred.shape) or tuple(valid.shape) != tuple(pred.shape[:2]):
        raise ValueError(f"batch: expected body_joints_2d {tuple(pred.shape)} and body_joints_2d_valid "
                         f"{tuple(pred.shape[:2])} (the body's 'body_joints'), found {tuple(gt.shape)} and "
                         f"{tuple(valid.shape)}")
    return keypoint_2d_loss(pred, gt.to(pred.dtype), valid.to(pred.dtype)), valid.bool().any(-1)


def _orthonormality(pose6d: Tensor, config: LossConfig) -> Tensor:
    """``L_orth`` of ``pose6d (B, 1 + n, J * 6)``: split into mode and samples, or one mean."""
    rot6d = pose6d.reshape(*pose6d.shape[:2], -1, 6)
    if config.orth_reduction == "split":
        return orthonormal_loss(rot6d[:, :1]) + orthonormal_loss(rot6d[:, 1:])
    if config.orth_reduction == "joint":
        return orthonormal_loss(rot6d)
    raise ValueError(f"loss.orth_reduction: expected 'split' or 'joint', found {config.orth_reduction!r}")


def _mmd_term(random_2d: Tensor, batch: Mapping[str, Tensor], config: LossConfig,
              generator: torch.Generator | None) -> Tensor:
    target, active = select_mmd_targets(batch, config, config.num_samples, generator)
    kernel = partial(imq_kernel, bandwidths=config.mmd_bandwidths)
    return joint_mmd(random_2d, target.to(random_2d.dtype), active, kernel=kernel,
                     unbiased=config.mmd_unbiased, reduction=config.mmd_reduction)


def mask_loss_arguments(batch: Mapping[str, Tensor], config: LossConfig) -> dict[str, object]:
    """The keyword arguments of :func:`humr.losses.mask.mask_loss` for ``batch`` beside the
    hypotheses: which joints it applies to (invisible ones of frames with a valid person mask),
    the heatmap samples, the distance map and the normalisation that ``config`` chooses."""
    apply = invisible_joints(batch, config) & batch["mask_valid"].bool()[:, None]
    reference = config.mask_normalization == "reference"
    if not reference and config.mask_normalization != "entry":
        raise ValueError(f"loss.mask_normalization: expected 'reference' or 'entry', found "
                         f"{config.mask_normalization!r}")
    return {
        "heatmap_samples": batch["heatmap_samples"],
        "sample_mask_distance": batch["heatmap_sample_mask_distance"],
        "distance_map": batch["distance_map"],
        "apply": apply,
        "extent": float(batch["distance_map_extent"][0]),
        "sample_valid": batch["heatmap_sample_valid"],
        "same_joint": config.mask_same_joint,
        "reduction": "reference" if reference else "entry",
        "keypoints": batch["keypoints_2d"] if reference else None,
        "keypoints_valid": batch["keypoints_2d_valid"].bool() if reference else None,
    }


def _random_2d_term(hyps: Hypotheses, batch: Mapping[str, Tensor], config: LossConfig) -> Tensor:
    """Table S2's l1 loss of random hypotheses to the ground truth (all or visible joints)."""
    random = hyps.keypoints_2d[:, 1:]  # (B, n, 17, 2)
    if config.random_2d_loss == "none" or config.random_2d_weight == 0:
        return random.sum() * 0.0
    gt_2d, valid = batch["keypoints_2d"], batch["keypoints_2d_valid"]
    which = valid if config.random_2d_loss == "all" else valid & ~invisible_joints(batch, config)
    n = random.shape[1]
    weights = which[:, None].expand(-1, n, -1).to(gt_2d.dtype)
    return keypoint_2d_loss(
        random.flatten(0, 1), gt_2d[:, None].expand(-1, n, -1, -1).flatten(0, 1), weights.flatten(0, 1)
    )


def _camera_term(hyps: Hypotheses) -> Tensor:
    if hyps.regressed_camera is None:
        raise ValueError("hypotheses: regressed_camera is None; the camera-scale term "
                         "(loss.camera_scale_weight > 0) needs the head's raw camera")
    return camera_scale_loss(hyps.regressed_camera[:, 0].float())
