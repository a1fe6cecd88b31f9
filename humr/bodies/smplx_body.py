"""SMPL-X body (22 posed body joints, 11 shape coefficients) with a fast keypoint path.

The full forward is ``smplx``'s own linear blend skinning (``smplx.lbs.lbs`` on the buffers of a
``smplx.SMPLXLayer``, jaw, eyes and hands at rest, expression zero): every vertex and the 55
kinematic joints. :meth:`SMPLXBody.keypoints` returns the same keypoints without touching the
mesh:

- kinematic joints by forward kinematics of the shaped rest joints, which are linear in the shape
  (``J_template + J_shapedirs @ beta`` precomputed from ``J_regressor``); joints kept at rest
  (hand joints) ride rigidly on their posed ancestor;
- vertex-defined keypoints (COCO nose, eyes, ears; H36M joints from a vertex regressor) in closed
  form from the skinning of their vertices (:class:`humr.bodies.kinematics.RegressedKeypoints`):
  shape and pose blend shapes of those vertices only, pose features ``(R - I)`` of the 21 posed
  non-root joints (the other 33 are identity and contribute nothing), skinning weights of joints
  kept at rest folded onto their posed ancestor (same transform).

Keypoints (:attr:`SMPLXBody.keypoint_names`):

- the 55 SMPL-X joints by their ``smplx`` names (``"body_joints"`` are the first 22);
- ``left_hand`` / ``right_hand`` (``"smpl24"``): SMPL's hand joints sit at the knuckles, so they
  map to SMPL-X's ``left_middle1`` / ``right_middle1`` (the middle finger's root joint);
- ``"coco17"``: the face keypoints are single SMPL-X vertices (:data:`SMPLX_FACE_VERTICES`, the
  table ``smplx`` uses for its extra joints: nose 9120, left eye 9448, right eye 9929, left ear 6,
  right ear 616), the others are kinematic joints (COCO shoulder = ``left_shoulder``, and so on
  for elbows, wrists, hips, knees, ankles);
- ``"h36m14"``: only with an H36M regressor over SMPL vertices composed with the SMPL-X -> SMPL
  vertex matrix (or a regressor already over SMPL-X vertices).

Files: ``SMPLX_{NEUTRAL,MALE,FEMALE}.npz`` (registration at https://smpl-x.is.tue.mpg.de). The
chumpy-era ``.pkl`` files cannot be read on numpy 2.

Example (with a stand-in file; real use passes the directory holding ``SMPLX_NEUTRAL.npz``):
    >>> import tempfile, torch
    >>> from humr.testing.body_files import write_smplx_npz
    >>> path = write_smplx_npz(tempfile.mkdtemp() + "/SMPLX_NEUTRAL.npz")
    >>> body = SMPLXBody(path)
    >>> pose = torch.eye(3).expand(4, 22, 3, 3)
    >>> body.keypoints(pose, torch.zeros(4, 11), "coco17").shape
    torch.Size([4, 17, 3])
"""

from __future__ import annotations

import contextlib
import io
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from humr.bodies.base import (
    BODY_JOINT_NAMES,
    H36M14_NAMES,
    BodyModel,
    BodyOutput,
    resolve_keypoint_names,
)
from humr.bodies.conversion import H36M17_TO_LSP14, load_h36m_regressor, load_smplx_to_smpl
from humr.bodies.kinematics import (
    RegressedKeypoints,
    fold_skinning_weights,
    forward_kinematics,
    nearest_ancestors,
    pose_feature,
    rest_descendants,
)
from humr.rotations import check_rotation_matrices

__all__ = [
    "SMPLX_JOINT_NAMES",
    "SMPLX_FACE_VERTICES",
    "COCO_JOINT_ALIASES",
    "SMPLFamilyBody",
    "SMPLXBody",
    "resolve_model_file",
]

# fmt: off
#: The 55 SMPL-X joints in model order (``smplx``'s names).
SMPLX_JOINT_NAMES: tuple[str, ...] = BODY_JOINT_NAMES + (
    "jaw", "left_eye_smplhf", "right_eye_smplhf",
    *(f"left_{f}{i}" for f in ("index", "middle", "pinky", "ring", "thumb") for i in (1, 2, 3)),
    *(f"right_{f}{i}" for f in ("index", "middle", "pinky", "ring", "thumb") for i in (1, 2, 3)),
)
#: COCO face keypoints as SMPL-X vertex indices.
SMPLX_FACE_VERTICES: dict[str, int] = {
    "coco_nose": 9120, "coco_left_eye": 9448, "coco_right_eye": 9929,
    "coco_left_ear": 6, "coco_right_ear": 616,
}
#: COCO body keypoints read from kinematic joints.
COCO_JOINT_ALIASES: dict[str, str] = {
    f"coco_{side}_{part}": f"{side}_{joint}"
    for side in ("left", "right")
    for part, joint in (("shoulder", "shoulder"), ("elbow", "elbow"), ("wrist", "wrist"), ("hip", "hip"),
                        ("knee", "knee"), ("ankle", "ankle"))
}
# fmt: on

_SMPLX_SOURCE = "SMPL-X model files come from registration at https://smpl-x.is.tue.mpg.de (the .npz release)"
_SMPLX_KEYS = (
    "v_template",
    "f",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "weights",
    "kintree_table",
    "hands_componentsl",
    "hands_componentsr",
    "hands_meanl",
    "hands_meanr",
    "lmk_faces_idx",
    "lmk_bary_coords",
)


def resolve_model_file(model_path: str | Path, prefix: str, gender: str, source: str) -> Path:
    """``model_path`` (a directory holding ``{prefix}_{GENDER}.npz``, or the file) -> the file.

    Raises ``FileNotFoundError`` naming the expected path and ``source``; ``ValueError`` for an
    unknown gender or a path that is neither.
    """
    if gender not in ("neutral", "male", "female"):
        raise ValueError(f"gender: expected 'neutral', 'male' or 'female', found {gender!r}")
    path = Path(model_path).expanduser()
    if path.is_dir():
        npz = path / f"{prefix}_{gender.upper()}.npz"
        if npz.is_file():
            return npz
        pkl = npz.with_suffix(".pkl")
        if pkl.is_file():
            return pkl
        raise FileNotFoundError(
            f"model_path: no {npz.name} in {path.resolve()} (looked for {npz.resolve()}); {source}"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"model_path: no file or directory at {path.resolve()} "
            f"(expected a directory holding {prefix}_{gender.upper()}.npz, or that file); {source}"
        )
    return path


@contextlib.contextmanager
def reading_model_file(path: Path, source: str) -> Iterator[None]:
    """Turn the errors of reading a damaged model file (a truncated or corrupted ``.npz``: bad zip,
    bad CRC, early end) into one ``ValueError`` naming the file."""
    try:
        yield
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise ValueError(
            f"model_path: {path} is damaged ({type(err).__name__}: {err}); download it again. {source}"
        ) from err


def _check_finite_buffers(layer, path: Path | None) -> None:
    bad = [n for n, b in layer.named_buffers() if b.is_floating_point() and not torch.isfinite(b).all()]
    if bad:
        where = path if path is not None else "the model file"
        raise ValueError(f"model_path: {where} is damaged: NaN or infinite values in {', '.join(bad)}")


def _check_keys(data: Mapping, keys: Sequence[str], path: Path, source: str) -> None:
    missing = [k for k in keys if k not in data]
    if missing:
        raise ValueError(
            f"model_path: {path} lacks the keys {missing} of a model file (found {sorted(data)}); {source}"
        )


def _as_regressor(value, num_vertices: int, what: str) -> Tensor:
    t = value if isinstance(value, Tensor) else load_h36m_regressor(value, num_vertices=num_vertices)
    t = t.to_dense() if t.is_sparse else t
    if t.dim() != 2 or t.shape[0] not in (14, 17):
        raise ValueError(
            f"{what}: expected shape (17, V) (H36M order) or (14, V) (LSP order), found {tuple(t.shape)}"
        )
    if not torch.isfinite(t).all():
        raise ValueError(f"{what}: contains NaN or infinite values")
    return (t[list(H36M17_TO_LSP14)] if t.shape[0] == 17 else t).to(torch.float64)


def _face_regressors(
    face_vertices: Mapping[str, int], num_vertices: int, path: Path, model: str
) -> dict[str, Tensor]:
    """Keypoint name -> one-hot ``(V,)`` float64 weights of the face keypoints' vertices (SMPL family).

    Raises ``ValueError`` naming ``path`` when the mesh has too few vertices for them.
    """
    bad = {n: i for n, i in face_vertices.items() if i >= num_vertices}
    if bad:
        raise ValueError(
            f"model_path: {path} has {num_vertices} vertices, too few for the {model} face keypoints {bad}"
        )
    return {
        n: torch.nn.functional.one_hot(torch.tensor(i), num_vertices).to(torch.float64)
        for n, i in face_vertices.items()
    }


@dataclass(frozen=True)
class _Plan:
    """Index tensors (on one device) for one list of keypoint names."""

    joint_ids: Tensor  # (Kj,) requested kinematic keypoints among all joints
    vertex_ids: tuple[int, ...]  # requested vertex keypoints among the body's vertex keypoints
    rows: Tensor  # rest-joint rows needed: posed joints, requested at-rest joints, their ancestors
    n_extras: int  # number of requested at-rest joints
    ancestors: Tensor  # (E,) posed ancestor of each requested at-rest joint
    table: Tensor  # (Kj,) index into [posed joints, requested at-rest joints]
    order: Tensor | None  # (K,) output order when joints and vertex keypoints are mixed


class SMPLFamilyBody(BodyModel):
    """A body built on a ``smplx`` layer: full forward by ``smplx.lbs.lbs``, closed-form keypoints.

    Subclasses load the layer and say which joints are posed and which keypoints exist.

    Args:
        layer: a ``smplx`` SMPL-family layer (buffers ``v_template``, ``shapedirs``,
            ``posedirs``, ``J_regressor``, ``parents``, ``lbs_weights``, ``faces_tensor``).
        joint_names: names of all the layer's kinematic joints, in order.
        num_pose_joints: the first ``num_pose_joints`` joints are posed; the others stay at rest.
        joint_aliases: extra keypoint names mapped to joint names.
        vertex_regressors: keypoint name -> ``(V,)`` weights over the vertices.
        validate_rotations: check that ``pose`` holds rotation matrices on every call (a host sync).
        model_file: the file the layer was read from (named when its values are not finite).
    """

    def __init__(
        self,
        layer,
        joint_names: Sequence[str],
        num_pose_joints: int,
        joint_aliases: Mapping[str, str],
        vertex_regressors: Mapping[str, Tensor],
        validate_rotations: bool = False,
        model_file: Path | None = None,
    ) -> None:
        super().__init__()
        _check_finite_buffers(layer, model_file)  # once, at load: NaN would reach every output
        # The model data stays out of state_dict: checkpoints of a network holding this body must not
        # carry (licensed, 100 MB) model files; the body is rebuilt from its file instead.
        for module in layer.modules():
            for name, buf in list(module._buffers.items()):
                module.register_buffer(name, buf, persistent=False)
        self.layer = layer
        self.num_pose_joints = num_pose_joints
        self.num_shape = int(layer.num_betas)
        self.validate_rotations = validate_rotations
        self.joint_names = tuple(joint_names)
        all_parents = [int(p) for p in layer.parents.tolist()]
        all_parents[0] = -1
        if len(all_parents) != len(self.joint_names):
            raise ValueError(f"joint_names: expected {len(all_parents)} names, found {len(self.joint_names)}")
        self._all_parents = tuple(all_parents)
        posed = list(range(num_pose_joints))
        ancestors = nearest_ancestors(all_parents, posed)
        self._posed_parents = self._all_parents[:num_pose_joints]
        self._ancestors = tuple(ancestors)

        v_template = layer.v_template.detach().to(torch.float64)  # (V, 3)
        shapedirs = layer.shapedirs.detach().to(torch.float64)  # (V, 3, S)
        j_reg = layer.J_regressor.detach().to(torch.float64)  # (J, V)
        num_v = v_template.shape[0]
        dtype = layer.v_template.dtype
        # Rest joints are linear in the shape: J(beta) = J_template + J_shapedirs beta.
        self.register_buffer("j_template", (j_reg @ v_template).to(dtype), persistent=False)
        self.register_buffer(
            "j_shapedirs", torch.einsum("jv,vcs->sjc", j_reg, shapedirs).to(dtype), persistent=False
        )  # (S, J, 3)

        index = {n: i for i, n in enumerate(self.joint_names)}
        self._joint_index = dict(index)
        for alias, target in joint_aliases.items():
            self._joint_index[alias] = index[target]
        self._vertex_names = tuple(vertex_regressors)
        if vertex_regressors:
            rows = torch.stack([vertex_regressors[n].to(torch.float64) for n in self._vertex_names])
            if rows.shape[1] != num_v:
                raise ValueError(
                    f"vertex_regressors: expected rows over {num_v} vertices, found {tuple(rows.shape)}"
                )
            n_feat = 9 * (num_pose_joints - 1)
            # smplx stores posedirs as (9 (J - 1), 3 V); the rows of posed non-root joints come first.
            posedirs = layer.posedirs.detach()[:n_feat].to(torch.float64).T.reshape(num_v, 3, n_feat)
            weights = fold_skinning_weights(layer.lbs_weights.detach().to(torch.float64), ancestors, posed)
            self.vertex_keypoints = RegressedKeypoints(rows, v_template, shapedirs, posedirs, weights)
            self.vertex_keypoints.to(dtype)
            self.register_buffer("vertex_regressor", rows.to(dtype), persistent=False)  # slow reference path
        else:
            self.vertex_keypoints = None
        self._plans: dict[tuple, _Plan] = {}

    # ------------------------------------------------------------------ interface
    @property
    def faces(self) -> Tensor:
        """Mesh triangles ``(F, 3)`` int64."""
        return self.layer.faces_tensor

    @property
    def keypoint_names(self) -> tuple[str, ...]:
        """Every name :meth:`keypoints` accepts: joints, aliases, then vertex keypoints."""
        return tuple(self._joint_index) + self._vertex_names

    @property
    def num_vertices(self) -> int:
        """Mesh vertex count ``V``."""
        return int(self.layer.v_template.shape[0])

    def _prepare(self, pose: Tensor, shape: Tensor) -> tuple[Tensor, Tensor]:
        self.check_inputs(pose, shape)
        if pose.device != shape.device:
            raise ValueError(f"pose and shape: devices differ, {pose.device} vs {shape.device}")
        if pose.dtype != shape.dtype or not pose.is_floating_point():
            raise ValueError(
                f"pose and shape: expected one floating dtype, found {pose.dtype} and {shape.dtype}"
            )
        if self.validate_rotations:
            check_rotation_matrices("pose", pose)
        return pose, shape

    def _layer_buffers(self, like: Tensor, *names: str) -> list[Tensor]:
        return [getattr(self.layer, n).to(dtype=like.dtype, device=like.device) for n in names]

    def forward(self, pose: Tensor, shape: Tensor) -> BodyOutput:
        """Full forward via ``smplx.lbs.lbs``: pose ``(..., J, 3, 3)``, shape ``(..., S)`` -> vertices
        ``(..., V, 3)`` and all kinematic joints ``(..., len(joint_names), 3)`` (the body joints first)."""
        from smplx.lbs import lbs

        pose, shape = self._prepare(pose, shape)
        batch = pose.shape[:-3]
        p = pose.reshape(-1, self.num_pose_joints, 3, 3)
        b = p.shape[0]
        rest = len(self._all_parents) - self.num_pose_joints
        eye = torch.eye(3, dtype=p.dtype, device=p.device).expand(b, rest, 3, 3)
        full_pose = torch.cat([p, eye], 1)
        v_template, shapedirs, posedirs, j_reg, weights = self._layer_buffers(
            p, "v_template", "shapedirs", "posedirs", "J_regressor", "lbs_weights"
        )
        parents = self.layer.parents.to(p.device)
        vertices, joints = lbs(
            shape.reshape(b, -1),
            full_pose,
            v_template,
            shapedirs,
            posedirs,
            j_reg,
            parents,
            weights,
            pose2rot=False,
        )
        return BodyOutput(vertices=vertices.reshape(*batch, -1, 3), joints=joints.reshape(*batch, -1, 3))

    def _plan(self, names: str | Sequence[str], device: torch.device) -> _Plan:
        """Resolve ``names`` once per name list and device: which joints to pose, which to carry,
        which vertex keypoints, and the output order."""
        key = (names if isinstance(names, str) else tuple(names), str(device))
        if key in self._plans:
            return self._plans[key]
        joint_ids, vertex_ids, where = [], [], []
        vidx = {n: i for i, n in enumerate(self._vertex_names)}
        for n in resolve_keypoint_names(names):
            if n in self._joint_index:
                where.append(("j", len(joint_ids)))
                joint_ids.append(self._joint_index[n])
            elif n in vidx:
                where.append(("v", len(vertex_ids)))
                vertex_ids.append(vidx[n])
            elif n in H36M14_NAMES:
                raise ValueError(
                    f"names: {n!r} needs the H36M joint regressor: build the body with "
                    "h36m_regressor=<J_regressor_h36m.npy> (SMPL-X also needs "
                    "smplx_to_smpl=<smplx2smpl.pkl>)"
                )
            else:
                raise ValueError(
                    f"names: unknown keypoint {n!r}; this body offers {list(self.keypoint_names)}"
                )
        n_posed = self.num_pose_joints
        extras = sorted({j for j in joint_ids if j >= n_posed})
        ancestors = [self._ancestors[e] for e in extras]

        def t(values):
            return torch.tensor(values, dtype=torch.long, device=device)

        plan = _Plan(
            joint_ids=t(joint_ids),
            vertex_ids=tuple(vertex_ids),
            rows=t(list(range(n_posed)) + extras + ancestors),
            n_extras=len(extras),
            ancestors=t(ancestors),
            # Kinematic keypoints index the table [posed joints, requested joints kept at rest].
            table=t([j if j < n_posed else n_posed + extras.index(j) for j in joint_ids]),
            order=t([i if kind == "j" else len(joint_ids) + i for kind, i in where])
            if joint_ids and vertex_ids
            else None,
        )
        self._plans[key] = plan
        return plan

    def keypoints(self, pose: Tensor, shape: Tensor, names: str | Sequence[str] = "coco17") -> Tensor:
        """Only the named keypoints ``(..., K, 3)``: forward kinematics plus closed-form skinning of
        the vertex keypoints; equal to :meth:`keypoints_from_output` of :meth:`forward`."""
        pose, shape = self._prepare(pose, shape)
        dev, dtype = pose.device, pose.dtype
        plan = self._plan(names, dev)
        batch = pose.shape[:-3]
        p = pose.reshape(-1, self.num_pose_joints, 3, 3)
        beta = shape.reshape(-1, self.num_shape)
        b, n_posed, n_rows = p.shape[0], self.num_pose_joints, plan.rows.numel()
        # Shaped rest joints of the posed joints, the requested at-rest joints and their ancestors.
        j_t = self.j_template.to(dtype=dtype, device=dev).index_select(0, plan.rows)
        j_s = self.j_shapedirs.to(dtype=dtype, device=dev).index_select(1, plan.rows)
        rest = j_t + (beta @ j_s.reshape(self.num_shape, -1)).view(b, n_rows, 3)
        rest_posed = rest[:, :n_posed]
        rot, joints = forward_kinematics(p, rest_posed, self._posed_parents)
        parts = []
        if plan.joint_ids.numel():
            table = joints
            if plan.n_extras:
                ne = plan.n_extras
                carried = rest_descendants(
                    rot, joints, rest[:, n_posed : n_posed + ne], rest[:, n_posed + ne :], plan.ancestors
                )
                table = torch.cat([joints, carried], 1)
            parts.append(table.index_select(1, plan.table))
        if plan.vertex_ids:
            feats = pose_feature(p[:, 1:])
            parts.append(self.vertex_keypoints(rot, joints, rest_posed, beta, feats, plan.vertex_ids))
        out = parts[0] if plan.order is None else torch.cat(parts, 1).index_select(1, plan.order)
        return out.reshape(*batch, out.shape[1], 3)

    def keypoints_from_output(self, output: BodyOutput, names: str | Sequence[str] = "coco17") -> Tensor:
        """The named keypoints ``(..., K, 3)`` read from a full forward (the reference path)."""
        n_j, n_v = len(self._all_parents), self.num_vertices
        if output.joints.shape[-2:] != (n_j, 3):
            raise ValueError(
                f"output.joints: expected shape (..., {n_j}, 3), found {tuple(output.joints.shape)}"
            )
        if output.vertices.shape[-2:] != (n_v, 3):
            raise ValueError(
                f"output.vertices: expected shape (..., {n_v}, 3), found {tuple(output.vertices.shape)}"
            )
        dev = output.joints.device
        plan = self._plan(names, dev)
        parts = []
        if plan.joint_ids.numel():
            parts.append(output.joints.index_select(-2, plan.joint_ids))
        if plan.vertex_ids:
            reg = self.vertex_regressor.to(dtype=output.vertices.dtype, device=dev)[list(plan.vertex_ids)]
            parts.append(torch.einsum("kv,...vc->...kc", reg, output.vertices))
        return parts[0] if plan.order is None else torch.cat(parts, -2).index_select(-2, plan.order)


class SMPLXBody(SMPLFamilyBody):
    """SMPL-X with the 22 body joints posed (root first) and hands, jaw, eyes at rest.

    Args:
        model_path: a directory holding ``SMPLX_{GENDER}.npz``, or the ``.npz`` file.
        gender: ``"neutral"``, ``"male"`` or ``"female"``.
        num_shape: shape coefficients (11 in the paper; above 10 needs the 300-component release).
        h36m_regressor: ``J_regressor_h36m.npy`` path or a ``(17, 6890)`` / ``(14, 6890)`` tensor
            over SMPL vertices (or ``(., 10475)`` over SMPL-X vertices); enables ``"h36m14"``.
        smplx_to_smpl: ``smplx2smpl.pkl`` path or a ``(6890, 10475)`` (sparse) tensor, composed with
            an SMPL-vertex ``h36m_regressor``.
        validate_rotations: check ``pose`` for rotation matrices on every call (costs a host sync).

    Pose ``(..., 22, 3, 3)`` relative rotations in :data:`BODY_JOINT_NAMES` order, shape
    ``(..., num_shape)``.
    """

    def __init__(
        self,
        model_path: str | Path,
        gender: str = "neutral",
        num_shape: int = 11,
        *,
        h36m_regressor: str | Path | Tensor | None = None,
        smplx_to_smpl: str | Path | Tensor | None = None,
        validate_rotations: bool = False,
    ) -> None:
        import smplx

        path = resolve_model_file(model_path, "SMPLX", gender, _SMPLX_SOURCE)
        if path.suffix == ".pkl":
            raise ValueError(
                f"model_path: {path} is a chumpy-era .pkl model, which cannot be read on numpy 2 "
                "(chumpy does not import); use the .npz release of SMPL-X "
                f"(SMPLX_{gender.upper()}.npz); {_SMPLX_SOURCE}"
            )
        if path.suffix != ".npz":
            raise ValueError(f"model_path: expected a .npz SMPL-X model file, found {path}")
        with reading_model_file(path, _SMPLX_SOURCE), np.load(path, allow_pickle=True) as data:
            keys = {k: None for k in data.files}
            n_components = data["shapedirs"].shape[-1] if "shapedirs" in keys else 0
        _check_keys(keys, _SMPLX_KEYS, path, _SMPLX_SOURCE)
        if not 1 <= num_shape <= 300:
            raise ValueError(f"num_shape: expected 1 to 300 shape coefficients, found {num_shape}")
        if num_shape > 10 and n_components < 300:
            raise ValueError(
                f"num_shape: {num_shape} shape coefficients need a model with 300 shape components, "
                f"{path} has {n_components} (10 shape + 10 expression); use the 300-component release"
            )
        # smplx prints warnings about model sizes; it reads every array, so damage shows here too
        with reading_model_file(path, _SMPLX_SOURCE), contextlib.redirect_stdout(io.StringIO()):
            layer = smplx.SMPLXLayer(
                model_path=str(path), gender=gender, num_betas=num_shape, ext="npz", use_pca=False
            )
        num_v = int(layer.v_template.shape[0])
        regressors = _face_regressors(SMPLX_FACE_VERTICES, num_v, path, "SMPL-X")
        if h36m_regressor is not None:
            regressors.update(_h36m_over_smplx(h36m_regressor, smplx_to_smpl, num_v))
        elif smplx_to_smpl is not None:
            raise ValueError("smplx_to_smpl: only used with h36m_regressor, which is missing")
        aliases = {**COCO_JOINT_ALIASES, "left_hand": "left_middle1", "right_hand": "right_middle1"}
        super().__init__(
            layer,
            SMPLX_JOINT_NAMES,
            len(BODY_JOINT_NAMES),
            aliases,
            regressors,
            validate_rotations,
            model_file=path,
        )
        self.model_file = path
        self.gender = gender


def _h36m_over_smplx(h36m_regressor, smplx_to_smpl, num_v: int) -> dict[str, Tensor]:
    if isinstance(h36m_regressor, Tensor) and h36m_regressor.shape[-1] == num_v:
        reg = _as_regressor(h36m_regressor, num_v, "h36m_regressor")
    else:
        if smplx_to_smpl is None:
            raise ValueError(
                "smplx_to_smpl: an H36M regressor over SMPL vertices needs the SMPL-X -> SMPL vertex "
                "matrix (smplx2smpl.pkl) to apply to SMPL-X; pass smplx_to_smpl="
            )
        m = (
            smplx_to_smpl
            if isinstance(smplx_to_smpl, Tensor)
            else load_smplx_to_smpl(smplx_to_smpl, num_smplx_vertices=num_v)
        )
        if m.dim() != 2 or m.shape[1] != num_v:
            raise ValueError(f"smplx_to_smpl: expected shape (V_smpl, {num_v}), found {tuple(m.shape)}")
        reg = _as_regressor(h36m_regressor, m.shape[0], "h36m_regressor")
        if reg.shape[1] != m.shape[0]:
            raise ValueError(
                f"h36m_regressor: expected {m.shape[0]} columns (SMPL vertices), found {reg.shape[1]}"
            )
        m = m.to(torch.float64)
        # (K, Vs) @ (Vs, Vx) with a sparse right factor: (Vx, Vs) sparse @ (Vs, K) dense, transposed.
        reg = torch.sparse.mm(m.t(), reg.T).T if m.is_sparse else reg @ m
    return dict(zip(H36M14_NAMES, reg))
