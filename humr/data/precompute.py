"""Precompute per-row detector outputs and image features for real data sets (paper Sec. 4.5).

* :func:`precompute_heatmaps`: for every annotation row, crop the ground-truth box expanded to
  ViTPose's 3:4 aspect (192 x 256 input), run ViTPose (``transformers``'
  ``VitPoseForPoseEstimation`` from a local checkpoint directory, never downloaded), draw 150
  samples per COCO joint from each heatmap read as a multinomial (cells below 0.05 removed;
  :func:`humr.data.heatmaps.sample_heatmaps`), record each sample's cell confidence and its
  distance to the union person mask, and the highest-likelihood pose. Everything goes to a
  :class:`~humr.data.sample_store.HeatmapSampleStore` (full-image pixels). Rows already in the
  store are skipped, so an interrupted run resumes where it stopped; samples are drawn with a
  per-row generator, so a resumed store equals an uninterrupted one.
* :func:`precompute_features`: frozen encoder features of the unaugmented crops into an
  :class:`~humr.data.sample_store.ArrayStore`, resumable the same way.
* :func:`detect_keypoints`: the same ViTPose crop and read-out for arbitrary boxes (prediction on
  a user's images, :mod:`humr.inference`).

``transformers`` and ``tqdm`` are imported only inside the functions that need them.

Example (a tiny random ViTPose; real use loads a saved ViTPose-H checkpoint directory):
    >>> from transformers import VitPoseBackboneConfig, VitPoseConfig, VitPoseForPoseEstimation
    >>> cfg = VitPoseConfig(backbone_config=VitPoseBackboneConfig(hidden_size=32, num_hidden_layers=1,
    ...                     num_attention_heads=2, out_indices=[1]), num_labels=17)
    >>> model = VitPoseForPoseEstimation(cfg).eval()
    >>> import numpy as np
    >>> kp = detect_keypoints(model, [np.zeros((100, 80, 3), np.uint8)], np.array([[40.0, 50.0]]),
    ...                       np.array([60.0]))
    >>> kp.shape
    (1, 17, 3)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from humr.data.augment import crop_image
from humr.data.bedlam_cliff import BedlamCliffDataset, DatasetSpec, FilterConfig
from humr.data.heatmaps import expand_box_to_aspect, heatmap_argmax, heatmap_to_image, sample_heatmaps
from humr.data.masks import MaskDistance
from humr.data.sample_store import ArrayStore, HeatmapSampleStore

__all__ = [
    "HeatmapPrecomputeConfig",
    "load_vitpose",
    "vitpose_normalisation",
    "detector_affine",
    "detector_boxes",
    "run_vitpose",
    "detect_keypoints",
    "precompute_heatmaps",
    "precompute_features",
]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class HeatmapPrecomputeConfig:
    """num_samples: samples per joint (150). min_confidence: cells below it are never drawn.
    input_size: detector input ``(W, H)``. box_padding: extra growth of the 3:4 box (the
    ground-truth box is already padded 1.2x around the body). convention: heatmap <-> pixel
    convention (``"center"`` or ``"udp"``, see ``humr.data.heatmaps``). batch_size: crops
    per forward. flush_every: batches between store flushes. seed: base of the per-row
    sampling generators. dataset_index: ViTPose+ expert (0 = COCO) for multi-dataset models."""

    num_samples: int = 150
    min_confidence: float = 0.05
    input_size: tuple[int, int] = (192, 256)
    box_padding: float = 1.0
    convention: str = "center"
    batch_size: int = 16
    flush_every: int = 4
    seed: int = 0
    dataset_index: int = 0


def load_vitpose(model_dir: str | Path, device: str | torch.device = "cpu"):
    """``VitPoseForPoseEstimation`` from a local directory (``local_files_only``; no download)."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"ViTPose: no checkpoint directory at {model_dir} (looked for {model_dir / 'config.json'}); "
            "save a transformers VitPoseForPoseEstimation checkpoint there (e.g. the ViTPose-H "
            "'vitpose-plus-huge' release, obtained separately): humr never downloads weights"
        )
    from transformers import VitPoseForPoseEstimation

    return VitPoseForPoseEstimation.from_pretrained(str(model_dir), local_files_only=True).eval().to(device)


def vitpose_normalisation(model_dir: str | Path | None) -> tuple[np.ndarray, np.ndarray]:
    """``(mean (3,), std (3,))`` of the checkpoint's ``preprocessor_config.json`` (ImageNet otherwise)."""
    mean, std = _IMAGENET_MEAN, _IMAGENET_STD
    path = Path(model_dir) / "preprocessor_config.json" if model_dir is not None else None
    if path is not None and path.is_file():
        cfg = json.loads(path.read_text())
        mean, std = cfg.get("image_mean", mean), cfg.get("image_std", std)
    return np.asarray(mean, np.float32), np.asarray(std, np.float32)


def detector_affine(
    center: np.ndarray, box_wh: np.ndarray, input_size: tuple[int, int], convention: str
) -> np.ndarray:
    """``(2, 3)`` image pixel -> detector input pixel (inverse of ``humr.data.heatmaps.input_to_image``)."""
    w, h = input_size
    if convention == "center":
        a = np.array([w / box_wh[0], h / box_wh[1]])
        t = -a * (center - box_wh / 2) - 0.5
    elif convention == "udp":
        a = np.array([(w - 1) / box_wh[0], (h - 1) / box_wh[1]])
        t = -a * (center - box_wh / 2)
    else:
        raise ValueError(f"convention: expected 'center' or 'udp', found {convention!r}")
    return np.array([[a[0], 0.0, t[0]], [0.0, a[1], t[1]]])


def detector_boxes(box_sides: np.ndarray, config: HeatmapPrecomputeConfig) -> np.ndarray:
    """Square box sides ``(B,)`` (pixels) -> detector boxes ``(B, 2)`` ``(W, H)`` at the input aspect."""
    sides = torch.as_tensor(np.asarray(box_sides, np.float64))
    return expand_box_to_aspect(
        torch.stack([sides, sides], -1), config.input_size, config.box_padding
    ).numpy()


def _crop(
    image: np.ndarray, center: np.ndarray, box_wh: np.ndarray, config: HeatmapPrecomputeConfig
) -> np.ndarray:
    if config.convention == "center":  # crop_image's mapping is the "center" one (and antialiases)
        return crop_image(image, center, tuple(box_wh), config.input_size)
    import cv2

    m = detector_affine(center, box_wh, config.input_size, config.convention)
    return cv2.warpAffine(image, m, config.input_size, flags=cv2.INTER_LINEAR, borderValue=0)


def run_vitpose(
    model,
    images: Sequence[np.ndarray],
    centers: np.ndarray,
    box_sides: np.ndarray,
    config: HeatmapPrecomputeConfig = HeatmapPrecomputeConfig(),  # noqa: B008 - frozen dataclass
    normalisation: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[torch.Tensor, np.ndarray]:
    """ViTPose heatmaps of square person boxes: one forward for the whole list.

    Args:
        model: a ``VitPoseForPoseEstimation`` (or any module with its call and ``.heatmaps``).
        images: ``B`` RGB images ``(H_i, W_i, 3)`` uint8 (one per box; the same array may repeat).
        centers: ``(B, 2)`` box centres (pixels); box_sides: ``(B,)`` square box sides (pixels).
        config: detector input size, box padding and pixel convention.
        normalisation: ``(mean, std)`` (default ImageNet, see :func:`vitpose_normalisation`).

    Returns:
        ``heatmaps (B, 17, h, w)`` float32 on the CPU and the detector boxes ``(B, 2)`` ``(W, H)``.
    """
    centers = np.asarray(centers, np.float64).reshape(-1, 2)
    sides = np.asarray(box_sides, np.float64).reshape(-1)
    if not len(images) == len(centers) == len(sides):
        raise ValueError(
            f"images, centers, box_sides: expected one of each per box, found {len(images)}, "
            f"{len(centers)}, {len(sides)}"
        )
    mean, std = normalisation if normalisation is not None else vitpose_normalisation(None)
    boxes = detector_boxes(sides, config)
    crops = [
        (_crop(img, c, b, config).astype(np.float32) / 255.0 - mean) / std
        for img, c, b in zip(images, centers, boxes)
    ]
    param = next(model.parameters())
    pixels = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2)).to(param.device, param.dtype)
    kwargs = {}
    experts = getattr(getattr(model.config, "backbone_config", None), "num_experts", 1)
    if experts > 1:
        kwargs["dataset_index"] = torch.full((len(crops),), config.dataset_index, device=param.device)
    with torch.no_grad():
        heatmaps = model(pixel_values=pixels, **kwargs).heatmaps.float().cpu()
    if heatmaps.dim() != 4 or heatmaps.shape[:2] != (len(crops), 17):
        raise ValueError(
            f"model: expected heatmaps (B, 17, h, w) for the 17 COCO joints, found {tuple(heatmaps.shape)}"
        )
    return heatmaps, boxes


def _argmax_in_image(
    heatmaps: torch.Tensor, centers: np.ndarray, boxes: np.ndarray, convention: str
) -> np.ndarray:
    """``(B, 17, h, w)`` -> ``(B, 17, 3)`` highest-likelihood pose ``(x, y, confidence)`` in image pixels."""
    hm_size = (heatmaps.shape[-1], heatmaps.shape[-2])
    xy, conf = heatmap_argmax(heatmaps)
    c = torch.from_numpy(np.asarray(centers)).float()  # (B, 2): one box per heatmap set
    b = torch.from_numpy(np.asarray(boxes)).float()
    img = heatmap_to_image(xy, hm_size, c, b, convention)
    return torch.cat([img, conf[..., None]], -1).numpy()


# The arguments repeat run_vitpose's on purpose (it runs that), written compactly.
def detect_keypoints(
    model, images: Sequence[np.ndarray], centers: np.ndarray, box_sides: np.ndarray,
    config: HeatmapPrecomputeConfig = HeatmapPrecomputeConfig(),  # noqa: B008 - frozen dataclass
    normalisation: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The highest-likelihood ViTPose pose ``(B, 17, 3)`` (x, y in image pixels, confidence) of square
    boxes (arguments of :func:`run_vitpose`); the pose that conditions the model (c_P)."""
    heatmaps, boxes = run_vitpose(model, images, centers, box_sides, config, normalisation)
    return _argmax_in_image(
        heatmaps, np.asarray(centers, np.float64).reshape(-1, 2), boxes, config.convention
    )


def precompute_heatmaps(
    spec: DatasetSpec,
    model,
    out_dir: str | Path,
    config: HeatmapPrecomputeConfig = HeatmapPrecomputeConfig(),  # noqa: B008 - frozen dataclass
    model_dir: str | Path | None = None,
    progress: bool = True,
    max_rows: int | None = None,
) -> ArrayStore:
    """Fill (or resume) the heatmap-sample store ``out_dir`` for every annotation row of ``spec``.

    Args:
        spec: the data set (its own samples/features settings are ignored).
        model: a ``VitPoseForPoseEstimation`` (or any module with the same call and
            ``.heatmaps`` output ``(B, 17, h, w)``).
        out_dir: the store directory.
        config: :class:`HeatmapPrecomputeConfig`.
        model_dir: where ``model`` came from (to read its normalisation), optional.
        progress: show a tqdm bar.
        max_rows: stop after this many rows (a partial run; rerun to resume).

    Returns:
        The store (:class:`~humr.data.sample_store.ArrayStore`).
    """
    from tqdm.auto import tqdm

    data = BedlamCliffDataset(replace(spec, samples=None, features=None), filter=FilterConfig(enabled=False))
    ann = data.annotations
    store = HeatmapSampleStore.create(
        out_dir,
        len(ann),
        config.num_samples,
        meta={
            "dataset": spec.name,
            "annotation": str(spec.annotation),
            "config": {f.name: getattr(config, f.name) for f in fields(config)},
        },
    )
    todo = store.missing()
    if max_rows is not None:
        todo = todo[:max_rows]
    normalisation = vitpose_normalisation(model_dir)
    bar = tqdm(total=len(todo), desc=f"heatmaps {spec.name}", disable=not progress, unit="row")
    batches = [todo[i : i + config.batch_size] for i in range(0, len(todo), config.batch_size)]
    try:
        for b, rows in enumerate(batches):
            images = [data.read_image(int(row))[0] for row in rows]
            masks = [data.read_mask(int(row)) for row in rows]
            centers = ann.center[rows]
            heatmaps, boxes = run_vitpose(
                model, images, centers, ann.scale[rows] * 200.0, config, normalisation
            )
            samples = _draw_samples(heatmaps, rows, centers, boxes, masks, config)
            keypoints = _argmax_in_image(heatmaps, centers, boxes, config.convention).astype(np.float32)
            store.write(rows, samples=samples, keypoints=keypoints)
            if (b + 1) % config.flush_every == 0:
                store.flush()
            bar.update(len(rows))
    finally:
        store.flush()  # an interruption keeps every finished batch
        bar.close()
    return store


def _draw_samples(heatmaps, rows, centers, boxes, masks, config: HeatmapPrecomputeConfig) -> np.ndarray:
    """``(B, 17, n, 4)`` samples ``(x, y, cell confidence, mask distance)`` in image pixels."""
    hm_size = (heatmaps.shape[-1], heatmaps.shape[-2])
    samples = np.empty((len(rows), 17, config.num_samples, 4), np.float32)
    for k, row in enumerate(rows):  # per-row generators make resumed stores identical
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + int(row))
        hm = heatmaps[k]
        xy = sample_heatmaps(
            hm, config.num_samples, config.min_confidence, jitter=True, generator=gen, fallback="argmax"
        )  # (17, n, 2) heatmap pixels
        cells = torch.floor(xy + 0.5).long()
        cells[..., 0].clamp_(0, hm_size[0] - 1)
        cells[..., 1].clamp_(0, hm_size[1] - 1)
        conf = torch.gather(hm.flatten(1), 1, cells[..., 1] * hm_size[0] + cells[..., 0])
        c_t, b_t = torch.from_numpy(centers[k]).float(), torch.from_numpy(boxes[k]).float()
        img_xy = heatmap_to_image(xy, hm_size, c_t, b_t, config.convention).numpy()
        d = np.full(img_xy.shape[:2], np.nan) if masks[k] is None else MaskDistance(masks[k])(img_xy)
        samples[k] = np.concatenate([img_xy, conf.numpy()[..., None], d[..., None]], -1)
    return samples


def precompute_features(
    dataset: BedlamCliffDataset,
    encoder: torch.nn.Module,
    out_dir: str | Path,
    batch_size: int = 16,
    flush_every: int = 4,
    num_workers: int = 0,
    progress: bool = True,
    max_rows: int | None = None,
) -> ArrayStore:
    """Fill (or resume) the feature store ``out_dir`` with ``encoder(item["image"])`` for every item.

    Args:
        dataset: the data set, without augmentation (its items' ``index`` is the store row).
        encoder: ``(B, 3, R, R)`` in [0, 1] -> ``(B, F)``; run in eval mode without gradients on
            the device of its parameters.
        out_dir: the store directory (``features (F,)`` float32 per annotation row).
        batch_size, flush_every, num_workers: batching, store flushes (in batches), loader workers.
        progress: show a tqdm bar.
        max_rows: stop after this many rows (a partial run; rerun to resume).
    """
    from torch.utils.data import DataLoader, Subset
    from tqdm.auto import tqdm

    if dataset.training:
        raise ValueError(
            "dataset: features must be cached from unaugmented crops; build it with augment=None"
        )
    param = next(encoder.parameters())
    encoder.eval()
    with torch.no_grad():
        probe = encoder(
            torch.zeros(1, 3, dataset.crop_size, dataset.crop_size, device=param.device, dtype=param.dtype)
        )
    store = ArrayStore.create(
        out_dir,
        {"features": ((probe.shape[-1],), "float32")},
        len(dataset.annotations),
        meta={
            "kind": "image_features",
            "dataset": dataset.spec.name,
            "encoder": type(encoder).__name__,
            "crop_size": dataset.crop_size,
        },
    )
    done = store.done()
    todo = [i for i, row in enumerate(dataset.rows) if not done[row]]
    if max_rows is not None:
        todo = todo[:max_rows]
    loader = DataLoader(Subset(dataset, todo), batch_size=batch_size, num_workers=num_workers, shuffle=False)
    bar = tqdm(total=len(todo), desc=f"features {dataset.spec.name}", disable=not progress, unit="row")
    try:
        for b, batch in enumerate(loader):
            with torch.no_grad():
                feats = encoder(batch["image"].to(param.device, param.dtype)).float().cpu().numpy()
            store.write(batch["index"].numpy(), features=feats.astype(np.float32))
            if (b + 1) % flush_every == 0:
                store.flush()
            bar.update(len(feats))
    finally:
        store.flush()
        bar.close()
    return store
