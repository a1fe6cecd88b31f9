"""Evaluate a model on a data set: the distribution metrics of Sec. 5.1 and the pictures.

On data sets of the :mod:`humr.data.fields` contract with the model's own body (the
synthetic set): accuracy on the body's kinematic joints aligned at the pelvis (joint 0),
PVE on full meshes, 2D consistency and 3D spread on COCO-17 with visibility from the
detector confidence, and the mask metrics for invisible joints of frames whose mask is valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from humr.config import EvalConfig
from humr.eval.accumulator import MetricAccumulator
from humr.model.humr_model import HumrModel
from humr.training.objective import ARTICULATED_COCO

__all__ = ["evaluate", "eval_batches", "update_distribution", "write_plots"]


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
) -> dict[str, Any]:
    """Metrics over ``dataset`` with ``config.num_hypotheses`` hypotheses per image (mode first).

    Returns the accumulator's means (mm for 3D, 256-crop pixels for 2DKP and MinDist, % for
    PercIn), the best-of-N curves under ``"curves"``, and writes pictures to
    ``out_dir/plots`` when ``config.plots``.
    """
    model.eval()
    body = model.body
    generator = torch.Generator().manual_seed(seed)
    acc = MetricAccumulator()
    first_batch = None
    first_hyps = None
    loader = eval_batches(dataset, config)
    for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
        hyps = model(batch, num_samples=config.num_hypotheses - 1, generator=generator)
        gt_pose, gt_shape = batch["pose"], batch["shape"].to(hyps.shape.dtype)
        pred_joints = hyps.keypoints(body, "body_joints")
        gt_joints = body.keypoints(gt_pose, gt_shape, "body_joints")
        pred_vertices = gt_vertices = None
        if config.pve:
            pred_vertices = hyps.vertices(body)
            gt_vertices = body(gt_pose, gt_shape).vertices
        acc.update_accuracy(
            pred_joints, gt_joints, root=0, pred_vertices=pred_vertices, gt_vertices=gt_vertices
        )
        update_distribution(acc, batch, hyps, visibility_threshold)
        if first_batch is None:
            first_batch, first_hyps = batch, hyps
    metrics: dict[str, Any] = acc.compute()
    metrics["curves"] = {k: v.tolist() for k, v in acc.curves().items()}
    metrics["num_images"] = acc.counts().get("mpjpe_mode", 0)
    if config.plots and out_dir is not None and first_batch is not None:
        metrics["plots"] = [
            str(p) for p in write_plots(first_batch, first_hyps, body, acc, Path(out_dir) / "plots")
        ]
    return metrics


def update_distribution(
    acc: MetricAccumulator, batch, hyps, visibility_threshold: float = 0.5, crop_pixels: int = 256
) -> None:
    """2DKP consistency, 3D spread (COCO-17) and mask plausibility of one batch.

    Visibility is the detector confidence >= ``visibility_threshold``; 2DKP and MinDist are in
    pixels of a ``crop_pixels`` crop (the paper's 256), PercIn in %, over invisible joints of
    frames whose mask is valid.
    """
    conf = batch["detector_keypoints"][..., 2]
    valid = batch["keypoints_2d_valid"].bool()
    visible = valid & (conf >= visibility_threshold)
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
    """Fig. 1/2/6-style joint hypotheses, mesh hypotheses and the best-of-N curve (Fig. S1)."""
    from humr.eval.plots import plot_joint_hypotheses, plot_mesh_hypotheses, plot_min_of_n

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
    vertices = body(hyps.rotmat[0, :4], hyps.shape[:1].expand(4, -1)).vertices
    path = folder / "mesh_hypotheses.png"
    plot_mesh_hypotheses(vertices.numpy(), body.faces.numpy(), path)
    written.append(path)
    path = folder / "min_of_n.png"
    plot_min_of_n({k: v.numpy() for k, v in acc.curves().items()}, path)
    written.append(path)
    return written
