"""Statistics and a contact sheet of the embedded synthetic data set.

    python recipes/synthetic_stats.py                      # the default set (2000 train + 500 test)
    python recipes/synthetic_stats.py --num-train 64 --num-test 32 --out sheet.png

Builds (or reuses) the cached set, prints per split the share of occluded / truncated /
ambiguous joints, peak-confidence histograms of visible and occluded joints and the
object-occluded share, then writes a contact sheet PNG: per example the crop with its
keypoints (visible: green, hidden: red), the union person mask, and the heatmaps of the
hidden joints with their samples.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from humr.data.synthetic import SyntheticConfig, ensure_split, load_split

ARTICULATED = (7, 8, 9, 10, 13, 14, 15, 16)  # elbows, wrists, knees, ankles (paper Sec. 4.5)
NAMES = ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_sho", "r_sho", "l_elb", "r_elb", "l_wri", "r_wri",
         "l_hip", "r_hip", "l_kne", "r_kne", "l_ank", "r_ank")


def histogram(values: np.ndarray, bins: int = 10, width: int = 40) -> str:
    counts, edges = np.histogram(values, bins=bins, range=(0.0, 1.0))
    total = max(1, counts.sum())
    lines = []
    for c, lo, hi in zip(counts, edges[:-1], edges[1:]):
        bar = "#" * int(round(width * c / total))
        lines.append(f"    [{lo:.1f}, {hi:.1f}) {100 * c / total:5.1f}% {bar}")
    return "\n".join(lines)


def statistics(a: dict[str, np.ndarray], split: str) -> str:
    vis = np.asarray(a["keypoints_2d_visible"])
    conf = np.asarray(a["detector_keypoints"])[..., 2]
    kp = np.asarray(a["keypoints_2d"])
    in_crop = (np.abs(kp) < 1).all(-1)
    n = vis.shape[0]
    art = np.zeros(17, bool)
    art[list(ARTICULATED)] = True
    uncertain = conf < 0.7
    ambiguous = uncertain & in_crop & art  # heatmap samples feed the MMD loss (paper Sec. 4.5)
    samples = np.asarray(a["heatmap_samples"])
    spread = np.linalg.norm(samples - samples.mean(-2, keepdims=True), axis=-1).mean(-1)  # (N, 17)
    # heatmap density at the ground truth of hidden joints, relative to the heatmap's peak
    hm = np.asarray(a["heatmaps"]).astype(np.float32) / 255.0
    out = [f"== {split}: {n} frames",
           f"  second person in front   {100 * np.mean(a['person_occluder']):5.1f}% of frames",
           f"  object drawn             {100 * np.mean(a['object_occluder']):5.1f}% of frames",
           f"  object-occluded (flag)   {100 * np.mean(a['object_occluded']):5.1f}% of frames",
           f"  mask valid               {100 * np.mean(a['mask_valid']):5.1f}% of frames",
           f"  truncated (kp off crop)  {100 * np.mean(a['truncated']):5.1f}% of frames",
           f"  hidden joints            {100 * np.mean(~vis):5.1f}% (occluded in the crop "
           f"{100 * np.mean(~vis & in_crop):.1f}%, outside the crop {100 * np.mean(~in_crop):.1f}%)",
           f"  ambiguous joints         {100 * ambiguous[:, art].mean():5.1f}% of elbows/wrists/knees/ankles "
           f"(max confidence < 0.7, GT in crop)",
           f"  frames with an ambiguous joint {100 * ambiguous.any(1).mean():5.1f}%",
           f"  heatmap sample spread (mean distance to their mean, crop units): visible "
           f"{spread[vis].mean():.3f}, hidden {spread[~vis].mean() if (~vis).any() else float('nan'):.3f}",
           f"  kept alternative draws per hidden joint: median "
           f"{np.median(a['accepted_draws'][~vis]) if (~vis).any() else 0:.0f}",
           "  hidden share per joint: " + " ".join(f"{NAMES[k]} {100 * np.mean(~vis[:, k]):.0f}%"
                                                   for k in range(17)),
           "  peak confidence of visible joints:", histogram(conf[vis]),
           "  peak confidence of hidden joints:", histogram(conf[~vis])]
    if (~vis & in_crop).any():
        det = np.asarray(a["detector_keypoints"])
        cells = _gt_cells(a)
        f, k = np.nonzero(~vis & in_crop)
        at_gt = hm[f, k, cells[f, k, 1], cells[f, k, 0]] / np.maximum(conf[f, k], 1e-6)
        out.append(f"  hidden joints in the crop: heatmap at the GT / peak: median {np.median(at_gt):.2f}, "
                   f"share above 0.05: {100 * np.mean(at_gt > 0.05):.1f}%; detector pose error "
                   f"{np.linalg.norm(det[f, k, :2] - kp[f, k], axis=-1).mean():.3f} vs visible "
                   f"{np.linalg.norm(det[..., :2][vis] - kp[vis], axis=-1).mean():.3f} crop units")
    return "\n".join(out)


def _gt_cells(a: dict[str, np.ndarray]) -> np.ndarray:
    """Heatmap cell ``(j, i)`` of each ground-truth keypoint ``(N, 17, 2)`` (the detector crop layout)."""
    cfg = a["_config"]
    w, h = cfg.heatmap_size
    half = np.array([cfg.detector_padding, cfg.detector_padding * 4 / 3])  # detector crop half size
    kp = np.asarray(a["keypoints_2d"])
    xy = (kp + half) / (2 * half) * np.array([w, h]) - 0.5
    return np.clip(np.round(xy), 0, [w - 1, h - 1]).astype(int)


def contact_sheet(a: dict[str, np.ndarray], config: SyntheticConfig, path: str, count: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vis_all = np.asarray(a["keypoints_2d_visible"])
    # prefer frames with hidden joints, they are the interesting ones
    order = np.argsort(vis_all.sum(1), kind="stable")
    picks = np.sort(np.concatenate([order[: count // 2 + count % 2], np.arange(len(order))[: count // 2]]))
    picks = np.unique(picks)[:count]
    fig, axes = plt.subplots(len(picks), 3, figsize=(9, 3 * len(picks)))
    axes = np.atleast_2d(axes)
    ext = config.render_size / config.image_size
    hw = (config.detector_padding, config.detector_padding * 4 / 3)
    for row, i in enumerate(picks):
        img = np.asarray(a["image"][i]).transpose(1, 2, 0)
        kp = np.asarray(a["keypoints_2d"][i])
        vis = vis_all[i]
        ax = axes[row, 0]
        ax.imshow(img, extent=(-1, 1, 1, -1))
        ax.scatter(kp[vis, 0], kp[vis, 1], s=12, c="lime", edgecolors="k", linewidths=0.5)
        ax.scatter(kp[~vis, 0], kp[~vis, 1], s=14, c="red", marker="x")
        ax.set_xlim(-ext, ext)
        ax.set_ylim(ext, -ext)
        flags = [name for name, key in (("person", "person_occluder"), ("object", "object_occluded"),
                                        ("truncated", "truncated")) if bool(a[key][i])]
        ax.set_title(f"#{i} {' '.join(flags) or 'clear'}", fontsize=8)
        ax = axes[row, 1]
        dmap = np.asarray(a["distance_map"][i]).astype(np.float32)
        ax.imshow(dmap == 0, cmap="gray", extent=(-ext, ext, ext, -ext))
        ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], "y-", lw=0.8)
        ax.scatter(kp[~vis, 0], kp[~vis, 1], s=14, c="red", marker="x")
        ax.set_xlim(-ext, ext)
        ax.set_ylim(ext, -ext)
        ax.set_title("union person mask, crop box", fontsize=8)
        ax = axes[row, 2]
        hm = np.asarray(a["heatmaps"][i]).astype(np.float32) / 255.0
        shown = hm[~vis].max(0) if (~vis).any() else np.zeros(hm.shape[1:])
        ax.imshow(img, extent=(-1, 1, 1, -1), alpha=0.5)
        ax.imshow(shown, extent=(-hw[0], hw[0], hw[1], -hw[1]), cmap="magma", alpha=0.7, vmin=0, vmax=0.5)
        smp = np.asarray(a["heatmap_samples"][i])[~vis][:, :40].reshape(-1, 2)
        ax.scatter(smp[:, 0], smp[:, 1], s=2, c="cyan")
        ax.scatter(kp[~vis, 0], kp[~vis, 1], s=14, c="red", marker="x")
        ax.plot([-1, 1, 1, -1, -1], [-1, -1, 1, 1, -1], "y-", lw=0.8)
        ax.set_xlim(-hw[0], hw[0])
        ax.set_ylim(hw[1], -hw[1])
        ax.set_title("hidden joints: heatmaps (max), samples, GT x", fontsize=8)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-train", type=int, default=SyntheticConfig.num_train)
    parser.add_argument("--num-test", type=int, default=SyntheticConfig.num_test)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="cache root (default ~/.cache/humr/synthetic)")
    parser.add_argument("--workers", type=int, default=None, help="generation processes (default 2)")
    parser.add_argument("--out", default="synthetic_contact_sheet.png", help="contact sheet PNG")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--sheet-split", default="test", choices=("train", "test"))
    args = parser.parse_args()

    config = replace(SyntheticConfig(), num_train=args.num_train, num_test=args.num_test, seed=args.seed)
    for split in ("train", "test"):
        if config.num_frames(split) == 0:
            continue
        t0 = time.perf_counter()
        directory = ensure_split(config, split, args.root, workers=args.workers)
        print(f"{split}: {directory} ready in {time.perf_counter() - t0:.1f} s")
    for split in ("train", "test"):
        if config.num_frames(split) == 0:
            continue
        arrays = dict(load_split(config, split, args.root, progress=False))
        arrays["_config"] = config
        print(statistics(arrays, split))
        if split == args.sheet_split:
            contact_sheet(arrays, config, args.out, args.examples)
            print(f"contact sheet: {args.out}")


if __name__ == "__main__":
    main()
