"""HRNet encoder: output shape, BEDLAM parameter names, checkpoint loading and its errors."""

from __future__ import annotations

import pytest
import torch

from humr.model.encoders import (
    HRNetEncoder,
    HRNetW48Encoder,
    extract_backbone_state_dict,
    load_hrnet_checkpoint,
)

# Many small convolutions: on a shared, loaded machine one intra-op thread is far faster.
TORCH_THREADS = 1  # (tests/conftest.py)


@pytest.fixture(scope="module")
def w48() -> HRNetW48Encoder:
    with torch.random.fork_rng(devices=[]):  # a fixed initialisation, the global RNG untouched
        torch.manual_seed(0)
        return HRNetW48Encoder().eval()


def _small(seed: int, width: int = 8) -> HRNetEncoder:
    with torch.random.fork_rng(devices=[]):  # a fixed initialisation, the global RNG untouched
        torch.manual_seed(seed)
        model = HRNetEncoder(width=width).eval()
    with torch.no_grad():  # non-trivial BN statistics so that a wrong load shows in the outputs
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


def test_w48_gives_720_features_at_224(w48):
    with torch.no_grad():
        out = w48(torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 720) and torch.isfinite(out).all()


def test_w48_parameter_names_and_shapes_follow_bedlam(w48):
    state = w48.state_dict()
    # Names and shapes of BEDLAM's PoseHighResolutionNet(width 48, DOWNSAMPLE, USE_CONV).
    expected = {
        "conv1.weight": (64, 3, 3, 3),
        "bn2.running_var": (64,),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer1.3.conv3.weight": (256, 64, 1, 1),
        "transition1.0.0.weight": (48, 256, 3, 3),
        "transition1.1.0.0.weight": (96, 256, 3, 3),
        "transition2.2.0.0.weight": (192, 96, 3, 3),
        "transition3.3.0.0.weight": (384, 192, 3, 3),
        "stage2.0.branches.1.3.conv2.weight": (96, 96, 3, 3),
        "stage2.0.fuse_layers.0.1.0.weight": (48, 96, 1, 1),
        "stage2.0.fuse_layers.1.0.0.0.weight": (96, 48, 3, 3),
        "stage3.3.fuse_layers.2.0.1.0.weight": (192, 48, 3, 3),
        "stage4.2.fuse_layers.3.0.2.0.weight": (384, 48, 3, 3),
        "stage4.2.fuse_layers.3.2.0.1.running_mean": (384,),
        "downsample_stage_1.6.weight": (48, 48, 3, 3),
        "downsample_stage_2.3.weight": (96, 96, 3, 3),
        "downsample_stage_3.1.num_batches_tracked": (),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    # Module counts: 1 + 4 + 3 HR modules; 4 bottlenecks; 4 basic blocks per branch.
    assert {k.split(".")[1] for k in state if k.startswith("stage3.")} == {"0", "1", "2", "3"}
    assert {k.split(".")[1] for k in state if k.startswith("layer1.")} == {"0", "1", "2", "3"}
    assert {k.split(".")[4] for k in state if k.startswith("stage4.0.branches.3.")} == {"0", "1", "2", "3"}
    assert not any(k.startswith(("final_layer", "upsample_stage")) for k in state)
    assert not any(k.startswith("pixel_") for k in state)  # normalisation constants are not weights


def test_feature_map_pools_to_output():
    model = _small(0)
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fmap = model.feature_map(x)
        assert fmap.shape == (2, 120, 2, 3)
        torch.testing.assert_close(model(x), fmap.mean((2, 3)))
        raw = HRNetEncoder(width=8, normalize=False).eval()
        raw.load_state_dict(model.state_dict())
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        torch.testing.assert_close(raw((x - mean) / std), model(x))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 3, 50, 64))


def test_state_dict_round_trip(tmp_path):
    src, dst = _small(0), _small(1)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert not torch.allclose(src(x), dst(x))
    torch.save(src.state_dict(), tmp_path / "plain.pth")
    assert load_hrnet_checkpoint(dst, tmp_path / "plain.pth") == {"ignored": []}
    with torch.no_grad():
        torch.testing.assert_close(src(x), dst(x), rtol=0, atol=0)


def test_prefixed_and_lightning_checkpoints_load(tmp_path):
    src = _small(0)
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = src(x)
    state = src.state_dict()
    final = {"final_layer.weight": torch.zeros(24, 8, 1, 1), "final_layer.bias": torch.zeros(24)}
    torch.save({f"backbone.{k}": v for k, v in {**state, **final}.items()}, tmp_path / "prefixed.pth")
    lightning = {
        "epoch": 3,
        "state_dict": {
            **{f"model.backbone.{k}": v for k, v in state.items()},
            "model.head.fc1.weight": torch.zeros(4, 4),
        },
    }
    torch.save(lightning, tmp_path / "bedlam_cliff.ckpt")
    for name in ("prefixed.pth", "bedlam_cliff.ckpt"):
        dst = _small(7)
        info = load_hrnet_checkpoint(dst, tmp_path / name)
        with torch.no_grad():
            torch.testing.assert_close(dst(x), ref, rtol=0, atol=0)
        assert info["ignored"] == (sorted(final) if name == "prefixed.pth" else [])
    assert set(extract_backbone_state_dict({"module.conv1.weight": torch.zeros(1)})) == {"conv1.weight"}


def test_mismatched_checkpoint_lists_keys(tmp_path):
    state = _small(0).state_dict()
    broken = dict(state)
    broken.pop("stage2.0.branches.0.0.conv1.weight")
    broken["head.extra.weight"] = torch.zeros(3)
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError) as info:
        load_hrnet_checkpoint(_small(1), tmp_path / "broken.pth")
    msg = str(info.value)
    assert "missing keys [stage2.0.branches.0.0.conv1.weight]" in msg
    assert "unexpected keys [head.extra.weight]" in msg and "broken.pth" in msg
    torch.save(state, tmp_path / "w8.pth")
    with pytest.raises(
        ValueError,
        match=r"shape mismatches \[downsample_stage_1.0.weight: checkpoint \(8, 8, 3, 3\) vs model \(16, 16",
    ):
        load_hrnet_checkpoint(_small(1, width=16), tmp_path / "w8.pth")
    with pytest.raises(FileNotFoundError, match="bedlam_cliff"):
        load_hrnet_checkpoint(_small(1), tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="junk.pth"):
        load_hrnet_checkpoint(_small(1), tmp_path / "junk.pth")
