"""humr.data.precompute: ViTPose heatmap samples (tiny random ViTPose) and cached encoder features."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from humr.data import precompute
from humr.data.bedlam_cliff import BedlamCliffDataset, FilterConfig
from humr.data.heatmaps import heatmap_to_image
from humr.data.sample_store import ArrayStore, HeatmapSampleStore
from humr.testing.real_files import write_fake_dataset, write_tiny_vitpose

NO_FILTER = FilterConfig(enabled=False)


TORCH_THREADS = 1  # tests/conftest.py: small models on a shared machine


@pytest.fixture(scope="module")
def vitpose_dir(tmp_path_factory) -> Path:
    return write_tiny_vitpose(tmp_path_factory.mktemp("vitpose") / "tiny", peaked=True)


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return write_fake_dataset(
        tmp_path_factory.mktemp("data"), "agora", num_rows=5, seed=2, samples_layout=None
    )


class _Recorder(torch.nn.Module):
    """Wraps a model, records its heatmaps, and can fail on a given call (a simulated crash)."""

    def __init__(self, model, fail_on: int | None = None) -> None:
        super().__init__()
        self.model, self.fail_on, self.calls, self.heatmaps = model, fail_on, 0, []
        self.config = model.config

    def forward(self, **kwargs):
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        out = self.model(**kwargs)
        self.heatmaps.append(out.heatmaps.detach().clone())
        return out


def test_missing_vitpose_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="never downloads"):
        precompute.load_vitpose(tmp_path / "no-such-checkpoint")


def test_samples_follow_heatmaps_masks_and_boxes(vitpose_dir, fake, tmp_path):
    model = _Recorder(precompute.load_vitpose(vitpose_dir))
    config = precompute.HeatmapPrecomputeConfig(num_samples=40, batch_size=5)
    store = precompute.precompute_heatmaps(fake.spec, model, tmp_path / "s", config, progress=False)
    assert store.done().all() and model.calls == 1
    hm = model.heatmaps[0]  # (5, 17, 64, 48)
    a = fake.annotation
    reader = HeatmapSampleStore(tmp_path / "s")
    for row in range(5):
        s = reader(row)
        side = a["scale"][row] * 200
        box = np.array([side, side * 4 / 3])  # 3:4 expansion of the square box
        c = a["center"][row]
        # Every sample lies in the detector crop and on a heatmap cell of confidence >= 0.05 ...
        assert (np.abs(s.xy - c) <= box / 2 + 1e-3).all()
        cell = np.floor((s.xy - (c - box / 2)) / box * [48, 64]).astype(int)
        value = hm[row].numpy()[np.arange(17)[:, None], cell[..., 1], cell[..., 0]]
        np.testing.assert_allclose(s.confidence, value, atol=1e-6)
        has_cells = (hm[row].flatten(1) >= 0.05).any(1).numpy()
        assert (s.confidence[has_cells] >= 0.05).all()
        # ... its mask distance is the brute-force distance to the nearest person pixel ...
        ys, xs = np.nonzero(fake.masks[row])
        gap = np.clip(np.abs(s.xy.reshape(-1, 1, 2) - np.stack([xs, ys], -1)[None]) - 0.5, 0, None)
        brute = np.sqrt((gap**2).sum(-1)).min(-1).reshape(17, -1)  # to the nearest mask pixel square
        assert (s.mask_distance >= brute - 1e-4).all() and (s.mask_distance - brute).max() <= 0.71
        # ... and the stored pose is each heatmap's argmax mapped to the image.
        flat = hm[row].flatten(1).argmax(1)
        argmax = torch.stack([flat % 48, flat // 48], -1).float()
        expect = heatmap_to_image(argmax, (48, 64), torch.tensor(c).float(), torch.tensor(box).float())
        np.testing.assert_allclose(reader.keypoints(row)[:, :2], expect.numpy(), atol=1e-3)


def test_interrupted_precompute_resumes_to_the_same_store(vitpose_dir, fake, tmp_path):
    config = precompute.HeatmapPrecomputeConfig(num_samples=20, batch_size=2, flush_every=1, seed=3)
    base = precompute.load_vitpose(vitpose_dir)
    precompute.precompute_heatmaps(fake.spec, base, tmp_path / "full", config, progress=False)
    crashing = _Recorder(base, fail_on=3)
    with pytest.raises(KeyboardInterrupt):
        precompute.precompute_heatmaps(fake.spec, crashing, tmp_path / "resumed", config, progress=False)
    partial = ArrayStore.open(tmp_path / "resumed")
    assert partial.missing().tolist() == [4]  # two batches of two rows were kept
    again = _Recorder(base)
    precompute.precompute_heatmaps(fake.spec, again, tmp_path / "resumed", config, progress=False)
    assert again.calls == 1  # only the missing row was recomputed
    full, resumed = np.load(tmp_path / "full" / "samples.npy"), np.load(tmp_path / "resumed" / "samples.npy")
    np.testing.assert_array_equal(full, resumed)
    # The data set reads humr's store directly.
    spec = replace(fake.spec, samples=str(tmp_path / "resumed"), samples_layout="humr")
    item = BedlamCliffDataset(spec, filter=NO_FILTER, num_heatmap_samples=20)[0]
    assert item["heatmap_samples"].shape == (17, 20, 2) and item["heatmap_sample_valid"].any()


def test_feature_cache_matches_the_encoder_and_resumes(fake, tmp_path):
    from humr.model.encoders import HRNetEncoder

    with torch.random.fork_rng(devices=[]):  # a fixed initialisation, the global RNG untouched
        torch.manual_seed(0)
        encoder = HRNetEncoder(width=8)
    data = BedlamCliffDataset(fake.spec, filter=NO_FILTER, crop_size=64)
    precompute.precompute_features(data, encoder, tmp_path / "f", batch_size=2, progress=False, max_rows=3)
    assert ArrayStore.open(tmp_path / "f").missing().tolist() == [3, 4]
    precompute.precompute_features(data, encoder, tmp_path / "f", batch_size=2, progress=False)
    store = ArrayStore.open(tmp_path / "f")
    assert store.done().all()
    spec = replace(fake.spec, features=str(tmp_path / "f"))
    cached = BedlamCliffDataset(spec, filter=NO_FILTER, crop_size=64)
    encoder.eval()
    for i in (0, 4):
        item = cached[i]
        with torch.no_grad():
            direct = encoder(item["image"][None])[0]
        torch.testing.assert_close(item["image_features"], direct, atol=1e-5, rtol=1e-5)
    from humr.data.augment import PAPER_AUGMENT

    with pytest.raises(ValueError, match="unaugmented"):
        BedlamCliffDataset(spec, augment=PAPER_AUGMENT, filter=NO_FILTER)
