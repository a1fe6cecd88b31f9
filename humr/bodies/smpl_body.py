"""SMPL body (24 joints, 10 shape coefficients) for evaluation ground truth (3DPW, EMDB).

SMPL has 23 relative joint rotations plus the global orientation: 24 posed joints, the 22 body
joints of :data:`humr.bodies.base.BODY_JOINT_NAMES` then ``left_hand`` and ``right_hand``
(children of the wrists). ``num_pose_joints = 24``; a pose of the 22 body joints is also accepted
and the hands are then kept at rest (identity), which is how an SMPL-X body pose maps onto SMPL.

Keypoints: the 24 joints (``"smpl24"``, ``"body_joints"``), ``"coco17"`` (face keypoints are the
SMPL vertices ``smplx`` uses: nose 332, left eye 2800, right eye 6260, left ear 583, right ear
4071; the body keypoints are kinematic joints) and ``"h36m14"`` from a user-supplied
``J_regressor_h36m.npy`` (``(17, 6890)``, rows ``6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10``
give the LSP-ordered 14, see :data:`humr.bodies.conversion.H36M17_TO_LSP14`), all through the
same fast path as :class:`humr.bodies.smplx_body.SMPLXBody`.

Files: ``SMPL_{NEUTRAL,MALE,FEMALE}.npz`` with the keys ``v_template``, ``f``, ``shapedirs``,
``posedirs``, ``J_regressor``, ``weights``, ``kintree_table`` (registration at
https://smpl.is.tue.mpg.de). A ``.pkl`` is read only if it unpickles without chumpy.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from humr.bodies.base import BODY_JOINT_PARENTS, H36M14_NAMES, SMPL24_NAMES
from humr.bodies.smplx_body import (
    COCO_JOINT_ALIASES,
    SMPLFamilyBody,
    _as_regressor,
    _check_keys,
    _face_regressors,
    reading_model_file,
    resolve_model_file,
)

__all__ = ["SMPL_FACE_VERTICES", "SMPL_PARENTS", "SMPLBody"]

#: COCO face keypoints as SMPL vertex indices.
SMPL_FACE_VERTICES: dict[str, int] = {
    "coco_nose": 332,
    "coco_left_eye": 2800,
    "coco_right_eye": 6260,
    "coco_left_ear": 583,
    "coco_right_ear": 4071,
}
#: Parent of each of the 24 SMPL joints.
SMPL_PARENTS: tuple[int, ...] = BODY_JOINT_PARENTS + (20, 21)

_SMPL_SOURCE = (
    "SMPL model files come from registration at https://smpl.is.tue.mpg.de; convert the .pkl release "
    "to .npz (keys v_template, f, shapedirs, posedirs, J_regressor, weights, kintree_table) on a "
    "machine with chumpy"
)
_SMPL_KEYS = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table")


def _read_smpl(path: Path) -> dict:
    if path.suffix == ".npz":
        with reading_model_file(path, _SMPL_SOURCE), np.load(path, allow_pickle=True) as data:
            return {k: data[k] for k in data.files}
    if path.suffix == ".pkl":
        try:
            with open(path, "rb") as f:
                data = pickle.load(f, encoding="latin1")
        except Exception as exc:  # noqa: BLE001 - chumpy-era pickles fail in many ways
            raise ValueError(
                f"model_path: cannot read {path} ({type(exc).__name__}: {exc}); chumpy-era SMPL .pkl files "
                f"cannot be read on numpy 2; {_SMPL_SOURCE}"
            ) from exc
        if not isinstance(data, dict):
            raise ValueError(f"model_path: {path} should hold a dict of arrays, found {type(data).__name__}")
        return data
    raise ValueError(f"model_path: expected a .npz (or chumpy-free .pkl) SMPL model file, found {path}")


class SMPLBody(SMPLFamilyBody):
    """SMPL with its 24 joints posed.

    Args:
        model_path: a directory holding ``SMPL_{GENDER}.npz``, or the model file.
        gender: ``"neutral"``, ``"male"`` or ``"female"``.
        num_shape: shape coefficients (10 in the released models).
        h36m_regressor: ``J_regressor_h36m.npy`` path or a ``(17, 6890)`` / ``(14, 6890)`` tensor;
            enables ``"h36m14"``.
        validate_rotations: check ``pose`` for rotation matrices on every call (costs a host sync).

    Pose ``(..., 24, 3, 3)`` (or ``(..., 22, 3, 3)``, hands at rest), shape ``(..., num_shape)``.
    """

    # The constructor has SMPLXBody's layout on purpose: one way to load a body of the SMPL family.
    def __init__(
        self,
        model_path: str | Path,
        gender: str = "neutral",
        num_shape: int = 10,
        *,
        h36m_regressor: str | Path | Tensor | None = None,
        validate_rotations: bool = False,
    ) -> None:
        import smplx
        from smplx.utils import Struct

        path = resolve_model_file(model_path, "SMPL", gender, _SMPL_SOURCE)
        data = _read_smpl(path)
        _check_keys(data, _SMPL_KEYS, path, _SMPL_SOURCE)
        n_components = np.shape(data["shapedirs"])[-1]
        if not 1 <= num_shape <= n_components:
            raise ValueError(
                f"num_shape: expected 1 to {n_components} (the shape components in {path}), found {num_shape}"
            )
        if np.shape(data["J_regressor"])[0] != 24:
            raise ValueError(
                f"model_path: {path} has a J_regressor of shape {np.shape(data['J_regressor'])}, "
                "expected (24, V): not an SMPL model"
            )
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints warnings about model sizes
            layer = smplx.SMPLLayer(
                model_path=str(path), data_struct=Struct(**data), num_betas=num_shape, gender=gender
            )
        num_v = int(layer.v_template.shape[0])
        regressors = _face_regressors(SMPL_FACE_VERTICES, num_v, path, "SMPL")
        if h36m_regressor is not None:
            reg = _as_regressor(h36m_regressor, num_v, "h36m_regressor")
            if reg.shape[1] != num_v:
                raise ValueError(f"h36m_regressor: expected {num_v} columns, found {reg.shape[1]}")
            regressors.update(zip(H36M14_NAMES, reg))
        super().__init__(
            layer, SMPL24_NAMES, 24, COCO_JOINT_ALIASES, regressors, validate_rotations, model_file=path
        )
        self.model_file = path
        self.gender = gender

    @property
    def parents(self) -> tuple[int, ...]:
        """Parent of each of the 24 posed joints."""
        return SMPL_PARENTS

    def _prepare(self, pose: Tensor, shape: Tensor) -> tuple[Tensor, Tensor]:
        if pose.dim() >= 3 and tuple(pose.shape[-3:]) == (22, 3, 3):
            # 22 body joints: the two hands stay at rest.
            eye = torch.eye(3, dtype=pose.dtype, device=pose.device).expand(*pose.shape[:-3], 2, 3, 3)
            pose = torch.cat([pose, eye], -3)
        return super()._prepare(pose, shape)
