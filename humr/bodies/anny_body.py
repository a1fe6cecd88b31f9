"""Anny (NAVER Labs, Apache-2.0, ``pip install anny``) behind the :class:`BodyModel` interface.

Anny is a free, embedded body model: 13,718 vertices, 27,420 triangles, a 104-bone rig and six
phenotypes (gender, age, muscle, weight, height, proportions) in [0, 1]. This module drives it
with SMPL-X body-joint rotations, in SMPL axes, so that a pose (or a pose prior) written for
SMPL means the same on Anny.

Pose mapping. Each of the 22 SMPL-X body joints drives the Anny bones of :data:`ANNY_BONE_MAP`;
the other Anny bones (``spine05``, ``spine01``, ``pelvis.L/R``, ``shoulder01.L/R``, the ``*02``
segment bones, ``neck02/03``, fingers, toe tips, eyes) stay at rest, i.e. follow their parent
rigidly. Anny's "local-ref" pose convention composes like SMPL, ``V_c = V_p D_c`` with ``V`` the
world rotation of a bone relative to its reference (A-pose) orientation, so with ``S`` the axis
change Anny -> SMPL (``x' = x, y' = z, z' = -y``), the SMPL world rotations ``W_j = R_0 ... R_j``
and a constant per-joint rest-pose correction ``C_j`` (the world rotation that takes joint j's
Anny reference segment to its T-pose direction), the Anny rotation of a bone driven by joint j
is ``D = S^T (C_p^T R_j C_j) S`` with ``p`` the SMPL parent of j (root: ``D_0 = U_0 S^T R_0 S``,
``U_0`` Anny's reference root orientation). Then every bone's world rotation is
``S^T W_j C_j S``: the identity pose is the T-pose ``C`` and segment directions follow SMPL's
forward kinematics. ``rest_pose="tpose"`` (default) straightens the arms horizontally (collars
levelled, shoulders, elbows and wrists along +-x, palms down, elbow hinges vertical as on SMPL)
and the legs (thigh without forward lean, shin in line with it, Anny's slight abduction kept,
feet kept flat as in Anny's reference); the corrections come from the neutral phenotype and are
the same for every shape, so a pose means the same rotation for every body (over sampled adults,
identity-pose upper arms then deviate from horizontal by 1.5 degrees median, 4.5 at most).
``rest_pose="anny"`` keeps Anny's A-pose (``C = I``).

Keypoints. ``"body_joints"``: the posed heads of the driven bones (feet: the mean head of the
five ``toe*-1`` bones, the ball of the foot). ``"smpl24"`` adds ``left_hand`` / ``right_hand`` =
the head of ``finger3-1`` (middle-finger knuckle). ``"coco17"`` (and ``coco_left_big_toe``,
``coco_left_small_toe``, ``coco_left_heel`` and their right twins) come from Anny's linear
``coco.pth`` regressor. There is no H36M regressor for Anny (``"h36m14"`` raises).

Fast keypoints. Skinning and the regressor are both linear, so a regressed keypoint is
``kp_k = sum_b (T_b^R H_kb + T_b^t G_kb)`` with ``G = regressor x skin weights`` and ``H_kb =
sum_v regressor_kv w_vb v_rest_v`` (linear in the phenotype blendshape coefficients). With the
bone transforms written through the 22 SMPL world rotations this becomes
``kp_k = g_k root + sum_j (W_j C_j) E_kj(shape)``: everything but one ``(N, K, 22, 3)`` tensor
``E`` is precomputed per model, ``E`` once per call from the shape, and no vertex is skinned.
The shape part (Anny's phenotype coefficients and rest bone orientations, one 3x3 Procrustes per
bone) dominates: pass one shape per body, broadcast over its pose hypotheses (``(B, 1, 6)``).
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Sequence

import roma
import torch
from torch import Tensor

from humr.bodies.base import (
    BODY_JOINT_NAMES,
    BODY_JOINT_PARENTS,
    H36M14_NAMES,
    BodyModel,
    BodyOutput,
    resolve_keypoint_names,
)
from humr.rotations import check_rotation_matrices

__all__ = [
    "ANNY_PHENOTYPES",
    "ANNY_BONE_MAP",
    "ANNY_HAND_BONES",
    "ANNY_FOOT_KEYPOINTS",
    "AnnyBody",
    "load_anny_model",
    "sample_adult_phenotypes",
]

logger = logging.getLogger(__name__)

#: Anny's six phenotypes, in the order of the ``shape`` vector.
ANNY_PHENOTYPES: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")

#: The Anny bones each SMPL-X body joint drives (the same rotation for all bones of a joint).
ANNY_BONE_MAP: dict[str, tuple[str, ...]] = {
    "pelvis": ("root",),
    "left_hip": ("upperleg01.L",),
    "right_hip": ("upperleg01.R",),
    "spine1": ("spine04",),
    "left_knee": ("lowerleg01.L",),
    "right_knee": ("lowerleg01.R",),
    "spine2": ("spine03",),
    "left_ankle": ("foot.L",),
    "right_ankle": ("foot.R",),
    "spine3": ("spine02",),
    "left_foot": tuple(f"toe{i}-1.L" for i in range(1, 6)),
    "right_foot": tuple(f"toe{i}-1.R" for i in range(1, 6)),
    "neck": ("neck01",),
    "left_collar": ("clavicle.L",),
    "right_collar": ("clavicle.R",),
    "head": ("head",),
    "left_shoulder": ("upperarm01.L",),
    "right_shoulder": ("upperarm01.R",),
    "left_elbow": ("lowerarm01.L",),
    "right_elbow": ("lowerarm01.R",),
    "left_wrist": ("wrist.L",),
    "right_wrist": ("wrist.R",),
}
#: The bone whose head stands for SMPL's hand joints (middle-finger knuckle).
ANNY_HAND_BONES: dict[str, str] = {"left_hand": "finger3-1.L", "right_hand": "finger3-1.R"}
#: Foot keypoints of Anny's COCO regressor beyond COCO-17 (COCO-WholeBody names).
ANNY_FOOT_KEYPOINTS: tuple[str, ...] = tuple(
    f"coco_{side}_{n}" for n in ("big_toe", "small_toe", "heel") for side in ("left", "right")
)

_SKINNING = {"warp": "warp_lbs", "lbs": "lbs"}
_REST_POSES = ("tpose", "anny")
_NEUTRAL = 0.5  # Anny's neutral value of every phenotype
# Anny world (Z up, facing -Y, left +X) -> SMPL axes (Y up, facing +Z, left +X).
_ANNY_TO_SMPL = ((1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, -1.0, 0.0))


def _import_anny():
    try:
        import anny
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ImportError("AnnyBody needs the 'anny' package: pip install 'humr[anny]' "
                          "(or pip install anny)") from err
    return anny


@functools.cache
def load_anny_model(skinning: str = "warp"):
    """The process-wide float64 CPU ``anny.Anny`` model (default rig and topology); do not mutate it.

    The first construction on a machine builds Anny's cache (about 830 MB in ``~/.cache/anny``,
    about a minute); later ones read a 51 MB file in a fraction of a second. Never selects the
    ``smpl`` / ``smplx`` topologies, which would download a non-commercial archive.
    """
    if skinning not in _SKINNING:
        raise ValueError(f"skinning: expected one of {sorted(_SKINNING)}, found {skinning!r}")
    anny = _import_anny()
    from anny.models.model_data import CURRENT_DATA_VERSION
    from anny.paths import get_anny_cache_path

    cache_dir = get_anny_cache_path() / f"v{CURRENT_DATA_VERSION}"
    if not any(cache_dir.glob("build_compact_model_data_*.safetensors")):
        # WARNING level: shown on stderr even when logging is not configured.
        logger.warning("building the Anny model cache in %s, about a minute, once", cache_dir)
    return anny.Anny(rig="anny", topology="anny", pose_parameterization="local-ref",
                     skinning_method=_SKINNING[skinning])


def _rotation_between(a: Tensor, b: Tensor) -> Tensor:
    """The smallest rotation ``(3, 3)`` taking direction ``a (3,)`` to direction ``b (3,)``."""
    a, b = a / a.norm(), b / b.norm()
    v, c = torch.linalg.cross(a, b), torch.dot(a, b)
    if c < -1 + 1e-9:
        raise ValueError("rest-pose correction: opposite directions have no unique smallest rotation")
    vx = torch.zeros(3, 3, dtype=a.dtype)
    vx[0, 1], vx[0, 2], vx[1, 0], vx[1, 2], vx[2, 0], vx[2, 1] = -v[2], v[1], v[2], -v[0], -v[1], v[0]
    return torch.eye(3, dtype=a.dtype) + vx + vx @ vx / (1 + c)


def _rest_corrections(model, rest_pose: str) -> Tensor:
    """Per-joint world corrections ``C (22, 3, 3)``, SMPL axes, from the neutral reference pose."""
    corrections = torch.eye(3, dtype=torch.float64).repeat(22, 1, 1)
    if rest_pose == "anny":
        return corrections
    S = torch.tensor(_ANNY_TO_SMPL, dtype=torch.float64)
    with torch.no_grad():
        heads = model(None, None)["bone_poses"][0, :, :3, 3].double() @ S.T  # identity pose = A-pose
    index = {label: i for i, label in enumerate(model.bone_labels)}

    def seg(a: str, b: str) -> Tensor:
        return heads[index[b]] - heads[index[a]]

    x = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    level = torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    frontal = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    # joint -> (its A-pose segment, its T-pose direction as a function of the corrections so far)
    targets = {}
    for side, sign in (("L", 1.0), ("R", -1.0)):
        prefix = "left" if side == "L" else "right"
        collar = seg(f"clavicle.{side}", f"upperarm01.{side}")
        targets[f"{prefix}_collar"] = (collar, lambda c, v=collar: level * v)
        lateral = sign * x
        upper = seg(f"upperarm01.{side}", f"lowerarm01.{side}")
        targets[f"{prefix}_shoulder"] = (upper, lambda c, v=lateral: v)
        targets[f"{prefix}_elbow"] = (seg(f"lowerarm01.{side}", f"wrist.{side}"), lambda c, v=lateral: v)
        targets[f"{prefix}_wrist"] = (seg(f"wrist.{side}", f"finger3-1.{side}"), lambda c, v=lateral: v)
        # Straight legs in the frontal plane (Anny's small abduction kept) with the feet as in
        # Anny's reference (flat): the thigh loses its forward lean, the shin continues it.
        thigh, hip = seg(f"upperleg01.{side}", f"lowerleg01.{side}"), BODY_JOINT_NAMES.index(f"{prefix}_hip")
        targets[f"{prefix}_hip"] = (thigh, lambda c, v=thigh: v * frontal)
        shin = seg(f"lowerleg01.{side}", f"foot.{side}")
        targets[f"{prefix}_knee"] = (shin, lambda c, v=thigh, h=hip: c[h] @ v)
        targets[f"{prefix}_ankle"] = (None, None)
    for j, name in enumerate(BODY_JOINT_NAMES):
        parent = BODY_JOINT_PARENTS[j]
        c_parent = corrections[parent] if parent >= 0 else torch.eye(3, dtype=torch.float64)
        segment, target = targets.get(name, (None, False))
        if target is None:  # keep the reference world orientation
            corrections[j] = torch.eye(3, dtype=torch.float64)
        elif target is False:  # follow the parent
            corrections[j] = c_parent
        else:
            corrections[j] = _rotation_between(c_parent @ segment, target(corrections)) @ c_parent
    return corrections


def _chain_levels(parents: Sequence[int]) -> list[tuple[list[int], list[int]]]:
    """Joints grouped by depth (root first) so forward kinematics takes one product per level."""
    depth = [0] * len(parents)
    for j, p in enumerate(parents):
        depth[j] = 0 if p < 0 else depth[p] + 1
    levels = [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]
    return [(level, [parents[j] for j in level]) for level in levels]


_LEVELS = _chain_levels(BODY_JOINT_PARENTS)


def _world_rotations(local: Tensor) -> Tensor:
    """SMPL chain: local rotations ``(N, 22, 3, 3)`` -> world rotations ``W_j = R_0 ... R_j``."""
    world = torch.empty_like(local)
    world[:, 0] = local[:, 0]
    for level, parents in _LEVELS[1:]:
        world[:, level] = world[:, parents] @ local[:, level]
    return world


def _bone_drivers(index: dict[str, int], parents: list[int], num_bones: int) -> list[int]:
    """Which SMPL joint drives each Anny bone: its own, else its nearest driven ancestor's."""
    driver_of = {index[b]: j for j, name in enumerate(BODY_JOINT_NAMES) for b in ANNY_BONE_MAP[name]}
    driver = []
    for b in range(num_bones):
        a = b
        while a not in driver_of:
            a = parents[a]
        driver.append(driver_of[a])
    return driver


def _head_weights(index: dict[str, int], num_bones: int) -> tuple[tuple[str, ...], Tensor]:
    """The head keypoints (the 22 body joints, then the hands) and their weights over the bone heads
    ``(24, num_bones)`` float64."""
    head_names = BODY_JOINT_NAMES + ("left_hand", "right_hand")
    head_w = torch.zeros(len(head_names), num_bones, dtype=torch.float64)
    for k, name in enumerate(BODY_JOINT_NAMES):
        bones = ANNY_BONE_MAP[name]
        for b in bones:
            head_w[k, index[b]] = 1.0 / len(bones)
    for k, name in enumerate(("left_hand", "right_hand"), start=len(BODY_JOINT_NAMES)):
        head_w[k, index[ANNY_HAND_BONES[name]]] = 1.0
    return head_names, head_w


def _with_ancestors(bones: list[int], parents: list[int]) -> list[int]:
    """``bones`` with all their ancestors, sorted (parents first)."""
    used = set(bones)
    for b in list(used):
        while b >= 0:
            used.add(b)
            b = parents[b]
    return sorted(used)


def _offset_paths(bone_parent: list[int], bone_driver: Tensor) -> Tensor:
    """``path (nb, nb, 22)``: ``path[b, a, j] = 1`` when ``a`` (not the root) lies on the root -> ``b`` path
    and ``a``'s parent is driven by joint ``j``; then a posed head is ``root + sum_j G_j sum_a
    path[b, a, j] o_a`` with ``o_a`` the reference offsets."""
    nb = len(bone_parent)
    path = torch.zeros(nb, nb, 22, dtype=torch.float64)
    for b in range(nb):
        a = b
        while a > 0:
            path[b, a, bone_driver[bone_parent[a]]] = 1.0
            a = bone_parent[a]
    return path


@functools.cache
def _model_tables(skinning: str) -> dict[str, object]:
    """Everything the fast keypoints need that depends only on the model (float64, CPU, SMPL axes)."""
    from anny.keypoints import KeypointsRegressor
    from anny.skinning.skinning import dense_bone_weights

    model = load_anny_model(skinning)  # the tables do not depend on it; lbs never imports warp
    S = torch.tensor(_ANNY_TO_SMPL, dtype=torch.float64)
    labels, parents = list(model.bone_labels), [int(p) for p in model.bone_parents]
    if any(p >= i for i, p in enumerate(parents) if p >= 0):
        raise RuntimeError("anny: expected bones listed parents first")
    if model.bone_orientation != "cached" or model.rest_orientation_refiner is not None:
        raise RuntimeError(f"anny: unsupported rig (bone_orientation={model.bone_orientation!r})")
    index = {label: i for i, label in enumerate(labels)}

    driver = _bone_drivers(index, parents, len(labels))

    regressor = KeypointsRegressor.coco(model)
    reg_names = tuple("coco_" + n for n in regressor.labels)
    reg_w = regressor.regression_weights.double()  # (Kr, V), rows sum to 1
    skin = dense_bone_weights(model.vertex_bone_weights, model.vertex_bone_indices, len(labels)).double()
    g_reg = reg_w @ skin  # (Kr, 104)

    head_names, head_w = _head_weights(index, len(labels))

    # Bones used: every bone weighting a keypoint, with all its ancestors (sorted: parents first).
    weighting = ((g_reg.abs() > 0).any(0) | (head_w > 0).any(0)).nonzero().flatten().tolist()
    bones = _with_ancestors(weighting, parents)
    pos = {b: i for i, b in enumerate(bones)}
    nb = len(bones)
    bone_parent = [pos[parents[b]] if parents[b] >= 0 else -1 for b in bones]
    bone_driver = torch.tensor([driver[b] for b in bones])
    path = _offset_paths(bone_parent, bone_driver)

    names = reg_names + head_names
    point_w = torch.cat([g_reg[:, bones], head_w[:, bones]])  # (K, nb)
    q = torch.einsum("kb,baj->kaj", point_w, path)  # (K, nb, 22): how each keypoint sees each offset

    # H_kb = sum_v reg_kv w_vb v_rest_v, linear in the blendshape coefficients; store Y = H - h G.
    template = model.template_vertices.double() @ S.T  # (V, 3)
    blend = model.blendshapes.double() @ S.T  # (C, V, 3)
    heads0 = model.template_bone_heads.double()[bones] @ S.T  # (nb, 3)
    heads_c = model.bone_heads_blendshapes.double()[:, bones] @ S.T  # (C, nb, 3)
    n_c = blend.shape[0]
    y0 = torch.zeros(len(reg_names), nb, 3, dtype=torch.float64)
    yc = torch.zeros(n_c, len(reg_names), nb, 3, dtype=torch.float64)
    for k in range(len(reg_names)):  # construction only: one sparse keypoint at a time
        support = reg_w[k].nonzero().flatten()
        rw = reg_w[k, support, None] * skin[support][:, bones]  # (Vk, nb)
        y0[k] = rw.T @ template[support] - heads0 * g_reg[k, bones, None]
        yc[:, k] = torch.einsum("vb,cvd->cbd", rw, blend[:, support]) - heads_c * g_reg[k, bones, None]

    return {
        "names": names,
        "n_regressed": len(reg_names),
        "bones": bones,
        "bone_parent": torch.tensor(bone_parent),
        "regressor": reg_w,
        "reference_orientations": S @ model.reference_bone_orientations.double()[bones],
        "heads0": heads0,
        "heads_c": heads_c,
        "orient0": S @ model.bone_template_orientation_matrices.double()[bones],
        "orient_c": S @ model.bone_orientation_blendshapes.double()[:, bones],
        "bone_driver": bone_driver,
        "reg_support": g_reg[:, bones] > 0,
        "offsets_map": q,
        "root_weight": point_w.sum(1),
        "y0": y0,
        "yc": yc,
        "head_weights": head_w,
        "root_orientation": model.reference_bone_orientations.double()[0],
        "driven_bones": torch.tensor([index[b] for n in BODY_JOINT_NAMES for b in ANNY_BONE_MAP[n]]),
        "driven_joints": torch.tensor([j for j, n in enumerate(BODY_JOINT_NAMES) for _ in ANNY_BONE_MAP[n]]),
    }


@functools.cache
def _corrections(rest_pose: str, skinning: str) -> Tensor:
    return _rest_corrections(load_anny_model(skinning), rest_pose)


class AnnyBody(BodyModel):
    """Anny with SMPL-X body-joint rotations and phenotype shapes, in SMPL axes.

    Args:
        dtype: floating dtype of the buffers and outputs (Anny itself defaults to float64).
        device: device of the buffers (they move with ``.to``).
        skinning: ``"warp"`` (Anny's sparse warp kernel, less memory) or ``"lbs"`` (dense torch LBS).
        rest_pose: ``"tpose"`` (identity pose = SMPL's T-pose) or ``"anny"`` (Anny's A-pose).
        validate_rotations: check on every call that ``pose`` holds rotation matrices (a host
            sync); without it a non-rotation (``1e6 * I``) gives meaningless or NaN keypoints.

    ``pose (..., 22, 3, 3)`` rotations (SMPL axes, parent-relative, :data:`BODY_JOINT_NAMES` order),
    ``shape (..., 6)`` phenotypes (:data:`ANNY_PHENOTYPES`, each in [0, 1]). ``shape``'s batch
    dimensions may broadcast against ``pose``'s (e.g. pose ``(B, S, 22, 3, 3)`` with shape
    ``(B, 1, 6)``, or an expanded view): the shape-dependent part is then computed once per body.

    Example:
        >>> body = AnnyBody()  # doctest: +SKIP
        >>> pose = torch.eye(3).expand(2, 22, 3, 3)  # doctest: +SKIP
        >>> body.keypoints(pose, body.mean_shape(2), "coco17").shape  # doctest: +SKIP
        torch.Size([2, 17, 3])
    """

    num_pose_joints = 22
    num_shape = 6
    shape_range = (0.0, 1.0)

    def __init__(self, dtype: torch.dtype = torch.float32, device=None, skinning: str = "warp",
                 rest_pose: str = "tpose", validate_rotations: bool = False) -> None:
        super().__init__()
        if skinning not in _SKINNING:
            raise ValueError(f"skinning: expected one of {sorted(_SKINNING)}, found {skinning!r}")
        if rest_pose not in _REST_POSES:
            raise ValueError(f"rest_pose: expected one of {list(_REST_POSES)}, found {rest_pose!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype: expected a floating torch.dtype, found {dtype}")
        self.skinning, self.rest_pose = skinning, rest_pose
        self.validate_rotations = validate_rotations
        # A private copy: .to() on this module must not move the process-wide cached model.
        self.anny = copy.deepcopy(load_anny_model(skinning)).to(dtype=dtype, device=device)
        if list(self.anny.phenotype_labels) != list(ANNY_PHENOTYPES):
            raise RuntimeError(f"anny: unexpected phenotypes {self.anny.phenotype_labels}")
        self._tables = _model_tables(skinning)  # shared, float64 CPU, never mutated
        self._names: tuple[str, ...] = self._tables["names"]
        self._n_regressed: int = self._tables["n_regressed"]
        self._name_index = {n: i for i, n in enumerate(self._names)}
        self._plans: dict[tuple, dict[str, Tensor]] = {}
        S = torch.tensor(_ANNY_TO_SMPL, dtype=torch.float64)
        corr = _corrections(rest_pose, skinning)
        parent_corr = torch.cat([torch.eye(3, dtype=torch.float64)[None], corr[list(BODY_JOINT_PARENTS[1:])]])
        # Full path: D_anny = left_j R_j right_j (see the module docstring).
        left = S.T @ parent_corr.transpose(-1, -2)
        left[0] = self._tables["root_orientation"] @ S.T
        right = corr @ S

        def buf(name: str, value: Tensor) -> None:
            value = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
            self.register_buffer(name, value, persistent=False)

        buf("_smpl_axes", S)
        buf("_corrections", corr)
        buf("_pose_left", left)
        buf("_pose_right", right)
        buf("_driven_bones", self._tables["driven_bones"])
        buf("_driven_joints", self._tables["driven_joints"])
        buf("_head_weights", self._tables["head_weights"])
        buf("_regressor", self._tables["regressor"])
        buf("_faces", self.anny.get_triangular_faces().to(device=device))

    # ------------------------------------------------------------------ interface
    @property
    def faces(self) -> Tensor:
        """Triangles ``(27420, 3)`` int64."""
        return self._faces

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        """COCO-17, Anny's 6 foot keypoints, the 22 body joints and SMPL's two hand joints."""
        return self._names

    @property
    def dtype(self) -> torch.dtype:
        return self._corrections.dtype

    @property
    def device(self) -> torch.device:
        return self._corrections.device

    def mean_shape(self, *batch: int, dtype: torch.dtype | None = None, device=None) -> Tensor:
        """Anny's neutral phenotypes (all 0.5) ``(*batch, 6)``."""
        return torch.full((*batch, self.num_shape), _NEUTRAL, dtype=dtype or self.dtype,
                          device=device if device is not None else self.device)

    def check_inputs(self, pose: Tensor, shape: Tensor) -> None:
        """Raise ``ValueError`` naming the argument for a wrong shape, NaN, a phenotype outside
        [0, 1], batch shapes that do not broadcast to ``pose``'s, a device other than the body's,
        or (with ``validate_rotations``) a pose that is not made of rotation matrices."""
        for name, x in (("pose", pose), ("shape", shape)):
            if not isinstance(x, Tensor):
                raise ValueError(f"{name}: expected a torch.Tensor, found {type(x).__name__}")
        if pose.dim() < 3 or tuple(pose.shape[-3:]) != (22, 3, 3):
            raise ValueError(f"pose: expected shape (..., 22, 3, 3), found {tuple(pose.shape)}")
        if shape.dim() < 1 or shape.shape[-1] != 6:
            raise ValueError(f"shape: expected shape (..., 6) (Anny phenotypes {ANNY_PHENOTYPES}), "
                             f"found {tuple(shape.shape)}")
        batch = tuple(pose.shape[:-3])
        try:
            ok = torch.broadcast_shapes(shape.shape[:-1], batch) == batch
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"shape: batch shape {tuple(shape.shape[:-1])} does not broadcast to "
                             f"pose's {batch}")
        for name, x in (("pose", pose), ("shape", shape)):
            if x.device != self.device:
                raise ValueError(f"{name}: expected device {self.device} (the body's), found {x.device}")
            if not torch.isfinite(x).all():
                raise ValueError(f"{name}: contains NaN or infinite values")
        if shape.numel() and (shape.min() < 0 or shape.max() > 1):
            raise ValueError(f"shape: Anny phenotypes {ANNY_PHENOTYPES} must lie in [0, 1], found values in "
                             f"[{float(shape.min()):.4g}, {float(shape.max()):.4g}]")
        if self.validate_rotations:
            check_rotation_matrices("pose", pose)

    def forward(self, pose: Tensor, shape: Tensor) -> BodyOutput:
        """Anny's full forward (skins every vertex).

        pose ``(..., 22, 3, 3)``, shape ``(..., 6)`` -> vertices ``(..., 13718, 3)`` and joints
        ``(..., 24, 3)`` (:data:`SMPL24_NAMES`: the 22 body joints, then the two hands), SMPL axes,
        metres, the root at its shaped rest position.
        """
        self.check_inputs(pose, shape)
        batch = pose.shape[:-3]
        pose = pose.reshape(-1, 22, 3, 3).to(self.dtype)
        shape = _reduce_broadcast(shape, len(batch)).to(self.dtype)
        if shape.shape[:-1].numel() > 1:
            shape = shape.expand(*batch, 6)
        shape = shape.reshape(-1, 6)
        n = pose.shape[0]
        local = self._pose_left @ pose @ self._pose_right  # (N, 22, 3, 3), Anny axes
        delta = torch.eye(4, dtype=self.dtype, device=self.device).repeat(n, len(self.anny.bone_labels), 1, 1)
        delta[:, self._driven_bones, :3, :3] = local[:, self._driven_joints]
        out = self.anny(pose_parameters=delta, phenotype_kwargs=shape)
        S = self._smpl_axes
        root = out["rest_bone_heads"][:, 0] @ S.T  # Anny puts the root at 0 for a zero root translation
        vertices = out["vertices"] @ S.T + root[:, None]
        heads = out["bone_poses"][..., :3, 3] @ S.T + root[:, None]
        joints = torch.einsum("kb,nbd->nkd", self._head_weights, heads)
        return BodyOutput(vertices=vertices.reshape(*batch, -1, 3), joints=joints.reshape(*batch, -1, 3))

    def keypoints_from_output(self, output: BodyOutput, names: str | Sequence[str] = "coco17") -> Tensor:
        """The named keypoints ``(..., K, 3)`` read from :meth:`forward`'s output (regressor on the mesh)."""
        idx = self._resolve(names)
        reg_idx = [i for i in idx if i < self._n_regressed]
        joint_idx = [i - self._n_regressed for i in idx if i >= self._n_regressed]
        reg = torch.einsum("kv,...vd->...kd", self._regressor[reg_idx], output.vertices) if reg_idx else None
        joints = output.joints[..., joint_idx, :] if joint_idx else None
        if joints is None or reg is None:
            return joints if reg is None else reg
        order = [i for i in idx if i < self._n_regressed] + [i for i in idx if i >= self._n_regressed]
        return torch.cat([reg, joints], -2)[..., [order.index(i) for i in idx], :]

    def keypoints(self, pose: Tensor, shape: Tensor, names: str | Sequence[str] = "coco17") -> Tensor:
        """The named keypoints ``(..., K, 3)`` by forward kinematics only (no vertex is skinned).

        pose ``(..., 22, 3, 3)``, shape ``(..., 6)`` (batch dims broadcasting to pose's).
        """
        self.check_inputs(pose, shape)
        idx = tuple(self._resolve(names))
        batch = pose.shape[:-3]
        shape = _reduce_broadcast(shape, len(batch)).to(self.dtype)
        root, e = self._shape_terms(shape.reshape(-1, 6), idx)  # (Ns, 3), (Ns, K, 22, 3)
        root, e = root.reshape(*shape.shape[:-1], 1, 3), e.reshape(*shape.shape[:-1], *e.shape[1:])
        world = _world_rotations(pose.reshape(-1, 22, 3, 3).to(self.dtype)) @ self._corrections  # W_j C_j
        world = world.reshape(*batch, 22, 3, 3)
        weight = self._plan(idx)["root_weight"][:, None]
        return weight * root + torch.einsum("...jxy,...kjy->...kx", world, e)

    # ------------------------------------------------------------------ shapes
    def sample_shapes(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """Plausible adult phenotypes ``(n, 6)``; see :func:`sample_adult_phenotypes`."""
        return sample_adult_phenotypes(n, generator=generator, dtype=self.dtype, device=self.device)

    # ------------------------------------------------------------------ internals
    def _resolve(self, names: str | Sequence[str]) -> list[int]:
        if isinstance(names, str) and names == "h36m14":
            raise ValueError("names: 'h36m14' is not available for Anny (no H36M regressor for its mesh); "
                             "use 'coco17', 'body_joints', 'smpl24' or a list of names")
        resolved = resolve_keypoint_names(names)
        unknown = [n for n in resolved if n not in self._name_index]
        if unknown:
            hint = " (no H36M regressor for Anny)" if any(n in H36M14_NAMES for n in unknown) else ""
            raise ValueError(f"names: unknown keypoints {unknown}{hint}; Anny offers {list(self._names)}")
        return [self._name_index[n] for n in resolved]

    def _plan(self, idx: tuple[int, ...]) -> dict[str, Tensor]:
        """The model constants one keypoint request needs, restricted to the bones it touches."""
        key = (idx, self.device, self.dtype)
        if key in self._plans:
            return self._plans[key]
        t = self._tables
        parent, driver = t["bone_parent"], t["bone_driver"]
        q = t["offsets_map"][list(idx)]  # (K, nb, 22)
        off = (q != 0).any(2).any(0).nonzero().flatten()  # bones whose reference offset matters
        pairs = [(k, int(b)) for k, i in enumerate(idx) if i < self._n_regressed
                 for b in t["reg_support"][i].nonzero().flatten()]
        # Bones whose rest orientation is needed: offset parents (Anny's root offsets use I) and skinning.
        need = sorted({int(p) for p in parent[off] if p > 0} | {b for _, b in pairs})
        slot = {b: i + 1 for i, b in enumerate(need)}  # slot 0: the identity
        k_n = len(idx)
        onehot = torch.zeros(len(pairs), k_n * 22, dtype=torch.float64)
        for p, (k, b) in enumerate(pairs):
            onehot[p, k * 22 + int(driver[b])] = 1.0
        ridx = [idx[k] for k, _ in pairs]
        pb = [b for _, b in pairs]
        plan = {
            "root_weight": t["root_weight"][list(idx)],
            "root0": t["heads0"][0],
            "root_c": t["heads_c"][:, 0],
            "orient0": t["orient0"][need],
            "orient_c": t["orient_c"][:, need],
            "ref_orient": t["reference_orientations"][need],
            "offsets_map": q[:, off],
            "diff0": t["heads0"][off] - t["heads0"][parent[off]],
            "diff_c": t["heads_c"][:, off] - t["heads_c"][:, parent[off]],
            "offset_slot": torch.tensor([slot.get(int(p), 0) for p in parent[off]], dtype=torch.long),
            "y0": t["y0"][ridx, pb],
            "y_c": t["yc"][:, ridx, pb],
            "pair_slot": torch.tensor([slot[b] for b in pb], dtype=torch.long),
            "pair_scatter": onehot,
        }
        plan = {k: v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device)
                for k, v in plan.items()}
        self._plans[key] = plan
        return plan

    def _shape_terms(self, shape: Tensor, idx: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """Shape-only part: root ``(N, 3)`` and ``E (N, K, 22, 3)``, kp = w root + sum_j W_j C_j E_j."""
        plan = self._plan(idx)
        n = shape.shape[0]
        empty = shape.new_zeros(n, 0)
        coeffs = self.anny._get_phenotype_blendshape_coefficients(shape, empty, empty)  # (N, C)
        root = plan["root0"] + coeffs @ plan["root_c"]
        cross_cov = plan["orient0"] + torch.einsum("nc,cbij->nbij", coeffs, plan["orient_c"])
        rest = roma.special_procrustes(cross_cov)  # Anny's rest bone orientations
        to_ref = plan["ref_orient"] @ rest.transpose(-1, -2)  # rest -> reference orientation, per bone
        eye = torch.eye(3, dtype=shape.dtype, device=shape.device).expand(n, 1, 3, 3)
        slots = torch.cat([eye, to_ref], 1)
        # Reference offsets o_b = A_parent (h_b - h_parent), seen through the SMPL chain.
        diffs = plan["diff0"] + torch.einsum("nc,cbd->nbd", coeffs, plan["diff_c"])
        offsets = (slots[:, plan["offset_slot"]] @ diffs[..., None])[..., 0]
        e = torch.einsum("kaj,nad->nkjd", plan["offsets_map"], offsets)
        if plan["y0"].shape[0]:
            # Regressed keypoints: per (keypoint, bone) pair, A_b (H_kb - h_b G_kb), grouped by driver.
            y = plan["y0"] + torch.einsum("nc,cpd->npd", coeffs, plan["y_c"])
            z = (slots[:, plan["pair_slot"]] @ y[..., None])[..., 0]  # (N, P, 3)
            e = e + torch.einsum("pq,npd->nqd", plan["pair_scatter"], z).reshape(e.shape)
        return root, e


def _reduce_broadcast(shape: Tensor, batch_dims: int) -> Tensor:
    """``shape (..., 6)`` left-padded to ``batch_dims`` batch dims, expanded (stride-0) dims cut to 1."""
    shape = shape.reshape((1,) * (batch_dims - (shape.dim() - 1)) + tuple(shape.shape))
    for d in range(batch_dims):
        if shape.stride(d) == 0 and shape.shape[d] > 1:
            shape = shape.narrow(d, 0, 1)
    return shape


def _sample_gamma(alpha: Tensor, generator: torch.Generator | None, attempts: int = 24) -> Tensor:
    """Gamma(alpha, 1) samples, one per entry of ``alpha (n,)``, drawn with ``generator``.

    Marsaglia and Tsang (2000), vectorised over ``attempts`` proposals per sample (acceptance is
    above 95 % for alpha >= 1); alpha < 1 uses Gamma(alpha) = Gamma(alpha + 1) U^(1 / alpha).
    """
    boost = alpha < 1
    a = torch.where(boost, alpha + 1, alpha)
    d = (a - 1 / 3)[:, None]
    c = 1 / torch.sqrt(9 * d)
    x = torch.randn(alpha.shape[0], attempts, generator=generator, dtype=alpha.dtype, device=alpha.device)
    u = torch.rand(alpha.shape[0], attempts, generator=generator, dtype=alpha.dtype, device=alpha.device)
    v = (1 + c * x) ** 3
    ok = (v > 0) & (torch.log(u) < 0.5 * x**2 + d - d * v + d * torch.log(v.clamp_min(1e-30)))
    first = torch.where(ok.any(1), ok.int().argmax(1), 0)
    sample = (d * v).gather(1, first[:, None])[:, 0]
    sample = torch.where(ok.any(1), sample, a)  # never reached in practice: fall back to the mean
    u_boost = torch.rand(alpha.shape[0], generator=generator, dtype=alpha.dtype, device=alpha.device)
    return torch.where(boost, sample * u_boost.clamp_min(1e-30) ** (1 / alpha), sample)


def _sample_beta(alpha: Tensor, beta: Tensor, generator: torch.Generator | None) -> Tensor:
    x, y = _sample_gamma(alpha, generator), _sample_gamma(beta, generator)
    return (x / (x + y).clamp_min(1e-30)).clamp(0.0, 1.0)


@functools.cache
def _calibration() -> dict[str, dict[str, Tensor]]:
    """Anny's phenotype calibration (WHO-fitted conditional Beta laws), float64 CPU."""
    from anny.paths import get_anny_root_dir

    out = {}
    for sex in ("boys", "girls"):
        path = get_anny_root_dir() / "data" / "shape_calibration" / f"{sex}.pth"
        if not path.exists():
            raise FileNotFoundError(f"Anny shape calibration {path.name} not found at {path}; it ships "
                                    "with the 'anny' package (pip install anny)")
        out[sex] = torch.load(path, weights_only=True, map_location="cpu")
    return out


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation, clamped outside ``xp`` (like Anny's calibration)."""
    x = x.clamp(float(xp[0]), float(xp[-1]))
    i = torch.searchsorted(xp, x.contiguous()).clamp(1, len(xp) - 1)
    t = (x - xp[i - 1]) / (xp[i] - xp[i - 1])
    return fp[i - 1] + t * (fp[i] - fp[i - 1])


def sample_adult_phenotypes(n: int, generator: torch.Generator | None = None,
                            dtype: torch.dtype = torch.float32, device=None,
                            min_age: float = 18.0, max_age: float = 80.0) -> Tensor:
    """Plausible adult Anny phenotypes ``(n, 6)`` in the order of :data:`ANNY_PHENOTYPES`.

    Follows ``anny.shape_distribution.SimpleShapeDistribution`` (which cannot take a generator)
    with adults only: morphological age ~ U(min_age, max_age) years mapped to Anny's age through
    Anny's calibration, gender ~ U(0, 1), then height, weight, muscle and proportions from
    Anny's age-conditional Beta laws (boys' for gender <= 0.5, girls' otherwise).
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative int, found {n!r}")
    if not 0 <= min_age <= max_age:
        raise ValueError(f"min_age, max_age: expected 0 <= min_age <= max_age, found {min_age}, {max_age}")
    cal = _calibration()
    dev = generator.device if generator is not None else torch.device("cpu")
    f64 = dict(dtype=torch.float64, device=dev)
    years = min_age + (max_age - min_age) * torch.rand(n, generator=generator, **f64)
    gender = torch.rand(n, generator=generator, **f64)
    mapping = cal["boys"]["morphological_age_mapping"]  # the same for girls
    age = _interp(years, mapping["morphological_age_anchors"].to(**f64),
                  mapping["anny_age_anchors"].to(**f64))
    values = {"gender": gender, "age": age}
    for key in ("height", "weight", "muscle", "proportions"):
        draws = []
        for sex in ("boys", "girls"):
            law = cal[sex][f"conditional_{key}_distribution"]
            xp = law["age_anchors"].to(**f64)
            alpha = _interp(age, xp, law["alpha_anchors"].to(**f64))
            beta = _interp(age, xp, law["beta_anchors"].to(**f64))
            draws.append(_sample_beta(alpha, beta, generator))
        values[key] = torch.where(gender <= 0.5, draws[0], draws[1])
    out = torch.stack([values[k] for k in ANNY_PHENOTYPES], -1).clamp(0.0, 1.0)
    return out.to(dtype=dtype, device=device)
