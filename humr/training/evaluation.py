"""Evaluate a model on a data set: the distribution metrics of Sec. 5.1 and the pictures.

On data sets of the :mod:`humr.data.fields` contract with the model's own body (the
synthetic set): accuracy on the body's kinematic joints aligned at the pelvis (joint 0),
PVE on full meshes, 2D consistency and 3D spread on COCO-17 with visibility from the
detector confidence, and the mask metrics for invisible joints of frames whose mask is valid.
Beyond the paper: the "Selected" hypothesis, chosen per image without ground truth
(:mod:`humr.eval.select`), and the calibration of the COCO-17 spread against the mode's error
(:mod:`humr.eval.calibration`), both aligned at the pelvis.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from humr.bodies.base import COCO17_NAMES
from humr.config import EvalConfig
from humr.eval.accumulator import MetricAccumulator
from humr.eval.metrics import PROTOCOLS, root_point
from humr.eval.select import DEFAULT_SELECTION, SelectionConfig, select_hypotheses
from humr.model.humr_model import HumrModel
from humr.training.objective import ARTICULATED_COCO

__all__ = [
    "evaluate",
    "eval_batches",
    "update_distribution",
    "update_body_calibration",
    "update_protocol_calibration",
    "coco_visibility_index",
    "evaluation_summary",
    "write_plots",
]


def eval_batches(dataset: Dataset, config: EvalConfig) -> DataLoader:
    """The evaluation loader: in order, the first ``config.max_images`` images."""
    if len(dataset) == 0:
        raise ValueError("dataset: the evaluation set is empty")
    if config.max_images is not None:
        dataset = Subset(dataset, range(min(config.max_images, len(dataset))))
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=False)


@torch.no_grad()
def evaluate(
    model: HumrModel,
    dataset: Dataset,
    config: EvalConfig,
    out_dir: Path | None = None,
    progress: bool = True,
    visibility_threshold: float = 0.5,
    seed: int = 0,
    selection: SelectionConfig = DEFAULT_SELECTION,
) -> dict[str, Any]:
    """Metrics over ``dataset`` with ``config.num_hypotheses`` hypotheses per image (mode first).

    Returns the accumulator's means (mm for 3D, 256-crop pixels for 2DKP and MinDist, % for
    PercIn; ``*_selected`` for the hypothesis ``selection`` picks, ``calib_*`` for the
    calibration), the best-of-N curves under ``"curves"``, the coverage curves under
    ``"coverage"``, and writes pictures to ``out_dir/plots`` when ``config.plots``.
    """
    model.eval()
    body = model.body
    generator = torch.Generator().manual_seed(seed)
    acc = MetricAccumulator()
    first_batch = None
    first_hyps = None
    loader = eval_batches(dataset, config)
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        hyps = model(batch, num_samples=config.num_hypotheses - 1, generator=generator,
                     with_log_prob=selection.flow != 0)
        gt_pose, gt_shape = batch["pose"], batch["shape"].to(hyps.shape.dtype)
        pred_joints = hyps.keypoints(body, "body_joints")
        gt_joints = body.keypoints(gt_pose, gt_shape, "body_joints")
        pred_vertices = gt_vertices = None
        if config.pve:
            pred_vertices = hyps.vertices(body)
            gt_vertices = body(gt_pose, gt_shape).vertices
        selected = select_hypotheses(hyps, batch, selection).index
        acc.update_accuracy(
            pred_joints, gt_joints, root=0, pred_vertices=pred_vertices, gt_vertices=gt_vertices,
            selected=selected,
        )
        update_distribution(acc, batch, hyps, visibility_threshold)
        update_body_calibration(acc, batch, hyps, body, config.uncertain_threshold_mm, visibility_threshold)
        if first_batch is None:
            first_batch, first_hyps = batch, hyps
    metrics = evaluation_summary(acc)
    if config.plots and out_dir is not None and first_batch is not None:
        metrics["plots"] = [
            str(p) for p in write_plots(first_batch, first_hyps, body, acc, Path(out_dir) / "plots")
        ]
    return metrics


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


def update_body_calibration(
    acc: MetricAccumulator, batch, hyps, body, threshold_mm: float, visibility_threshold: float = 0.5
) -> None:
    """Calibration of the COCO-17 spread against the ground truth of the model's own body.

    Hypotheses and ground truth are aligned at their pelvis (the accuracy protocol's root; all
    hypotheses of an image share it, so the spread is that of ``hyps.joint_spread()``).
    """
    gt = body.keypoints(batch["pose"], batch["shape"].to(hyps.shape.dtype), ("pelvis", *COCO17_NAMES))
    pred = hyps.keypoints_3d - hyps.keypoints(body, ["pelvis"])
    valid, visible = _visible(batch, visibility_threshold)
    acc.update_calibration(pred, gt[:, 1:] - gt[:, :1], threshold_mm, visible=visible, valid=valid)


def update_protocol_calibration(
    acc: MetricAccumulator,
    batch,
    pred_joints: Tensor,
    gt_joints: Tensor,
    protocol: str,
    threshold_mm: float,
    visibility_threshold: float = 0.5,
) -> None:
    """Calibration on a protocol's joints (real data): each hypothesis and the ground truth aligned
    at the protocol's root; visibility from the COCO-17 namesake where a joint has one
    (:func:`coco_visibility_index`), the others count in the pooled values only."""
    root = PROTOCOLS[protocol]
    index = coco_visibility_index(root.keypoints).to(pred_joints.device)
    _, visible = _visible(batch, visibility_threshold)
    acc.update_calibration(
        pred_joints - root_point(pred_joints, protocol)[..., None, :],
        gt_joints - root_point(gt_joints, protocol)[:, None],
        threshold_mm,
        visible=visible[:, index.clamp(min=0)],
        visibility_known=index >= 0,
    )


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
    acc: MetricAccumulator, batch, hyps, visibility_threshold: float = 0.5, crop_pixels: int = 256
) -> None:
    """2DKP consistency, 3D spread (COCO-17) and mask plausibility of one batch.

    Visibility is the detector confidence >= ``visibility_threshold``; 2DKP and MinDist are in
    pixels of a ``crop_pixels`` crop (the paper's 256), PercIn in %, over invisible joints of
    frames whose mask is valid.
    """
    valid, visible = _visible(batch, visibility_threshold)
    acc.update_consistency(hyps.keypoints_2d, batch["keypoints_2d"], visible, crop_pixels=crop_pixels)
    acc.update_diversity(hyps.keypoints_3d, visible)
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
    articulated = torch.tensor(ARTICULATED_COCO)
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
