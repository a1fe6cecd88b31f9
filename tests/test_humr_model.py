"""HumrModel.decode: the pieces fitting replaces (6D poses, the head's output, shape, camera)."""

from __future__ import annotations

import pytest
import torch

from humr.cameras import project_to_crop, weak_to_full_translation
from humr.model.humr_model import HumrModel

TORCH_THREADS = 1


@pytest.fixture(scope="module")
def model(tiny_config) -> HumrModel:
    from humr.training.module import build_model

    with torch.random.fork_rng(devices=[]):  # a fixed initialisation without touching the global RNG
        torch.manual_seed(0)
        model = build_model(tiny_config)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a flow that is not the identity (a fresh flow's last layers are zero)
        for p in model.flow.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=generator))
    return model.eval()


@pytest.fixture(scope="module")
def batch(tiny_config) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    size = tiny_config.data.image_size
    return {
        "image": torch.rand(3, 3, size, size, generator=g),
        "detector_keypoints": torch.cat([2 * torch.rand(3, 17, 2, generator=g) - 1,
                                         torch.rand(3, 17, 1, generator=g)], -1),
        "center": torch.tensor([[500.0, 400.0], [300.0, 350.0], [640.0, 360.0]]),
        "box_size": torch.tensor([300.0, 250.0, 400.0]),
        "focal": torch.full((3,), 1280.0),
        "image_size": torch.tensor([[1000.0, 800.0]]).expand(3, 2),
    }


@torch.no_grad()
def test_given_poses_and_head_output_decode_to_the_forward_hypotheses(model, batch):
    context = model.condition(batch)
    expected = model(batch, num_samples=3, generator=torch.Generator().manual_seed(4), with_log_prob=True,
                     context=context)
    head = (expected.regressed_shape, expected.regressed_camera)
    given = model.decode(batch, None, context, with_log_prob=True, pose6d=expected.pose6d, head=head)
    for name in ("pose6d", "rotmat", "shape", "camera", "translation", "keypoints_3d", "keypoints_2d"):
        torch.testing.assert_close(getattr(given, name), getattr(expected, name), rtol=0, atol=0)
    # the likelihood of given poses runs the flow the other way (x -> z): equal up to its round trip
    torch.testing.assert_close(given.log_prob, expected.log_prob, rtol=1e-4, atol=1e-3)


@torch.no_grad()
def test_shape_and_camera_overrides_reach_the_keypoints_and_translation(model, batch):
    context = model.condition(batch)
    z = model.latents(context, 2, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(6)
    shape = model.body.constrain_shape(0.5 * torch.randn(3, model.body.num_shape, generator=g))
    camera = torch.tensor([[0.9, 0.1, -0.05], [1.1, 0.0, 0.1], [0.7, -0.1, 0.0]])
    hyps = model.decode(batch, z, context, shape=shape, camera=camera)
    # independently: the body's keypoints of the decoded rotations with this shape, this camera
    points = model.body.keypoints(hyps.rotmat, shape[:, None].expand(-1, 3, -1), "coco17")
    box = [batch[k][:, None] for k in ("center", "box_size", "focal", "image_size")]
    torch.testing.assert_close(hyps.keypoints_3d, points)
    torch.testing.assert_close(hyps.keypoints_2d, project_to_crop(points, camera[:, None], *box))
    torch.testing.assert_close(hyps.translation, weak_to_full_translation(
        camera, batch["center"], batch["box_size"], batch["focal"], batch["image_size"]))
    assert torch.equal(hyps.shape, shape) and torch.equal(hyps.camera, camera)
    regressed_shape, _ = model.head(context)
    torch.testing.assert_close(hyps.regressed_shape, regressed_shape)  # the head's, not the override


def test_decode_needs_exactly_one_of_latents_and_poses(model, batch):
    context = model.condition(batch)
    z = model.latents(context, 1)
    with pytest.raises(ValueError, match="z, pose6d.*neither"):
        model.decode(batch, None, context)
    with pytest.raises(ValueError, match="z, pose6d.*both"):
        model.decode(batch, z, context, pose6d=torch.zeros(3, 2, 6 * model.num_pose_joints))
