"""humr.eval.plots and humr.eval.render: files of the requested size whose pixels show what was drawn."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("matplotlib")
import matplotlib.image as mpimg  # noqa: E402
from matplotlib.path import Path  # noqa: E402

from humr.data.render import rasterize  # noqa: E402
from humr.eval.plots import plot_joint_hypotheses, plot_mesh_hypotheses, plot_min_of_n  # noqa: E402
from humr.eval.render import render_mesh, view_vertices  # noqa: E402

GREEN = (0.0, 1.0, 0.0)


def _read(path) -> np.ndarray:
    img = mpimg.imread(str(path))  # float in [0, 1], (H, W, 3 or 4)
    assert img.ndim == 3 and img.shape[2] in (3, 4)
    return img[..., :3]


@settings(max_examples=6, deadline=None)
@given(w=st.integers(64, 400), h=st.integers(64, 400), seed=st.integers(0, 1000))
def test_joint_hypotheses_png_has_the_size_and_the_dots_where_points_project(tmp_path_factory, w, h, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path_factory.mktemp("plots") / "joint.png"
    pts = rng.uniform(-0.9, 0.9, (5, 2))
    image = np.zeros((40, 30, 3), dtype=np.uint8)  # black crop
    plot_joint_hypotheses(image, pts, np.array([np.nan, np.nan]), path, size=(w, h), color=GREEN, alpha=1.0,
                          marker_size=3.0)
    img = _read(path)
    assert img.shape[:2] == (h, w)
    # crop coordinates [-1, 1] map onto the whole PNG
    for x, y in pts:
        u, v = int((x + 1) / 2 * w), int((y + 1) / 2 * h)
        assert img[v, u, 1] > 0.8 and img[v, u, 0] < 0.2 and img[v, u, 2] < 0.2, (x, y)
    # away from every dot the black image shows
    far = np.ones((h, w), dtype=bool)
    vv, uu = np.mgrid[0:h, 0:w]
    for x, y in pts:
        far &= np.hypot(uu - (x + 1) / 2 * w, vv - (y + 1) / 2 * h) > 8
    assert img[far].max() < 0.1


def test_joint_hypotheses_draws_the_ground_truth_star_over_the_image(tmp_path):
    image = np.full((64, 64, 3), 0.5)
    path = tmp_path / "sub" / "gt.png"
    plot_joint_hypotheses(image, np.full((3, 2), -0.8), np.array([0.5, -0.25]), path, size=(200, 200),
                          gt_color=(1.0, 0.0, 0.0), marker_size=5.0)
    img = _read(path)
    u, v = int(1.5 / 2 * 200), int(0.75 / 2 * 200)
    assert img[v, u, 0] > 0.9 and img[v, u, 1] < 0.2
    assert np.allclose(img[190, 190], 0.5, atol=0.02)  # the grey image elsewhere


def test_min_of_n_png_size_and_line_colour(tmp_path):
    path = tmp_path / "curve.png"
    plot_min_of_n({"ours": np.linspace(70, 50, 100), "base": np.linspace(80, 60, 100)}, path, size=(320, 240),
                  colors={"ours": (0.0, 0.0, 1.0), "base": (1.0, 0.0, 0.0)})
    img = _read(path)
    assert img.shape[:2] == (240, 320)
    blue = (img[..., 2] > 0.8) & (img[..., 0] < 0.2) & (img[..., 1] < 0.2)
    red = (img[..., 0] > 0.8) & (img[..., 1] < 0.2) & (img[..., 2] < 0.2)
    assert blue.sum() > 50 and red.sum() > 50
    # "ours" has the lower errors: its line lies further down the image (legend pixels are few)
    assert np.median(np.nonzero(blue)[0]) > np.median(np.nonzero(red)[0])


def _sphere(nu: int = 40, nv: int = 21) -> tuple[np.ndarray, np.ndarray]:
    th, ph = np.linspace(0, np.pi, nv), np.linspace(0, 2 * np.pi, nu, endpoint=False)
    t, p = np.meshgrid(th, ph, indexing="ij")
    verts = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(nv - 1), np.arange(nu), indexing="ij")
    a, b = i * nu + j, i * nu + (j + 1) % nu
    faces = np.concatenate([np.stack([a, b, a + nu], -1).reshape(-1, 3),
                            np.stack([b, b + nu, a + nu], -1).reshape(-1, 3)])
    return verts, faces


def test_mesh_hypotheses_png_size_and_panel_colours(tmp_path):
    verts, faces = _sphere()
    hyps = np.stack([verts * [0.3, 0.9, 0.2] + [0.0, 0.0, 3.0]] * 3)
    colors = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    path = tmp_path / "mesh.png"
    plot_mesh_hypotheses(hyps, faces, path, size=(301, 200), num=3, colors=colors)
    img = _read(path)
    assert img.shape[:2] == (200, 301)
    pw, ph = 301 // 3, 100
    for row in range(2):
        for s, c in enumerate(colors):
            centre = img[row * ph + ph // 2, s * pw + pw // 2]
            # flat shading scales the base colour: only its channel is lit
            assert centre[np.argmax(c)] > 0.3 and np.delete(centre, np.argmax(c)).max() < 0.02
            assert np.allclose(img[row * ph + 2, s * pw + 2], 1.0)  # white background in the corner


def _rasterize_one(screen: np.ndarray, faces: np.ndarray, h: int, w: int, perspective: bool = False):
    """Face index ``(H, W)`` of triangles ``screen (V, 3)`` = ``(x, y, depth)``, centres at integers."""
    pts, depth = torch.from_numpy(screen[None, :, :2]), torch.from_numpy(screen[None, :, 2])
    return rasterize(pts, depth, torch.from_numpy(faces), (h, w), perspective=perspective)[0].numpy()


def test_rasterize_coverage_matches_point_in_triangle():
    rng = np.random.default_rng(0)
    h, w = 23, 31
    centres = np.stack(np.meshgrid(np.arange(w), np.arange(h)), -1).reshape(-1, 2)
    for _ in range(20):
        tri = rng.uniform([-5, -5], [w + 5, h + 5], (3, 2))
        screen = np.concatenate([tri, np.ones((3, 1))], 1)
        face = _rasterize_one(screen, np.array([[0, 1, 2]]), h, w)
        # the sign of matplotlib's radius depends on the path's orientation: take both
        a, b = (Path(tri).contains_points(centres, radius=r) for r in (-1e-6, 1e-6))
        strictly_inside, near_or_inside = a & b, a | b
        covered = face.reshape(-1) == 0
        assert covered[strictly_inside].all() and not covered[~near_or_inside].any()
        assert (face.reshape(-1)[~covered] == -1).all()


@pytest.mark.parametrize("perspective", [False, True])
@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_zbuffer_keeps_the_nearest_triangle_whatever_the_order(order, perspective):
    near = [[0.0, 0.0, 1.0], [20.0, 0.0, 1.0], [0.0, 20.0, 1.0]]
    far = [[0.0, 0.0, 5.0], [20.0, 20.0, 5.0], [0.0, 20.0, 5.0]]
    screen = np.array(near + far) - [0.5, 0.5, 0.0]  # pixel centres at +0.5 of the corners' frame
    faces = np.array([[0, 1, 2], [3, 4, 5]])[list(order)]
    face = _rasterize_one(screen, faces, 20, 20, perspective)
    near_id = order.index(0)
    # near (depth 1) covers x + y <= 20, far (depth 5) covers y >= x
    assert face[2, 1] == near_id  # both: the near one
    assert face[18, 10] == 1 - near_id  # only far
    assert face[2, 15] == near_id  # only near
    assert face[10, 3] == near_id  # both again


def test_depth_is_interpolated_linearly_for_orthographic_views():
    """A triangle with corner depths 1, 1, 9 against a flat one at depth 2.5: at the centroid its
    depth is 11/3 interpolated linearly (orthographic) but 3 / (1 + 1 + 1/9) = 1.42 with ``1/z``
    linear (perspective), so the two modes keep different faces there."""
    slanted = [[0.0, 0.0, 1.0], [30.0, 0.0, 1.0], [0.0, 30.0, 9.0]]
    flat = [[0.0, 0.0, 2.5], [30.0, 0.0, 2.5], [0.0, 30.0, 2.5]]
    screen, faces = np.array(slanted + flat), np.array([[0, 1, 2], [3, 4, 5]])
    assert _rasterize_one(screen, faces, 30, 30, perspective=False)[10, 10] == 1  # the flat one
    assert _rasterize_one(screen, faces, 30, 30, perspective=True)[10, 10] == 0  # the slanted one


def test_render_mesh_fills_the_projected_silhouette_and_side_view_turns_it():
    verts, faces = _sphere(80, 41)
    img = render_mesh(verts, faces, 64, 64, center=np.zeros(2), scale=20.0)
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    r = np.hypot(xx - 32, yy - 32)
    drawn = (img < 0.99).any(-1)
    assert drawn[r < 19].all() and not drawn[r > 20.5].any()  # a disc of radius 20 px (polygonal)
    # an elongated body seen from the side: the turn about the vertical axis swaps x and depth
    body = verts * [1.0, 1.0, 0.25]
    side = view_vertices(body, "camera", 90.0, pivot=np.zeros(3))
    np.testing.assert_allclose(np.abs(side[:, 0]).max(), 0.25, atol=1e-9)
    np.testing.assert_allclose(np.abs(side[:, 2]).max(), 1.0, atol=1e-9)
    np.testing.assert_allclose(view_vertices(body, "body")[:, 1], -body[:, 1])


def test_bad_plot_inputs_raise(tmp_path):
    with pytest.raises(ValueError, match="points"):
        plot_joint_hypotheses(np.zeros((8, 8, 3)), np.zeros((5, 3)), np.zeros(2), tmp_path / "x.png")
    with pytest.raises(ValueError, match="size"):
        plot_joint_hypotheses(np.zeros((8, 8, 3)), np.zeros((5, 2)), np.zeros(2), tmp_path / "x.png",
                              size=(0, 5))
    with pytest.raises(ValueError, match="faces"):
        rasterize(torch.zeros(1, 3, 2), torch.ones(1, 3), torch.tensor([[0, 1, 3]]), (4, 4))
    with pytest.raises(ValueError, match="curves"):
        plot_min_of_n({}, tmp_path / "c.png")


@pytest.mark.parametrize("num_hypotheses", [1, 3])
def test_evaluation_draws_every_picture_even_for_one_hypothesis(tiny_config, tiny_datasets, tmp_path,
                                                                 num_hypotheses):
    """``recipes/evaluate.py CKPT --eval.num_hypotheses 1`` crashed in the mesh picture (issue 14.4)."""
    import torch

    from humr.bodies.factory import build_body
    from humr.experiment.evaluation import evaluate
    from humr.model.humr_model import HumrModel

    with torch.random.fork_rng():
        torch.random.manual_seed(0)  # a fixed untrained model, without touching the caller's RNG
        model = HumrModel(tiny_config.model, build_body(tiny_config.body))
    config = replace(tiny_config.eval, num_hypotheses=num_hypotheses, max_images=4, batch_size=2, plots=True)
    metrics = evaluate(model, tiny_datasets[1], config, out_dir=tmp_path, progress=False)
    names = {p.name for p in (tmp_path / "plots").glob("*.png")}
    assert {"mesh_hypotheses.png", "min_of_n.png", "reliability.png"} <= names
    assert _read(tmp_path / "plots" / "reliability.png").shape[:2] == (480, 480)
    assert metrics["num_images"] == 4 and np.isfinite(metrics["mpjpe_selected"])
    assert len(metrics["coverage"]["all"]) == 20
    if num_hypotheses == 1:  # one hypothesis: it is the mode, the best and the selected one
        assert metrics["mpjpe_selected"] == pytest.approx(metrics["mpjpe_mode"])
        assert metrics["mpjpe_best"] == pytest.approx(metrics["mpjpe_mode"])
