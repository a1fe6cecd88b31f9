"""Frozen dataclass configs. An ablation is the full config with a few fields replaced.

``PAPER_FULL`` holds the paper's hyperparameters (Sec. 4.5, supplementary A); the embedded
synthetic default (``SYNTHETIC_CPU``) shrinks only what a 2-core CPU cannot afford in ten
minutes (network width, batch, steps) and keeps every loss, weight and joint rule.

Example:
    >>> from dataclasses import replace
    >>> no_mmd = replace(PAPER_FULL, loss=replace(PAPER_FULL.loss, mmd_weight=0.0))
    >>> no_mmd.loss.mmd_weight
    0.0
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

__all__ = [
    "ModelConfig",
    "LossConfig",
    "DataConfig",
    "TrainConfig",
    "EvalConfig",
    "ExperimentConfig",
    "PAPER_FULL",
    "SYNTHETIC_CPU",
    "config_to_dict",
    "config_from_dict",
    "save_config",
    "load_config",
    "override",
]


@dataclass(frozen=True)
class ModelConfig:
    """Condition encoder, flow and shape/camera head (Sec. 4.1)."""

    encoder: str = "small_cnn"  #: "small_cnn" (trained), "hrnet_w48" (frozen, 720-d) or "features" (cached)
    image_features: int = 256  #: width of the image feature c_I (HRNet-W48: 720)
    encoder_checkpoint: str | None = None  #: HRNet-W48: the BEDLAM-CLIFF backbone checkpoint
    freeze_encoder: bool = False  #: the paper freezes HRNet-W48
    use_bbox_info: bool = True  #: CLIFF bbox condition c_B (Table 3, "+ bbox info")
    use_pose_condition: bool = True  #: detector 2D pose condition c_P (Table 3, "+ 2D pose condition")
    pose_hidden: int = 512  #: 51 -> 512 -> 256
    pose_features: int = 256
    flow: str = "realnvp"  #: "realnvp" (ours) or "glow" (ProHMR baseline)
    flow_layers: int = 8
    flow_hidden: int = 1024
    flow_clamp: float = 2.0
    head_hidden: int = 1024
    ief_iterations: int = 3


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (supplementary A) and the joint rules of Sec. 4.5."""

    shape_weight: float = 5e-4
    keypoint_2d_weight: float = 1e-2
    nll_weight: float = 1e-1
    orth_weight: float = 1e-1
    mmd_weight: float = 5e-2
    mask_weight: float = 1e-1
    num_samples: int = 25  #: n: random hypotheses and heatmap samples per joint for L_MMD
    nll_noise: float = 0.005  #: std of the Gaussian noise added to the GT 6D pose for L_NLL
    uncertain_threshold: float = 0.7  #: max heatmap confidence below which a joint is uncertain
    visibility_threshold: float = 0.5  #: max heatmap confidence below which a joint is invisible
    heatmap_min_confidence: float = 0.0  #: reference variant 0.15: below it use GT copies instead
    mmd_bandwidths: tuple[float, ...] = (0.05, 0.2, 0.9)
    mmd_unbiased: bool = True  #: Eq. 4; the reference uses the biased V-statistic
    mmd_reduction: str = "active"  #: "active" (paper) or "all" (reference: mean over all B x 17)
    mask_same_joint: bool = True  #: the reference searches the nearest sample over all joints
    random_2d_loss: str = "none"  #: Table S2: "none", "all" or "visible" joints of random hypotheses
    random_2d_weight: float = 0.0


@dataclass(frozen=True)
class DataConfig:
    """Which data, and how it is batched."""

    dataset: str = "synthetic"  #: "synthetic", or real data sets joined by "+" (see humr.training.real_data)
    root: str | None = None  #: data root (synthetic: cache directory, default ~/.cache/humr/synthetic)
    test_dataset: str | None = None  #: real data: the evaluation set ("3dpw_test", "emdb", "emdb_occluded")
    ratios: tuple[float, ...] = ()  #: real data: mixture ratios of the "+"-joined sets (empty: by size)
    features_dir: str | None = None  #: real data: cached encoder features (recipes/precompute_features.py)
    samples_dir: str | None = None  #: real data: heatmap samples (reference .npy.gz or humr store)
    augment: bool = True  #: real data: the paper's crop/scale/photometric augmentation
    num_train: int = 2000  #: synthetic frames in the train split
    num_test: int = 500  #: synthetic frames in the test split
    image_size: int = 128  #: crop resolution fed to the encoder
    seed: int = 0  #: synthetic data seed
    batch_size: int = 64
    num_workers: int = 0


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = 400_000
    lr: float = 1e-4
    weight_decay: float = 1e-4
    seed: int = 0
    accelerator: str = "cpu"
    devices: int = 1
    num_nodes: int = 1
    precision: str = "32-true"
    output_dir: str = "runs/paper_full"
    log_every: int = 25
    checkpoint_every: int = 1000
    gradient_clip: float = 0.0
    resume: str | None = None  #: a checkpoint path, or "last" for the output dir's last.ckpt


@dataclass(frozen=True)
class EvalConfig:
    num_hypotheses: int = 100  #: hypotheses per image, mode included (Sec. 5.1)
    max_images: int | None = None  #: evaluate only the first N test images
    batch_size: int = 16
    plots: bool = True
    pve: bool = True  #: PVE skins full meshes of every hypothesis: the costliest metric
    smpl_model_path: str | None = None  #: real data: SMPL files for the ground truth of 3DPW / EMDB
    smplx_to_smpl_path: str | None = None  #: real data: smplx2smpl.pkl (6890 x 10475 vertex map)
    h36m_regressor_path: str | None = None  #: real data: J_regressor_h36m.npy (3DPW protocol)


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "paper_full"
    body: str = "anny"  #: "anny" (free, default), "smplx" (the paper's) or "smpl"
    body_model_path: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


#: The paper's configuration (real data, SMPL-X, HRNet-W48 features, 400K steps at batch 64).
PAPER_FULL = ExperimentConfig(
    body="smplx",
    model=ModelConfig(encoder="hrnet_w48", image_features=720, freeze_encoder=True),
    data=DataConfig(dataset="bedlam+agora+3dpw", image_size=224, batch_size=64),
)

#: The embedded default: the same method on the synthetic set with Anny, sized for a 2-core CPU.
SYNTHETIC_CPU = ExperimentConfig(
    model=ModelConfig(
        image_features=128,
        pose_hidden=256,
        pose_features=128,
        flow_layers=4,
        flow_hidden=256,
        head_hidden=256,
    ),
    data=DataConfig(batch_size=32),
    train=TrainConfig(max_steps=1500, lr=5e-4, checkpoint_every=500),
    eval=EvalConfig(max_images=300),
)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) dataclass from :func:`config_to_dict` output; unknown keys are errors."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"config: unknown fields {sorted(unknown)} for {cls.__name__}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if is_dataclass(hint):
            kwargs[key] = config_from_dict(hint, value)
        elif isinstance(value, list):
            kwargs[key] = tuple(value)
        else:
            kwargs[key] = value
    return cls(**kwargs)


def save_config(config: ExperimentConfig, path: str | Path) -> None:
    Path(path).write_text(json.dumps(config_to_dict(config), indent=2) + "\n")


def load_config(path: str | Path) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"config: no file at {path} (every run writes config.json beside its checkpoints)"
        )
    return config_from_dict(ExperimentConfig, json.loads(path.read_text()))


def override(config: Any, dotted: dict[str, Any]) -> Any:
    """Replace fields by dotted name, e.g. ``{"loss.mmd_weight": 0.0}``."""
    for key, value in dotted.items():
        head, _, rest = key.partition(".")
        if head not in {f.name for f in fields(config)}:
            raise ValueError(f"config: {type(config).__name__} has no field {head!r} (from {key!r})")
        if rest:
            config = replace(config, **{head: override(getattr(config, head), {rest: value})})
        else:
            config = replace(config, **{head: value})
    return config
