"""Prediction on a user's images: person boxes in, N 3D body hypotheses per person out.

For each person box (a JSON or CSV file, see :func:`read_boxes`): the square box (side
``box_scale`` x the longer box side, as BEDLAM-CLIFF's detector boxes) is cropped, ViTPose (a
local ``transformers`` checkpoint directory, :func:`humr.data.precompute.detect_keypoints`) gives
the highest-likelihood 2D pose that conditions the model, the image encoder of the checkpoint (or
HRNet-W48 from ``encoder_checkpoint`` for models trained on cached features) gives the image
features, and the humr checkpoint draws ``num_hypotheses`` hypotheses (index 0 = the mode) with
their log-likelihoods. The focal length is ``sqrt(W^2 + H^2)`` unless given (CLIFF's estimate).

Output ``predictions.npz`` (``P`` persons, ``S`` hypotheses, ``J`` body joints):

=======================  ======================  ==========================================
key                      shape                   meaning
=======================  ======================  ==========================================
``image``                (P,) str                image file name (relative to the folder)
``box``                  (P, 4)                  the input box ``x0, y0, x1, y1`` (pixels)
``center``, ``box_size``  (P, 2), (P,)           the square crop box (pixels)
``focal``, ``image_size`` (P,), (P, 2)           focal length (pixels), image ``(W, H)``
``detector_keypoints``   (P, 17, 3)              ViTPose COCO-17 ``x, y`` (pixels), confidence
``pose6d``               (P, S, 6 J)             the flow's 6D output (before Gram-Schmidt)
``rotmat``               (P, S, J, 3, 3)         joint rotations (root = camera-frame orientation)
``axis_angle``           (P, S, J, 3)            the same as axis-angle vectors
``log_likelihood``       (P, S)                  flow log-density of each hypothesis' ``pose6d``
``shape``                (P, num_shape)          body shape
``camera``               (P, 3)                  weak-perspective ``[s, tx, ty]`` of the crop
``translation``          (P, 3)                  root translation in the camera frame (metres)
``keypoints_3d``         (P, S, 17, 3)           COCO-17 keypoints in the camera frame (metres)
``keypoints_2d``         (P, S, 17, 2)           their projections (image pixels)
``body``, ``joint_names``  () str, (J,) str      the body model and its joint order
=======================  ======================  ==========================================

Pictures (``plots/``): per person, the hypotheses of its least confident articulated joint on
the crop (Figs. 1, 2, 6) and four mesh hypotheses (Fig. 5).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from humr.config import ExperimentConfig, config_from_dict
from humr.data.augment import crop_image
from humr.model.humr_model import HumrModel
from humr.rotations import matrix_to_axis_angle

__all__ = ["PersonBox", "read_boxes", "load_model", "Predictor", "predict_folder"]

#: COCO-17 elbows, wrists, knees, ankles: the joints whose hypotheses the pictures show.
_ARTICULATED = (7, 8, 9, 10, 13, 14, 15, 16)


@dataclass(frozen=True)
class PersonBox:
    """One person: ``image`` (file name in the image folder), ``box = (x0, y0, x1, y1)`` pixels."""

    image: str
    box: tuple[float, float, float, float]

    def square(self, scale: float = 1.2) -> tuple[np.ndarray, float]:
        """``(center (2,), side)``: the square box of side ``scale`` x the longer side, same centre."""
        x0, y0, x1, y1 = self.box
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2]), scale * max(x1 - x0, y1 - y0)


def _box_row(values: Sequence[Any], where: str) -> tuple[str, tuple[float, float, float, float]]:
    if len(values) != 5:
        raise ValueError(
            f"{where}: expected 5 fields (image, x0, y0, x1, y1), found {len(values)}: {list(values)}"
        )
    name = str(values[0]).strip()
    if not name:
        raise ValueError(f"{where}: empty image name")
    try:
        box = tuple(float(v) for v in values[1:])
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: box coordinates must be numbers, found {list(values[1:])}") from err
    x0, y0, x1, y1 = box
    if not all(math.isfinite(v) for v in box) or x1 <= x0 or y1 <= y0:
        raise ValueError(f"{where}: expected finite x0 < x1 and y0 < y1, found {box}")
    return name, box


def read_boxes(path: str | Path) -> list[PersonBox]:
    """Person boxes from a ``.json`` or ``.csv`` file (pixels, ``x0 < x1``, ``y0 < y1``).

    JSON: a list of ``{"image": name, "box": [x0, y0, x1, y1]}`` (or with keys ``x0 .. y1``), or
    a mapping ``{name: [[x0, y0, x1, y1], ...]}``. CSV: rows ``image, x0, y0, x1, y1`` with an
    optional header line. A bad row raises ``ValueError`` naming the file and the row.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"boxes: no file at {path} (a JSON or CSV of image, x0, y0, x1, y1 per person)"
        )
    rows: list[tuple[str, Sequence[Any]]] = []
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"boxes: {path} is not valid JSON ({err})") from err
        if isinstance(data, dict):
            for name, boxes in data.items():
                if not isinstance(boxes, list) or (boxes and not isinstance(boxes[0], list | tuple)):
                    boxes = [boxes]
                rows += [(f"{path}: image {name!r} box {i}", [name, *b]) for i, b in enumerate(boxes)]
        elif isinstance(data, list):
            for i, item in enumerate(data):
                where = f"{path}: entry {i}"
                if not isinstance(item, dict) or "image" not in item:
                    raise ValueError(f"{where}: expected an object with 'image' and 'box', found {item!r}")
                box = item.get("box", [item.get(k) for k in ("x0", "y0", "x1", "y1")])
                rows.append((where, [item["image"], *box]))
        else:
            raise ValueError(f"boxes: {path} should hold a list or an object, found {type(data).__name__}")
    elif path.suffix.lower() == ".csv":
        with open(path, newline="") as f:
            lines = [(i + 1, r) for i, r in enumerate(csv.reader(f)) if r and any(c.strip() for c in r)]
        if lines and [c.strip().lower() for c in lines[0][1]][:1] == ["image"]:
            lines = lines[1:]  # header
        rows = [(f"{path}: line {n}", r) for n, r in lines]
    else:
        raise ValueError(f"boxes: expected a .json or .csv file, found {path}")
    if not rows:
        raise ValueError(f"boxes: {path} holds no box")
    return [PersonBox(*_box_row(values, where)) for where, values in rows]


def load_model(
    checkpoint: str | Path,
    body_model_path: str | Path | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[HumrModel, ExperimentConfig]:
    """A trained :class:`HumrModel` and its config from a humr (Lightning) checkpoint, without Lightning.

    ``body_model_path`` replaces the body files' location stored in the checkpoint's config
    (another machine); the encoder's weights come from the checkpoint itself.
    """
    from humr.bodies.factory import build_body

    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint: no file at {path} (training writes <output_dir>/checkpoints/last.ckpt)"
        )
    ckpt = torch.load(path, map_location=map_location, weights_only=False)
    config_dict = ckpt.get("hyper_parameters", {}).get("config") if isinstance(ckpt, dict) else None
    if config_dict is None or "state_dict" not in ckpt:
        raise ValueError(
            f"checkpoint: {path} holds no humr config and state_dict (was it written by humr's trainer?)"
        )
    config = config_from_dict(ExperimentConfig, config_dict)
    if body_model_path is not None:
        config = replace(config, body_model_path=str(body_model_path))
    config = replace(config, model=replace(config.model, encoder_checkpoint=None))
    model = HumrModel(config.model, build_body(config.body, config.body_model_path))
    state = {k[len("model.") :]: v for k, v in ckpt["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(state)
    return model.eval(), config


class Predictor:
    """Hypotheses for person boxes of images held in memory.

    Args:
        model: a trained :class:`HumrModel` (:func:`load_model`).
        vitpose: a ``VitPoseForPoseEstimation`` (:func:`humr.data.precompute.load_vitpose`).
        crop_size: the model's input crop side (the training config's ``data.image_size``).
        vitpose_dir: its checkpoint directory (to read its normalisation), optional.
        feature_encoder: encoder of the cached features for ``model.encoder = "features"``
            models (HRNet-W48 with the BEDLAM-CLIFF weights).
        box_scale: square box side / longer side of the input box.
    """

    def __init__(
        self,
        model: HumrModel,
        vitpose,
        crop_size: int,
        vitpose_dir: str | Path | None = None,
        feature_encoder: torch.nn.Module | None = None,
        box_scale: float = 1.2,
    ) -> None:
        from humr.data.precompute import vitpose_normalisation

        if model.condition.image_encoder is None and feature_encoder is None:
            raise ValueError(
                "feature_encoder: this model was trained on cached features (model.encoder="
                "'features'); give the encoder that computed them (--encoder-checkpoint)"
            )
        if not box_scale > 0:
            raise ValueError(f"box_scale: expected > 0, found {box_scale}")
        self.model, self.vitpose, self.crop_size = model.eval(), vitpose, int(crop_size)
        self.normalisation = vitpose_normalisation(vitpose_dir)
        self.feature_encoder = feature_encoder.eval() if feature_encoder is not None else None
        self.box_scale = float(box_scale)

    def batch(
        self, images: Sequence[np.ndarray], boxes: Sequence[PersonBox], focal: float | None = None
    ) -> dict[str, Tensor]:
        """The model's input batch for ``P`` persons: ``images`` RGB uint8 ``(H, W, 3)``, one per box."""
        from humr.data.precompute import detect_keypoints

        squares = [b.square(self.box_scale) for b in boxes]
        centers = np.stack([c for c, _ in squares])  # (P, 2)
        sides = np.array([s for _, s in squares])  # (P,)
        crops = np.stack([crop_image(img, c, s, self.crop_size) for img, (c, s) in zip(images, squares)])
        det = detect_keypoints(self.vitpose, images, centers, sides, normalisation=self.normalisation)
        det_crop = (det[..., :2] - centers[:, None]) / (sides[:, None, None] / 2)  # crop coordinates
        wh = np.array([[img.shape[1], img.shape[0]] for img in images], np.float64)
        focals = np.hypot(wh[:, 0], wh[:, 1]) if focal is None else np.full(len(boxes), float(focal))
        param = next(self.model.parameters())
        f32 = lambda a: torch.as_tensor(np.asarray(a), dtype=param.dtype, device=param.device)  # noqa: E731
        batch = {
            "image": f32(crops.transpose(0, 3, 1, 2)) / 255.0,
            "detector_keypoints": f32(np.concatenate([det_crop, det[..., 2:]], -1)),
            "center": f32(centers),
            "box_size": f32(sides),
            "focal": f32(focals),
            "image_size": f32(wh),
        }
        if self.feature_encoder is not None:
            with torch.no_grad():
                batch["image_features"] = self.feature_encoder(batch["image"])
        return batch

    @torch.no_grad()
    def __call__(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[PersonBox],
        num_hypotheses: int = 100,
        focal: float | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, np.ndarray]:
        """Arrays of the module table for ``P`` persons (``images[i]`` holds ``boxes[i]``)."""
        if num_hypotheses < 1:
            raise ValueError(f"num_hypotheses: expected >= 1 (the mode first), found {num_hypotheses}")
        if len(images) != len(boxes):
            raise ValueError(
                f"images, boxes: expected one image per box, found {len(images)} and {len(boxes)}"
            )
        batch = self.batch(images, boxes, focal)
        hyps = self.model(batch, num_samples=num_hypotheses - 1, generator=generator, with_log_prob=True)
        translation = hyps.translation
        kp3d = hyps.keypoints_3d + translation[:, None, None]
        kp2d = batch["center"][:, None, None] + hyps.keypoints_2d * (
            batch["box_size"][:, None, None, None] / 2
        )
        c = lambda t: t.detach().float().cpu().numpy()  # noqa: E731
        det = c(batch["detector_keypoints"])
        det[..., :2] = det[..., :2] * c(batch["box_size"])[:, None, None] / 2 + c(batch["center"])[:, None]
        return {
            "image": np.array([b.image for b in boxes]),
            "box": np.array([b.box for b in boxes], np.float64),
            "center": c(batch["center"]),
            "box_size": c(batch["box_size"]),
            "focal": c(batch["focal"]),
            "image_size": c(batch["image_size"]),
            "detector_keypoints": det,
            "pose6d": c(hyps.pose6d),
            "rotmat": c(hyps.rotmat),
            "axis_angle": c(matrix_to_axis_angle(hyps.rotmat)),
            "log_likelihood": c(hyps.log_prob),
            "shape": c(hyps.shape),
            "camera": c(hyps.camera),
            "translation": c(translation),
            "keypoints_3d": c(kp3d),
            "keypoints_2d": c(kp2d),
            "crop": (c(batch["image"]).transpose(0, 2, 3, 1) * 255).round().astype(np.uint8),
        }


def _read_image(folder: Path, box: PersonBox, where: str) -> np.ndarray:
    path = folder / box.image
    if not path.is_file():
        raise FileNotFoundError(f"{where}: image {path} not found (image names are relative to {folder})")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{where}: cannot decode image {path} (corrupt or not an image?)")
    h, w = bgr.shape[:2]
    x0, y0, x1, y1 = box.box
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise ValueError(f"{where}: box {box.box} lies outside image {path} of size (W, H) = ({w}, {h})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _plots(out: dict[str, np.ndarray], body, folder: Path, offset: int, meshes: bool = True) -> list[Path]:
    from humr.eval.plots import plot_joint_hypotheses, plot_mesh_hypotheses

    written = []
    for p in range(len(out["image"])):
        stem = f"{offset + p:04d}_{Path(str(out['image'][p])).stem}"
        conf = out["detector_keypoints"][p, list(_ARTICULATED), 2]
        joint = _ARTICULATED[int(conf.argmin())]  # the least confident: where the spread should show
        crop_xy = (out["keypoints_2d"][p, :, joint] - out["center"][p]) / (out["box_size"][p] / 2)
        path = folder / f"{stem}_joint{joint}.png"
        plot_joint_hypotheses(out["crop"][p], crop_xy, np.full(2, np.nan), path)
        written.append(path)
        if not meshes:
            continue
        rot = torch.from_numpy(out["rotmat"][p, :4])
        shape = torch.from_numpy(out["shape"][p]).expand(rot.shape[0], -1)
        with torch.no_grad():
            vertices = body(rot.float(), shape.float()).vertices
        path = folder / f"{stem}_meshes.png"
        plot_mesh_hypotheses(vertices.cpu().numpy(), body.faces.cpu().numpy(), path)
        written.append(path)
    return written


def predict_folder(
    image_dir: str | Path,
    boxes: str | Path | Sequence[PersonBox],
    checkpoint: str | Path,
    vitpose_dir: str | Path,
    out_dir: str | Path,
    num_hypotheses: int = 100,
    batch_size: int = 8,
    encoder_checkpoint: str | Path | None = None,
    body_model_path: str | Path | None = None,
    focal: float | None = None,
    box_scale: float = 1.2,
    plots: bool = True,
    mesh_plots: bool = True,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Predict every box of ``boxes`` (a file for :func:`read_boxes`, or the boxes) in ``image_dir``.

    Writes ``out_dir/predictions.npz`` (the module table) and, with ``plots``, the pictures to
    ``out_dir/plots`` (``mesh_plots=False``: only the joint pictures). Returns the ``.npz`` path.
    Box file and images are checked before any model is loaded.
    """
    from tqdm.auto import tqdm

    from humr.data.precompute import load_vitpose

    folder = Path(image_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"image_dir: {folder} is not a directory")
    people = read_boxes(boxes) if isinstance(boxes, str | Path) else list(boxes)
    images = [_read_image(folder, b, f"person {i} ({b.image})") for i, b in enumerate(people)]
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, found {batch_size}")
    model, config = load_model(checkpoint, body_model_path)
    model.to(device)
    encoder = None
    if model.condition.image_encoder is None:
        from humr.model.encoders import HRNetW48Encoder, load_hrnet_checkpoint

        if encoder_checkpoint is None:
            raise ValueError(
                "encoder_checkpoint: the model was trained on cached HRNet-W48 features; give "
                "the BEDLAM-CLIFF backbone checkpoint that computed them"
            )
        encoder = HRNetW48Encoder()
        load_hrnet_checkpoint(encoder, encoder_checkpoint)
        encoder.to(device)
    predictor = Predictor(
        model, load_vitpose(vitpose_dir, device), config.data.image_size, vitpose_dir, encoder, box_scale
    )
    generator = torch.Generator(device=device).manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts: list[dict[str, np.ndarray]] = []
    written: list[Path] = []
    for start in tqdm(range(0, len(people), batch_size), desc="predict", disable=not progress, leave=False):
        stop = start + batch_size
        part = predictor(images[start:stop], people[start:stop], num_hypotheses, focal, generator)
        if plots:
            written += _plots(part, model.body, out / "plots", start, meshes=mesh_plots)
        parts.append(part)
    result = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "crop"}
    result["body"] = np.array(config.body)
    result["joint_names"] = np.array(_joint_names(model.body))
    path = out / "predictions.npz"
    np.savez(path, **result)
    return path


def _joint_names(body) -> list[str]:
    from humr.bodies.base import BODY_JOINT_NAMES

    names = getattr(body, "joint_names", None)
    names = list(names) if names is not None else list(BODY_JOINT_NAMES)
    return names[: body.num_pose_joints]
