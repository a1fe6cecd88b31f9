"""Evaluate a model on a data set: the distribution metrics of Sec. 5.1 and the pictures.

One loop (:func:`evaluate`) serves every data set: per batch it draws
``config.num_hypotheses`` hypotheses (mode first), turns them and the ground truth into the
protocol's joints and meshes (an :class:`EvaluationProtocol`), and accumulates accuracy,
the "Selected" hypothesis, 2D consistency, 3D spread, mask plausibility and calibration; the
first batch is drawn. What differs between data sets is only the protocol:

* :class:`OwnBodyProtocol` (:func:`evaluate`, the synthetic set of the :mod:`humr.data.fields`
  contract with the model's own body): accuracy on the body's kinematic joints aligned at the
  pelvis (joint 0), PVE on full meshes, calibration of the COCO-17 spread against the ground
  truth of the same body, pelvis-aligned;
* :class:`~humr.experiment.evaluation_real.SMPLProtocol` (3DPW and EMDB: SMPL ground truth,
  predictions converted from SMPL-X), see :mod:`humr.experiment.evaluation_real`.

2D consistency and 3D spread are measured on COCO-17 with visibility from the detector
confidence, the mask metrics on invisible joints of frames whose mask is valid. Beyond the
paper: the "Selected" hypothesis, chosen per image without ground truth
(:mod:`humr.eval.select`), and the calibration of the spread against the mode's error
(:mod:`humr.eval.calibration`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from humr.bodies.base import ARTICULATED_COCO17, COCO17_NAMES, BodyModel
from humr.config import EvalConfig
from humr.eval.accumulator import MetricAccumulator
from humr.eval.metrics import TORSO_COCO17
from humr.eval.select import DEFAULT_SELECTION, SelectionConfig, select_hypotheses
from humr.model.humr_model import HumrModel
from humr.model.hypotheses import Hypotheses

__all__ = [
    "CROP_PIXELS",
    "CalibrationJoints",
    "ProtocolTargets",
    "EvaluationProtocol",
    "OwnBodyProtocol",
    "evaluate",
    "update_batch",
    "eval_batches",
    "update_accuracy",
    "update_distribution",
    "update_calibration",
    "coco_visibility_index",
    "evaluation_summary",
    "write_plots",
]

#: Side of the square crop in whose pixels 2DKP and MinDist are reported (the paper's and the
#: reference's 256, whatever the crop the model sees).
CROP_PIXELS = 256

Batch = Mapping[str, Tensor]


def eval_batches(dataset: Dataset, config: EvalConfig) -> DataLoader:
    """The evaluation loader: in order, the first ``config.max_images`` images."""
    if len(dataset) == 0:
        raise ValueError("dataset: the evaluation set is empty")
    if config.max_images is not None:
        dataset = Subset(dataset, range(min(config.max_images, len(dataset))))
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=False)


@dataclass(frozen=True)
class CalibrationJoints:
    """The joints whose 3D spread is calibrated against the mode's error, aligned at their root.

    pred ``(B, S, N, 3)`` (mode at index 0) and gt ``(B, N, 3)``, metres; coco_index ``(N,)``
    int: each joint's COCO-17 namesake, whose detector confidence is its visibility, or -1 where
    it has none (it then counts in the pooled values only); valid ``(B, N)`` bool, the entries
    with a ground truth (None: all).
    """

    pred: Tensor
    gt: Tensor
    coco_index: Tensor
    valid: Tensor | None = None


@dataclass(frozen=True)
class ProtocolTargets:
    """One batch in a protocol's joints and meshes (metres).

    pred_joints ``(B, S, K, 3)`` (mode at index 0) and gt_joints ``(B, K, 3)`` for the accuracy
    metrics; calibration: :class:`CalibrationJoints`; pred_vertices ``(B, S, V, 3)`` and
    gt_vertices ``(B, V, 3)``, or both None (no PVE).
    """

    pred_joints: Tensor
    gt_joints: Tensor
    calibration: CalibrationJoints
    pred_vertices: Tensor | None = None
    gt_vertices: Tensor | None = None


class EvaluationProtocol(Protocol):
    """How a data set's hypotheses and ground truth are compared: the one thing that differs
    between the synthetic and the real evaluation.

    Attributes:
        label: the progress bar's label.
        root: the accuracy metrics' alignment, as :meth:`MetricAccumulator.update_accuracy`
            takes it (a joint index, or a protocol name of :data:`humr.eval.metrics.PROTOCOLS`).
    """

    label: str
    root: int | str

    def targets(self, batch: Batch, hyps: Hypotheses, pve: bool) -> ProtocolTargets:
        """The batch's predicted and ground-truth joints, and meshes when ``pve``."""
        ...


class OwnBodyProtocol:
    """Ground truth in the model's own body (the synthetic set): kinematic joints aligned at the
    pelvis (joint 0), full meshes; calibration on COCO-17, hypotheses and ground truth aligned at
    their pelvis (all hypotheses of an image share it, so the spread is ``hyps.joint_spread()``)."""

    label = "evaluate"
    root = 0

    def __init__(self, body: BodyModel) -> None:
        self.body = body

    def targets(self, batch: Batch, hyps: Hypotheses, pve: bool) -> ProtocolTargets:
        gt_pose, gt_shape = batch["pose"], batch["shape"].to(hyps.shape.dtype)
        pred_joints = hyps.keypoints(self.body, "body_joints")
        gt_joints = self.body.keypoints(gt_pose, gt_shape, "body_joints")
        gt_coco = self.body.keypoints(gt_pose, gt_shape, ("pelvis", *COCO17_NAMES))
        calibration = CalibrationJoints(
            hyps.keypoints_3d - hyps.keypoints(self.body, ["pelvis"]),
            gt_coco[:, 1:] - gt_coco[:, :1],
            torch.arange(len(COCO17_NAMES)),
            valid=batch["keypoints_2d_valid"].bool(),
        )
        if not pve:
            return ProtocolTargets(pred_joints, gt_joints, calibration)
        gt_vertices = self.body(gt_pose, gt_shape).vertices
        return ProtocolTargets(pred_joints, gt_joints, calibration, hyps.vertices(self.body), gt_vertices)


@torch.no_grad()
def evaluate(
    model: HumrModel, dataset: Dataset,
    config: EvalConfig,
    out_dir: Path | None = None,
    progress: bool = True,
    visibility_threshold: float = 0.5,
    seed: int = 0,
    selection: SelectionConfig = DEFAULT_SELECTION,
    protocol: EvaluationProtocol | None = None,
) -> dict[str, Any]:
    """Metrics over ``dataset`` with ``config.num_hypotheses`` hypotheses per image (mode first).

    Args:
        model: the network; evaluated in eval mode.
        dataset: items of the :mod:`humr.data.fields` contract; the first ``config.max_images``.
        config: hypotheses, batch size, PVE, plots and the calibration threshold.
        out_dir: pictures go to ``out_dir/plots`` when ``config.plots``.
        visibility_threshold: detector confidence of a visible joint.
        seed: seed of the hypotheses' latent draws.
        selection: how the "Selected" hypothesis is chosen without ground truth.
        protocol: how hypotheses and ground truth become joints and meshes (default
            :class:`OwnBodyProtocol` of the model's body: the synthetic set;
            :func:`humr.experiment.evaluation_real.evaluate_real` passes the SMPL protocols).

    Returns:
        The accumulator's means (mm for 3D, :data:`CROP_PIXELS`-crop pixels for 2DKP and
        MinDist, % for PercIn; ``*_selected`` for the hypothesis ``selection`` picks, ``calib_*``
        for the calibration), the best-of-N curves under ``"curves"``, the coverage curves under
        ``"coverage"``, ``"num_images"`` and, with pictures, their paths under ``"plots"``.
    """
    model.eval()
    protocol = protocol if protocol is not None else OwnBodyProtocol(model.body)
    generator = torch.Generator().manual_seed(seed)
    acc = MetricAccumulator()
    first: tuple[Batch, Hypotheses] | None = None
    for batch in tqdm(eval_batches(dataset, config), desc=protocol.label, disable=not progress, leave=False):
        hyps = model(batch, num_samples=config.num_hypotheses - 1, generator=generator,
                     with_log_prob=selection.flow != 0)
        update_batch(acc, batch, hyps, protocol, config, selection, visibility_threshold)
        if first is None:
            first = (batch, hyps)
    metrics = evaluation_summary(acc)
    if config.plots and out_dir is not None and first is not None:
        metrics["plots"] = [str(p) for p in write_plots(*first, model.body, acc, Path(out_dir) / "plots")]
    return metrics


def update_batch(
    acc: MetricAccumulator,
    batch: Batch,
    hyps: Hypotheses,
    protocol: EvaluationProtocol,
    config: EvalConfig,
    selection: SelectionConfig = DEFAULT_SELECTION,
    visibility_threshold: float = 0.5,
) -> ProtocolTargets:
    """Every metric of one batch: accuracy (mode, best, selected), distribution, calibration."""
    targets = protocol.targets(batch, hyps, config.pve)
    update_accuracy(acc, targets, protocol.root, selected=select_hypotheses(hyps, batch, selection).index)
    update_distribution(acc, batch, hyps, visibility_threshold)
    update_calibration(acc, batch, targets.calibration, config.uncertain_threshold_mm, visibility_threshold)
    return targets


def update_accuracy(
    acc: MetricAccumulator, targets: ProtocolTargets, root: int | str, selected: Tensor | None = None
) -> None:
    """MPJPE, PA-MPJPE and (with meshes) PVE of one batch, aligned at ``root``; ``selected`` ``(B,)``
    adds the hypothesis chosen without ground truth."""
    acc.update_accuracy(targets.pred_joints, targets.gt_joints, root=root, selected=selected,
                        pred_vertices=targets.pred_vertices, gt_vertices=targets.gt_vertices)


def update_calibration(
    acc: MetricAccumulator,
    batch: Batch,
    joints: CalibrationJoints,
    threshold_mm: float,
    visibility_threshold: float = 0.5,
) -> None:
    """Calibration of the spread of ``joints`` against the mode's error; each joint's visibility is
    that of its COCO-17 namesake (:func:`coco_visibility_index`)."""
    _, visible = _visible(batch, visibility_threshold)
    index = joints.coco_index.to(visible.device)
    acc.update_calibration(
        joints.pred,
        joints.gt,
        threshold_mm,
        visible=visible[:, index.clamp(min=0)],
        valid=joints.valid,
        visibility_known=index >= 0,
    )


def evaluation_summary(acc: MetricAccumulator) -> dict[str, Any]:
    """The accumulator's means plus ``"curves"`` (best-of-N), ``"coverage"`` and ``"num_images"``."""
    metrics: dict[str, Any] = acc.compute()
    metrics["curves"] = {k: v.tolist() for k, v in acc.curves().items()}
    if "calib_spearman" in metrics:
        levels, _ = acc.coverage_curve()
        metrics["coverage"] = {"levels": levels.tolist()} | {
            v: acc.coverage_curve(v)[1].tolist() for v in ("all", "visible", "invisible")
        }
    metrics["num_images"] = acc.counts().get("mpjpe_mode", 0)
    return metrics


def _visible(batch, visibility_threshold: float) -> tuple[Tensor, Tensor]:
    """``(valid, visible)`` COCO-17 ``(B, 17)``: the keypoint exists / and the detector sees it."""
    valid = batch["keypoints_2d_valid"].bool()
    return valid, valid & (batch["detector_keypoints"][..., 2] >= visibility_threshold)


def coco_visibility_index(names: tuple[str, ...]) -> Tensor:
    """For each keypoint name, the index of the COCO-17 keypoint of the same side and part, or -1.

    ``"h36m_left_knee"`` and ``"left_knee"`` map to ``"coco_left_knee"``; the kinematic
    shoulders, hips, elbows, wrists, knees and ankles map to their COCO namesakes; the pelvis,
    spine, neck, head, feet, hands and collars have none. Used to give evaluation joints the
    detector's visibility.
    """
    index = {n: i for i, n in enumerate(COCO17_NAMES)}
    return torch.tensor([index.get("coco_" + n.removeprefix("h36m_"), -1) for n in names])


def update_distribution(
    acc: MetricAccumulator, batch, hyps, visibility_threshold: float = 0.5, crop_pixels: int = CROP_PIXELS
) -> None:
    """2DKP consistency, 3D spread (COCO-17) and mask plausibility of one batch.

    Visibility is the detector confidence >= ``visibility_threshold``; 2DKP and MinDist are in
    pixels of a ``crop_pixels`` crop (the paper's 256), PercIn in %, over invisible joints of
    frames whose mask is valid.
    """
    valid, visible = _visible(batch, visibility_threshold)
    acc.update_consistency(hyps.keypoints_2d, batch["keypoints_2d"], visible, crop_pixels=crop_pixels)
    acc.update_diversity(hyps.keypoints_3d, visible, torso=TORSO_COCO17)
    invisible = valid & ~visible & batch["mask_valid"].bool()[:, None]
    acc.update_plausibility(
        hyps.keypoints_2d,
        batch["distance_map"],
        invisible,
        extent=float(batch["distance_map_extent"][0]),
        unit="pixels",
        crop_pixels=crop_pixels,
    )


def write_plots(batch, hyps, body, acc: MetricAccumulator, folder: Path) -> list[Path]:
    """Fig. 1/2/6-style joint hypotheses, mesh hypotheses, the best-of-N curve (Fig. S1) and, with
    calibration entries, the reliability diagram of the coverage."""
    from humr.eval.plots import plot_joint_hypotheses, plot_mesh_hypotheses, plot_min_of_n, plot_reliability

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    conf = batch["detector_keypoints"][..., 2]
    articulated = torch.tensor(ARTICULATED_COCO17)
    for i in range(min(4, conf.shape[0])):
        # The least confident articulated joint is where the distribution should spread.
        joint = int(articulated[conf[i, articulated].argmin()])
        image = batch["image"][i].permute(1, 2, 0).numpy()
        path = folder / f"hypotheses_img{i}_joint{joint}.png"
        plot_joint_hypotheses(
            image, hyps.keypoints_2d[i, :, joint].numpy(), batch["keypoints_2d"][i, joint].numpy(), path
        )
        written.append(path)
    num = min(4, hyps.num_hypotheses)  # as many as there are (one with --eval.num_hypotheses 1)
    vertices = body(hyps.rotmat[0, :num], hyps.shape[:1].expand(num, -1)).vertices
    path = folder / "mesh_hypotheses.png"
    plot_mesh_hypotheses(vertices.numpy(), body.faces.numpy(), path, num=num)
    written.append(path)
    if acc.curves():
        path = folder / "min_of_n.png"
        plot_min_of_n({k: v.numpy() for k, v in acc.curves().items()}, path)
        written.append(path)
    curves = {v: acc.coverage_curve(v) for v in ("all", "visible", "invisible")}
    if not torch.isnan(curves["all"][1]).all():
        path = folder / "reliability.png"
        plot_reliability({k: (lv.numpy(), c.numpy()) for k, (lv, c) in curves.items()}, path)
        written.append(path)
    return written
