"""The batch contract: the fields every data set (synthetic or real) yields per sample.

Coordinates: "crop coordinates" are normalized to the person box, ``x_n = (x - cx) / (b / 2)``
and ``y_n = (y - cy) / (b / 2)`` for a square box of side ``b`` pixels centred at
``(cx, cy)`` in the full image, so the box spans [-1, 1] on both axes. All 2D keypoints,
heatmap samples and mask distances in a sample use these units.

``J`` is the body's number of articulated joints, ``S`` its shape size, ``K = 17`` (COCO),
``M`` the stored heatmap samples per joint (150), ``R`` the image crop resolution and
``(Hd, Wd)`` the distance map's size. A :class:`torch.utils.data.DataLoader` stacks each
field with a leading batch dimension.

:data:`OPTIONAL_FIELDS` are fields a data set may carry (same layout); :func:`check_sample`
checks them when present. A data set carries an optional field in every item or in none (a
mixture whose parts differ gives every item the field, invalid where a part has no value), so
that batches collate.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

__all__ = ["FIELDS", "OPTIONAL_FIELDS", "check_sample"]

#: field -> (shape with symbolic sizes, dtype kind, meaning)
FIELDS: dict[str, tuple[tuple[str | int, ...], str, str]] = {
    "image": ((3, "R", "R"), "float", "RGB crop of the person box, values in [0, 1]"),
    "pose": (
        ("J", 3, 3),
        "float",
        "ground-truth joint rotations, root = global orientation in the camera frame",
    ),
    "shape": (("S",), "float", "ground-truth shape coefficients"),
    "translation": ((3,), "float", "ground-truth root translation in the camera frame (metres)"),
    "keypoints_2d": ((17, 2), "float", "ground-truth COCO-17 keypoints in crop coordinates"),
    "keypoints_2d_valid": ((17,), "bool", "the ground-truth keypoint exists (annotated / body defines it)"),
    "keypoints_2d_visible": (
        (17,),
        "bool",
        "ground-truth visibility (real data: detector confidence >= 0.5)",
    ),
    "detector_keypoints": (
        (17, 3),
        "float",
        "highest-likelihood detector pose: x, y in crop coordinates, confidence",
    ),
    "heatmap_samples": ((17, "M", 2), "float", "samples drawn from the detector heatmaps, crop coordinates"),
    "heatmap_sample_valid": ((17, "M"), "bool", "sample exists (heatmap cell confidence >= 0.05)"),
    "heatmap_sample_mask_distance": (
        (17, "M"),
        "float",
        "each sample's distance to the union person mask (crop units, 0 inside)",
    ),
    "distance_map": (("Hd", "Wd"), "float", "distance to the union person mask, crop units, 0 inside"),
    "distance_map_extent": ((), "float", "the distance map covers [-extent, extent]^2 of crop coordinates"),
    "mask_valid": ((), "bool", "the mask loss may apply (mask known, no object occlusion)"),
    "object_occluded": ((), "bool", "an object (not a person) occludes the body"),
    "center": ((2,), "float", "box centre (cx, cy) in full-image pixels"),
    "box_size": ((), "float", "box side b in full-image pixels"),
    "focal": ((), "float", "focal length in pixels (ground truth or estimate_focal)"),
    "image_size": ((2,), "float", "full image (W, H) in pixels"),
    "index": ((), "int", "index of the sample in its data set"),
}

#: Fields a data set may carry, same layout as :data:`FIELDS`.
OPTIONAL_FIELDS: dict[str, tuple[tuple[str | int, ...], str, str]] = {
    "body_joints_2d": (
        ("J", 2),
        "float",
        "ground-truth 2D positions of the body's J articulated joints (its 'body_joints'), crop "
        "coordinates; 0 where invalid",
    ),
    "body_joints_2d_valid": (("J",), "bool", "the body joint's 2D ground truth exists"),
}


def check_sample(sample: Mapping[str, Tensor], num_pose_joints: int, num_shape: int) -> None:
    """Raise ``ValueError`` naming the field if ``sample`` breaks the contract above (unbatched).

    Every field of :data:`FIELDS` must be present; those of :data:`OPTIONAL_FIELDS` are checked
    when present (a field without its ``*_valid`` partner, or the reverse, is an error).
    """
    sizes: dict[str, int] = {"J": num_pose_joints, "S": num_shape}
    for name, spec in FIELDS.items():
        if name not in sample:
            raise ValueError(f"sample: missing field {name!r}")
        _check_field(name, sample[name], spec, sizes)
    present = [name for name in OPTIONAL_FIELDS if name in sample]
    for name in present:
        partner = name[: -len("_valid")] if name.endswith("_valid") else f"{name}_valid"
        if partner in OPTIONAL_FIELDS and partner not in sample:
            raise ValueError(f"sample: optional field {name!r} present without {partner!r}")
        _check_field(name, sample[name], OPTIONAL_FIELDS[name], sizes)


def _check_field(name: str, value, spec: tuple, sizes: dict[str, int]) -> None:
    shape, kind, _meaning = spec
    if not isinstance(value, Tensor):
        raise ValueError(f"sample[{name!r}]: expected a tensor, found {type(value).__name__}")
    if value.dim() != len(shape):
        raise ValueError(f"sample[{name!r}]: expected {len(shape)} dims {shape}, found {tuple(value.shape)}")
    for symbol, found in zip(shape, value.shape):
        if isinstance(symbol, int):
            if found != symbol:
                raise ValueError(f"sample[{name!r}]: expected shape {shape}, found {tuple(value.shape)}")
        elif sizes.setdefault(symbol, found) != found:
            raise ValueError(
                f"sample[{name!r}]: size {symbol}={found} disagrees with {sizes[symbol]} elsewhere"
            )
    ok = {
        "float": value.is_floating_point(),
        "bool": value.dtype == torch.bool,
        "int": not value.is_floating_point() and value.dtype != torch.bool,
    }[kind]
    if not ok:
        raise ValueError(f"sample[{name!r}]: expected a {kind} tensor, found {value.dtype}")
    if kind == "float" and not torch.isfinite(value).all():
        raise ValueError(f"sample[{name!r}]: contains NaN or infinite values")
