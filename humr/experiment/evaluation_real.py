"""The paper's Tables 1 and 2 protocols on 3DPW test and EMDB (Sec. 5.1), for SMPL-X models.

Ground truth: SMPL bodies of the annotated pose ``(24, 3, 3)`` and betas ``(10,)``, with the
gender of the annotation file (``'m...'`` male, ``'f...'`` female, else or absent neutral).
Predictions: every hypothesis' SMPL-X mesh ``(10475, 3)`` converted to an SMPL mesh ``(6890, 3)``
by the BEDLAM-CLIFF matrix (``smplx2smpl.pkl``, :func:`humr.bodies.conversion.load_smplx_to_smpl`).

* protocol ``"3dpw"``: the 14 LSP-ordered H36M joints regressed by ``J_regressor_h36m.npy``
  from the ground-truth and the converted meshes;
* protocol ``"emdb"``: the 24 SMPL joints: the ground truth's kinematic joints and, for the
  converted predictions, SMPL's own ``J_regressor`` applied to the posed mesh (as the reference).

Both align prediction and ground truth at the root of :data:`humr.eval.metrics.PROTOCOLS`
(the hip midpoint) for MPJPE and PVE; PA-MPJPE aligns by Procrustes. 2DKP consistency, 3D spread
(COCO-17 of the model's own body, visibility = ViTPose confidence >= 0.5) follow
:mod:`humr.experiment.evaluation`, whose one loop runs with :class:`SMPLProtocol`; the
plausibility metrics (PercIn / MinDist) apply to the invisible joints of frames with a valid
person mask (EMDB's occlusion subset ``emdb-p1-occl``), in pixels of a 256 x 256 crop as the
reference reports them.

Files (``EvalConfig``): ``smpl_model_path`` (a directory with ``SMPL_{NEUTRAL,MALE,FEMALE}.npz``),
``smplx_to_smpl_path`` and, for 3DPW, ``h36m_regressor_path``.

Focal length: the model sees the test items' ``focal`` (condition and projection), which is
the estimate ``sqrt(W^2 + H^2)`` by default (``eval.test_focal="estimate"``, the reference's
protocol) or the annotated ``cam_int[0, 0]`` (``"annotated"``); see
:func:`humr.experiment.real_data.build_real_datasets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from humr.bodies.conversion import (
    H36M17_TO_LSP14,
    NUM_SMPL_VERTICES,
    load_h36m_regressor,
    load_smplx_to_smpl,
    smplx_to_smpl_vertices,
)
from humr.config import EvalConfig
from humr.data.bedlam_cliff import FOCAL_MODES
from humr.eval.metrics import PROTOCOLS, root_point
from humr.experiment.evaluation import (
    Batch,
    CalibrationJoints,
    ProtocolTargets,
    coco_visibility_index,
    evaluate,
)
from humr.model.humr_model import HumrModel
from humr.model.hypotheses import Hypotheses

__all__ = [
    "GENDERS",
    "RealEvalFiles",
    "SMPLProtocol",
    "check_real_eval_config",
    "load_real_eval_files",
    "genders_of",
    "evaluate_real",
]

GENDERS: tuple[str, ...] = ("neutral", "male", "female")


def check_real_eval_config(config: EvalConfig, protocol: str) -> None:
    """Fail before training or loading when a file the protocol needs is unset or missing."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: expected one of {sorted(PROTOCOLS)}, found {protocol!r}")
    if config.test_focal not in FOCAL_MODES:
        raise ValueError(f"eval.test_focal: expected one of {FOCAL_MODES}, found {config.test_focal!r}")
    needed = {
        "smpl_model_path": "a directory holding SMPL_{NEUTRAL,MALE,FEMALE}.npz (https://smpl.is.tue.mpg.de)",
        "smplx_to_smpl_path": "smplx2smpl.pkl, distributed with BEDLAM-CLIFF's evaluation data",
    }
    if protocol == "3dpw":
        needed["h36m_regressor_path"] = "J_regressor_h36m.npy, from SPIN's data archive"
    for name, what in needed.items():
        value = getattr(config, name)
        if not value:
            raise ValueError(f"eval.{name}: the {protocol!r} protocol needs {what}; pass --eval.{name} PATH")
        if not Path(value).expanduser().exists():
            raise FileNotFoundError(f"eval.{name}: {Path(value).expanduser()} does not exist ({what})")


@dataclass
class RealEvalFiles:
    """What the protocols read besides the model.

    smpl: gender -> :class:`~humr.bodies.smpl_body.SMPLBody` (ground truth).
    smplx_to_smpl: ``(6890, 10475)`` sparse vertex map.
    joint_regressor: ``(K, 6890)`` joints of the protocol regressed from SMPL meshes (14 H36M
        joints for ``"3dpw"``, SMPL's 24 for ``"emdb"``).
    """

    protocol: str
    smpl: dict[str, Any]
    smplx_to_smpl: Tensor
    joint_regressor: Tensor


def load_real_eval_files(
    config: EvalConfig, protocol: str, genders: tuple[str, ...] = GENDERS
) -> RealEvalFiles:
    """Load the SMPL bodies of ``genders``, the SMPL-X -> SMPL matrix and the protocol's regressor."""
    from humr.bodies.smpl_body import SMPLBody

    check_real_eval_config(config, protocol)
    smpl = {g: SMPLBody(config.smpl_model_path, gender=g) for g in genders}
    matrix = load_smplx_to_smpl(config.smplx_to_smpl_path)
    if protocol == "3dpw":
        reg = load_h36m_regressor(config.h36m_regressor_path)[list(H36M17_TO_LSP14)]
    else:
        any_body = next(iter(smpl.values()))
        reg = any_body.layer.J_regressor.detach()[:24].to(torch.float32)
    if reg.shape[1] != NUM_SMPL_VERTICES:
        raise ValueError(f"joint regressor: expected {NUM_SMPL_VERTICES} columns, found {tuple(reg.shape)}")
    return RealEvalFiles(protocol, smpl, matrix, reg)


def genders_of(dataset: Dataset, rows: Tensor) -> list[str]:
    """Genders (``GENDERS`` names) of annotation rows ``(B,)`` of a BEDLAM-CLIFF data set (or a Subset)."""
    base = dataset
    while isinstance(base, Subset):
        base = base.dataset
    ann = getattr(base, "annotations", None)
    if ann is None:
        raise ValueError(
            f"dataset: expected a BEDLAM-CLIFF-format data set with annotations, found {type(base).__name__}"
        )
    if ann.gender is None:
        return ["neutral"] * len(rows)
    first = np.char.lower(np.asarray(ann.gender)[rows.cpu().numpy()].astype(str))
    return ["male" if g.startswith("m") else "female" if g.startswith("f") else "neutral" for g in first]


def _ground_truth(
    files: RealEvalFiles, pose: Tensor, shape: Tensor, genders: list[str]
) -> tuple[Tensor, Tensor]:
    """GT SMPL vertices ``(B, 6890, 3)`` and protocol joints ``(B, K, 3)``, one forward per gender present."""
    vertices = pose.new_zeros(pose.shape[0], NUM_SMPL_VERTICES, 3)
    kinematic = pose.new_zeros(pose.shape[0], 24, 3)
    for gender in sorted(set(genders)):
        idx = torch.tensor([i for i, g in enumerate(genders) if g == gender], device=pose.device)
        out = files.smpl[gender](pose[idx], shape[idx])
        vertices[idx] = out.vertices.to(vertices.dtype)
        kinematic[idx] = out.joints[:, :24].to(vertices.dtype)
    if files.protocol == "emdb":
        return vertices, kinematic  # EMDB's ground truth: the 24 kinematic SMPL joints
    return vertices, torch.einsum("kv,bvc->bkc", files.joint_regressor.to(vertices), vertices)


class SMPLProtocol:
    """SMPL ground truth of a BEDLAM-CLIFF-format test set against SMPL-X hypotheses converted to
    SMPL meshes: the protocol's joints (:class:`RealEvalFiles`) aligned at its root; calibration
    on the same joints, each hypothesis and the ground truth aligned at the protocol's root, with
    the visibility of a joint's COCO-17 namesake where it has one
    (:func:`~humr.experiment.evaluation.coco_visibility_index`).

    Args:
        files: the loaded SMPL bodies, vertex map and regressor of the protocol.
        body: the model's SMPL-X body (its hypotheses' meshes).
        dataset: the test set (genders come from its annotations through ``batch["index"]``).
    """

    def __init__(self, files: RealEvalFiles, body, dataset: Dataset) -> None:
        self.files, self.body, self.dataset = files, body, dataset
        self.root = files.protocol
        self.label = f"evaluate {files.protocol}"
        self.coco_index = coco_visibility_index(PROTOCOLS[files.protocol].keypoints)

    def targets(self, batch: Batch, hyps: Hypotheses, pve: bool) -> ProtocolTargets:
        dtype = hyps.shape.dtype
        genders = genders_of(self.dataset, batch["index"])
        pose, shape = batch["pose"].to(dtype), batch["shape"].to(dtype)
        gt_vertices, gt_joints = _ground_truth(self.files, pose, shape, genders)
        # (B, S, 6890, 3)
        pred_vertices = smplx_to_smpl_vertices(hyps.vertices(self.body), self.files.smplx_to_smpl)
        regressor = self.files.joint_regressor.to(pred_vertices)
        pred_joints = torch.einsum("kv,bsvc->bskc", regressor, pred_vertices)
        calibration = CalibrationJoints(
            pred_joints - root_point(pred_joints, self.root)[..., None, :],
            gt_joints - root_point(gt_joints, self.root)[:, None],
            self.coco_index,
        )
        if not pve:
            return ProtocolTargets(pred_joints, gt_joints, calibration)
        return ProtocolTargets(pred_joints, gt_joints, calibration, pred_vertices, gt_vertices)


@torch.no_grad()
def evaluate_real(
    model: HumrModel, dataset: Dataset,
    eval_config: EvalConfig,
    protocol: str,
    out_dir: Path | None = None,
    progress: bool = True,
    visibility_threshold: float = 0.5,
    seed: int = 0,
    files: RealEvalFiles | None = None,
) -> dict[str, Any]:
    """Tables 1/2 metrics of an SMPL-X ``model`` on 3DPW test (``protocol="3dpw"``) or EMDB (``"emdb"``).

    Args:
        model: a :class:`HumrModel` with the SMPL-X body (10,475 vertices).
        dataset: the test set (``BedlamCliffDataset`` of SMPL ground truth, or a Subset of it).
        eval_config: hypotheses (mode included), batch size, PVE, plots, and the files above.
        protocol: ``"3dpw"`` (H36M-14) or ``"emdb"`` (SMPL-24).
        out_dir: pictures go to ``out_dir/plots`` when ``eval_config.plots``.
        visibility_threshold: ViTPose confidence of a visible joint (0.5).
        seed: seed of the hypotheses' latent draws.
        files: preloaded :func:`load_real_eval_files` (default: loaded from ``eval_config``).

    Returns:
        The accumulator's means (mm; 2DKP and MinDist in 256-crop pixels; PercIn in %), the
        best-of-N ``"curves"``, ``"num_images"``, ``"protocol"`` and ``"plots"``
        (:func:`~humr.experiment.evaluation.evaluate` with :class:`SMPLProtocol`).
    """
    body = model.body
    files = files if files is not None else load_real_eval_files(eval_config, protocol)
    if files.protocol != protocol:
        raise ValueError(f"files: loaded for protocol {files.protocol!r}, asked for {protocol!r}")
    num_v = int(getattr(body, "num_vertices", -1))
    if num_v != files.smplx_to_smpl.shape[1]:
        raise ValueError(
            f"model: the SMPL-X -> SMPL matrix needs a body with {files.smplx_to_smpl.shape[1]} "
            f"vertices (SMPL-X), found {type(body).__name__} with {num_v}"
        )
    protocol_of_files = SMPLProtocol(files, body, dataset)
    metrics = evaluate(model, dataset, eval_config, out_dir=out_dir, progress=progress,
                       visibility_threshold=visibility_threshold, seed=seed, protocol=protocol_of_files)
    return {**metrics, "protocol": protocol}
