"""The full model of Sec. 4.1: condition encoder, conditional flow over 6D joint rotations,
and a deterministic shape / weak-perspective camera head."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from humr.bodies.base import NUM_COCO17, BodyModel
from humr.cameras import bbox_info, project_to_crop, weak_to_full_translation
from humr.config import ModelConfig
from humr.flows import build_flow
from humr.flows.base import ConditionalFlow
from humr.model.heads import ShapeCameraHead
from humr.model.hypotheses import Hypotheses
from humr.model.regressor import PoseRegressor
from humr.rotations import matrix_to_rot6d, rot6d_to_matrix

__all__ = ["ConditionEncoder", "HumrModel", "build_image_encoder"]

#: The weak-perspective scale is clamped here before the CLIFF conversion (it divides by s). A
#: numerical guard only: training keeps s away from 0 with the camera-scale regulariser of the
#: published implementation (:func:`humr.losses.pose.camera_scale_loss`) on the unclamped scale.
MIN_CAMERA_SCALE = 1e-2
#: Inputs of the detector-pose MLP: x, y and a confidence for each COCO-17 keypoint.
DETECTOR_POSE_FEATURES = NUM_COCO17 * 3


def _drop_own_state(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        del state_dict[key]


def _ignore_missing_body_state(module: nn.Module, incompatible_keys) -> None:
    missing = incompatible_keys.missing_keys
    for key in [k for k in missing if ".body." in f".{k}"]:
        missing.remove(key)


def build_image_encoder(config: ModelConfig) -> nn.Module | None:
    """The image encoder named by ``config.encoder`` (None for cached ``image_features``)."""
    if config.encoder == "small_cnn":
        from humr.model.small_cnn import SmallCNNEncoder

        return SmallCNNEncoder(out_features=config.image_features)
    if config.encoder == "hrnet_w48":
        from humr.model.encoders import HRNetW48Encoder, load_hrnet_checkpoint

        if config.image_features != 720:
            raise ValueError(
                f"model.image_features: HRNet-W48 gives 720 features, found {config.image_features}"
            )
        encoder = HRNetW48Encoder()
        if config.encoder_checkpoint:
            load_hrnet_checkpoint(encoder, config.encoder_checkpoint)
        return encoder
    if config.encoder == "features":
        return None
    raise ValueError(
        f"model.encoder: expected 'small_cnn', 'hrnet_w48' or 'features', found {config.encoder!r}"
    )


class ConditionEncoder(nn.Module):
    """``c = [c_I, c_P, c_B]`` (Sec. 4.1) from a batch of the :mod:`humr.data.fields` contract.

    c_I: image features ``(B, image_features)``; c_P: the detector's highest-likelihood pose
    with confidences ``(B, 17 * 3)`` (:data:`DETECTOR_POSE_FEATURES`) through an MLP; c_B: CLIFF
    bbox information ``(B, 3)`` (Eq. 3). c_P and c_B can be switched off for the ablations of
    Table 3.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = build_image_encoder(config)
        if self.image_encoder is not None and config.freeze_encoder:
            self.image_encoder.requires_grad_(False)
        self.pose_mlp = (
            nn.Sequential(
                nn.Linear(DETECTOR_POSE_FEATURES, config.pose_hidden),
                nn.ReLU(),
                nn.Linear(config.pose_hidden, config.pose_features),
            )
            if config.use_pose_condition
            else None
        )
        self.out_features = (
            config.image_features
            + (config.pose_features if config.use_pose_condition else 0)
            + (3 if config.use_bbox_info else 0)
        )

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        if self.image_encoder is None:
            if "image_features" not in batch:
                raise ValueError("batch: model.encoder='features' needs cached 'image_features' in the batch")
            feats = batch["image_features"]
        elif self.config.freeze_encoder:
            self.image_encoder.eval()
            with torch.no_grad():
                feats = self.image_encoder(batch["image"])
        else:
            feats = self.image_encoder(batch["image"])
        parts = [feats]
        if self.pose_mlp is not None:
            parts.append(self.pose_mlp(batch["detector_keypoints"].flatten(1).to(feats.dtype)))
        if self.config.use_bbox_info:
            parts.append(
                bbox_info(batch["center"], batch["box_size"], batch["focal"], batch["image_size"]).to(
                    feats.dtype
                )
            )
        return torch.cat(parts, dim=-1)


class HumrModel(nn.Module):
    """Image batch -> :class:`~humr.model.hypotheses.Hypotheses` (mode first, then random draws)."""

    def __init__(self, config: ModelConfig, body: BodyModel) -> None:
        super().__init__()
        self.config = config
        self.body = body
        # The body is rebuilt from its own files: keep its (large, fixed) buffers out of checkpoints.
        body.register_state_dict_post_hook(_drop_own_state)
        body.register_load_state_dict_post_hook(_ignore_missing_body_state)
        self.num_pose_joints = body.num_pose_joints
        self.condition = ConditionEncoder(config)
        features = 6 * body.num_pose_joints
        # The pose head: the paper's conditional flow, or (Table 1's BEDLAM-CLIFF reference point) a
        # deterministic regressor whose "hypotheses" are copies of its one pose.
        self.flow: ConditionalFlow | None = None
        self.regressor: PoseRegressor | None = None
        if config.pose_head == "regressor":
            self.regressor = PoseRegressor(
                self.condition.out_features,
                features,
                hidden=config.head_hidden,
                iterations=config.ief_iterations,
            )
        else:
            self.flow = build_flow(
                config.flow,
                features=features,
                context_features=self.condition.out_features,
            )
        self.head = ShapeCameraHead(
            self.condition.out_features,
            body.mean_shape(),
            hidden=config.head_hidden,
            iterations=config.ief_iterations,
        )
        # The flow models 6D poses relative to the rest pose (a fixed shift: volume preserving, so
        # log-likelihoods are unchanged). A flow initialised near the identity then starts with its
        # mode at the rest pose instead of the all-zero 6D vector, where Gram-Schmidt is undefined.
        identity6d = matrix_to_rot6d(torch.eye(3)).repeat(body.num_pose_joints)
        self.register_buffer("pose_offset", identity6d, persistent=False)

    def latents(self, context: Tensor, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """``(B, 1 + num_samples, D)``: zeros (the mode) then standard normal draws."""
        batch = context.shape[0]
        dim = 6 * self.num_pose_joints
        noise = torch.randn(
            batch, num_samples, dim, generator=generator, device=context.device, dtype=context.dtype
        )
        return torch.cat([noise.new_zeros(batch, 1, dim), noise], dim=1)

    def pose_log_prob(
        self, pose: Tensor, context: Tensor, noise_std: float = 0.0, generator: torch.Generator | None = None
    ) -> Tensor:
        """Flow log-likelihood of rotations ``pose (B, J, 3, 3)`` -> ``(B,)`` (optionally noised 6D)."""
        if self.flow is None:
            raise ValueError("model.pose_head: the 'regressor' head has no likelihood (use the 'flow' head)")
        x = matrix_to_rot6d(pose).flatten(-2).to(context.dtype) - self.pose_offset.to(context.dtype)
        if noise_std > 0:
            x = x + noise_std * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.flow.log_prob(x, context).float()

    def project(self, points: Tensor, camera: Tensor, batch: Mapping[str, Tensor]) -> Tensor:
        """Body-frame points ``(B, S, K, 3)`` -> crop coordinates ``(B, S, K, 2)`` (CLIFF camera)."""
        unsq = lambda t: t[:, None]  # noqa: E731 - broadcast per-image values over hypotheses
        return project_to_crop(
            points,
            unsq(camera),
            unsq(batch["center"]),
            unsq(batch["box_size"]),
            unsq(batch["focal"]),
            unsq(batch["image_size"]),
        )

    def clamp_camera(self, camera: Tensor) -> Tensor:
        return torch.cat([camera[:, :1].clamp(min=MIN_CAMERA_SCALE), camera[:, 1:]], dim=-1)

    def forward(
        self,
        batch: Mapping[str, Tensor],
        num_samples: int,
        generator: torch.Generator | None = None,
        with_log_prob: bool = False,
        context: Tensor | None = None,
    ) -> Hypotheses:
        """``1 + num_samples`` hypotheses per image (index 0 = mode)."""
        if num_samples < 0:
            raise ValueError(f"num_samples: expected >= 0, found {num_samples}")
        if context is None:
            context = self.condition(batch)
        z = self.latents(context, num_samples, generator)
        return self.decode(batch, z, context, with_log_prob=with_log_prob)

    def decode_pose(
        self, z: Tensor, context: Tensor, with_log_prob: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """The pose head: 6D poses ``(B, S, J * 6)`` of flow latents ``z (B, S, D)`` and, with
        ``with_log_prob``, their log-likelihood ``(B, S)`` under the flow (else None).

        The poses are float32 whatever the flow ran in, the rest-pose offset added. The regressor
        head ignores the values of ``z`` and returns ``S`` copies of its pose (``log_prob`` None).
        """
        if self.flow is None:
            pose6d = self.regressor(context)[:, None].expand(-1, z.shape[1], -1)
            log_prob = None
        elif with_log_prob:
            pose6d, log_prob = self.flow.transform_and_log_prob(z, context)
        else:
            pose6d, log_prob = self.flow.transform(z, context), None
        return pose6d.float() + self.pose_offset, log_prob

    def decode(
        self,
        batch: Mapping[str, Tensor],
        z: Tensor | None,
        context: Tensor,
        with_log_prob: bool = False,
        *,
        pose6d: Tensor | None = None,
        head: tuple[Tensor, Tensor] | None = None,
        shape: Tensor | None = None,
        camera: Tensor | None = None,
    ) -> Hypotheses:
        """Hypotheses of given flow latents ``z (B, S, D)`` (``z = 0``: the mode).

        ``context (B, C)`` is :attr:`condition` of ``batch``. The regressor head ignores the values
        of ``z`` and returns ``S`` copies of its pose (``log_prob`` None). Fitting
        (:mod:`humr.fitting`) replaces pieces of the decoding:

        - ``pose6d``: ``(B, S, J * 6)`` 6D poses used as they are, with ``z=None``; with
          ``with_log_prob`` their log-likelihood under the flow (None for the regressor head);
        - ``head``: the head's ``(regressed_shape, regressed_camera)`` for ``context``, computed
          beforehand (the head is not run);
        - ``shape`` ``(B, num_shape)`` and ``camera`` ``(B, 3)``: used instead of the regressed
          shape constrained into the body's range and the regressed camera with its scale clamped.
        """
        if (z is None) == (pose6d is None):
            found = "both" if z is not None else "neither"
            raise ValueError(f"z, pose6d: expected exactly one of latents and 6D poses, found {found}")
        if pose6d is None:
            pose6d, log_prob = self.decode_pose(z, context, with_log_prob)
        elif with_log_prob and self.flow is not None:
            log_prob = self.flow.log_prob(pose6d - self.pose_offset, context)
        else:
            log_prob = None
        rotmat = rot6d_to_matrix(pose6d.reshape(*pose6d.shape[:2], self.num_pose_joints, 6))
        regressed_shape, regressed_camera = self.head(context) if head is None else head
        # The shape and camera-scale losses see the raw regression; the body gets the shape clamped
        # into its valid range and the projection a scale clamped away from 0 (a numerical guard).
        shape = self.body.constrain_shape(regressed_shape) if shape is None else shape
        camera = self.clamp_camera(regressed_camera) if camera is None else camera
        samples = pose6d.shape[1]
        # Under mixed precision the flow may run in bfloat16; the body and the camera stay in float32.
        with torch.autocast(device_type=context.device.type, enabled=False):
            rotmat, shape, camera = rotmat.float(), shape.float(), camera.float()
            keypoints_3d = self.body.keypoints(rotmat, shape[:, None].expand(-1, samples, -1), "coco17")
            keypoints_2d = self.project(keypoints_3d, camera, batch)
            translation = weak_to_full_translation(
                camera, batch["center"], batch["box_size"], batch["focal"], batch["image_size"]
            )
        return Hypotheses(
            pose6d=pose6d,
            rotmat=rotmat,
            log_prob=log_prob,
            shape=shape,
            regressed_shape=regressed_shape,
            camera=camera,
            translation=translation,
            keypoints_3d=keypoints_3d,
            keypoints_2d=keypoints_2d,
            regressed_camera=regressed_camera,
        )
