"""Miniature data sets in the real on-disk formats, for tests and for trying the readers.

:func:`write_fake_dataset` writes, under ``root`` and in the reference implementation's
``data/`` layout, a few frames of one data set kind with every file the real one has: images
(PNG for BEDLAM / AGORA, JPEG for 3DPW / EMDB, BEDLAM closeup images stored landscape and
rotated on reading), person masks (BEDLAM ``*_env.png``, AGORA ``*_all_person.png`` with grey
76 background, EMDB binary), the annotation ``.npz`` with every key of
:mod:`humr.data.bedlam_cliff` and heatmap samples in the reference layout
(``<root>/heatmap_samples/<data set>/<row:07d>.npy.gz``) or humr's store. Each frame shows the
target person (COCO-17 bones drawn as thick lines) and one bystander; the mask is their union.
The SMPL-X (training) kinds carry ``gtkps`` (127 joints with a confidence column of ones, as
BEDLAM's files; random points around the box, not the drawn person), the SMPL test kinds not.

Example:
    >>> import tempfile
    >>> from humr.data.bedlam_cliff import BedlamCliffDataset
    >>> fake = write_fake_dataset(tempfile.mkdtemp(), "bedlam", num_rows=2)
    >>> BedlamCliffDataset(fake.spec)[0]["image"].shape
    torch.Size([3, 224, 224])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from humr.data.bedlam_cliff import (
    COCO25_TO_COCO17,
    DatasetSpec,
    agora,
    bedlam_scene,
    emdb,
    pw3d_test,
    pw3d_train,
)
from humr.data.masks import AGORA_BACKGROUND, MaskDistance, mask_path
from humr.data.sample_store import REFERENCE_MASK_CROP, HeatmapSampleStore, write_reference_samples

__all__ = ["FAKE_KINDS", "FakeDataset", "write_fake_dataset", "write_tiny_vitpose", "COCO17_BONES"]

#: Kinds of fake data sets: kind -> (preset data-set key, body, image format).
FAKE_KINDS = {
    "bedlam": ("static-hdri", "smplx", ".png"),
    "bedlam_closeup": ("closeup-suburba", "smplx", ".png"),
    "agora": ("agora-bfh", "smplx", ".png"),
    "3dpw_train": ("3dpw-train-smplx", "smplx", ".jpg"),
    "3dpw_test": ("3dpw-test-cam", "smpl", ".jpg"),
    "emdb_occl": ("emdb-p1-occl", "smpl", ".jpg"),
}

#: COCO-17 skeleton edges used to draw the fake persons.
COCO17_BONES = (
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (5, 6),
    (5, 7),
    (7, 9),
    (6, 8),
    (8, 10),
    (5, 11),
    (6, 12),
    (11, 12),
    (11, 13),
    (13, 15),
    (12, 14),
    (14, 16),
)

# A standing person in a unit box (x right, y down), COCO order.
_TEMPLATE = np.array(
    [
        [0.50, 0.08],
        [0.53, 0.06],
        [0.47, 0.06],
        [0.57, 0.08],
        [0.43, 0.08],
        [0.63, 0.22],
        [0.37, 0.22],
        [0.68, 0.38],
        [0.32, 0.38],
        [0.70, 0.52],
        [0.30, 0.52],
        [0.58, 0.55],
        [0.42, 0.55],
        [0.60, 0.75],
        [0.40, 0.75],
        [0.61, 0.95],
        [0.39, 0.95],
    ]
)


@dataclass
class FakeDataset:
    """What :func:`write_fake_dataset` wrote.

    spec: the :class:`~humr.data.bedlam_cliff.DatasetSpec` to read it with.
    keypoints: ``(N, 17, 2)`` ground-truth COCO keypoints, pixels of the (rotated) image.
    masks: ``(N, H, W)`` bool union person masks of the (rotated) images.
    annotation: the arrays saved in the ``.npz``.
    """

    spec: DatasetSpec
    keypoints: np.ndarray
    masks: np.ndarray
    annotation: dict[str, np.ndarray]


def _person(rng: np.random.Generator, center: np.ndarray, height: float) -> np.ndarray:
    pts = (_TEMPLATE - 0.5) * height + center
    return pts + rng.normal(0.0, 0.015 * height, pts.shape)


def _draw(canvas: np.ndarray, kps: np.ndarray, color, thickness: int) -> None:
    for a, b in COCO17_BONES:
        cv2.line(
            canvas,
            tuple(int(round(v)) for v in kps[a]),
            tuple(int(round(v)) for v in kps[b]),
            color,
            thickness,
            lineType=cv2.LINE_8,
        )
    for p in kps:
        cv2.circle(canvas, tuple(int(round(v)) for v in p), thickness, color, -1)


def _openpose25(coco: np.ndarray) -> np.ndarray:
    """COCO-17 ``(17, 2)`` -> OpenPose-25 ``(25, 2)`` (neck, mid-hip and feet synthesised)."""
    op = np.zeros((25, 2))
    op[list(COCO25_TO_COCO17)] = coco
    op[1] = coco[[5, 6]].mean(0)  # neck
    op[8] = coco[[11, 12]].mean(0)  # mid hip
    op[19:22] = coco[15] + [[4, 6], [8, 6], [-2, 4]]  # left foot
    op[22:25] = coco[16] + [[-4, 6], [-8, 6], [2, 4]]  # right foot
    return op


def write_fake_dataset(
    root: str | Path,
    kind: str = "bedlam",
    num_rows: int = 4,
    image_size: tuple[int, int] = (320, 180),
    seed: int = 0,
    samples_layout: str | None = "reference",
    num_samples: int = 150,
    occluded_rows: tuple[int, ...] = (),
    edit: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> FakeDataset:
    """Write a miniature data set of ``kind`` (see :data:`FAKE_KINDS`) under ``root``.

    Args:
        root: the ``data/`` root (annotations, images, masks and samples go below it).
        kind: which data set to imitate.
        num_rows: frames (one target person each).
        image_size: ``(W, H)`` of the images as stored on disk (closeup images are rotated
            clockwise on reading, so their annotations use ``(H, W)``).
        seed: numpy seed of everything random.
        samples_layout: ``"reference"`` (``.npy.gz`` per row), ``"humr"`` (an array store) or
            None (no heatmap samples).
        num_samples: samples per joint.
        occluded_rows: rows flagged in ``object_occlusion``.
        edit: called with the annotation dict before it is saved (to corrupt or drop keys).
    """
    if kind not in FAKE_KINDS:
        raise ValueError(f"kind: expected one of {sorted(FAKE_KINDS)}, found {kind!r}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    spec = _fake_spec(kind, root)
    disk_w, disk_h = image_size
    size = (disk_h, disk_w) if spec.rotate_clockwise else (disk_w, disk_h)
    frames = [_write_frame(spec, _image_name(kind, r), *_draw_frame(rng, size)) for r in range(num_rows)]
    names, kps_all, masks = (list(x) for x in zip(*frames)) if frames else ([], [], [])
    kps_all = np.stack(kps_all)
    data = _annotation(rng, kind, names, kps_all, size, occluded_rows)
    # the samples follow the detections as drawn, whatever edit does to the file
    det, conf = data["vitpose"][..., 1::-1].copy(), data["vitpose"][..., 2].copy()  # (x, y), confidence
    scale = data["scale"].copy()
    if edit is not None:
        edit(data)
    ann_path = Path(spec.annotation)
    ann_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(ann_path, **data)
    spec = _write_samples(spec, root, rng, det, conf, masks, scale, num_samples, samples_layout)
    return FakeDataset(spec=spec, keypoints=kps_all, masks=np.stack(masks), annotation=data)


def _fake_spec(kind: str, root: Path) -> DatasetSpec:
    key = FAKE_KINDS[kind][0]
    if kind.startswith("bedlam"):
        return bedlam_scene(key, root)
    if kind == "agora":
        return agora(key, root)
    if kind == "3dpw_train":
        return pw3d_train(root)
    if kind == "3dpw_test":
        return pw3d_test(root)
    return emdb(root, occluded_subset=True)


def _image_name(kind: str, r: int) -> str:
    """Row ``r``'s image path below the image folder, as the data set names its files."""
    ext = FAKE_KINDS[kind][2]
    if kind.startswith("bedlam"):
        return f"seq_{r // 2:06d}/seq_{r // 2:06d}_{r % 2:04d}{ext}"
    if kind == "agora":
        return f"ag_trainset_fake_scene_cam00_{r:05d}_1280x720{ext}"
    return f"seq_{r // 2:02d}/images/{r:05d}{ext}"


def _draw_frame(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One ``(W, H) = size`` RGB frame ``(H, W, 3)`` of a target person and a bystander, their
    union mask ``(H, W)`` uint8 and the target's keypoints ``(17, 2)`` (pixels)."""
    w, h = size
    height = rng.uniform(0.55, 0.8) * h
    c = np.array([rng.uniform(0.35, 0.65) * w, rng.uniform(0.45, 0.55) * h])
    kps = _person(rng, c, height)
    other = _person(rng, c + [rng.choice([-1, 1]) * 0.3 * height, 0.05 * h], 0.9 * height)
    img = np.empty((h, w, 3), np.uint8)
    img[...] = rng.integers(40, 120, 3, dtype=np.uint8)
    img = cv2.add(img, rng.integers(0, 30, (h, w, 3), dtype=np.uint8))
    mask = np.zeros((h, w), np.uint8)
    thick = max(2, int(0.04 * height))
    _draw(img, other, (60, 160, 60), thick)
    _draw(mask, other, 1, thick)
    _draw(img, kps, (220, 120, 90), thick)
    _draw(mask, kps, 1, thick)
    return img, mask, kps


def _write_frame(
    spec: DatasetSpec, name: str, img: np.ndarray, mask: np.ndarray, kps: np.ndarray
) -> tuple[str, np.ndarray, np.ndarray]:
    """Write a frame's image and mask as stored on disk (closeup: landscape, i.e. rotated back);
    returns ``(name, keypoints, mask as bool)``."""
    disk_img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    disk_mask = mask
    if spec.rotate_clockwise:
        disk_img = cv2.rotate(disk_img, cv2.ROTATE_90_COUNTERCLOCKWISE)
        disk_mask = cv2.rotate(disk_mask, cv2.ROTATE_90_COUNTERCLOCKWISE)
    path = Path(spec.image_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), disk_img)
    if spec.mask_layout is not None:
        mpath = mask_path(spec.mask_layout, spec.mask_dir, name)
        mpath.parent.mkdir(parents=True, exist_ok=True)
        if spec.mask_layout == "bedlam_env":
            out = np.where(disk_mask > 0, 0, 255).astype(np.uint8)
        elif spec.mask_layout == "agora_all_person":
            out = np.where(disk_mask > 0, 180, AGORA_BACKGROUND).astype(np.uint8)
        else:
            out = np.where(disk_mask > 0, 255, 0).astype(np.uint8)
        cv2.imwrite(str(mpath), out)
    return name, kps, mask.astype(bool)


def _annotation(
    rng: np.random.Generator,
    kind: str,
    names: list[str],
    kps_all: np.ndarray,
    size: tuple[int, int],
    occluded_rows: tuple[int, ...],
) -> dict[str, np.ndarray]:
    """The annotation ``.npz`` arrays of frames with keypoints ``kps_all (N, 17, 2)``: every key of
    :mod:`humr.data.bedlam_cliff`, boxes around the keypoints, noisy detections, random bodies."""
    body = FAKE_KINDS[kind][1]
    (w, h), n = size, len(names)
    lo, hi = kps_all.min(1), kps_all.max(1)
    center = (lo + hi) / 2
    scale = np.asarray([1.2 * float(s) / 200.0 for s in (hi - lo).max(1)])
    conf = rng.uniform(0.3, 1.0, (n, 17))
    det = kps_all + rng.normal(0, 1.5, kps_all.shape)
    joints = 22 if body == "smplx" else 24
    focal = rng.uniform(0.8, 1.5, n) * np.hypot(w, h)
    cam_int = np.zeros((n, 3, 3))
    cam_int[:, 0, 0] = cam_int[:, 1, 1] = focal
    cam_int[:, 0, 2], cam_int[:, 1, 2], cam_int[:, 2, 2] = w / 2, h / 2, 1
    cam_ext = np.tile(np.eye(4), (n, 1, 1))
    cam_ext[:, :3, 3] = rng.normal(0, 0.5, (n, 3))
    pose_cam = rng.normal(0, 0.3, (n, 165 if body == "smplx" else 72))
    shape = rng.normal(0, 1, (n, 11 if body == "smplx" else 10))
    gtkps = rng.normal(0, 1, (n, 127, 2)) * 20 + center[:, None]  # drawn for every kind: same streams
    data: dict[str, np.ndarray] = {
        "imgname": np.asarray(names),
        "center": center,
        "scale": scale,
        "pose_cam": pose_cam,
        "shape": shape,
        "vitpose": np.concatenate([det[..., ::-1], conf[..., None]], -1),  # stored (y, x, conf)
        "gt_coco_25j": np.stack([_openpose25(k) for k in kps_all]),
        "cam_int": cam_int,
        "cam_ext": cam_ext,
        "trans_cam": rng.normal(0, 1, (n, 3)) + [0, 0, 5],
        "gender": np.asarray(["male" if i % 2 else "female" for i in range(n)]),
        "orig_shape": np.tile([h, w], (n, 1)),
        "object_occlusion": np.isin(np.arange(n), occluded_rows),
    }
    data["pose_cam"][:, 3 * joints :] = 0.0
    if body == "smplx":  # the training files: BEDLAM's 127 projected smplx joints, confidence 1
        data["gtkps"] = np.concatenate([gtkps, np.ones((n, 127, 1))], -1)
    if kind == "emdb_occl":
        data["valid_emdb_mask"] = np.ones(n, np.int64)
    return data


def _write_samples(
    spec: DatasetSpec,
    root: Path,
    rng: np.random.Generator,
    det: np.ndarray,
    conf: np.ndarray,
    masks: list[np.ndarray],
    scale: np.ndarray,
    num_samples: int,
    layout: str | None,
) -> DatasetSpec:
    """Heatmap samples around the detections ``det (N, 17, 2)`` in ``layout``; the spec to read them."""
    if layout is None:
        return replace(spec, samples=None)
    n = len(det)
    samples = np.empty((n, 17, num_samples, 4), np.float32)
    for r in range(n):
        xy = det[r][:, None] + rng.normal(0, 3.0, (17, num_samples, 2))
        c_s = np.clip(conf[r][:, None] * np.exp(-((xy - det[r][:, None]) ** 2).sum(-1) / 50.0), 0.0, 1.0)
        c_s[:, 0] = conf[r]  # the sampled cells include the maximum
        d_px = MaskDistance(masks[r])(xy)
        samples[r] = np.concatenate([xy, c_s[..., None], d_px[..., None]], -1)
    if layout == "reference":
        for r in range(n):
            ref = samples[r].transpose(1, 0, 2).copy()  # (N, 17, 4)
            ref[..., 3] *= REFERENCE_MASK_CROP / (scale[r] * 200.0)  # 224-crop pixels
            write_reference_samples(root / "heatmap_samples" / spec.name / f"{r:07d}.npy.gz", ref)
        return replace(spec, samples=str(root / "heatmap_samples"), samples_layout="reference")
    if layout == "humr":
        store_dir = root / "humr_samples" / spec.name
        store = HeatmapSampleStore.create(store_dir, n, num_samples)
        store.write(
            range(n),
            samples=samples,
            keypoints=np.concatenate([det, conf[..., None]], -1).astype(np.float32),
        )
        store.flush()
        return replace(spec, samples=str(store_dir), samples_layout="humr")
    raise ValueError(f"samples_layout: expected 'reference', 'humr' or None, found {layout!r}")


def write_tiny_vitpose(path: str | Path, peaked: bool = False, seed: int = 0) -> Path:
    """Save a randomly initialised one-layer ViTPose (transformers format) to ``path``.

    ``peaked`` shifts the head's bias up so heatmaps are mostly positive, like a trained
    detector's. Weights are drawn under ``seed``; the global RNG is restored afterwards.
    """
    import torch
    from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = VitPoseBackboneConfig(
            hidden_size=32, num_hidden_layers=1, num_attention_heads=2, out_indices=[1]
        )
        model = VitPoseForPoseEstimation(VitPoseConfig(backbone_config=backbone, num_labels=17))
    if peaked:
        with torch.no_grad():
            model.head.conv.bias.fill_(0.02)
    path = Path(path)
    model.save_pretrained(path)
    return path
