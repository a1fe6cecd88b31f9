"""Pictures of hypothesis distributions (paper Figs. 1, 2, 5, 6 and S1) and of their calibration, headless.

Every function writes one PNG of exactly the requested ``size = (width, height)`` pixels.
Figures are built on matplotlib's Agg canvas directly (no pyplot, no global figure state),
so they work without a display and from several threads.

Example:
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "wrist.png")
    >>> image = np.zeros((64, 64, 3))
    >>> plot_joint_hypotheses(image, np.zeros((100, 2)), np.zeros(2), path, size=(128, 128))
    >>> os.path.getsize(path) > 0
    True
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

# The Agg canvas is used explicitly: headless without touching the user's pyplot backend.
import matplotlib.image as mpimg
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from humr.eval.render import fit_view, render_mesh, view_vertices

__all__ = ["plot_joint_hypotheses", "plot_mesh_hypotheses", "plot_min_of_n", "plot_reliability",
           "plot_learning_curve", "plot_rows_with_seeds", "HYPOTHESIS_COLORS"]

_DPI = 100
#: Colours of successive mesh hypotheses (matplotlib's tab10, softened for shading).
HYPOTHESIS_COLORS: tuple[tuple[float, float, float], ...] = (
    (0.65, 0.74, 0.86), (1.00, 0.73, 0.47), (0.60, 0.87, 0.54), (1.00, 0.60, 0.59),
    (0.77, 0.69, 0.84), (0.77, 0.61, 0.58), (0.97, 0.71, 0.82), (0.78, 0.78, 0.78),
)


def _as_numpy(x, name: str, shape: tuple[int | None, ...]) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != len(shape) or any(t is not None and s != t for s, t in zip(arr.shape, shape)):
        expected = "(" + ", ".join("*" if t is None else str(t) for t in shape) + ")"
        raise ValueError(f"{name}: expected shape {expected}, found {arr.shape}")
    return arr


def _check_size(size) -> tuple[int, int]:
    if len(size) != 2 or not all(int(v) == v and v > 0 for v in size):
        raise ValueError(f"size: expected (width, height) positive integers, found {size}")
    return int(size[0]), int(size[1])


def _figure(size: tuple[int, int]) -> tuple[Figure, FigureCanvasAgg]:
    fig = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
    return fig, FigureCanvasAgg(fig)


def _save(canvas: FigureCanvasAgg, size: tuple[int, int], path: str | os.PathLike) -> None:
    """Draw and write exactly ``size`` pixels (figure sizes in inches can round off by one)."""
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())[:, :, :3]
    out = np.ones((size[1], size[0], 3), dtype=np.uint8) * 255
    h, w = min(size[1], rgba.shape[0]), min(size[0], rgba.shape[1])
    out[:h, :w] = rgba[:h, :w]
    _write(out, path)


def _write(image: np.ndarray, path: str | os.PathLike) -> None:
    parent = os.path.dirname(os.fspath(path))
    if parent:
        os.makedirs(parent, exist_ok=True)
    mpimg.imsave(os.fspath(path), image, format="png")


def plot_joint_hypotheses(
    image,
    points,
    gt,
    path: str | os.PathLike,
    size: tuple[int, int] = (512, 512),
    color: str | tuple[float, ...] = (0.1, 0.9, 0.1),
    gt_color: str | tuple[float, ...] = (1.0, 0.1, 0.1),
    marker_size: float = 4.0,
    alpha: float = 0.7,
    margin: float = 0.0,
) -> None:
    """The crop with the 2D projections of one joint's hypotheses and its ground truth (Figs. 1, 2, 6).

    Args:
        image: ``(H, W, 3)`` the person crop (uint8 or float in [0, 1]); it spans crop
            coordinates [-1, 1] on both axes.
        points: ``(S, 2)`` the joint's projected hypotheses in crop coordinates (e.g. 100).
        gt: ``(2,)`` the ground-truth position in crop coordinates, drawn as a star; NaN to omit.
        path: PNG file to write (parent folders are created).
        size: ``(width, height)`` of the PNG in pixels.
        color, gt_color: colours of the hypotheses' dots and the star.
        marker_size: dot radius in pixels of the PNG.
        alpha: dot opacity.
        margin: crop units shown beyond the crop on each side (grey), to show hypotheses
            that project outside it.
    """
    img = _as_numpy(image, "image", (None, None, 3))
    pts = _as_numpy(points, "points", (None, 2)).astype(np.float64)
    g = _as_numpy(gt, "gt", (2,)).astype(np.float64)
    size = _check_size(size)
    if img.dtype == np.uint8:
        img = img.astype(np.float32) / 255.0
    fig, canvas = _figure(size)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_facecolor((0.5, 0.5, 0.5))
    # extent puts the crop's edges at +-1 (pixel centres at the crop-coordinate cell centres); y down.
    ax.imshow(np.clip(img, 0.0, 1.0), extent=(-1.0, 1.0, 1.0, -1.0), interpolation="bilinear")
    lim = 1.0 + margin
    ax.set_xlim(-lim, lim)
    ax.set_ylim(lim, -lim)
    ax.set_aspect("auto")
    ax.set_axis_off()
    # scatter sizes are in points^2; at 100 dpi one pixel is 0.72 pt.
    ax.scatter(pts[:, 0], pts[:, 1], s=(2 * marker_size * 72.0 / _DPI) ** 2, c=[color], alpha=alpha,
               linewidths=0)
    if np.isfinite(g).all():
        ax.scatter([g[0]], [g[1]], s=(4 * marker_size * 72.0 / _DPI) ** 2, c=[gt_color], marker="*",
                   edgecolors="black", linewidths=0.6, zorder=3)
    _save(canvas, size, path)


def plot_mesh_hypotheses(
    vertices,
    faces,
    path: str | os.PathLike,
    size: tuple[int, int] = (800, 400),
    num: int = 4,
    frame: str = "camera",
    side_yaw_degrees: float = 90.0,
    colors: Sequence[tuple[float, float, float]] = HYPOTHESIS_COLORS,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> None:
    """A few mesh hypotheses from the front (top row) and the side (bottom row), Fig. 5 style.

    A flat-shaded orthographic z-buffer render (:mod:`humr.eval.render`, no OpenGL). All
    panels of a row share one scale and centre, so differences between hypotheses show as
    they are.

    Args:
        vertices: ``(S, V, 3)`` hypotheses' vertices in metres; the first ``num`` are drawn
            (the mode first when it is at index 0).
        faces: ``(F, 3)`` triangles.
        path: PNG file to write.
        size: ``(width, height)`` of the PNG in pixels; a grid of 2 rows by ``num`` columns.
        num: number of hypotheses drawn.
        frame: ``"camera"`` (x right, y down, z forward: the front view is the camera's) or
            ``"body"`` (SMPL axes, +y up, facing +z).
        side_yaw_degrees: turn about the vertical axis for the side view.
        colors: RGB per hypothesis (cycled).
        background: RGB of empty pixels.
    """
    verts = _as_numpy(vertices, "vertices", (None, None, 3)).astype(np.float64)
    tris = _as_numpy(faces, "faces", (None, 3)).astype(np.int64)
    width, height = _check_size(size)
    if num < 1:
        raise ValueError(f"num: expected at least 1, found {num}")
    verts = verts[:num]
    n = verts.shape[0]
    if n == 0:
        raise ValueError(f"vertices: expected at least one hypothesis, found shape {verts.shape}")
    pw, ph = width // n, height // 2
    if pw < 1 or ph < 1:
        raise ValueError(f"size: {size} is too small for 2 x {n} panels")
    front = view_vertices(verts, frame)
    pivot = (front.reshape(-1, 3).min(0) + front.reshape(-1, 3).max(0)) / 2
    side = view_vertices(verts, frame, side_yaw_degrees, pivot=pivot)
    canvas = np.empty((height, width, 3), dtype=np.float32)
    canvas[:] = np.asarray(background, dtype=np.float32)
    for row, view in enumerate((front, side)):
        center, scale = fit_view(view, ph, pw)
        for s in range(n):  # a handful of panels, not a per-step loop
            canvas[row * ph:(row + 1) * ph, s * pw:(s + 1) * pw] = render_mesh(
                view[s], tris, ph, pw, center=center, scale=scale,
                color=colors[s % len(colors)], background=background)
    _write((canvas * 255 + 0.5).astype(np.uint8), path)


def plot_min_of_n(
    curves: Mapping[str, object],
    path: str | os.PathLike,
    size: tuple[int, int] = (640, 480),
    ylabel: str = "best-of-N error [mm]",
    xlabel: str = "number of hypotheses N",
    colors: Mapping[str, object] | None = None,
    log_x: bool = True,
) -> None:
    """Best-of-N error against N (Fig. S1): one line per curve.

    Args:
        curves: name -> ``(N,)`` mean best-of-N errors for N = 1 .. len (e.g.
            :meth:`humr.eval.accumulator.MetricAccumulator.curve`).
        path: PNG file to write.
        size: ``(width, height)`` in pixels.
        ylabel, xlabel: axis labels.
        colors: optional name -> matplotlib colour.
        log_x: logarithmic N axis (the curves flatten over decades).
    """
    if not curves:
        raise ValueError("curves: expected at least one curve, found none")
    size = _check_size(size)
    fig, canvas = _figure(size)
    ax = fig.add_subplot(1, 1, 1)
    for name, values in curves.items():
        y = _as_numpy(values, f"curves[{name!r}]", (None,)).astype(np.float64)
        kw = {} if colors is None or name not in colors else {"color": colors[name]}
        ax.plot(np.arange(1, len(y) + 1), y, label=name, linewidth=2.0, **kw)
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save(canvas, size, path)


def plot_reliability(
    curves: Mapping[str, tuple[object, object]],
    path: str | os.PathLike,
    size: tuple[int, int] = (480, 480),
    colors: Mapping[str, object] | None = None,
) -> None:
    """Reliability diagram of the hypotheses' coverage: empirical against nominal level.

    A calibrated distribution follows the dashed diagonal; below it, the ground truth falls
    outside the hypotheses' ``q``-quantile ball more often than ``1 - q`` (over-confident).

    Args:
        curves: name -> ``(levels (Q,), coverage (Q,))`` in [0, 1] (e.g.
            :meth:`humr.eval.accumulator.MetricAccumulator.coverage_curve`); NaN points are skipped.
        path: PNG file to write.
        size: ``(width, height)`` in pixels.
        colors: optional name -> matplotlib colour.
    """
    if not curves:
        raise ValueError("curves: expected at least one curve, found none")
    size = _check_size(size)
    fig, canvas = _figure(size)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1.0, label="calibrated")
    for name, (levels, values) in curves.items():
        x = _as_numpy(levels, f"curves[{name!r}] levels", (None,)).astype(np.float64)
        y = _as_numpy(values, f"curves[{name!r}] coverage", (x.shape[0],)).astype(np.float64)
        keep = np.isfinite(y)
        kw = {} if colors is None or name not in colors else {"color": colors[name]}
        ax.plot(x[keep], y[keep], marker="o", markersize=3, linewidth=2.0, label=name, **kw)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("nominal level q")
    ax.set_ylabel("share of ground truth within the q-quantile")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left")
    fig.tight_layout()
    _save(canvas, size, path)


#: Panels of :func:`plot_learning_curve`: (title, y label, [(metric key, line label), ...]).
LEARNING_PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("accuracy", "MPJPE [mm]", (("mpjpe_mode", "mode"), ("mpjpe_best", "best of N"))),
    ("diversity", "3D spread [mm]", (("spread_vis", "visible"), ("spread_invis", "invisible"))),
    ("plausibility", "PercIn [%]", (("perc_in", "PercIn"),)),
    ("training", "loss (mean since last point)", (("train_loss", "total loss"),)),
)


def plot_learning_curve(
    history: Sequence[Mapping[str, float]], path: str | os.PathLike, size: tuple[int, int] = (960, 720)
) -> None:
    """Validation metrics against the training step, four panels (accuracy, diversity, PercIn, loss).

    Args:
        history: one mapping per validation with ``"step"`` and any keys of
            :data:`LEARNING_PANELS` (:attr:`humr.training.validation.PeriodicValidation.history`);
            a key absent from every entry leaves its line out.
        path: PNG file to write.
        size: ``(width, height)`` in pixels.
    """
    if not history or any("step" not in h for h in history):
        raise ValueError("history: expected at least one entry, each with a 'step'")
    size = _check_size(size)
    fig, canvas = _figure(size)
    steps = np.array([h["step"] for h in history], dtype=np.float64)
    for i, (title, ylabel, lines) in enumerate(LEARNING_PANELS):
        ax = fig.add_subplot(2, 2, i + 1)
        for key, label in lines:
            y = np.array([h.get(key, np.nan) for h in history], dtype=np.float64)
            if np.isfinite(y).any():
                ax.plot(steps, y, marker="o", markersize=3, linewidth=2.0, label=label)
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    _save(canvas, size, path)


def plot_rows_with_seeds(
    rows: Mapping[str, Mapping[str, tuple[float, float, int]]],
    panels: Sequence[tuple[str, Sequence[tuple[str, str]]]],
    path: str | os.PathLike,
    size: tuple[int, int] | None = None,
) -> None:
    """The rows of an ablation side by side, one panel per metric group, mean with ± std bars.

    Args:
        rows: row label -> metric -> ``(mean, std, n)`` (:func:`humr.eval.seeds.aggregate_rows`);
            a NaN std (one seed) draws no bar.
        panels: ``[(title, [(metric key, bar label), ...]), ...]``; each panel groups its bars by row.
        path: PNG file to write.
        size: ``(width, height)``; default grows with the number of rows.
    """
    if not rows:
        raise ValueError("rows: expected at least one row, found none")
    if not panels:
        raise ValueError("panels: expected at least one panel, found none")
    labels = list(rows)
    size = _check_size(size or (max(640, 90 * len(labels) * len(panels)), 520))
    fig, canvas = _figure(size)
    x = np.arange(len(labels), dtype=np.float64)
    for i, (title, bars) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        width = 0.8 / max(len(bars), 1)
        for j, (key, bar_label) in enumerate(bars):
            mean = np.array([rows[r].get(key, (np.nan, np.nan, 0))[0] for r in labels], dtype=np.float64)
            std = np.array([rows[r].get(key, (np.nan, np.nan, 0))[1] for r in labels], dtype=np.float64)
            ax.bar(x + (j - (len(bars) - 1) / 2) * width, mean, width, label=bar_label,
                   yerr=np.where(np.isfinite(std), std, 0.0), capsize=3)
        ax.set_xticks(x)
        ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
        if len(bars) > 1:
            ax.legend(fontsize=8)
    fig.tight_layout()
    _save(canvas, size, path)
