"""Frozen dataclass configs. An ablation is the full config with a few fields replaced.

``PAPER_FULL`` holds the paper's hyperparameters (Sec. 4.5, supplementary A); the embedded
synthetic default (``SYNTHETIC_CPU``) shrinks only what a 2-core CPU cannot afford in ten
minutes (network width, batch, steps) and keeps every loss, weight and joint rule.

Every dataclass validates its fields when it is built (``__post_init__``), whether from the
command line, ``replace()`` or a config.json: a bad value raises ``ValueError`` naming the
field before any folder is created. The flow's settings are the flow's own
:class:`~humr.flows.FlowConfig`, nested in the model's (``model.flow.num_layers``).

Example:
    >>> from dataclasses import replace
    >>> no_mmd = replace(PAPER_FULL, loss=replace(PAPER_FULL.loss, mmd_weight=0.0))
    >>> no_mmd.loss.mmd_weight
    0.0
    >>> replace(PAPER_FULL.loss, uncertain_threshold=2.0)
    Traceback (most recent call last):
    ...
    ValueError: loss.uncertain_threshold: expected a value in [0, 1], found 2.0
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from humr.flows.factory import FlowConfig

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
    "flat_config",
    "config_from_dict",
    "FLAT_FLOW_FIELDS",
    "save_config",
    "load_config",
    "override",
    "BodyName",
    "EncoderName",
    "TestSetName",
    "Accelerator",
    "Precision",
]

#: Names a field accepts; the command line lists them and refuses others.
BodyName = Literal["anny", "smplx", "smpl"]
EncoderName = Literal["small_cnn", "hrnet_w48", "features"]
TestSetName = Literal["3dpw_test", "emdb", "emdb_occluded"]
Accelerator = Literal["cpu", "gpu", "cuda", "mps", "tpu", "auto"]
#: Lightning's precision names, and "auto" (bf16-mixed where the hardware has native bfloat16,
#: else 32-true: :func:`humr.training.precision.resolve_precision`)
Precision = Literal["32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true", "auto"]


# --------------------------------------------------------------------------- validation
# Every config dataclass checks its own fields in ``__post_init__``: a config built from the
# command line, from ``replace()`` or from a config.json is valid or raises ``ValueError``
# naming the field (``loss.mmd_weight``), before anything is written. Checks that read files or
# import other layers (body files exist, data sets exist) stay with the code that needs them.


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is Literal:
        return "one of " + ", ".join(map(str, args))
    if origin is tuple:
        return f"a tuple of ({_describe(args[0])})"
    names = {type(None): "None", bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(hint, f"a {getattr(hint, '__name__', hint)}")


def _matches(hint: Any, value: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(a, value) for a in args)
    if origin is Literal:
        return isinstance(value, str) and value in args
    if origin is tuple:
        return isinstance(value, tuple) and all(_matches(args[0], v) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint) if isinstance(hint, type) else True


def _literal_of(hint: Any) -> tuple[str, ...] | None:
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    for arg in typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ():
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return None


def _where(config: Any, name: str) -> str:
    return f"{config._section}.{name}" if config._section else name


def _check_fields(config: Any) -> None:
    """Type of every field (lists become tuples) and membership of every ``Literal`` name."""
    for f in fields(config):
        hint, value = _hints(type(config))[f.name], getattr(config, f.name)
        if isinstance(value, list) and (typing.get_origin(hint) is tuple):
            value = tuple(value)
            object.__setattr__(config, f.name, value)  # frozen: normalise JSON lists once, here
        if _matches(hint, value):
            continue
        names = _literal_of(hint)
        if names is not None and isinstance(value, str):
            listed = ", ".join(names)
            where = _where(config, f.name)
            raise ValueError(f"{where}: expected one of {listed}, found unknown {f.name} {value!r}")
        raise ValueError(f"{_where(config, f.name)}: expected {_describe(hint)}, found {value!r}")


def _at_least(config: Any, minimum: int, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise ValueError(f"{_where(config, name)}: expected >= {minimum}, found {value!r}")


def _finite(config: Any, *names: str, positive: bool = False, at_most: float | None = None) -> None:
    """Finite and >= 0 (``positive``: > 0; ``at_most``: <= it) for numbers and tuples of numbers."""
    for name in names:
        value = getattr(config, name)
        for v in value if isinstance(value, tuple) else (value,):
            ok = math.isfinite(v) and (v > 0 if positive else v >= 0) and (at_most is None or v <= at_most)
            if not ok:
                bound = "> 0" if positive else ">= 0"
                bound = f"a value in [0, {at_most:g}]" if at_most is not None else f"a finite value {bound}"
                raise ValueError(f"{_where(config, name)}: expected {bound}, found {value!r}")



@dataclass(frozen=True)
class ModelConfig:
    """Condition encoder, flow and shape/camera head (Sec. 4.1).

    ``flow`` is the flow's own :class:`~humr.flows.FlowConfig` (kind ``"realnvp"``, ours, or
    ``"glow"``, the ProHMR baseline; depth, width, clamp, initialisation, permutation seed),
    checked by it.
    """

    _section: ClassVar[str] = "model"

    #: "small_cnn" (trained), "hrnet_w48" (frozen, 720-d) or "features" (cached)
    encoder: EncoderName = "small_cnn"
    image_features: int = 256  #: width of the image feature c_I (HRNet-W48: 720)
    encoder_checkpoint: str | None = None  #: HRNet-W48: the BEDLAM-CLIFF backbone checkpoint
    freeze_encoder: bool = False  #: the paper freezes HRNet-W48
    use_bbox_info: bool = True  #: CLIFF bbox condition c_B (Table 3, "+ bbox info")
    use_pose_condition: bool = True  #: detector 2D pose condition c_P (Table 3, "+ 2D pose condition")
    pose_hidden: int = 512  #: 51 -> 512 -> 256
    pose_features: int = 256
    flow: FlowConfig = field(default_factory=FlowConfig)  #: the pose flow (pose_head "flow")
    #: "flow" (the paper's distribution) or "regressor" (one deterministic pose, BEDLAM-CLIFF style)
    pose_head: Literal["flow", "regressor"] = "flow"
    head_hidden: int = 1024
    ief_iterations: int = 3

    def __post_init__(self) -> None:
        _check_fields(self)
        _at_least(self, 1, "image_features", "pose_hidden", "pose_features", "head_hidden", "ief_iterations")
        if self.encoder == "hrnet_w48" and self.image_features != 720:
            raise ValueError(
                f"model.image_features: HRNet-W48 gives 720 features, found {self.image_features} "
                "(set model.image_features to 720)"
            )


@dataclass(frozen=True)
class LossConfig:
    """Loss weights (supplementary A) and the joint rules of Sec. 4.5."""

    _section: ClassVar[str] = "loss"

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
    #: "all" (reference: mean over all B x 17, inactive = 0) or "active"
    mmd_reduction: Literal["all", "active"] = "all"
    mask_same_joint: bool = True  #: the reference searches the nearest sample over all joints
    #: Table S2: "none", "all" or "visible" joints of random hypotheses
    random_2d_loss: Literal["none", "all", "visible"] = "none"
    random_2d_weight: float = 0.0
    #: L_NLL divided by the flow dimension D (reference: mean(-log p) / D); False: summed over D
    nll_per_dimension: bool = True
    #: L_beta over the shape coefficients: "sum" (reference) or "mean"
    shape_reduction: Literal["sum", "mean"] = "sum"
    #: L_orth: "split" = L(mode) + L(random samples) (reference) or "joint" = one mean over all hypotheses
    orth_reduction: Literal["split", "joint"] = "split"
    #: L_mask normalisation: "reference" (sum over joints per hypothesis / (B x n), GT among targets,
    #: only hypotheses inside the distance map) or "entry" (mean per applied (joint, hypothesis))
    mask_normalization: Literal["reference", "entry"] = "reference"
    #: L_2D on the mode: "auto" (body joints where the batch has their 2D ground truth, else
    #: COCO-17), "body_joints" or "coco17"
    keypoint_2d_set: Literal["auto", "body_joints", "coco17"] = "auto"
    #: weight of the camera-scale regulariser mean(exp(-10 s)^2) (reference: 1, unweighted)
    camera_scale_weight: float = 1.0
    #: regressor pose head only: squared error of the rotation matrices (BEDLAM-CLIFF's pose loss)
    pose_regression_weight: float = 1.0
    #: regressor pose head only: l1 error of the pelvis-aligned 3D body joints, metres
    joints_3d_weight: float = 1.0

    #: Weights of the terms of Eq. 7 (and the regulariser): finite and >= 0.
    WEIGHTS: ClassVar[tuple[str, ...]] = (
        "shape_weight",
        "keypoint_2d_weight",
        "nll_weight",
        "orth_weight",
        "mmd_weight",
        "mask_weight",
        "random_2d_weight",
        "camera_scale_weight",
        "pose_regression_weight",
        "joints_3d_weight",
    )

    def __post_init__(self) -> None:
        _check_fields(self)
        _finite(self, *self.WEIGHTS, "nll_noise")
        _finite(self, "uncertain_threshold", "visibility_threshold", "heatmap_min_confidence", at_most=1.0)
        if not self.mmd_bandwidths:
            raise ValueError("loss.mmd_bandwidths: expected at least one bandwidth, found ()")
        _finite(self, "mmd_bandwidths", positive=True)
        if self.num_samples < 2:
            raise ValueError(
                f"loss.num_samples: the unbiased MMD needs at least 2 samples, found {self.num_samples}"
            )


@dataclass(frozen=True)
class DataConfig:
    """Which data, and how it is batched."""

    _section: ClassVar[str] = "data"

    #: "synthetic", or real data sets joined by "+" (see humr.experiment.real_data)
    dataset: str = "synthetic"
    root: str | None = None  #: data root (synthetic: cache directory, default ~/.cache/humr/synthetic)
    test_dataset: TestSetName | None = None  #: real data: the evaluation set (default "3dpw_test")
    ratios: tuple[float, ...] = ()  #: real data: mixture ratios of the "+"-joined sets (empty: by size)
    features_dir: str | None = None  #: real data: cached encoder features (recipes/precompute_features.py)
    samples_dir: str | None = None  #: real data: heatmap samples (reference .npy.gz or humr store)
    augment: bool = True  #: real data: the paper's crop/scale/photometric augmentation
    num_train: int = 2000  #: synthetic frames in the train split
    num_test: int = 500  #: synthetic frames in the test split
    num_val: int = 200  #: synthetic frames in the validation split (train.val_every)
    image_size: int = 128  #: crop resolution fed to the encoder
    seed: int = 0  #: synthetic data seed
    batch_size: int = 64
    num_workers: int = 0

    def __post_init__(self) -> None:
        _check_fields(self)
        names = [n.strip() for n in self.dataset.split("+")]
        if not all(names):
            raise ValueError(f"data.dataset: expected names joined by '+', found {self.dataset!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"data.dataset: a training set is named twice in {self.dataset!r}")
        if "synthetic" in names and len(names) > 1:
            raise ValueError(
                f"data.dataset: the synthetic set cannot be mixed with others, found {self.dataset!r}"
            )
        if self.ratios and len(self.ratios) != len(names):
            raise ValueError(
                f"data.ratios: expected {len(names)} values, one per '+'-joined name of "
                f"data.dataset={self.dataset!r}, found {len(self.ratios)} ({self.ratios})"
            )
        finite = all(math.isfinite(r) and r >= 0 for r in self.ratios)
        if self.ratios and not (finite and sum(self.ratios) > 0):
            raise ValueError(
                f"data.ratios: expected non-negative finite values, positive sum, found {self.ratios}"
            )
        _at_least(self, 1, "num_train", "num_test", "image_size", "batch_size")
        _at_least(self, 0, "num_workers", "num_val")
        if self.dataset != "synthetic":
            _at_least(self, 32, "image_size")
        if self.features_dir is not None and self.augment:
            raise ValueError(
                "data.features_dir, data.augment: cached features are computed on unaugmented crops; "
                "set --data.augment false to train on them (or drop --data.features_dir)"
            )


@dataclass(frozen=True)
class TrainConfig:
    _section: ClassVar[str] = "train"

    max_steps: int = 400_000
    lr: float = 1e-4
    weight_decay: float = 1e-4
    seed: int = 0
    accelerator: Accelerator = "cpu"
    devices: int = 1
    num_nodes: int = 1
    precision: Precision = "32-true"
    output_dir: str = "runs/paper_full"
    log_every: int = 25
    checkpoint_every: int = 1000
    gradient_clip: float = 0.0
    resume: str | None = None  #: a checkpoint path, or "last" for the output dir's last.ckpt
    #: learning-rate schedule per step (humr.training.schedule): "constant" (the paper) or "cosine"
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0  #: linear warm-up from 0 over this many steps (either schedule)
    final_lr_ratio: float = 0.0  #: cosine: the rate at max_steps, as a fraction of lr
    val_every: int = 0  #: validate on a fixed held-out subset every N steps (0: never)
    val_images: int = 64  #: size of that subset
    val_hypotheses: int = 25  #: hypotheses per validation image, mode included

    def __post_init__(self) -> None:
        _check_fields(self)
        _at_least(self, 1, "max_steps", "devices", "num_nodes", "log_every", "checkpoint_every")
        _at_least(self, 0, "warmup_steps", "val_every")
        _at_least(self, 1, "val_images")
        _at_least(self, 2, "val_hypotheses")
        _finite(self, "lr", positive=True)
        _finite(self, "weight_decay", "gradient_clip")
        _finite(self, "final_lr_ratio", at_most=1.0)
        for name in ("output_dir", "resume"):
            if getattr(self, name) == "":
                raise ValueError(f"train.{name}: expected a path, found ''")


@dataclass(frozen=True)
class EvalConfig:
    _section: ClassVar[str] = "eval"

    num_hypotheses: int = 100  #: hypotheses per image, mode included (Sec. 5.1)
    max_images: int | None = None  #: evaluate only the first N test images
    batch_size: int = 16
    plots: bool = True
    pve: bool = True  #: PVE skins full meshes of every hypothesis: the costliest metric
    smpl_model_path: str | None = None  #: real data: SMPL files for the ground truth of 3DPW / EMDB
    smplx_to_smpl_path: str | None = None  #: real data: smplx2smpl.pkl (6890 x 10475 vertex map)
    h36m_regressor_path: str | None = None  #: real data: J_regressor_h36m.npy (3DPW protocol)
    #: focal length of the test sets: "estimate" (sqrt(W^2 + H^2), the reference's protocol) or
    #: "annotated" (the file's cam_int where it has one)
    test_focal: Literal["estimate", "annotated"] = "estimate"
    #: calibration: a joint whose 3D spread exceeds this (mm) is flagged uncertain (the scale of
    #: the 100 mm errors the flag should catch)
    uncertain_threshold_mm: float = 100.0

    def __post_init__(self) -> None:
        _check_fields(self)
        _at_least(self, 1, "num_hypotheses", "max_images", "batch_size")
        _finite(self, "uncertain_threshold_mm", positive=True)


@dataclass(frozen=True)
class ExperimentConfig:
    _section: ClassVar[str] = ""

    name: str = "paper_full"
    body: BodyName = "anny"  #: "anny" (free, default), "smplx" (the paper's) or "smpl"
    body_model_path: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check_fields(self)
        if not self.name:
            raise ValueError("name: expected a non-empty run name, found ''")


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
        flow=FlowConfig(num_layers=4, hidden_features=256),
        head_hidden=256,
    ),
    data=DataConfig(batch_size=32),
    train=TrainConfig(
        max_steps=600,
        lr=1e-3,
        lr_schedule="cosine",
        warmup_steps=100,
        precision="auto",
        checkpoint_every=300,
        val_every=100,
    ),
    eval=EvalConfig(max_images=300),
)


def config_to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def flat_config(config: Any) -> dict[str, Any]:
    """Every leaf field by its dotted name, e.g. ``{"loss.mmd_weight": 0.05, ...}``."""
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            out.update({f"{f.name}.{k}": v for k, v in flat_config(value).items()})
        else:
            out[f.name] = value
    return out


def _place(cls: type, name: str) -> str:
    section = getattr(cls, "_section", "")
    return f"{section}.{name}" if section else name


@contextlib.contextmanager
def _errors_at(place: str, section: type) -> Iterator[None]:
    """Name ``place`` (``model.flow``) in the errors of a section from another layer, which
    names its fields alone (:class:`~humr.flows.FlowConfig` says ``num_layers: ...``)."""
    try:
        yield
    except ValueError as err:
        own = hasattr(section, "_section")  # humr.config's sections already name their place
        if own or not any(str(err).startswith(f"{f.name}:") for f in fields(section)):
            raise
        raise ValueError(f"{place}.{err}") from None


#: The flow's fields in configs written before the flow's config was nested in the model's:
#: flat model field -> :class:`~humr.flows.FlowConfig` field (``"flow"`` held the kind).
FLAT_FLOW_FIELDS: dict[str, str] = {
    "flow": "kind",
    "flow_layers": "num_layers",
    "flow_hidden": "hidden_features",
    "flow_clamp": "clamp",
}


def _nest_flat_flow(model: dict[str, Any]) -> dict[str, Any]:
    """A model section with the flat flow fields (``"flow": "glow", "flow_layers": 4``, as runs
    wrote them before the nesting) in today's form, so that those runs still load and resume."""
    if not isinstance(model.get("flow"), str):
        return model
    flow = {new: model[old] for old, new in FLAT_FLOW_FIELDS.items() if old in model}
    return {**{k: v for k, v in model.items() if k not in FLAT_FLOW_FIELDS}, "flow": flow}


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) dataclass from :func:`config_to_dict` output; unknown keys are errors.

    A model section with the flat flow fields of older runs is read as the nested one
    (:data:`FLAT_FLOW_FIELDS`).
    """
    if cls is ModelConfig:
        data = _nest_flat_flow(data)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"config: unknown fields {sorted(unknown)} for {cls.__name__}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        if is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"{_place(cls, key)}: expected a section (a JSON object), found {value!r}")
            with _errors_at(_place(cls, key), hint):
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
    """Replace fields by dotted name, e.g. ``{"loss.mmd_weight": 0.0}``.

    All the fields of one section change in one ``replace``, so fields that are checked together
    (``data.dataset`` and ``data.ratios``) can change together, in any order.
    """
    names = {f.name for f in fields(config)}
    direct: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in dotted.items():
        head, _, rest = key.partition(".")
        if head not in names:
            raise ValueError(f"config: {type(config).__name__} has no field {head!r} (from {key!r})")
        if rest:
            if not is_dataclass(getattr(config, head)):
                raise ValueError(f"config: {head!r} is a value, not a section (from {key!r})")
            nested.setdefault(head, {})[rest] = value
        else:
            direct[head] = value
    for head, inner in nested.items():
        section = direct.get(head, getattr(config, head))
        with _errors_at(_where(config, head), type(section)):
            direct[head] = override(section, inner)
    return replace(config, **direct) if direct else config
