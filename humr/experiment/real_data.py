"""Real training and test sets from a :class:`~humr.config.DataConfig` (paper Sec. 5.1).

``data.dataset`` joins training-set names with "+" (the paper's: ``"bedlam+agora+3dpw"``):

============  ===============================================================================
name          data sets (annotation files under ``<root>/annotations``, reference layout)
============  ===============================================================================
``bedlam``    every BEDLAM scene of :data:`~humr.data.bedlam_cliff.BEDLAM_SCENES` whose
              annotation file is present under ``root`` (at least one)
``agora``     ``agora-bfh`` and ``agora-body``, those present (at least one)
``3dpw``      ``3dpw-train-smplx`` (3DPW train with BEDLAM's SMPL-X labels)
a key         any single training key of :data:`~humr.data.bedlam_cliff.TRAIN_KEYS`
              (``static-hdri``, ``agora-bfh``, ...)
============  ===============================================================================

``data.test_dataset`` (default ``"3dpw_test"``) is one of :data:`TEST_SETS`: ``"3dpw_test"``
(``3dpw-test-cam``, protocol ``"3dpw"``), ``"emdb"`` (``emdb-p1``, protocol ``"emdb"``) or
``"emdb_occluded"`` (``emdb-p1-occl``, the 1,760-mask plausibility subset, protocol ``"emdb"``).

Mixture ratios (``data.ratios``, one per "+"-joined name; empty: by size, i.e. the plain
concatenation the reference trains on) are applied by :class:`humr.data.mixture.MixtureDataset`: each epoch of
``len`` items holds exactly ``round(len * ratio_d / sum(ratios))`` items of name ``d`` (largest
remainders), each a stratified random item of it; inside a name (the BEDLAM scenes) data sets
weigh by their size. Because the trainer shuffles indices with a plain ``DataLoader``, the
ratios live in the data set's index map, no sampler needed.

Focal length: training items carry the annotated focal (``cam_int[0, 0]``, as the reference
trains); the test set's items carry the estimate ``sqrt(W^2 + H^2)`` by default
(``eval.test_focal="estimate"``, the reference's evaluation of 3DPW and EMDB, whose test step
never reads ``cam_int``), or ``cam_int[0, 0]`` where the file has it with
``eval.test_focal="annotated"``.

2D body joints: when any training file has ``gtkps`` (BEDLAM, AGORA and 3DPW train files do),
every training item carries ``body_joints_2d`` / ``body_joints_2d_valid``
(:data:`humr.data.fields.OPTIONAL_FIELDS`), all invalid for the items of a file without them,
so that batches collate; when none has them, no item does.

Heatmap samples: ``data.samples_dir`` holds per data set either a humr store
(``<samples_dir>/<key>/manifest.json``, ``recipes/precompute_heatmaps.py``) or the reference's
``<samples_dir>/<key>/<row:07d>.npy.gz``; without ``samples_dir`` the reference location
``<root>/heatmap_samples`` is used where present. Cached features: ``data.features_dir`` holds
``<features_dir>/<key>`` stores (``recipes/precompute_features.py``), for runs without image
augmentation and with ``model.encoder = "features"``.

Example:
    >>> from humr.config import DataConfig
    >>> check_real_data_config(DataConfig(dataset="bedlam+mpii", root="."))
    Traceback (most recent call last):
    ...
    ValueError: data.dataset: unknown training set 'mpii' in 'bedlam+mpii'; ...
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from humr.config import DataConfig
from humr.data.augment import PAPER_AUGMENT
from humr.data.bedlam_cliff import (
    BEDLAM_SCENES,
    FOCAL_MODES,
    TRAIN_KEYS,
    BedlamCliffDataset,
    DatasetSpec,
    annotation_keys,
    preset,
)
from humr.data.mixture import MixtureDataset

__all__ = [
    "TRAIN_GROUPS",
    "TEST_SETS",
    "DEFAULT_TEST_SET",
    "RealTrainSet",
    "evaluation_protocol",
    "train_specs",
    "evaluation_spec",
    "check_real_data_config",
    "build_real_datasets",
]

#: Training-set names and the data-set keys each stands for (those present under the root).
TRAIN_GROUPS: dict[str, tuple[str, ...]] = {
    "bedlam": tuple(BEDLAM_SCENES),
    "agora": ("agora-bfh", "agora-body"),
    "3dpw": ("3dpw-train-smplx",),
}
#: Test-set names -> (data-set key, evaluation protocol of :data:`humr.eval.metrics.PROTOCOLS`).
TEST_SETS: dict[str, tuple[str, str]] = {
    "3dpw_test": ("3dpw-test-cam", "3dpw"),
    "emdb": ("emdb-p1", "emdb"),
    "emdb_occluded": ("emdb-p1-occl", "emdb"),
}
DEFAULT_TEST_SET = "3dpw_test"
#: The plausibility metrics look hypotheses up beyond the crop: the test distance maps cover
#: ``[-extent, extent]^2`` crop units at the crop's pixel density.
TEST_MASK_EXTENT = 1.5


@dataclass(frozen=True)
class RealTrainSet:
    """One "+"-joined name of ``data.dataset`` and the data sets it resolved to."""

    name: str
    specs: tuple[DatasetSpec, ...]


def evaluation_protocol(config: DataConfig) -> str:
    """The evaluation protocol (``"3dpw"`` or ``"emdb"``) of the config's test set."""
    name = config.test_dataset or DEFAULT_TEST_SET
    if name not in TEST_SETS:
        raise ValueError(f"data.test_dataset: expected one of {sorted(TEST_SETS)}, found {name!r}")
    return TEST_SETS[name][1]


def _root(config: DataConfig) -> Path:
    if not config.root:
        raise ValueError(
            f"data.root: real data set {config.dataset!r} needs the data root (the reference's data/ "
            "directory with annotations/, training_images/, ...); pass --data.root DIR"
        )
    root = Path(config.root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data.root: {root} is not a directory (the reference's data/ layout)")
    return root


def _names(config: DataConfig) -> list[str]:
    names = [n.strip() for n in config.dataset.split("+")]
    for name in names:
        if name not in TRAIN_GROUPS and name not in TRAIN_KEYS:
            raise ValueError(
                f"data.dataset: unknown training set {name!r} in {config.dataset!r}; expected names joined "
                f"by '+' from {sorted(TRAIN_GROUPS)} or single keys ({', '.join(TRAIN_KEYS)})"
            )
    return names  # DataConfig has checked that none is named twice


def _samples(spec: DatasetSpec, config: DataConfig) -> DatasetSpec:
    """Point ``spec`` at its heatmap samples (humr store or reference files), or at none."""
    if config.samples_dir is None:
        default = Path(spec.samples) / spec.name if spec.samples else None
        if default is not None and default.is_dir():
            return replace(spec, samples_layout="reference")
        if spec.split == "train":
            warnings.warn(
                f"data.samples_dir: no heatmap samples of {spec.name!r} (looked for {default}); "
                "its uncertain joints get no L_MMD / L_mask target",
                stacklevel=3,
            )
        return replace(spec, samples=None)
    base = Path(config.samples_dir).expanduser()
    if not base.is_dir():
        raise FileNotFoundError(f"data.samples_dir: {base} is not a directory")
    here = base / spec.name
    if (here / "manifest.json").is_file():
        return replace(spec, samples=str(here), samples_layout="humr")
    if here.is_dir():
        return replace(spec, samples=str(base), samples_layout="reference", samples_key=spec.name)
    raise FileNotFoundError(
        f"data.samples_dir: no heatmap samples of {spec.name!r}: looked for a humr store "
        f"{here / 'manifest.json'} and reference files {here}/<row:07d>.npy.gz "
        "(write them with recipes/precompute_heatmaps.py)"
    )


def _features(spec: DatasetSpec, config: DataConfig) -> DatasetSpec:
    if config.features_dir is None:
        return replace(spec, features=None)
    here = Path(config.features_dir).expanduser() / spec.name
    if not (here / "manifest.json").is_file():
        raise FileNotFoundError(
            f"data.features_dir: no cached features of {spec.name!r} (looked for {here / 'manifest.json'}); "
            "write them with recipes/precompute_features.py"
        )
    return replace(spec, features=str(here))


def train_specs(config: DataConfig) -> list[RealTrainSet]:
    """The data sets behind each "+"-joined name of ``config.dataset`` (files checked to exist)."""
    root = _root(config)
    groups = []
    for name in _names(config):
        keys = TRAIN_GROUPS.get(name, (name,))
        specs = [preset(k, root) for k in keys]
        present = [s for s in specs if Path(s.annotation).is_file()]
        if not present:
            folder = Path(specs[0].annotation).parent
            looked = specs[0].annotation if len(specs) == 1 else f"{folder}/<key>.npz"
            raise FileNotFoundError(
                f"data.dataset: no annotation file of {name!r} under data.root (looked for {looked}"
                + (f" with key one of {list(keys)}" if len(specs) > 1 else "")
                + "); BEDLAM-CLIFF annotation files come from BEDLAM's data_processing or the reference "
                "implementation's data archive"
            )
        groups.append(RealTrainSet(name, tuple(_features(_samples(s, config), config) for s in present)))
    return groups


def evaluation_spec(config: DataConfig) -> DatasetSpec:
    """The test set's spec (``config.test_dataset``, default ``"3dpw_test"``), its files checked."""
    root = _root(config)
    evaluation_protocol(config)  # validates the name
    key = TEST_SETS[config.test_dataset or DEFAULT_TEST_SET][0]
    spec = preset(key, root, samples=None)
    if not Path(spec.annotation).is_file():
        raise FileNotFoundError(
            f"data.test_dataset: annotation file {spec.annotation} of {key!r} not found under data.root "
            "(3DPW / EMDB test annotations come with the reference implementation's data archive)"
        )
    return _features(spec, config)


def check_real_data_config(config: DataConfig) -> None:
    """Fail before any training on a config whose real data cannot be built.

    What the fields alone tell (ratios, cached features with augmentation, sizes) the
    :class:`~humr.config.DataConfig` checks when it is built; here: ``ValueError`` for unknown
    training or test set names, ``FileNotFoundError`` for the root, annotation files, sample and
    feature stores, each naming the field to fix.
    """
    _names(config)
    evaluation_protocol(config)
    train_specs(config)
    evaluation_spec(config)


def build_real_datasets(
    config: DataConfig, body: str, test_focal: str = "estimate"
) -> tuple[Dataset, Dataset]:
    """``(train, test)``: the mixture of ``config.dataset`` and the test set ``config.test_dataset``.

    Training items follow :mod:`humr.data.fields` with SMPL-X ground truth (J = 22, S = 11), so
    ``body`` must be ``"smplx"``; test items carry SMPL ground truth (J = 24, S = 10) for
    :func:`humr.experiment.evaluation_real.evaluate_real`. ``test_focal`` (``eval.test_focal``):
    the test items' focal length, ``"estimate"`` or ``"annotated"`` (see the module docstring).
    """
    if body != "smplx":
        raise ValueError(
            f"body: real training sets are labelled with SMPL-X; train them with --body smplx, found {body!r}"
        )
    if test_focal not in FOCAL_MODES:
        raise ValueError(f"eval.test_focal: expected one of {FOCAL_MODES}, found {test_focal!r}")
    check_real_data_config(config)
    augment = PAPER_AUGMENT if config.augment else None
    groups = train_specs(config)
    # Every training item carries the 2D body joints as soon as one file has them (collation).
    body_joints = any("gtkps" in annotation_keys(s.annotation) for g in groups for s in g.specs)
    parts: list[BedlamCliffDataset] = []
    weights: list[float] = []
    ratios = config.ratios or tuple(float("nan") for _ in groups)
    for i, (group, ratio) in enumerate(zip(groups, ratios)):
        sets = [
            BedlamCliffDataset(
                s,
                augment=augment,
                crop_size=config.image_size,
                seed=config.seed + 7919 * i,
                body_joints_2d=body_joints,
            )
            for s in group.specs
        ]
        sizes = np.array([len(s) for s in sets], np.float64)
        if sizes.sum() == 0:
            raise ValueError(f"data.dataset: every row of {group.name!r} was removed by the training filter")
        parts += sets
        # Inside a name (the BEDLAM scenes) data sets weigh by size; names by their ratio.
        weights += list(sizes if math.isnan(ratio) else ratio * sizes / sizes.sum())
    train = MixtureDataset(parts, None if not config.ratios else weights, seed=config.seed)
    test = BedlamCliffDataset(
        evaluation_spec(config),
        augment=None,
        crop_size=config.image_size,
        mask_dilation=0,
        mask_extent=TEST_MASK_EXTENT,
        mask_resolution=int(round(config.image_size * TEST_MASK_EXTENT)),
        focal=test_focal,
    )
    return train, test
