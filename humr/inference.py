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
``box_index``            (P,) int                the person's row in the box file
=======================  ======================  ==========================================

Boxes that fail (missing or corrupt image, box outside its image) are skipped and reported
(:class:`FolderPrediction`); the table holds the others. ``export`` adds
``hypotheses.npz`` (:mod:`humr.export`'s documented keys, with the per-joint spread and the
hypothesis chosen without ground truth) and OBJ / GLB meshes coloured by their spread.

Pictures (``plots/``): per person, the hypotheses of its least confident articulated joint on
the crop (Figs. 1, 2, 6) and four mesh hypotheses (Fig. 5).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from humr.bodies.base import ARTICULATED_COCO17, BodyModel
from humr.cameras import crop_to_image
from humr.config import ExperimentConfig
from humr.data.augment import crop_image
from humr.export import body_joint_names
from humr.model.humr_model import HumrModel
from humr.model.hypotheses import Hypotheses
from humr.rotations import matrix_to_axis_angle

__all__ = [
    "PersonBox",
    "read_boxes",
    "load_model",
    "Predictor",
    "prediction_arrays",
    "predict_folder",
    "FolderPrediction",
    "FailedPerson",
    "EXPORT_FORMATS",
]


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
    (another machine); the encoder's weights come from the checkpoint itself
    (:func:`humr.training.checkpoint.load_checkpoint`, the loader of training and evaluation too).
    """
    from humr.training.checkpoint import load_checkpoint

    config, model = load_checkpoint(checkpoint, map_location, body_model_path)
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

    def window(self, image: np.ndarray, box: PersonBox) -> tuple[np.ndarray, np.ndarray]:
        """The part of ``image`` that the crops of ``box`` read: ``(window (h, w, 3), offset (2,))``.

        ``offset`` is the window's top-left pixel ``(x, y)`` in ``image``. It covers the model's
        square crop and the detector's 3:4 box with a margin for interpolation, clipped to the
        image; outside the image both crops see the same zero border either way, so
        :meth:`batch` on windows (with ``offsets`` and ``image_sizes``) gives the same input as on
        full images while holding only the people's surroundings.
        """
        from humr.data.precompute import HeatmapPrecomputeConfig, detector_boxes

        center, side = box.square(self.box_scale)
        det_wh = detector_boxes(np.array([side]), HeatmapPrecomputeConfig())[0]
        half = np.maximum(side, det_wh) / 2 + 4  # (x, y) half extents, 4 px of interpolation margin
        h, w = image.shape[:2]
        x0, y0 = np.maximum(0, np.floor(center - half)).astype(int)
        x1, y1 = np.minimum([w, h], np.ceil(center + half).astype(int) + 1)
        return image[y0:y1, x0:x1], np.array([x0, y0], np.float64)

    def batch(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[PersonBox],
        focal: float | None = None,
        offsets: np.ndarray | None = None,
        image_sizes: np.ndarray | None = None,
    ) -> dict[str, Tensor]:
        """The model's input batch for ``P`` persons: ``images`` RGB uint8 ``(H, W, 3)``, one per box.

        ``images`` may be :meth:`window` cut-outs: then ``offsets (P, 2)`` gives each one's
        top-left pixel in its full image and ``image_sizes (P, 2)`` the full image's ``(W, H)``
        (boxes stay in full-image pixels).
        """
        from humr.data.precompute import detect_keypoints

        p = len(boxes)
        offsets = np.zeros((p, 2)) if offsets is None else np.asarray(offsets, np.float64).reshape(p, 2)
        squares = [b.square(self.box_scale) for b in boxes]
        centers = np.stack([c for c, _ in squares])  # (P, 2) full-image pixels
        local = centers - offsets  # in the given arrays
        sides = np.array([s for _, s in squares])  # (P,)
        crops = np.stack([crop_image(img, c, s, self.crop_size) for img, c, s in zip(images, local, sides)])
        det = detect_keypoints(self.vitpose, images, local, sides, normalisation=self.normalisation)
        det_crop = (det[..., :2] - local[:, None]) / (sides[:, None, None] / 2)  # crop coordinates
        if image_sizes is None:
            wh = np.array([[img.shape[1], img.shape[0]] for img in images], np.float64)
        else:
            wh = np.asarray(image_sizes, np.float64).reshape(p, 2)
        focals = np.hypot(wh[:, 0], wh[:, 1]) if focal is None else np.full(p, float(focal))
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
    def hypotheses(
        self,
        images: Sequence[np.ndarray],
        boxes: Sequence[PersonBox],
        num_hypotheses: int = 100,
        focal: float | None = None,
        generator: torch.Generator | None = None,
        offsets: np.ndarray | None = None,
        image_sizes: np.ndarray | None = None,
    ) -> tuple[Hypotheses, dict[str, Tensor]]:
        """The model's :class:`Hypotheses` (with log-likelihoods) and the batch it saw."""
        if num_hypotheses < 1:
            raise ValueError(f"num_hypotheses: expected >= 1 (the mode first), found {num_hypotheses}")
        if len(images) != len(boxes):
            raise ValueError(
                f"images, boxes: expected one image per box, found {len(images)} and {len(boxes)}"
            )
        batch = self.batch(images, boxes, focal, offsets, image_sizes)
        hyps = self.model(batch, num_samples=num_hypotheses - 1, generator=generator, with_log_prob=True)
        return hyps, batch

    # The arguments repeat hypotheses()' on purpose (its numpy-table form), written compactly.
    def __call__(
        self, images: Sequence[np.ndarray], boxes: Sequence[PersonBox], num_hypotheses: int = 100,
        focal: float | None = None, generator: torch.Generator | None = None,
        offsets: np.ndarray | None = None, image_sizes: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Arrays of the module table for ``P`` persons (``images[i]`` holds ``boxes[i]``)."""
        hyps, batch = self.hypotheses(images, boxes, num_hypotheses, focal, generator, offsets, image_sizes)
        return prediction_arrays(hyps, batch, boxes)


def prediction_arrays(
    hyps: Hypotheses, batch: dict[str, Tensor], boxes: Sequence[PersonBox]
) -> dict[str, np.ndarray]:
    """The module table's arrays (and the model's ``crop`` pictures) of one :class:`Predictor` batch."""
    translation = hyps.translation
    kp3d = hyps.keypoints_3d + translation[:, None, None]
    kp2d = crop_to_image(hyps.keypoints_2d, batch["center"][:, None], batch["box_size"][:, None])
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


@dataclass(frozen=True)
class FailedPerson:
    """A box that could not be predicted: its ``index`` in the box file, its ``image`` and why."""

    index: int
    image: str
    reason: str


@dataclass
class FolderPrediction:
    """What :func:`predict_folder` wrote.

    npz: ``predictions.npz`` (None when every person failed); plots and exports: the pictures
    and the ``--export`` files; failed: the skipped boxes; num_persons: persons predicted.
    """

    npz: Path | None
    plots: list[Path]
    exports: list[Path]
    failed: list[FailedPerson]
    num_persons: int

    def summary(self) -> str:
        """One line per failure and a count, for the user."""
        lines = [f"skipped person {f.index} ({f.image}): {f.reason}" for f in self.failed]
        total = self.num_persons + len(self.failed)
        lines.append(f"{self.num_persons} of {total} persons predicted, {len(self.failed)} failed"
                     + (f" -> {self.npz}" if self.npz is not None else ""))
        return "\n".join(lines)


def _decode_image(folder: Path, name: str) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` of ``folder / name``; ``ValueError`` when it does not decode."""
    path = folder / name
    try:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error as err:  # some corrupt files raise instead of returning None
        raise ValueError(f"cannot decode image {path} ({err})") from err
    if bgr is None:
        raise ValueError(f"cannot decode image {path} (corrupt or not an image?)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _check_inside(box: PersonBox, image: np.ndarray, path: Path) -> None:
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box.box
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        raise ValueError(f"box {box.box} lies outside image {path} of size (W, H) = ({w}, {h})")


def _plots(
    out: dict[str, np.ndarray], body, folder: Path, stems: Sequence[str], meshes: bool = True
) -> list[Path]:
    from humr.eval.plots import plot_joint_hypotheses, plot_mesh_hypotheses

    written = []
    for p, stem in enumerate(stems):
        # the pictures show the least confident articulated joint: where the spread should show
        conf = out["detector_keypoints"][p, list(ARTICULATED_COCO17), 2]
        joint = ARTICULATED_COCO17[int(conf.argmin())]
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


#: Formats of ``predict_folder(export=...)`` / ``recipes/predict.py --export``.
EXPORT_FORMATS: tuple[str, ...] = ("npz", "obj", "glb")


def _check_export(export: Sequence[str]) -> tuple[str, ...]:
    formats = tuple(export)
    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if bad:
        raise ValueError(f"export: expected formats among {list(EXPORT_FORMATS)}, found {bad}")
    return formats


class _Stream:
    """Boxes in file order -> batches of image windows; each image decoded once per run of its boxes."""

    def __init__(self, folder: Path, people: Sequence[PersonBox], predictor: Predictor, skip: set[int]):
        self.folder, self.people, self.predictor, self.skip = folder, people, predictor, skip
        self.failed: list[FailedPerson] = []

    def batches(self, batch_size: int):
        """Yield ``(indices, boxes, windows, offsets (P, 2), image_sizes (P, 2))`` of up to ``batch_size``."""
        pending: list[tuple[int, np.ndarray, np.ndarray, tuple[int, int]]] = []
        name, image, error = None, None, None
        for i, box in enumerate(self.people):
            if i in self.skip:
                continue
            if box.image != name:  # only the last decoded image is held
                name, image, error = box.image, None, None
                try:
                    image = _decode_image(self.folder, name)
                except ValueError as err:
                    error = str(err)
            try:
                if error is not None:
                    raise ValueError(error)
                _check_inside(box, image, self.folder / name)
            except ValueError as err:
                self.failed.append(FailedPerson(i, box.image, str(err)))
                continue
            window, offset = self.predictor.window(image, box)
            pending.append((i, window, offset, (image.shape[1], image.shape[0])))
            if len(pending) == batch_size:
                yield self._pack(pending)
                pending = []
        if pending:
            yield self._pack(pending)

    def _pack(self, pending):
        idx = [p[0] for p in pending]
        return (idx, [self.people[i] for i in idx], [p[1] for p in pending],
                np.stack([p[2] for p in pending]), np.array([p[3] for p in pending], np.float64))


def _missing_images(folder: Path, people: Sequence[PersonBox]) -> list[FailedPerson]:
    return [
        FailedPerson(i, b.image, f"image {folder / b.image} not found (image names are relative to {folder})")
        for i, b in enumerate(people)
        if not (folder / b.image).is_file()
    ]


def _load_predictor(checkpoint, vitpose_dir, encoder_checkpoint, body_model_path, box_scale, device):
    from humr.data.precompute import load_vitpose

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
    return predictor, config


def predict_folder(
    image_dir: str | Path,
    boxes: str | Path | Sequence[PersonBox],
    checkpoint: str | Path,
    vitpose_dir: str | Path,
    out_dir: str | Path,
    *,
    num_hypotheses: int = 100,
    batch_size: int = 8,
    encoder_checkpoint: str | Path | None = None,
    body_model_path: str | Path | None = None,
    focal: float | None = None,
    box_scale: float = 1.2,
    plots: bool = True,
    mesh_plots: bool = True,
    export: Sequence[str] = (),
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> FolderPrediction:
    """Predict every box of ``boxes`` (a file for :func:`read_boxes`, or the boxes) in ``image_dir``.

    Images are streamed: each is decoded when its first box comes up and only the people's
    surroundings (:meth:`Predictor.window`) wait for a batch, so memory does not grow with the
    image size or the number of boxes. A box whose image is missing, does not decode, or which
    lies outside its image is skipped and reported in the result's ``failed``; the others are
    written: ``out_dir/predictions.npz`` (the module table, plus ``box_index``: each person's
    row in the box file), with ``plots`` the pictures in ``out_dir/plots``
    (``mesh_plots=False``: only the joint pictures), and the ``export`` formats:
    ``"npz"`` -> ``out_dir/hypotheses.npz`` (:func:`humr.export.save_npz`), ``"obj"`` /
    ``"glb"`` -> ``out_dir/meshes`` (:func:`humr.export.save_meshes`: mode, selected and four
    samples per person). The box file is read, and the images' presence checked, before the
    model loads; ``FileNotFoundError`` when no image exists, ``ValueError`` when every box fails.
    """
    from tqdm.auto import tqdm

    folder, people, formats, missing = _folder_inputs(image_dir, boxes, batch_size, export)
    predictor, config = _load_predictor(
        checkpoint, vitpose_dir, encoder_checkpoint, body_model_path, box_scale, device
    )
    body = predictor.model.body
    generator = torch.Generator(device=device).manual_seed(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stream = _Stream(folder, people, predictor, {f.index for f in missing})
    parts: list[dict[str, np.ndarray]] = []
    kept: list[tuple[Hypotheses, dict[str, Tensor], Tensor]] = []  # for hypotheses.npz
    written: list[Path] = []
    exported: list[Path] = []
    for idx, part_boxes, windows, offsets, sizes in tqdm(
        stream.batches(batch_size), desc="predict", disable=not progress, leave=False
    ):
        hyps, batch = predictor.hypotheses(
            windows, part_boxes, num_hypotheses, focal, generator, offsets, sizes
        )
        part = prediction_arrays(hyps, batch, part_boxes)
        part["box_index"] = np.array(idx, np.int64)
        stems = [f"{i:04d}_{Path(b.image).stem}" for i, b in zip(idx, part_boxes)]
        if plots:
            written += _plots(part, body, out / "plots", stems, meshes=mesh_plots)
        exported += _export_part(hyps, batch, body, formats, out, stems, kept)
        del part["crop"]
        parts.append(part)
    failed = sorted(missing + stream.failed, key=lambda f: f.index)
    if not parts:
        summary = FolderPrediction(None, [], [], failed, 0).summary()
        raise ValueError(f"boxes: no person could be predicted\n{summary}")
    path = out / "predictions.npz"
    num_persons = _write_table(parts, body, config.body, path)
    if kept:
        exported.append(_export_npz(kept, body, config.body, out / "hypotheses.npz"))
    return FolderPrediction(path, written, exported, failed, num_persons)


def _folder_inputs(
    image_dir: str | Path, boxes: str | Path | Sequence[PersonBox], batch_size: int, export: Sequence[str]
) -> tuple[Path, list[PersonBox], tuple[str, ...], list[FailedPerson]]:
    """:func:`predict_folder`'s checks before the model loads: the folder, the boxes, the batch size,
    the export formats and the images' presence; returns those and the boxes whose image is missing."""
    folder = Path(image_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"image_dir: {folder} is not a directory")
    people = read_boxes(boxes) if isinstance(boxes, str | Path) else list(boxes)
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, found {batch_size}")
    formats = _check_export(export)
    missing = _missing_images(folder, people)
    if len(missing) == len(people):
        raise FileNotFoundError(f"person {missing[0].index} ({missing[0].image}): {missing[0].reason}")
    return folder, people, formats, missing


def _write_table(parts: list[dict[str, np.ndarray]], body: BodyModel, body_name: str, path: Path) -> int:
    """Write the batches' module tables, joined, with the body's name and joint names to ``path``
    (``.npz``); returns the number of persons."""
    result = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    result["body"] = np.array(body_name)
    result["joint_names"] = np.array(body_joint_names(body))
    np.savez(path, **result)
    return len(result["image"])


def _cpu(hyps: Hypotheses) -> Hypotheses:
    values = {f.name: getattr(hyps, f.name) for f in fields(Hypotheses)}
    return Hypotheses(**{k: v if v is None else v.detach().cpu() for k, v in values.items()})


def _export_part(hyps, batch, body, formats, out: Path, stems, kept: list) -> list[Path]:
    """Meshes of one batch now; its hypotheses kept (on the CPU) for the one ``hypotheses.npz``."""
    if not formats:
        return []
    from humr.eval.select import select_hypotheses
    from humr.export import save_meshes

    selected = select_hypotheses(hyps, batch).index
    if "npz" in formats:
        camera = {k: batch[k].detach().cpu() for k in ("center", "box_size", "focal", "image_size")}
        kept.append((_cpu(hyps), camera, selected.cpu()))
    mesh_formats = [f for f in formats if f != "npz"]
    if not mesh_formats:
        return []
    return save_meshes(out / "meshes", hyps, body, selected=selected, formats=mesh_formats, names=stems)


def _export_npz(kept: list, body, name: str, path: Path) -> Path:
    from humr.export import concat_hypotheses, save_npz

    hyps = concat_hypotheses([h for h, _, _ in kept])
    camera = {k: torch.cat([c[k] for _, c, _ in kept]) for k in kept[0][1]}
    return save_npz(path, hyps, body, camera, selected=torch.cat([s for _, _, s in kept]), name=name)
