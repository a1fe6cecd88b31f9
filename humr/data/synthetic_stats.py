"""How much the synthetic set's images leave open, and where (numbers behind ``docs/synthetic.md``).

Definitions (all functions take the arrays of :func:`humr.data.synthetic.load_split`):

- **Sample spread** of a joint in a frame: the mean distance of its valid heatmap samples from
  their mean, in crop units (the person box spans [-1, 1]). A visible joint's samples come from
  its sharp detector peak, a hidden one's from its posterior density, so the *median over the
  hidden joints* against the *median over the visible joints* says how much hiding a joint
  adds to its 2D uncertainty (:func:`sample_spread_summary`; the set is built for a ratio of at
  least 2).
- **Alternative spread** (depth ambiguity): the 3D spread, in mm, of the alternative poses the
  image allows. For each limb chain the prior's conditional redraws its rotations given the
  rest of the body, and a draw is kept when every evidence point of the chain agrees with the
  image (:func:`humr.data.detector_sim.limb_alternatives`); the spread of a keypoint is the
  mean 3D distance of the kept draws and the ground truth from their mean. *Visible*: every
  fully visible arm or leg redrawn from its top, a visible limb's image is all that pins it
  down (small: the image fixes the limb in depth). *Hidden*: the detector's own redraw
  (:func:`humr.data.detector_sim.resample_mask`), the spread its heatmaps are built from.
  Measured on the articulated keypoints (elbows, wrists, knees, ankles) by
  :func:`alternative_spread`.
- **Shares** of hidden joints, of frames with a valid mask and of occluder kinds
  (:func:`occlusion_shares`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from humr.bodies.base import ARTICULATED_COCO17, COCO17_NAMES
from humr.data import detector_sim as dsim
from humr.rotations import matrix_to_axis_angle

__all__ = [
    "sample_spread",
    "sample_spread_summary",
    "occlusion_shares",
    "confidence_histogram",
    "alternative_spread",
    "format_report",
    "contact_sheet",
]

Arrays = Mapping[str, np.ndarray]
#: ``conditional(rotvec (B, 22, 3), redraw (B, 22), num_draws, generator)`` -> rotation vectors
#: ``(B, D, 22, 3)`` and weights ``(B, D)``, as :meth:`humr.data.pose_prior.PosePrior.conditional`.
Conditional = Callable[[Tensor, Tensor, int, torch.Generator | None], tuple[Tensor, Tensor]]

_ARTICULATED = np.zeros(17, bool)
_ARTICULATED[list(ARTICULATED_COCO17)] = True
_LIMB_CHAINS = tuple(c for c, (kps, _rots) in enumerate(dsim.CHAINS) if len(set(kps)) == 3)


def sample_spread(samples: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Mean distance of each joint's samples from their mean.

    Args:
        samples: ``(N, K, M, 2)``; valid: optional ``(N, K, M)`` bool (invalid samples ignored;
            a joint without a valid sample gets NaN).

    Returns:
        ``(N, K)``.
    """
    samples = np.asarray(samples, np.float64)
    w = np.ones(samples.shape[:-1]) if valid is None else np.asarray(valid, np.float64)
    count = w.sum(-1)
    mean = (samples * w[..., None]).sum(-2) / np.maximum(count, 1)[..., None]
    dist = np.linalg.norm(samples - mean[..., None, :], axis=-1)
    out = (dist * w).sum(-1) / np.maximum(count, 1)
    return np.where(count > 0, out, np.nan)


def sample_spread_summary(a: Arrays) -> dict[str, float]:
    """Medians of :func:`sample_spread` over hidden and visible joints (all 17, and articulated)."""
    spread = sample_spread(a["heatmap_samples"], a["heatmap_sample_valid"])
    vis = np.asarray(a["keypoints_2d_visible"])
    out: dict[str, float] = {}
    for suffix, joints in (("", np.ones(17, bool)), ("_articulated", _ARTICULATED)):
        hid = spread[~vis & joints]
        seen = spread[vis & joints]
        out["hidden" + suffix] = float(np.nanmedian(hid)) if hid.size else float("nan")
        out["visible" + suffix] = float(np.nanmedian(seen)) if seen.size else float("nan")
        out["ratio" + suffix] = out["hidden" + suffix] / out["visible" + suffix]
    return out


def occlusion_shares(a: Arrays) -> dict[str, float | np.ndarray]:
    """Shares (fractions in [0, 1]) of frames and joints by what hides them.

    Frames: ``person_occluder``, ``object_occluder`` (an object is drawn), ``object_occluded``
    (it covers the target), ``mask_valid``, ``truncated``, ``any_hidden`` and per object kind
    ``object_<kind>``. Joints: ``hidden``, ``occluded`` (hidden inside the crop),
    ``outside_crop``, ``hidden_articulated``, ``ambiguous`` (articulated, in the crop, peak
    confidence below 0.7: the joints whose samples the loss uses, paper Sec. 4.5) and
    ``hidden_per_joint (17,)``.
    """
    from humr.data.synthetic import OBJECT_KINDS

    vis = np.asarray(a["keypoints_2d_visible"])
    in_crop = (np.abs(np.asarray(a["keypoints_2d"])) < 1).all(-1)
    conf = np.asarray(a["detector_keypoints"])[..., 2]
    out: dict[str, float | np.ndarray] = {
        name: float(np.mean(a[name]))
        for name in ("person_occluder", "object_occluder", "object_occluded", "mask_valid", "truncated")
    }
    out["any_hidden"] = float(np.mean((~vis).any(1)))
    if "object_geometry" in a:
        kind = np.asarray(a["object_geometry"])[:, 0].round().astype(int)
        for i, name in enumerate(OBJECT_KINDS):
            out[f"object_{name}"] = float(np.mean(kind == i))
    out["hidden"] = float(np.mean(~vis))
    out["occluded"] = float(np.mean(~vis & in_crop))
    out["outside_crop"] = float(np.mean(~in_crop))
    out["hidden_articulated"] = float(np.mean(~vis[:, _ARTICULATED]))
    out["ambiguous"] = float(np.mean((conf < 0.7) & in_crop & _ARTICULATED))
    out["hidden_per_joint"] = np.mean(~vis, 0)
    return out


def confidence_histogram(conf: np.ndarray, bins: int = 10) -> np.ndarray:
    """Shares of peak confidences ``(n,)`` in ``bins`` equal bins of [0, 1] ``(bins,)``."""
    counts, _ = np.histogram(np.asarray(conf), bins=bins, range=(0.0, 1.0))
    return counts / max(1, counts.sum())


def _frame_tensors(a: Arrays, frames: np.ndarray, body) -> dict[str, Tensor]:
    """Ground truth of some frames, recomputed with the body model (body frame, float32)."""
    pose = torch.from_numpy(np.asarray(a["pose"][frames], np.float32))
    shape = torch.from_numpy(np.asarray(a["shape"][frames], np.float32))
    with torch.no_grad():
        joints = body.keypoints(pose, shape, "body_joints")
        keypoints = body.keypoints(pose, shape, "coco17")
    rotvec = matrix_to_axis_angle(pose.double()).float()
    rotvec[:, 0] = 0.0  # the prior's frame: the root is the camera set-up's
    seg = torch.from_numpy(np.asarray(a["segmentation"][frames]))
    t = {k: torch.from_numpy(np.asarray(a[k][frames], np.float32))
         for k in ("translation", "focal", "image_size", "center", "box_size")}
    return {"pose": pose, "joints": joints, "keypoints": keypoints, "rotvec": rotvec,
            "occluder": (seg == 2) | (seg == 3),
            "visible": torch.from_numpy(np.asarray(a["keypoints_2d_visible"][frames])),
            **t}


def _to_crop(t: Mapping[str, Tensor]) -> Callable[[Tensor], Tensor]:
    from humr.cameras import image_to_crop, perspective_project

    def project(points: Tensor) -> Tensor:  # (B, ..., N, 3) -> (B, ..., N, 2)
        shape = (-1,) + (1,) * (points.dim() - 3)
        px = perspective_project(points, t["translation"].reshape(*shape, 3), t["focal"].reshape(shape),
                                 (t["image_size"] / 2).reshape(*shape, 2))
        return image_to_crop(px, t["center"].reshape(*shape, 2), t["box_size"].reshape(shape))

    return project


def _kept_spread(alt: Tensor, keep: Tensor, weight: Tensor, gt: Tensor) -> Tensor:
    """Weighted mean distance (m) of the kept draws ``(B, D, 17, 3)`` (weights ``(B, D)``) and the
    ground truth ``(B, 17, 3)`` (weight 1, as in the detector's heatmaps) from their mean ``(B, 17)``."""
    points = torch.cat([alt, gt[:, None]], 1)
    w = torch.cat([keep * weight[..., None].to(alt), torch.ones_like(alt[:, :1, :, 0])], 1)[..., None]
    mean = (points * w).sum(1) / w.sum(1)
    return ((points - mean[:, None]).norm(dim=-1) * w[..., 0]).sum(1) / w[..., 0].sum(1)


def alternative_spread(
    a: Arrays,
    config,
    body,
    frames: Sequence[int] | np.ndarray,
    num_draws: int = 1024,
    generator: torch.Generator | None = None,
    conditional: Conditional | None = None,
    min_kept: int = 5,
    batch: int = 16,
) -> dict[str, float]:
    """3D spread (mm) of the alternative poses the image allows, visible vs hidden keypoints.

    Args:
        a: a split's arrays; config: its :class:`~humr.data.synthetic.SyntheticConfig`;
            body: the Anny body model it was made with.
        frames: frame indices to measure.
        num_draws: draws per limb and frame; generator: the random source.
        conditional: the law of the redrawn rotations (default: the pose prior's conditional);
            the earlier generator's independent prior can be passed to measure it.
        min_kept: a keypoint enters the figures only if this many draws were kept (the share
            that did is reported as ``*_measured``).
        batch: frames per batch (memory).

    Returns:
        ``visible_mm`` / ``hidden_mm`` (median over keypoints of the class), their means,
        ``*_measured`` (share with at least ``min_kept`` kept draws) and ``*_kept`` (median kept
        share of the draws).
    """
    from humr.data.pose_prior import default_prior
    from humr.data.synthetic import hidden_in_image

    if conditional is None:
        def conditional(rotvec: Tensor, redraw: Tensor, n: int, g: torch.Generator | None):
            return default_prior().conditional(rotvec, redraw, n, g, top=config.alternative_components)
    draw = conditional
    frames = np.asarray(frames, dtype=np.int64)
    results: dict[str, list[Tensor]] = {k: [] for k in ("visible", "hidden", "visible_kept", "hidden_kept")}
    limb_kp = torch.zeros(len(dsim.CHAINS), 17, dtype=torch.bool)
    for c in _LIMB_CHAINS:
        limb_kp[c, list(dsim.CHAINS[c][0])] = True
    articulated = torch.from_numpy(_ARTICULATED)
    for start in range(0, len(frames), batch):
        t = _frame_tensors(a, frames[start : start + batch], body)
        vis = t["visible"]
        masks = [("hidden", dsim.resample_mask(vis), ~vis & articulated)]
        for c in _LIMB_CHAINS:  # every fully visible limb on its own
            whole = (vis | ~limb_kp[c]).all(-1)
            masks.append(("visible", dsim.chain_mask([c]).expand(len(vis), -1), whole[:, None] & limb_kp[c]
                          & articulated))
        for name, redraw, wanted in masks:
            rows = torch.nonzero(wanted.any(-1)).flatten()
            if rows.numel() == 0:
                continue
            sub = {k: v[rows] for k, v in t.items()}
            draws, weight = draw(sub["rotvec"], redraw[rows], num_draws, generator)
            alt, keep = dsim.limb_alternatives(
                sub["pose"], sub["joints"], sub["keypoints"], redraw[rows], draws, _to_crop(sub),
                lambda p, occ=sub["occluder"]: hidden_in_image(occ, p, 1.0), config.visible_tolerance,
            )
            spread = _kept_spread(alt, keep, weight, sub["keypoints"])
            kept = keep.sum(1)
            sel = wanted[rows]
            results[name].append(torch.where(kept[sel] >= min_kept, spread[sel] * 1000, torch.nan))
            results[name + "_kept"].append(kept[sel].float() / num_draws)
    out: dict[str, float] = {}
    for name in ("visible", "hidden"):
        v = torch.cat(results[name]) if results[name] else torch.zeros(0)
        ok = ~torch.isnan(v)
        out[f"{name}_mm"] = float(v[ok].median()) if ok.any() else float("nan")
        out[f"{name}_mean_mm"] = float(v[ok].mean()) if ok.any() else float("nan")
        out[f"{name}_measured"] = float(ok.float().mean()) if v.numel() else float("nan")
        kept = torch.cat(results[name + "_kept"]) if results[name + "_kept"] else torch.zeros(0)
        out[f"{name}_kept"] = float(kept.median()) if kept.numel() else float("nan")
        out[f"{name}_count"] = float(v.numel())
    out["ratio"] = out["hidden_mm"] / out["visible_mm"]
    return out


def _histogram_lines(shares: np.ndarray, width: int = 40) -> list[str]:
    edges = np.linspace(0, 1, len(shares) + 1)
    return [f"    [{lo:.1f}, {hi:.1f}) {100 * s:5.1f}% {'#' * int(round(width * s))}"
            for s, lo, hi in zip(shares, edges[:-1], edges[1:])]


def format_report(split: str, a: Arrays, depth: Mapping[str, float] | None = None) -> str:
    """The statistics of a split as printable lines (shares, spreads, confidence histograms)."""
    n = len(a["pose"])
    sh = occlusion_shares(a)
    sp = sample_spread_summary(a)
    vis = np.asarray(a["keypoints_2d_visible"])
    conf = np.asarray(a["detector_keypoints"])[..., 2]
    short = [n[5:].replace("left_", "l_").replace("right_", "r_") for n in COCO17_NAMES]
    kinds = " ".join(f"{k[7:]} {100 * v:.1f}%" for k, v in sh.items() if k.startswith("object_")
                     and k not in ("object_occluder", "object_occluded"))
    lines = [
        f"== {split}: {n} frames",
        f"  frames: second person {100 * sh['person_occluder']:.1f}%, object drawn "
        f"{100 * sh['object_occluder']:.1f}% ({kinds}), object-occluded {100 * sh['object_occluded']:.1f}%, "
        f"truncated {100 * sh['truncated']:.1f}%, "
        f"with a hidden joint {100 * sh['any_hidden']:.1f}%",
        f"  mask valid {100 * sh['mask_valid']:.1f}% of frames",
        f"  hidden joints {100 * sh['hidden']:.1f}% (occluded in the crop {100 * sh['occluded']:.1f}%, "
        f"outside the crop {100 * sh['outside_crop']:.1f}%); articulated "
        f"{100 * sh['hidden_articulated']:.1f}%; ambiguous (articulated, in crop, peak < 0.7) "
        f"{100 * sh['ambiguous']:.1f}% of all joints",
        "  hidden share per joint: " + " ".join(f"{short[k]} {100 * sh['hidden_per_joint'][k]:.0f}%"
                                                for k in range(17)),
        f"  heatmap sample spread (median, crop units): hidden {sp['hidden']:.3f} / visible "
        f"{sp['visible']:.3f} "
        f"= {sp['ratio']:.2f}x; articulated {sp['hidden_articulated']:.3f} / {sp['visible_articulated']:.3f} "
        f"= {sp['ratio_articulated']:.2f}x",
        f"  kept alternative draws per hidden joint: median "
        f"{np.median(np.asarray(a['accepted_draws'])[~vis]) if (~vis).any() else 0:.0f}",
    ]
    if depth is not None:
        lines.append(
            f"  alternative 3D spread (articulated, median mm): visible {depth['visible_mm']:.1f} / hidden "
            f"{depth['hidden_mm']:.1f} (= {depth['ratio']:.2f}x; means {depth['visible_mean_mm']:.1f} / "
            f"{depth['hidden_mean_mm']:.1f}; measured {100 * depth['visible_measured']:.0f}% / "
            f"{100 * depth['hidden_measured']:.0f}% of {depth['visible_count']:.0f} / "
            f"{depth['hidden_count']:.0f})")
    lines += ["  peak confidence of visible joints:", *_histogram_lines(confidence_histogram(conf[vis])),
              "  peak confidence of hidden joints:", *_histogram_lines(confidence_histogram(conf[~vis]))]
    return "\n".join(lines)


def contact_sheet(a: Arrays, config, path: str, count: int) -> None:
    """A PNG of ``count`` frames: crop with keypoints (visible green, hidden red), union mask,
    and the hidden joints' heatmaps with their samples (frames with hidden joints first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vis_all = np.asarray(a["keypoints_2d_visible"])
    order = np.argsort(vis_all.sum(1), kind="stable")
    first = np.concatenate([order[: count // 2 + count % 2], np.arange(len(order))[: count // 2]])
    picks = np.unique(first)[:count]
    fig, axes = plt.subplots(len(picks), 3, figsize=(9, 3 * len(picks)))
    axes = np.atleast_2d(axes)
    ext = config.render_size / config.image_size
    hw = (config.detector_padding, config.detector_padding * 4 / 3)
    for row, i in enumerate(picks):
        img = np.asarray(a["image"][i]).transpose(1, 2, 0)
        kp, vis = np.asarray(a["keypoints_2d"][i]), vis_all[i]
        flags = [name for name, key in (("person", "person_occluder"), ("object", "object_occluded"),
                                        ("truncated", "truncated")) if bool(a[key][i])]
        ax = axes[row, 0]
        ax.imshow(img, extent=(-1, 1, 1, -1))
        ax.scatter(kp[vis, 0], kp[vis, 1], s=12, c="lime", edgecolors="k", linewidths=0.5)
        ax.set_title(f"#{i} {' '.join(flags) or 'clear'}", fontsize=8)
        ax = axes[row, 1]
        ax.imshow(np.asarray(a["distance_map"][i]).astype(np.float32) == 0, cmap="gray",
                  extent=(-ext, ext, ext, -ext))
        ax.set_title("union person mask, crop box", fontsize=8)
        ax = axes[row, 2]
        hm = np.asarray(a["heatmaps"][i]).astype(np.float32) / 255.0
        shown = hm[~vis].max(0) if (~vis).any() else np.zeros(hm.shape[1:])
        ax.imshow(img, extent=(-1, 1, 1, -1), alpha=0.5)
        ax.imshow(shown, extent=(-hw[0], hw[0], hw[1], -hw[1]), cmap="magma", alpha=0.7, vmin=0, vmax=0.5)
        smp = np.asarray(a["heatmap_samples"][i])[~vis][:, :40].reshape(-1, 2)
        ax.scatter(smp[:, 0], smp[:, 1], s=2, c="cyan")
        ax.set_title("hidden joints: heatmaps (max), samples, GT x", fontsize=8)
        for col, ax in enumerate(axes[row]):
            lim = ext if col < 2 else hw[0]
            ax.scatter(kp[~vis, 0], kp[~vis, 1], s=14, c="red", marker="x")
            ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], "y-", lw=0.8)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(lim if col < 2 else hw[1], -lim if col < 2 else -hw[1])
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
