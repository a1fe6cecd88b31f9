"""Synthetic inputs at the paper's sizes for the training-step and inference benchmarks.

:func:`make_batch` yields one batch of the :mod:`humr.data.fields` contract (plus cached
``image_features``) with random but valid values: rotations are rotations, heatmap samples
scatter around the ground truth, the distance map is the exact distance transform of a
person-like mask (disks around the keypoints and along the limbs) and every sample's mask
distance is read from it. Confidences are spread so that every rule of Sec. 4.5 fires
(uncertain articulated joints, invisible joints, joints outside the crop, images without a
valid mask).

:func:`build_bench_model` builds :class:`~humr.model.humr_model.HumrModel` with the paper's
network (``ModelConfig(encoder="features", image_features=720)``: 8 blocks, 1024 hidden) on a
SMPL-X-format body of 10,475 vertices written by :mod:`humr.testing.body_files` (cached in the
temp directory), or on Anny.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from humr.config import ModelConfig
from humr.losses.mask import lookup_distance_map, mask_to_distance_map
from humr.rotations import axis_angle_to_matrix

__all__ = [
    "PAPER_MODEL",
    "fake_smplx_path",
    "build_body",
    "build_bench_model",
    "num_vertices",
    "make_batch",
    "to_device",
]

#: The paper's network on cached HRNet-W48 features (the library defaults are the paper's sizes).
PAPER_MODEL = ModelConfig(encoder="features", image_features=720)

#: COCO-17 limbs (shoulder-elbow, elbow-wrist, hip-knee, knee-ankle, shoulders, hips, torso sides).
_LIMBS = ((5, 7), (7, 9), (6, 8), (8, 10), (11, 13), (13, 15), (12, 14), (14, 16), (5, 6), (11, 12),
          (5, 11), (6, 12), (0, 5), (0, 6))


def fake_smplx_path(num_vertices: int = 10475) -> Path:
    """A SMPL-X-format ``SMPLX_NEUTRAL.npz`` with random values (written once, then reused)."""
    from humr.testing.body_files import write_smplx_npz

    path = Path(tempfile.gettempdir()) / f"humr-bench-smplx-{num_vertices}" / "SMPLX_NEUTRAL.npz"
    if not path.is_file():
        tmp = path.with_name("partial.npz")
        write_smplx_npz(tmp, num_vertices=num_vertices, num_shape_components=300)
        tmp.replace(path)  # atomic: parallel runs never read a half-written file
    return path


def build_body(name: str = "smplx"):
    """``"smplx"``: a 10,475-vertex SMPL-X-format body (random values); ``"anny"``: Anny."""
    from humr.bodies.factory import build_body as factory

    if name == "smplx":
        return factory("smplx", fake_smplx_path())
    if name == "anny":
        return factory("anny")
    raise ValueError(f"body: expected 'smplx' or 'anny', found {name!r}")


def num_vertices(body) -> int:
    """Mesh vertex count of a body (SMPL-X: ``num_vertices``; others: from the faces)."""
    return int(getattr(body, "num_vertices", 0) or int(body.faces.max()) + 1)


def build_bench_model(body: str = "smplx", config: ModelConfig = PAPER_MODEL, seed: int = 0):
    """``HumrModel(config, body)`` with weights drawn under a fixed seed (global RNG restored after)."""
    from humr.model.humr_model import HumrModel

    b = build_body(body)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return HumrModel(config, b)


def _person_mask(keypoints: Tensor, size: int, radius: float) -> Tensor:
    """``(B, size, size)`` bool: disks of ``radius`` around keypoints ``(B, 17, 2)`` and along limbs."""
    a = torch.tensor([i for i, _ in _LIMBS])
    b = torch.tensor([j for _, j in _LIMBS])
    t = torch.linspace(0.0, 1.0, 6)
    seg = keypoints[:, a, None] + t[:, None] * (keypoints[:, b, None] - keypoints[:, a, None])  # (B, L, 6, 2)
    centres = torch.cat([keypoints, seg.flatten(1, 2)], 1)  # (B, P, 2)
    cell = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    grid = torch.stack(torch.meshgrid(cell, cell, indexing="xy"), -1).reshape(-1, 2)  # (H W, 2) as (x, y)
    # Setup only: image by image keeps the (H W, P) distance block small.
    near = [torch.cdist(grid, c).amin(-1) <= radius for c in centres]  # B x (H W,)
    return torch.stack(near).reshape(-1, size, size)


def make_batch(
    batch_size: int = 64,
    num_pose_joints: int = 22,
    num_shape: int = 11,
    shape_range: tuple[float, float] | None = None,
    image_features: int = 720,
    heatmap_samples: int = 150,
    distance_map_size: int = 224,
    image_resolution: int = 224,
    seed: int = 0,
) -> dict[str, Tensor]:
    """One batch of the fields contract (CPU, float32) at the paper's sizes.

    Args:
        batch_size: ``B``.
        num_pose_joints, num_shape: the body's ``J`` and ``S``.
        shape_range: the body's shape range (Anny: ``(0, 1)``), None for unbounded betas.
        image_features: width of the cached ``image_features (B, F)``.
        heatmap_samples: ``M`` stored samples per joint (150).
        distance_map_size: the distance map is ``(B, Hd, Hd)`` over the crop (224: one cell per pixel).
        image_resolution: ``R`` of ``image (B, 3, R, R)``; 0 leaves the image out (cached features
            need none).
        seed: everything is drawn from ``torch.Generator().manual_seed(seed)``.

    Returns:
        ``dict`` of CPU tensors: ``pose (B, J, 3, 3)``, ``shape (B, S)``, ``keypoints_2d (B, 17, 2)``,
        ``detector_keypoints (B, 17, 3)``, ``heatmap_samples (B, 17, M, 2)``,
        ``heatmap_sample_valid (B, 17, M)``, ``heatmap_sample_mask_distance (B, 17, M)``,
        ``distance_map (B, Hd, Hd)``, ``image_features (B, F)``, ... (all of :data:`FIELDS`).
    """
    if batch_size < 1 or heatmap_samples < 2 or distance_map_size < 2:
        raise ValueError(
            f"batch_size, heatmap_samples, distance_map_size: expected >= 1, >= 2, >= 2, found "
            f"{batch_size}, {heatmap_samples}, {distance_map_size}"
        )
    g = torch.Generator().manual_seed(seed)
    B, K, M = batch_size, 17, heatmap_samples

    def rand(*shape: int) -> Tensor:
        return torch.rand(shape, generator=g)

    def randn(*shape: int) -> Tensor:
        return torch.randn(shape, generator=g)

    pose = axis_angle_to_matrix(0.3 * randn(B, num_pose_joints, 3))
    if shape_range is None:
        shape = 0.8 * randn(B, num_shape)
    else:
        lo, hi = shape_range
        shape = lo + (hi - lo) * (0.25 + 0.5 * rand(B, num_shape))
    # A loose standing skeleton in crop coordinates, jittered per image; a few joints leave the crop.
    template = torch.tensor(
        [[0.0, -0.75], [-0.05, -0.8], [0.05, -0.8], [-0.1, -0.75], [0.1, -0.75], [-0.25, -0.5], [0.25, -0.5],
         [-0.35, -0.15], [0.35, -0.15], [-0.4, 0.15], [0.4, 0.15], [-0.15, 0.1], [0.15, 0.1], [-0.17, 0.5],
         [0.17, 0.5], [-0.18, 0.88], [0.18, 0.88]]
    )
    gt = template + 0.08 * randn(B, K, 2)
    gt = gt * (0.9 + 0.3 * rand(B, 1, 1))  # some images zoomed in: ankles / head outside the crop
    valid = rand(B, K) > 0.03
    conf = 0.15 + 0.85 * rand(B, K)  # below 0.5: invisible; below 0.7 on articulated joints: samples
    detector = torch.cat([gt + 0.03 * randn(B, K, 2), conf[..., None]], -1)
    spread = 0.02 + 0.15 * (1.0 - conf)[..., None, None]  # uncertain joints scatter more
    samples = gt[:, :, None] + spread * randn(B, K, M, 2)
    sample_valid = rand(B, K, M) > 0.05

    mask = _person_mask(gt, distance_map_size, radius=0.09)
    distance_map = mask_to_distance_map(mask)
    sample_distance = lookup_distance_map(samples, distance_map)

    width, height = 1280.0, 720.0
    box = 180.0 + 400.0 * rand(B)
    centre = torch.stack([width / 2 + 300.0 * (rand(B) - 0.5), height / 2 + 150.0 * (rand(B) - 0.5)], -1)
    mask_valid = rand(B) > 0.1
    batch = {
        "pose": pose,
        "shape": shape,
        "translation": torch.cat([0.1 * randn(B, 2), 4.0 + 4.0 * rand(B, 1)], -1),
        "keypoints_2d": gt,
        "keypoints_2d_valid": valid,
        "keypoints_2d_visible": valid & (conf >= 0.5),
        "detector_keypoints": detector,
        "heatmap_samples": samples,
        "heatmap_sample_valid": sample_valid,
        "heatmap_sample_mask_distance": sample_distance,
        "distance_map": distance_map,
        "distance_map_extent": torch.ones(B),
        "mask_valid": mask_valid,
        "object_occluded": ~mask_valid & (rand(B) > 0.5),
        "center": centre,
        "box_size": box,
        "focal": torch.full((B,), math.hypot(width, height)),
        "image_size": torch.tensor([width, height]).expand(B, 2).clone(),
        "index": torch.arange(B),
        "image_features": torch.relu(randn(B, image_features)),
    }
    if image_resolution:
        batch["image"] = rand(B, 3, image_resolution, image_resolution)
    return batch


def to_device(
    batch: dict[str, Tensor], device: torch.device | str, non_blocking: bool = False
) -> dict[str, Tensor]:
    """Every tensor of ``batch`` on ``device``."""
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}
