"""Real data in the BEDLAM-CLIFF annotation format (BEDLAM, AGORA, 3DPW, EMDB; paper Sec. 5.1).

Annotation files are the ``.npz`` files of BEDLAM's ``df_full_body.py`` with the reference
implementation's additions; users of the reference read theirs unchanged. Per row (N rows):

=====================  ==================  =================================================
key                    shape               meaning
=====================  ==================  =================================================
``imgname``            (N,) str            image path relative to the data set's image folder
``center``             (N, 2)              person box centre (pixels)
``scale``              (N,)                box side / 200 (the box is square)
``pose_cam``           (N, >= 66) / (N,72) axis-angle, root in the camera frame; SMPL-X: the
                                           first 66 = 22 body joints; SMPL (3DPW / EMDB test):
                                           72 = 24 joints
``shape``              (N, 10 or 11)       betas (SMPL-X padded with zeros to 11)
``vitpose``            (N, 17, 3)          ViTPose pose, stored **(y, x, confidence)**, pixels
``gt_coco_25j``        (N, 25, 2 or 3)     ground-truth OpenPose-25 keypoints (pixels)
``gtkps``              (N, K, 2 or 3)      projected SMPL-X joints, pixels, in the order of the
                                           ``smplx`` layer's output (BEDLAM: K = 127, 0-21 the
                                           body joints pelvis ... right wrist, 22 jaw, 23 / 24
                                           left / right eye, then hands and extra keypoints;
                                           third column 1); training sets (BEDLAM, AGORA, 3DPW
                                           train); optional, K >= 22 when used
``cam_int``            (N, 3, 3)           intrinsics (optional; focal = ``cam_int[0, 0]``;
                                           training only by default, see ``focal`` below)
``trans_cam``          (N, 3) / (N, 1, 3)  SMPL-X ``transl`` in the camera frame (optional)
``cam_ext``            (N, 4, 4)           BEDLAM camera extrinsics (optional; its translation
                                           column is added to ``trans_cam``)
``gender``             (N,) str            'm...' / 'f...' (optional)
``orig_shape``         (N, 2)              image (H, W) (optional; else read from the image)
``object_occlusion``   (N,) bool           an object occludes the person (BEDLAM / AGORA)
``valid_emdb_mask``    (N,)                EMDB occlusion subset: the mask is good (1)
=====================  ==================  =================================================

OpenPose-25 -> COCO-17 (``COCO25_TO_COCO17``): COCO nose <- OP 0 (Nose), left eye <- 16
(LEye), right eye <- 15 (REye), left ear <- 18 (LEar), right ear <- 17 (REar), left shoulder
<- 5, right shoulder <- 2, left elbow <- 6, right elbow <- 3, left wrist <- 7, right wrist
<- 4, left hip <- 12, right hip <- 9, left knee <- 13, right knee <- 10, left ankle <- 14,
right ankle <- 11.

Items follow :mod:`humr.data.fields`. ``J = 22`` SMPL-X body joints and ``S = 11`` for
SMPL-X data sets; ``J = 24`` SMPL joints and ``S = 10`` for the SMPL test sets (3DPW test,
EMDB), whose meshes the evaluation builds with SMPL. ``translation`` is the offset added to the
body model's output (``trans_cam + cam_ext[:3, 3]``, zeros when the file has neither);
``index`` is the row in the annotation file (also the row of the heatmap-sample and feature
stores). Items may carry ``image_features (F,)`` from a feature cache.

Body joints in 2D (:data:`humr.data.fields.OPTIONAL_FIELDS`): SMPL-X data sets with ``gtkps``
give ``body_joints_2d (22, 2)``, the first 22 ``gtkps`` joints through the same crop transform
as the COCO keypoints, and ``body_joints_2d_valid (22,)`` (finite and, with a third column,
confidence > 0). The reference supervises the mode's projection of the first 24 ``gtkps``
joints (the 22 body joints, the jaw and the left eye); humr takes the 22 body joints, the ones
its flow articulates and its model predicts as ``body.keypoints(..., "body_joints")`` (jaw and
eye rotations are not modelled and stay at rest). The reference truncates these keypoints (and
the COCO ones) to whole crop pixels; humr keeps the exact transform for both.

Focal length: items carry ``cam_int[0, 0]`` where the file has it (``focal="annotated"``, the
training default, as in the reference), else the CLIFF estimate ``sqrt(W^2 + H^2)``
(:func:`humr.cameras.estimate_focal`); ``focal="estimate"`` always uses the estimate, which is
the reference's evaluation protocol for 3DPW and EMDB (its test step never reads ``cam_int``)
and the test-set default of :func:`humr.experiment.real_data.build_real_datasets`.

Training filter (reference values, Sec. 4.5 "we filter out these examples by thresholding the
Euclidean distance between ground-truth and ViTPose 2D poses"): drop rows whose mean over the
17 joints of ``|detector - GT| * [confidence > 0.2]`` exceeds ``13 * scale`` pixels, rows with
at most 8 joints of confidence > 0.5, and rows with a detector keypoint more than 100 px
outside the image.

Example:
    >>> from humr.testing.real_files import write_fake_dataset          # doctest: +SKIP
    >>> spec = write_fake_dataset(tmp, "bedlam", num_rows=4)         # doctest: +SKIP
    >>> BedlamCliffDataset(spec)[0]["image"].shape                   # doctest: +SKIP
    torch.Size([3, 224, 224])
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from humr.data.augment import NO_AUGMENT, AugmentConfig, Photometric, crop_image, image_to_crop_np, sample_box
from humr.data.masks import (
    MASK_LAYOUTS,
    crop_mask,
    dilate_mask,
    distance_map_from_mask,
    mask_path,
    read_person_mask,
)
from humr.data.sample_store import ArrayStore, HeatmapSampleStore, ReferenceSampleStore
from humr.data.worker_rng import WorkerGenerator
from humr.rotations import axis_angle_to_matrix

__all__ = [
    "COCO25_TO_COCO17",
    "BEDLAM_SCENES",
    "FOCAL_MODES",
    "FilterConfig",
    "DatasetSpec",
    "Annotations",
    "load_annotations",
    "annotation_keys",
    "filter_rows",
    "BedlamCliffDataset",
    "bedlam_scene",
    "agora",
    "pw3d_train",
    "pw3d_test",
    "emdb",
    "TRAIN_KEYS",
    "PRESET_KEYS",
    "preset",
]

#: OpenPose-25 index of each COCO-17 keypoint (COCO order), see the module docstring.
COCO25_TO_COCO17: tuple[int, ...] = (0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11)

#: The 26 BEDLAM scenes the reference trains on: data-set key -> scene folder (the annotation
#: file is ``<folder>.npz``, images ``training_images/<folder>/png``, masks ``env_masks/<folder>``).
BEDLAM_SCENES: dict[str, str] = {
    "zoom-suburbd": "20221010_3-10_500_batch01hand_zoom_suburb_d_6fps",
    "closeup-suburba": "20221011_1_250_batch01hand_closeup_suburb_a_6fps",
    "closeup-suburbb": "20221011_1_250_batch01hand_closeup_suburb_b_6fps",
    "closeup-suburbc": "20221011_1_250_batch01hand_closeup_suburb_c_6fps",
    "closeup-suburbd": "20221011_1_250_batch01hand_closeup_suburb_d_6fps",
    "closeup-gym": "20221012_1_500_batch01hand_closeup_highSchoolGym_6fps",
    "zoom-gym": "20221012_3-10_500_batch01hand_zoom_highSchoolGym_6fps",
    "static-gym": "20221013_3-10_500_batch01hand_static_highSchoolGym_6fps",
    "static-office": "20221013_3_250_batch01hand_static_bigOffice_6fps",
    "orbit-office": "20221013_3_250_batch01hand_orbit_bigOffice_6fps",
    "orbit-archviz-15": "20221014_3_250_batch01hand_orbit_archVizUI3_time15_6fps",
    "orbit-archviz-19": "20221015_3_250_batch01hand_orbit_archVizUI3_time19_6fps",
    "orbit-archviz-12": "20221015_3_250_batch01hand_orbit_archVizUI3_time12_6fps",
    "orbit-archviz-10": "20221015_3_250_batch01hand_orbit_archVizUI3_time10_6fps",
    "static-hdri": "20221010_3_1000_batch01hand_6fps",
    "static-hdri-zoomed": "20221017_3_1000_batch01hand_6fps",
    "pitchup-stadium": "20221018_3-8_250_batch01hand_pitchUp52_stadium_6fps",
    "pitchdown-stadium": "20221018_3-8_250_batch01hand_pitchDown52_stadium_6fps",
    "static-hdri-bmi": "20221019_3_250_highbmihand_6fps",
    "closeup-suburbb-bmi": "20221019_1_250_highbmihand_closeup_suburb_b_6fps",
    "closeup-suburbc-bmi": "20221019_1_250_highbmihand_closeup_suburb_c_6fps",
    "static-suburbd-bmi": "20221019_3-8_1000_highbmihand_static_suburb_d_6fps",
    "zoom-gym-bmi": "20221020-3-8_250_highbmihand_zoom_highSchoolGym_a_6fps",
    "static-office-hair": "20221022_3_250_batch01handhair_static_bigOffice_30fps",
    "zoom-suburbd-hair": "20221024_10_100_batch01handhair_zoom_suburb_d_30fps",
    "static-gym-hair": "20221024_3-10_100_batch01handhair_static_highSchoolGym_30fps",
}

_BODIES = {"smplx": (22, 11), "smpl": (24, 10)}
#: Focal-length modes of :class:`BedlamCliffDataset` (see the module docstring).
FOCAL_MODES: tuple[str, ...] = ("annotated", "estimate")


# ---------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class FilterConfig:
    """Which training rows to keep (reference thresholds; see the module docstring).

    enabled: apply the filter (only ever to ``split="train"`` data sets).
    max_error: maximal mean detector-GT distance in pixels per unit of ``scale`` (box / 200).
    error_confidence: joints with detector confidence above it count in the mean distance.
    min_visible: minimal number of joints with confidence above ``visible_confidence``.
    visible_confidence: confidence threshold of the joint count.
    image_padding: detector keypoints must lie in the image grown by this many pixels
        (None: no check). Needs the image size (``orig_shape`` or the spec's ``image_size``).
    """

    enabled: bool = True
    max_error: float = 13.0
    error_confidence: float = 0.2
    min_visible: int = 9
    visible_confidence: float = 0.5
    image_padding: float | None = 100.0


@dataclass(frozen=True)
class DatasetSpec:
    """Where one data set lives and how to read it (see the presets :func:`bedlam_scene` etc.).

    name: data-set key (also the reference's heatmap-sample sub-directory by default).
    annotation: the ``.npz`` annotation file.
    image_dir: folder that ``imgname`` entries are relative to.
    split: ``"train"`` (filtered, augmentable) or ``"test"``.
    body: ``"smplx"`` (J = 22, S = 11) or ``"smpl"`` (J = 24, S = 10).
    mask_layout: one of :data:`humr.data.masks.MASK_LAYOUTS`, or None (no masks).
    mask_dir: the masks' folder (see :func:`humr.data.masks.mask_path`).
    samples: heatmap samples: the reference's ``heatmap_samples`` root (``samples_layout=
        "reference"``) or a humr store directory (``"humr"``); None: none.
    samples_key: reference sub-directory (default ``name``).
    features: an :class:`~humr.data.sample_store.ArrayStore` of cached image features.
    rotate_clockwise: rotate images and masks by 90 degrees clockwise (BEDLAM closeup scenes).
    image_size: ``(W, H)`` of every image when the file has no ``orig_shape`` (for the filter).
    inside_image_check: apply the filter's inside-image test (the reference skips 3DPW).
    """

    name: str
    annotation: str
    image_dir: str
    split: str = "train"
    body: str = "smplx"
    mask_layout: str | None = None
    mask_dir: str | None = None
    samples: str | None = None
    samples_layout: str = "reference"
    samples_key: str | None = None
    features: str | None = None
    rotate_clockwise: bool = False
    image_size: tuple[int, int] | None = None
    inside_image_check: bool = True

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise ValueError(f"split: expected 'train' or 'test', found {self.split!r}")
        if self.body not in _BODIES:
            raise ValueError(f"body: expected one of {sorted(_BODIES)}, found {self.body!r}")
        if self.mask_layout is not None and self.mask_layout not in MASK_LAYOUTS:
            raise ValueError(
                f"mask_layout: expected None or one of {MASK_LAYOUTS}, found {self.mask_layout!r}"
            )
        if self.mask_layout is not None and self.mask_dir is None:
            raise ValueError(
                f"mask_dir: data set {self.name!r} has mask_layout={self.mask_layout!r} but no mask_dir"
            )
        if self.samples_layout not in ("reference", "humr"):
            raise ValueError(f"samples_layout: expected 'reference' or 'humr', found {self.samples_layout!r}")


# ---------------------------------------------------------------------------- presets


def _spec(root: Path, name: str, annotation: str, image_dir: str, overrides: dict, **fields) -> DatasetSpec:
    """The :class:`DatasetSpec` ``name`` reading ``root/annotations/<annotation>`` and the images in
    ``root/<image_dir>``; then ``fields`` (paths as strings) and last ``overrides`` (these win)."""
    kw = dict(name=name, annotation=root / "annotations" / annotation, image_dir=root / image_dir, **fields)
    kw = {k: str(v) if isinstance(v, Path) else v for k, v in kw.items()}
    return DatasetSpec(**{**kw, **overrides})


def bedlam_scene(name: str, data_root: str | Path, **overrides) -> DatasetSpec:
    """A BEDLAM scene in the reference's ``data/`` layout (``annotations``, ``training_images``,
    ``env_masks``, ``heatmap_samples``); ``name`` is a key of :data:`BEDLAM_SCENES`."""
    if name not in BEDLAM_SCENES:
        raise ValueError(f"name: unknown BEDLAM scene {name!r}; expected one of {sorted(BEDLAM_SCENES)}")
    root, folder = Path(data_root), BEDLAM_SCENES[name]
    closeup = "closeup" in name
    return _spec(
        root, name, f"{folder}.npz", f"training_images/{folder}/png", overrides,
        mask_layout="bedlam_env", mask_dir=root / "env_masks" / folder, samples=root / "heatmap_samples",
        rotate_clockwise=closeup, image_size=(720, 1280) if closeup else (1280, 720),
    )


def agora(name: str, data_root: str | Path, **overrides) -> DatasetSpec:
    """AGORA (``"agora-bfh"`` or ``"agora-body"``) in the reference's ``data/`` layout."""
    if name not in ("agora-bfh", "agora-body"):
        raise ValueError(f"name: expected 'agora-bfh' or 'agora-body', found {name!r}")
    root = Path(data_root)
    return _spec(
        root, name, f"{name}.npz", "training_images/images", overrides, mask_layout="agora_all_person",
        mask_dir=root / "env_masks" / "images", samples=root / "heatmap_samples", image_size=(1280, 720),
    )


def pw3d_train(data_root: str | Path, **overrides) -> DatasetSpec:
    """3DPW training set with BEDLAM's SMPL-X labels (no masks; the reference skips its inside-image test)."""
    root = Path(data_root)
    return _spec(root, "3dpw-train-smplx", "3dpw_train_smplx_w_cam.npz", "test_images/3DPW", overrides,
                 samples=root / "heatmap_samples", inside_image_check=False)


def pw3d_test(data_root: str | Path, **overrides) -> DatasetSpec:
    """3DPW test set (SMPL, J = 24, S = 10)."""
    return _spec(Path(data_root), "3dpw-test-cam", "3dpw_test_w_cam.npz", "test_images/3DPW", overrides,
                 split="test", body="smpl")


def emdb(data_root: str | Path, occluded_subset: bool = False, **overrides) -> DatasetSpec:
    """EMDB protocol 1 (SMPL); ``occluded_subset`` gives the 1,760-mask plausibility subset with masks."""
    root = Path(data_root)
    name = "emdb-p1-occl" if occluded_subset else "emdb-p1"
    masks = {"mask_layout": "binary", "mask_dir": root / "test_images" / "EMDB" / "masks"}
    return _spec(root, name, f"{name.replace('-', '_')}.npz", "test_images/EMDB", overrides,
                 split="test", body="smpl", **(masks if occluded_subset else {}))


#: The training sets' keys: the BEDLAM scenes, AGORA and 3DPW train (with BEDLAM's SMPL-X labels).
TRAIN_KEYS: tuple[str, ...] = (*BEDLAM_SCENES, "agora-bfh", "agora-body", "3dpw-train-smplx")
#: Every data-set key :func:`preset` knows: the training sets, 3DPW test and EMDB (the reference's names).
PRESET_KEYS: tuple[str, ...] = (*TRAIN_KEYS, "3dpw-test-cam", "emdb-p1", "emdb-p1-occl")


def preset(key: str, data_root: str | Path, **overrides) -> DatasetSpec:
    """The :class:`DatasetSpec` of a key of :data:`PRESET_KEYS` under the reference's ``data/`` root."""
    if key in BEDLAM_SCENES:
        return bedlam_scene(key, data_root, **overrides)
    if key in ("agora-bfh", "agora-body"):
        return agora(key, data_root, **overrides)
    if key == "3dpw-train-smplx":
        return pw3d_train(data_root, **overrides)
    if key == "3dpw-test-cam":
        return pw3d_test(data_root, **overrides)
    if key in ("emdb-p1", "emdb-p1-occl"):
        return emdb(data_root, occluded_subset=key == "emdb-p1-occl", **overrides)
    raise ValueError(f"key: unknown data set {key!r}; expected one of {list(PRESET_KEYS)}")


# ---------------------------------------------------------------------------- annotations


@dataclass
class Annotations:
    """Validated arrays of one annotation file (N rows). Pixel keypoints in ``(x, y)`` order.

    detector: ``(N, 17, 3)`` ViTPose ``(x, y, confidence)`` (the file's (y, x) swapped, confidence
    clipped to [0, 1]); gt_coco: ``(N, 17, 2)``; gt_coco_valid: ``(N, 17)``; pose: ``(N, 3 J)``
    axis-angle; shape: ``(N, S)``; the rest as in the module table, None when absent.
    """

    path: Path
    imgname: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    pose: np.ndarray
    shape: np.ndarray
    detector: np.ndarray
    gt_coco: np.ndarray
    gt_coco_valid: np.ndarray
    translation: np.ndarray | None = None
    focal: np.ndarray | None = None
    gender: np.ndarray | None = None
    orig_shape: np.ndarray | None = None
    object_occlusion: np.ndarray | None = None
    valid_mask_label: np.ndarray | None = None
    gtkps: np.ndarray | None = None
    keys: tuple[str, ...] = field(default_factory=tuple)

    def __len__(self) -> int:
        return len(self.imgname)


def _need(data, path: Path, key: str) -> np.ndarray:
    if key not in data:
        raise ValueError(f"{path}: missing key {key!r} (keys present: {sorted(data)})")
    return data[key]


def _check_shape(path: Path, key: str, arr: np.ndarray, n: int, tail: tuple, desc: str) -> np.ndarray:
    ok = (
        arr.ndim == 1 + len(tail)
        and arr.shape[0] == n
        and all(
            t is None or (arr.shape[1 + i] in t if isinstance(t, tuple) else arr.shape[1 + i] == t)
            for i, t in enumerate(tail)
        )
    )
    if not ok:
        raise ValueError(
            f"{path}: key {key!r} expected shape {desc} with N = {n} rows (from 'imgname'), found {arr.shape}"
        )
    return arr


def load_annotations(path: str | Path, body: str = "smplx") -> Annotations:
    """Read and validate a BEDLAM-CLIFF annotation ``.npz`` (see the module table).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unreadable / truncated file, or a missing or wrongly shaped key (naming
            the file and the key).
    """
    path = Path(path)
    if body not in _BODIES:
        raise ValueError(f"body: expected one of {sorted(_BODIES)}, found {body!r}")
    if not path.is_file():
        raise FileNotFoundError(
            f"annotations: {path} not found; BEDLAM-CLIFF annotation files come from BEDLAM's "
            "data_processing (or the reference implementation's parsed annotations with 'vitpose')"
        )
    try:
        with np.load(path, allow_pickle=True) as npz:
            data = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as err:
        raise ValueError(
            f"{path}: cannot read annotation file ({type(err).__name__}: {err}); is it truncated?"
        ) from err
    ann = _required_annotations(path, data, body)
    _add_optional_annotations(ann, path, data)
    return ann


def _required_annotations(path: Path, data: dict[str, np.ndarray], body: str) -> Annotations:
    """The keys every annotation file has, checked and converted (see the module table)."""
    imgname = np.asarray(_need(data, path, "imgname")).astype(str)
    if imgname.ndim != 1:
        raise ValueError(f"{path}: key 'imgname' expected shape (N,), found {imgname.shape}")
    n = len(imgname)
    center = _check_shape(path, "center", _need(data, path, "center"), n, (2,), "(N, 2)").astype(np.float64)
    scale = np.asarray(_need(data, path, "scale"), np.float64)
    scale = _check_shape(path, "scale", scale.reshape(-1) if scale.size == n else scale, n, (), "(N,)")
    if not (np.isfinite(scale).all() and (scale > 0).all()):
        bad = int(np.flatnonzero(~(np.isfinite(scale) & (scale > 0)))[0])
        raise ValueError(
            f"{path}: key 'scale' expected positive finite values, found {scale[bad]} at row {bad}"
        )
    joints, num_shape = _BODIES[body]
    pose = _check_shape(path, "pose_cam", _need(data, path, "pose_cam"), n, (None,), "(N, 3 J)")
    if pose.shape[1] < 3 * joints:
        raise ValueError(
            f"{path}: key 'pose_cam' expected at least {3 * joints} values per row for {body} "
            f"(J = {joints}), found {pose.shape}"
        )
    pose = pose[:, : 3 * joints].astype(np.float64)
    shape = _check_shape(path, "shape", _need(data, path, "shape"), n, (None,), "(N, S)").astype(np.float64)
    if shape.shape[1] > num_shape:
        shape = shape[:, :num_shape]
    elif shape.shape[1] < num_shape:
        shape = np.concatenate([shape, np.zeros((n, num_shape - shape.shape[1]))], axis=1)
    vit = _check_shape(
        path, "vitpose", _need(data, path, "vitpose"), n, (17, 3), "(N, 17, 3) as (y, x, conf)"
    )
    detector = vit[:, :, [1, 0, 2]].astype(np.float64)
    detector[:, :, 2] = np.clip(detector[:, :, 2], 0.0, 1.0)
    gt25 = _check_shape(
        path, "gt_coco_25j", _need(data, path, "gt_coco_25j"), n, (25, (2, 3)), "(N, 25, 2|3)"
    )
    gt_coco = gt25[:, list(COCO25_TO_COCO17), :2].astype(np.float64)
    gt_valid = np.isfinite(gt_coco).all(-1)
    if gt25.shape[2] == 3:
        gt_valid &= gt25[:, list(COCO25_TO_COCO17), 2] > 0

    return Annotations(
        path=path,
        imgname=imgname,
        center=center,
        scale=scale,
        pose=pose,
        shape=shape,
        detector=detector,
        gt_coco=gt_coco,
        gt_coco_valid=gt_valid,
        keys=tuple(sorted(data)),
    )


def _add_optional_annotations(ann: Annotations, path: Path, data: dict[str, np.ndarray]) -> None:
    """The keys some annotation files have (camera, gender, image size, occlusion, masks, gtkps)."""
    n = len(ann.imgname)
    if "cam_int" in data:
        cam_int = _check_shape(path, "cam_int", data["cam_int"], n, (3, 3), "(N, 3, 3)")
        ann.focal = cam_int[:, 0, 0].astype(np.float64)
    if "trans_cam" in data:
        t = np.asarray(data["trans_cam"], np.float64)
        t = t.reshape(n, 3) if t.size == 3 * n else _check_shape(path, "trans_cam", t, n, (3,), "(N, 3)")
        if "cam_ext" in data:
            ext = _check_shape(path, "cam_ext", data["cam_ext"], n, (4, 4), "(N, 4, 4)")
            t = t + ext[:, :3, 3]
        ann.translation = t
    if "gender" in data:
        ann.gender = np.asarray(data["gender"]).astype(str)
        _check_shape(path, "gender", ann.gender, n, (), "(N,)")
    if "orig_shape" in data:
        ann.orig_shape = _check_shape(path, "orig_shape", data["orig_shape"], n, (2,), "(N, 2) as (H, W)")
    if "object_occlusion" in data:
        occ = np.asarray(data["object_occlusion"])
        occ = occ.reshape(-1) if occ.size == n else occ
        ann.object_occlusion = _check_shape(path, "object_occlusion", occ, n, (), "(N,)").astype(bool)
    if "valid_emdb_mask" in data:
        label = np.asarray(data["valid_emdb_mask"])
        label = label.reshape(-1) if label.size == n else label
        ann.valid_mask_label = _check_shape(path, "valid_emdb_mask", label, n, (), "(N,)") == 1
    if "gtkps" in data:
        ann.gtkps = _check_shape(path, "gtkps", data["gtkps"], n, (None, (2, 3)), "(N, K, 2|3)")


def annotation_keys(path: str | Path) -> tuple[str, ...]:
    """The keys of an annotation ``.npz`` without reading its arrays (only the zip directory)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotations: {path} not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return tuple(sorted(npz.files))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise ValueError(f"{path}: cannot read annotation file ({type(err).__name__}: {err})") from err


def filter_rows(
    ann: Annotations,
    config: FilterConfig,
    image_size: tuple[int, int] | None = None,
    inside_image_check: bool = True,
) -> np.ndarray:
    """Boolean ``(N,)``: rows kept by the training filter (all True when ``config.enabled`` is False).

    ``image_size`` ``(W, H)`` is used when the annotations have no ``orig_shape``.
    """
    n = len(ann)
    if not config.enabled:
        return np.ones(n, bool)
    det, conf = ann.detector[:, :, :2], ann.detector[:, :, 2]
    err = np.linalg.norm(np.nan_to_num(ann.gt_coco - det, nan=0.0), axis=-1) * (
        conf > config.error_confidence
    )
    keep = err.mean(-1) / ann.scale < config.max_error
    keep &= (conf > config.visible_confidence).sum(-1) >= config.min_visible
    if inside_image_check and config.image_padding is not None:
        if ann.orig_shape is not None:
            hw = ann.orig_shape.astype(np.float64)
            wh = hw[:, ::-1]
        elif image_size is not None:
            wh = np.broadcast_to(np.asarray(image_size, np.float64), (n, 2))
        else:
            wh = None
        if wh is not None:
            pad = config.image_padding
            inside = (det >= -pad) & (det <= wh[:, None, :] + pad)
            keep &= inside.all(-1).all(-1)
    return keep


# ---------------------------------------------------------------------------- data set


class BedlamCliffDataset(WorkerGenerator, Dataset):
    """Items of :mod:`humr.data.fields` from one BEDLAM-CLIFF-format data set.

    Args:
        spec: where the data set lives (:class:`DatasetSpec`).
        augment: training augmentation; None gives plain ground-truth-box crops. Ignored
            (no augmentation) for ``split="test"``.
        crop_size: image crop side ``R`` (224).
        num_heatmap_samples: ``M`` samples per joint in every item (stores with more are
            subsampled, randomly when augmenting; fewer are padded with invalid samples).
        min_sample_confidence: samples whose cell confidence is below it are invalid (0.05).
        mask_resolution: distance-map side ``Hd = Wd`` (default ``crop_size``).
        mask_extent: the distance map covers ``[-extent, extent]^2`` crop coordinates.
        mask_dilation: 3 x 3 dilation iterations of the cropped mask (in crop pixels, the
            reference's 3); stored sample distances are reduced by the same radius.
        filter: training-row filter (applied to ``split="train"`` only).
        seed: seed of the per-process augmentation generator (mixed with the worker's torch
            seed, so workers and epochs differ; :class:`~humr.data.worker_rng.WorkerGenerator`).
        focal: ``"annotated"`` (``cam_int[0, 0]`` where the file has it, else the estimate) or
            ``"estimate"`` (always ``sqrt(W^2 + H^2)``, the reference's test protocol); see the
            module docstring.
        body_joints_2d: yield ``body_joints_2d`` / ``body_joints_2d_valid`` from ``gtkps``:
            None (default) when the file has ``gtkps``; True in every item, all invalid for a
            file without ``gtkps`` (so the items of a mixture whose parts differ collate);
            False never. Only SMPL-X data sets (``spec.body="smplx"``) carry them: ``gtkps``
            are SMPL-X joints.
    """

    def __init__(
        self,
        spec: DatasetSpec,
        augment: AugmentConfig | None = None,
        crop_size: int = 224,
        num_heatmap_samples: int = 150,
        min_sample_confidence: float = 0.05,
        mask_resolution: int | None = None,
        mask_extent: float = 1.0,
        mask_dilation: int = 3,
        filter: FilterConfig = FilterConfig(),
        seed: int = 0,
        focal: str = "annotated",
        body_joints_2d: bool | None = None,
    ) -> None:
        if focal not in FOCAL_MODES:
            raise ValueError(f"focal: expected one of {FOCAL_MODES}, found {focal!r}")
        if body_joints_2d and spec.body != "smplx":
            raise ValueError(
                f"body_joints_2d: data set {spec.name!r} has body {spec.body!r}; the 2D body joints "
                "(gtkps) are SMPL-X joints, only SMPL-X data sets carry them"
            )
        self.spec = spec
        # Test sets are never augmented; ``training`` also decides random sample subsets.
        self.training = augment is not None and spec.split == "train"
        self.augment = augment if self.training else NO_AUGMENT
        self.crop_size = int(crop_size)
        self.num_heatmap_samples = int(num_heatmap_samples)
        self.min_sample_confidence = float(min_sample_confidence)
        self.mask_resolution = int(mask_resolution or crop_size)
        self.mask_extent = float(mask_extent)
        self.mask_dilation = int(mask_dilation)
        self.seed = int(seed)
        self.focal = focal
        self.num_pose_joints, self.num_shape = _BODIES[spec.body]
        self.annotations = load_annotations(spec.annotation, spec.body)
        keep = (
            filter_rows(self.annotations, filter, spec.image_size, spec.inside_image_check)
            if spec.split == "train"
            else np.ones(len(self.annotations), bool)
        )
        self.rows = np.flatnonzero(keep)
        self.photometric = Photometric(self.augment)
        self._samples = None
        if spec.samples is not None:
            self._samples = (
                ReferenceSampleStore(spec.samples, spec.samples_key or spec.name)
                if spec.samples_layout == "reference"
                else HeatmapSampleStore(spec.samples)
            )
        self._features = ArrayStore.open(spec.features) if spec.features is not None else None
        if self._features is not None and self.augment != NO_AUGMENT:
            raise ValueError(
                f"augment: cached features of {spec.name!r} are computed on the unaugmented crop; "
                "use augment=None with spec.features"
            )
        has_gtkps = self.annotations.gtkps is not None
        self.body_joints_2d = (
            spec.body == "smplx" and has_gtkps if body_joints_2d is None else bool(body_joints_2d)
        )
        if self.body_joints_2d and has_gtkps and self.annotations.gtkps.shape[1] < self.num_pose_joints:
            raise ValueError(
                f"{self.annotations.path}: key 'gtkps' expected at least {self.num_pose_joints} joints "
                f"(the SMPL-X body joints) per row, found {self.annotations.gtkps.shape}"
            )

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.get(i)

    # ------------------------------------------------------------------ item assembly
    def read_image(self, row: int, rgb: bool = True) -> tuple[np.ndarray, Path]:
        """Full image ``(H, W, 3)`` uint8 of row ``row`` (rotated per spec; BGR unless ``rgb``), its path."""
        name = self.annotations.imgname[row]
        path = Path(self.spec.image_dir) / name
        if not path.is_file() and path.with_suffix(".jpg").is_file():  # the reference's png -> jpg fallback
            path = path.with_suffix(".jpg")
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.spec.name}: image {path} of row {row} ('{name}') not found "
                f"(image_dir {self.spec.image_dir})"
            )
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{self.spec.name}: cannot decode image {path} of row {row} (corrupt file?)")
        if self.spec.rotate_clockwise:
            bgr = cv2.rotate(bgr, cv2.ROTATE_90_CLOCKWISE)
        return (cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if rgb else bgr), path

    def _heatmap_samples(self, row: int, box0: float, center, box: float, rng) -> dict[str, torch.Tensor]:
        m = self.num_heatmap_samples
        if self._samples is None:
            return {
                "heatmap_samples": torch.zeros(17, m, 2),
                "heatmap_sample_valid": torch.zeros(17, m, dtype=torch.bool),
                "heatmap_sample_mask_distance": torch.zeros(17, m),
            }
        try:
            s = self._samples(row, box0)
        except (FileNotFoundError, ValueError) as err:
            raise type(err)(f"{self.spec.name}: heatmap samples of row {row}: {err}") from err
        have = s.xy.shape[1]
        if have >= m:
            pick = rng.permutation(have)[:m] if self.training else np.arange(m)
            xy, conf, dist = s.xy[:, pick], s.confidence[:, pick], s.mask_distance[:, pick]
        else:
            pad = m - have
            xy = np.concatenate([s.xy, np.zeros((17, pad, 2), np.float32)], 1)
            conf = np.concatenate([s.confidence, np.full((17, pad), -1.0, np.float32)], 1)
            dist = np.concatenate([s.mask_distance, np.full((17, pad), np.nan, np.float32)], 1)
        valid = (conf >= self.min_sample_confidence) & np.isfinite(xy).all(-1)
        crop = image_to_crop_np(np.where(valid[..., None], xy, center), center, box)
        # Store distances are in full-image pixels to the undilated mask: to crop units, minus the dilation.
        shrink = self.mask_dilation * 2.0 / self.crop_size
        dist_crop = np.clip(dist / (box / 2) - shrink, 0.0, None)
        dist_crop = np.where(np.isfinite(dist_crop) & valid, dist_crop, 0.0)
        return {
            "heatmap_samples": torch.from_numpy(crop.astype(np.float32)),
            "heatmap_sample_valid": torch.from_numpy(valid),
            "heatmap_sample_mask_distance": torch.from_numpy(dist_crop.astype(np.float32)),
        }

    def _body_joints_2d(self, row: int, center, box: float) -> dict[str, torch.Tensor]:
        """The first J ``gtkps`` joints in crop coordinates (0 where invalid) and their validity."""
        j, gtkps = self.num_pose_joints, self.annotations.gtkps
        # A file without gtkps (in a mixture with files that have it): every joint invalid.
        kp = np.full((j, 2), np.nan) if gtkps is None else np.asarray(gtkps[row, :j], np.float64)
        valid = np.isfinite(kp[:, :2]).all(-1)
        if kp.shape[1] == 3:
            valid &= np.nan_to_num(kp[:, 2]) > 0
        crop = image_to_crop_np(np.where(valid[:, None], kp[:, :2], center), center, box)
        return {
            "body_joints_2d": torch.from_numpy(crop).float(),
            "body_joints_2d_valid": torch.from_numpy(valid),
        }

    def read_mask(self, row: int) -> np.ndarray | None:
        """Full-image union person mask ``(H, W)`` bool of annotation row ``row`` (None: no masks)."""
        if self.spec.mask_layout is None:
            return None
        name = self.annotations.imgname[row]
        path = mask_path(self.spec.mask_layout, self.spec.mask_dir, name)
        try:
            return read_person_mask(path, self.spec.mask_layout, self.spec.rotate_clockwise)
        except (FileNotFoundError, ValueError) as err:
            raise type(err)(f"{self.spec.name}: mask of row {row} ('{name}'): {err}") from err

    def _mask(
        self, row: int, image_path: Path, image_hw, center, box: float, occluded: bool
    ) -> tuple[torch.Tensor, bool]:
        res = self.mask_resolution
        empty = torch.zeros(res, res)
        if self.spec.mask_layout is None or occluded:
            return empty, False
        if self.annotations.valid_mask_label is not None and not self.annotations.valid_mask_label[row]:
            return empty, False
        mask = self.read_mask(row)
        path = mask_path(self.spec.mask_layout, self.spec.mask_dir, self.annotations.imgname[row])
        if mask.shape != tuple(image_hw):
            raise ValueError(
                f"{self.spec.name}: mask {path} of row {row} has shape {mask.shape}, "
                f"its image {image_path} {tuple(image_hw)}"
            )
        crop = crop_mask(mask, center, box * self.mask_extent, res, 0)
        # Dilate in model-crop pixels (the reference's 3 iterations at 224), whatever the map resolution.
        iters = int(round(self.mask_dilation * res / (self.crop_size * self.mask_extent)))
        dmap = distance_map_from_mask(dilate_mask(crop, iters), self.mask_extent)
        return (empty, False) if dmap is None else (dmap, True)

    def get(self, i: int, rng: np.random.Generator | None = None) -> dict[str, torch.Tensor]:
        """Item ``i`` (a row of :attr:`rows`); ``rng`` overrides the dataset's generator."""
        if not 0 <= i < len(self.rows):
            raise IndexError(f"{self.spec.name}: index {i} out of range [0, {len(self.rows)})")
        rng = rng if rng is not None else self._generator()
        ann, row = self.annotations, int(self.rows[i])
        image, image_path = self.read_image(row, rgb=False)  # colour conversion on the crop only
        h, w = image.shape[:2]
        if ann.orig_shape is not None and tuple(int(v) for v in ann.orig_shape[row]) != (h, w):
            raise ValueError(
                f"{self.spec.name}: row {row}: 'orig_shape' {tuple(ann.orig_shape[row])} of {ann.path} "
                f"disagrees with image {image_path} of shape {(h, w)}"
            )
        c0, b0 = ann.center[row], float(ann.scale[row] * 200.0)
        center, box = sample_box(c0, b0, (w, h), self.augment, rng) if self.augment.geometric else (c0, b0)
        crop = cv2.cvtColor(crop_image(image, center, box, self.crop_size), cv2.COLOR_BGR2RGB)
        crop = self.photometric(crop, rng)
        item: dict[str, torch.Tensor] = {
            "image": torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1))).float() / 255.0
        }

        pose = torch.from_numpy(ann.pose[row].reshape(self.num_pose_joints, 3))
        item["pose"] = axis_angle_to_matrix(pose).float()
        item["shape"] = torch.from_numpy(ann.shape[row]).float()
        t = ann.translation[row] if ann.translation is not None else np.zeros(3)
        item["translation"] = torch.from_numpy(np.asarray(t)).float()

        gt = image_to_crop_np(np.nan_to_num(ann.gt_coco[row]), center, box)
        det = ann.detector[row]
        det_crop = image_to_crop_np(det[:, :2], center, box)
        inside = (np.abs(gt) <= 1).all(-1)
        item["keypoints_2d"] = torch.from_numpy(gt).float()
        item["keypoints_2d_valid"] = torch.from_numpy(ann.gt_coco_valid[row].copy())
        # Paper Sec. 4.5: invisible = outside the crop or detector confidence below 0.5.
        item["keypoints_2d_visible"] = torch.from_numpy((det[:, 2] >= 0.5) & inside & ann.gt_coco_valid[row])
        item["detector_keypoints"] = torch.from_numpy(np.concatenate([det_crop, det[:, 2:]], -1)).float()
        if self.body_joints_2d:
            item.update(self._body_joints_2d(row, center, box))
        item.update(self._heatmap_samples(row, b0, center, box, rng))

        occluded = bool(ann.object_occlusion[row]) if ann.object_occlusion is not None else False
        dmap, mask_ok = self._mask(row, image_path, (h, w), center, box, occluded)
        item["distance_map"] = dmap
        item["distance_map_extent"] = torch.tensor(self.mask_extent)
        item["mask_valid"] = torch.tensor(mask_ok)
        item["object_occluded"] = torch.tensor(occluded)
        item["center"] = torch.from_numpy(np.asarray(center, np.float64)).float()
        item["box_size"] = torch.tensor(float(box))
        annotated = self.focal == "annotated" and ann.focal is not None and ann.focal[row] > 0
        item["focal"] = torch.tensor(float(ann.focal[row] if annotated else np.hypot(w, h)))
        item["image_size"] = torch.tensor([float(w), float(h)])
        item["index"] = torch.tensor(row, dtype=torch.int64)
        if self._features is not None:
            item["image_features"] = torch.from_numpy(self._features.read("features", row)).float()
        return item
