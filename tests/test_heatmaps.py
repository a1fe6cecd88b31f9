"""Tests of humr.data.heatmaps: the sampler's distribution, cut, jitter, fallbacks; the coordinate maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from humr.cameras import image_to_crop
from humr.data.heatmaps import (
    expand_box_to_aspect,
    heatmap_argmax,
    heatmap_to_crop,
    heatmap_to_image,
    heatmap_to_input,
    image_to_heatmap,
    image_to_input,
    input_to_heatmap,
    input_to_image,
    sample_heatmaps,
)

SETTINGS = settings(max_examples=25, deadline=None)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_heatmaps(seed: int, shape, low: float = -0.2, high: float = 1.0) -> torch.Tensor:
    return torch.rand(*shape, generator=gen(seed), dtype=torch.float64) * (high - low) + low


def cell_index(xy: torch.Tensor, width: int) -> torch.Tensor:
    """Flat index of the cell holding each (x, y) sample (cells are [j - 0.5, j + 0.5))."""
    ij = torch.floor(xy.double() + 0.5).long()
    return ij[..., 1] * width + ij[..., 0]


# --------------------------------------------------------------------------- sampler distribution


def test_empirical_cell_frequencies_match_each_heatmap_chi_square():
    """Each of a batch of heatmaps is sampled from its own normalized, cut distribution."""
    hm = random_heatmaps(0, (2, 3, 5, 4))
    n = 20_000
    samples = sample_heatmaps(hm, n, min_confidence=0.3, generator=gen(1))
    assert samples.shape == (2, 3, n, 2)
    weights = torch.where(hm >= 0.3, hm, torch.zeros_like(hm)).reshape(6, 20)
    cells = cell_index(samples, 4).reshape(6, n)
    for row in range(6):  # test code: a loop over 6 independent goodness-of-fit tests
        counts = torch.bincount(cells[row], minlength=20).double()
        keep = weights[row] > 0
        assert counts[~keep].sum() == 0
        expected = weights[row][keep] / weights[row].sum() * n
        p = stats.chisquare(counts[keep].numpy(), expected.numpy()).pvalue
        assert p > 1e-4, (row, p)


def test_jitter_is_uniform_within_the_cell():
    hm = torch.zeros(40, 30)
    hm[7, 11] = 0.8
    xy = sample_heatmaps(hm, 4000, generator=gen(2)).double()
    assert ((xy[:, 0] >= 10.5) & (xy[:, 0] < 11.5)).all() and ((xy[:, 1] >= 6.5) & (xy[:, 1] < 7.5)).all()
    assert stats.kstest((xy[:, 0] - 10.5).numpy(), "uniform").pvalue > 1e-4
    assert stats.kstest((xy[:, 1] - 6.5).numpy(), "uniform").pvalue > 1e-4
    centres = sample_heatmaps(hm, 10, jitter=False, generator=gen(2))
    assert torch.equal(centres, torch.tensor([11.0, 7.0]).expand(10, 2))


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1),
    cut=st.floats(0.0, 0.9),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
    jitter=st.booleans(),
    single=st.booleans(),
)
def test_samples_land_only_in_kept_cells(seed, cut, shape, jitter, single):
    hm = random_heatmaps(seed, shape).to(torch.float32 if single else torch.float64)
    hm[..., 0, 0] = 1.0  # every heatmap keeps at least one cell
    samples = sample_heatmaps(hm, 50, min_confidence=cut, jitter=jitter, generator=gen(seed))
    assert samples.dtype == hm.dtype and samples.shape == (*shape[:-2], 50, 2)
    assert torch.isfinite(samples).all()
    h, w = shape[-2:]
    assert (samples[..., 0] >= -0.5).all() and (samples[..., 0] < w - 0.5).all()
    assert (samples[..., 1] >= -0.5).all() and (samples[..., 1] < h - 0.5).all()
    drawn = torch.gather(hm.reshape(*shape[:-2], h * w), -1, cell_index(samples, w))
    assert (drawn >= cut).all() and (drawn > 0).all()


def test_generator_makes_draws_reproducible_and_leaves_global_rng_alone():
    hm = random_heatmaps(3, (4, 17, 16, 12))
    state = torch.get_rng_state()
    a = sample_heatmaps(hm, 30, generator=gen(5))
    b = sample_heatmaps(hm, 30, generator=gen(5))
    c = sample_heatmaps(hm, 30, generator=gen(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


# --------------------------------------------------------------------------- empty heatmaps


def test_heatmaps_without_a_cell_raise_naming_the_entries():
    hm = random_heatmaps(4, (2, 3, 6, 5), low=0.5)
    hm[0, 2] = 0.04
    hm[1, 0] = -1.0
    with pytest.raises(ValueError, match=r"\(0, 2\), \(1, 0\)") as err:
        sample_heatmaps(hm, 10)
    assert "min_confidence" in str(err.value) and "fallback" in str(err.value)


def test_uniform_fallback_covers_the_whole_heatmap():
    hm = random_heatmaps(7, (3, 4, 3), low=0.5)
    hm[1] = 0.0
    samples, fell = sample_heatmaps(hm, 6000, fallback="uniform", generator=gen(8), return_fallback_mask=True)
    assert fell.tolist() == [False, True, False]
    counts = torch.bincount(cell_index(samples[1], 3), minlength=12).double()
    assert stats.chisquare(counts.numpy()).pvalue > 1e-4
    assert torch.isfinite(samples).all()


def test_argmax_fallback_returns_copies_of_the_highest_cell():
    hm = random_heatmaps(9, (2, 2, 8, 6), low=0.5)
    hm[1, 1] = random_heatmaps(10, (8, 6), low=0.0, high=0.04)
    samples, fell = sample_heatmaps(hm, 25, fallback="argmax", generator=gen(11), return_fallback_mask=True)
    assert fell.tolist() == [[False, False], [False, True]]
    flat = hm[1, 1].numpy()
    i, j = np.unravel_index(np.argmax(flat), flat.shape)
    assert torch.equal(samples[1, 1], torch.tensor([j, i], dtype=hm.dtype).expand(25, 2))
    assert samples[0, 0].unique(dim=0).shape[0] > 1  # the others are still random draws


def test_single_heatmap_and_empty_batch():
    assert sample_heatmaps(torch.rand(5, 4, generator=gen(0)) + 0.1, 3).shape == (3, 2)
    assert sample_heatmaps(torch.rand(0, 17, 5, 4), 3).shape == (0, 17, 3, 2)
    with pytest.raises(ValueError, match="single heatmap"):
        sample_heatmaps(torch.zeros(5, 4), 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_heatmaps_keep_their_dtype_and_cut(dtype):
    hm = random_heatmaps(13, (4, 16, 12)).to(dtype)
    samples = sample_heatmaps(hm, 200, min_confidence=0.5, generator=gen(13))
    assert samples.dtype == dtype and torch.isfinite(samples).all()
    # rounding to low precision may put a sample on a cell edge: check the cell of the unjittered draw
    centres = sample_heatmaps(hm, 200, min_confidence=0.5, jitter=False, generator=gen(13))
    assert ((samples.float() - centres.float()).abs() <= 0.5).all()
    assert (torch.gather(hm.reshape(4, -1), -1, cell_index(centres, 12)) >= 0.5).all()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"heatmaps": torch.rand(5)}, "heatmaps"),
        ({"heatmaps": torch.zeros(2, 0, 4)}, "heatmaps"),
        ({"heatmaps": torch.ones(3, 3, dtype=torch.long)}, "heatmaps"),
        ({"heatmaps": torch.tensor([[float("nan"), 1.0]])}, "heatmaps"),
        ({"n": 0}, "n"),
        ({"n": 2.5}, "n"),
        ({"min_confidence": float("nan")}, "min_confidence"),
        ({"fallback": "nearest"}, "fallback"),
    ],
)
def test_sampler_bad_inputs(kwargs, name):
    args = {"heatmaps": torch.rand(2, 4, 3) + 0.1, "n": 4, **kwargs}
    with pytest.raises(ValueError, match=name):
        sample_heatmaps(**args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_generator_on_another_device_raises_and_cuda_sampling_works():
    hm = random_heatmaps(12, (3, 17, 64, 48)).cuda()
    with pytest.raises(ValueError, match="generator"):
        sample_heatmaps(hm, 5, generator=gen(0))
    g = torch.Generator(device="cuda").manual_seed(0)
    samples = sample_heatmaps(hm, 150, min_confidence=0.5, generator=g)
    assert samples.device == hm.device and samples.shape == (3, 17, 150, 2)
    drawn = torch.gather(hm.reshape(3, 17, -1), -1, cell_index(samples, 48))
    assert (drawn >= 0.5).all()


# --------------------------------------------------------------------------- argmax


@SETTINGS
@given(
    seed=st.integers(0, 2**31 - 1), shape=st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 7))
)
def test_argmax_matches_numpy(seed, shape):
    hm = random_heatmaps(seed, shape)
    hm[..., -1, -1] = hm[..., 0, 0]  # a tie on some heatmaps: the first in row-major order wins
    xy, conf = heatmap_argmax(hm)
    flat = hm.numpy().reshape(shape[0], -1)
    idx = flat.argmax(-1)
    rows, cols = np.unravel_index(idx, shape[1:])
    np.testing.assert_array_equal(xy.numpy(), np.stack([cols, rows], -1))
    np.testing.assert_array_equal(conf.numpy(), flat.max(-1))


# --------------------------------------------------------------------------- coordinate maps

CONVENTIONS = st.sampled_from(["center", "udp"])


@st.composite
def detector_setups(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    hm_size = (int(rng.integers(2, 80)), int(rng.integers(2, 80)))
    in_size = (int(rng.integers(2, 400)), int(rng.integers(2, 400)))
    det_c = torch.tensor(rng.uniform(-100, 2000, size=(3, 2)))
    det_s = torch.tensor(rng.uniform(20, 900, size=(3, 2)))
    xy = torch.tensor(rng.uniform(-5, 80, size=(3, 7, 2)))
    return hm_size, in_size, det_c, det_s, xy, rng


@SETTINGS
@given(setup=detector_setups(), convention=CONVENTIONS)
def test_heatmap_input_image_round_trips(setup, convention):
    hm_size, in_size, det_c, det_s, xy, _ = setup
    inp = heatmap_to_input(xy, hm_size, in_size, convention)
    torch.testing.assert_close(input_to_heatmap(inp, hm_size, in_size, convention), xy)
    img = input_to_image(inp, in_size, det_c, det_s, convention)
    torch.testing.assert_close(image_to_input(img, in_size, det_c, det_s, convention), inp)
    # heatmap -> image directly equals the composition through the input (the input size cancels)
    torch.testing.assert_close(heatmap_to_image(xy, hm_size, det_c, det_s, convention), img)
    torch.testing.assert_close(image_to_heatmap(img, hm_size, det_c, det_s, convention), xy)


@SETTINGS
@given(setup=detector_setups(), convention=CONVENTIONS)
def test_grid_extent_maps_onto_the_detector_box(setup, convention):
    """'center': the outer cell edges (-0.5, w - 0.5) hit the box edges; 'udp': the outer cell centres."""
    hm_size, _, det_c, det_s, _, _ = setup
    w, h = hm_size
    lo, hi = (-0.5, (w - 0.5, h - 0.5)) if convention == "center" else (0.0, (w - 1.0, h - 1.0))
    corners = torch.tensor([[lo, lo], list(hi)], dtype=torch.float64).expand(3, 2, 2)
    img = heatmap_to_image(corners, hm_size, det_c, det_s, convention)
    torch.testing.assert_close(img[:, 0], det_c - det_s / 2)
    torch.testing.assert_close(img[:, 1], det_c + det_s / 2)


def test_center_convention_pixel_formula_and_identity_crop():
    xy = torch.tensor([[0.0, 0.0], [47.0, 63.0], [10.3, 20.7]])
    inp = heatmap_to_input(xy, (48, 64), (192, 256))
    torch.testing.assert_close(inp, (xy + 0.5) * 4 - 0.5)
    # a detector crop that is the whole image at its own resolution maps pixels to themselves
    for convention in ("center", "udp"):
        pts = torch.tensor([[[0.0, 0.0], [639.0, 479.0], [12.5, 300.25]]])
        centre = torch.tensor([319.5, 239.5])
        size = torch.tensor([640.0, 480.0]) if convention == "center" else torch.tensor([639.0, 479.0])
        torch.testing.assert_close(input_to_image(pts, (640, 480), centre, size, convention), pts)


@SETTINGS
@given(setup=detector_setups(), convention=CONVENTIONS)
def test_heatmap_to_crop_composes_the_maps(setup, convention):
    hm_size, _, det_c, det_s, xy, rng = setup
    box_c = torch.tensor(rng.uniform(0, 2000, size=(3, 2)))
    box_s = torch.tensor(rng.uniform(20, 900, size=3))
    crop = heatmap_to_crop(xy, hm_size, det_c, det_s, box_c, box_s, convention)
    expected = image_to_crop(heatmap_to_image(xy, hm_size, det_c, det_s, convention), box_c, box_s)
    torch.testing.assert_close(crop, expected)
    # independent closed form of the composition
    frac = (
        (xy + 0.5) / torch.tensor(hm_size) if convention == "center" else xy / (torch.tensor(hm_size) - 1.0)
    )
    img = det_c[:, None] - det_s[:, None] / 2 + frac * det_s[:, None]
    torch.testing.assert_close(crop, (img - box_c[:, None]) / (box_s[:, None, None] / 2))


def test_samples_with_per_image_boxes_broadcast():
    samples = torch.rand(4, 17, 25, 2, dtype=torch.float64) * 40
    det_c, det_s = (
        torch.rand(4, 2, dtype=torch.float64) * 500,
        torch.rand(4, 2, dtype=torch.float64) * 300 + 50,
    )
    box_c, box_s = torch.rand(4, 2, dtype=torch.float64) * 500, torch.rand(4, dtype=torch.float64) * 300 + 50
    crop = heatmap_to_crop(samples, (48, 64), det_c[:, None], det_s[:, None], box_c[:, None], box_s[:, None])
    assert crop.shape == (4, 17, 25, 2)
    one = heatmap_to_crop(samples[2, 5], (48, 64), det_c[2], det_s[2], box_c[2], box_s[2])
    torch.testing.assert_close(crop[2, 5], one)


def test_udp_matches_transformers_vitpose_post_processing():
    """Our 'udp' heatmap -> image and box expansion equal those of transformers' VitPoseImageProcessor."""
    vp = pytest.importorskip("transformers.models.vitpose.image_processing_pil_vitpose")
    rng = np.random.default_rng(0)
    for _ in range(5):  # test code: a few independent boxes
        box = np.array([*rng.uniform(0, 500, 2), *rng.uniform(20, 400, 2)], dtype=np.float32)
        center, scale = vp.box_to_center_and_scale(box, image_width=192, image_height=256)
        ours = expand_box_to_aspect(torch.tensor(box[2:], dtype=torch.float64))
        np.testing.assert_allclose(ours.numpy(), scale * 200.0, rtol=1e-5)
        coords = rng.uniform(0, 47, size=(17, 2))
        theirs = vp.transform_preds(coords, center, scale, output_size=[64, 48])
        mine = heatmap_to_image(
            torch.tensor(coords),
            (48, 64),
            torch.tensor(center, dtype=torch.float64),
            torch.tensor(scale * 200.0, dtype=torch.float64),
            "udp",
        )
        np.testing.assert_allclose(mine.numpy(), theirs, rtol=1e-5, atol=1e-3)
        # their (UDP) warp matrix image -> detector input, as used to crop the detector's input
        warp = vp.get_warp_matrix(0.0, center * 2.0, np.array([191.0, 255.0]), scale * 200.0).astype(
            np.float64
        )
        pts = rng.uniform(0, 600, size=(9, 2))
        theirs_in = pts @ warp[:, :2].T + warp[:, 2]
        mine_in = image_to_input(
            torch.tensor(pts),
            (192, 256),
            torch.tensor(center, dtype=torch.float64),
            torch.tensor(scale * 200.0, dtype=torch.float64),
            "udp",
        )
        np.testing.assert_allclose(mine_in.numpy(), theirs_in, rtol=1e-5, atol=1e-3)


@SETTINGS
@given(w=st.floats(1, 1000), h=st.floats(1, 1000), pad=st.floats(1.0, 2.0))
def test_expand_box_to_aspect(w, h, pad):
    out = expand_box_to_aspect(torch.tensor([w, h], dtype=torch.float64), (192, 256), pad)
    assert abs(float(out[0] / out[1]) - 0.75) < 1e-9
    assert out[0] >= w * pad * (1 - 1e-9) and out[1] >= h * pad * (1 - 1e-9)
    assert min(abs(float(out[0]) - w * pad), abs(float(out[1]) - h * pad)) < 1e-6 * max(w, h) * pad


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: heatmap_to_input(torch.zeros(3, 3)), "xy"),
        (lambda: heatmap_to_input(torch.zeros(3, 2), (48, 0)), "heatmap_size"),
        (lambda: heatmap_to_input(torch.zeros(3, 2), (1, 64), convention="udp"), "heatmap_size"),
        (lambda: heatmap_to_input(torch.zeros(3, 2), convention="corner"), "convention"),
        (lambda: input_to_image(torch.zeros(3, 3), (192, 256), torch.zeros(2), torch.ones(2)), "xy"),
        (
            lambda: input_to_image(torch.zeros(1, 3, 2), (192, 256), torch.zeros(2), torch.zeros(2)),
            "detector_box_size",
        ),
        (
            lambda: heatmap_to_image(torch.zeros(1, 3, 2), (48, 64), torch.zeros(3), torch.ones(2)),
            "detector_center",
        ),
        (
            lambda: heatmap_to_image(torch.zeros(4, 3, 2), (48, 64), torch.zeros(3, 2), torch.ones(2)),
            "broadcast",
        ),
        (
            lambda: heatmap_to_crop(
                torch.zeros(1, 3, 2), (48, 64), torch.zeros(2), torch.ones(2), torch.zeros(2), -1.0
            ),
            "box_size",
        ),
        (lambda: expand_box_to_aspect(torch.tensor([10.0, float("nan")])), "box_size"),
        (lambda: expand_box_to_aspect(torch.tensor([10.0, 10.0]), padding=0.0), "padding"),
        (lambda: heatmap_argmax(torch.zeros(3)), "heatmaps"),
    ],
)
def test_coordinate_bad_inputs(call, name):
    with pytest.raises(ValueError, match=name):
        call()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_argmax_of_wide_low_precision_heatmaps_gives_the_exact_column(dtype):
    w = 4000
    hm = torch.zeros(3, 2, w, dtype=dtype)
    cols = torch.tensor([3999, 2049, 257])
    hm[torch.arange(3), 1, cols] = 1.0
    xy, conf = heatmap_argmax(hm)
    assert xy.dtype == torch.promote_types(dtype, torch.float32)
    np.testing.assert_array_equal(xy.numpy(), np.stack([cols.numpy(), np.ones(3)], -1))
    assert conf.dtype == dtype and (conf == 1).all()


@pytest.mark.parametrize(("dtype", "value"), [(torch.float32, 1e38), (torch.float16, 6e4)])
def test_heatmaps_whose_sum_overflows_are_sampled_from_their_cells(dtype, value):
    hm = torch.zeros(2, 3, 16, 12, dtype=dtype)
    hm[0, :, 4, 7] = value
    hm[0, :, 9, 2] = value  # two huge cells: their sum is beyond the dtype's range
    hm[1, :, 1:5, 3] = value
    assert not torch.isfinite(hm.sum((-1, -2))).all()
    samples = sample_heatmaps(hm, 400, min_confidence=0.5, jitter=False, generator=gen(3))
    drawn = torch.gather(hm.float().reshape(2, 3, -1), -1, cell_index(samples, 12))
    assert (drawn == value).all()
    first = cell_index(samples[0], 12)
    share = (first == 4 * 12 + 7).float().mean()
    assert 0.4 < float(share) < 0.6  # equal cells, equal chances (400 x 3 draws)
    bad = hm.clone()
    bad[1, 2, 0, 0] = float("inf")  # a real infinity is still refused
    with pytest.raises(ValueError, match="NaN or infinite"):
        sample_heatmaps(bad, 4)
