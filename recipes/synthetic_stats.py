"""Statistics and a contact sheet of the embedded synthetic data set.

    python recipes/synthetic_stats.py                      # the default set (2000 train + 500 test)
    python recipes/synthetic_stats.py --num-train 64 --num-test 32 --out sheet.png

Builds (or reuses) the cached set and prints per split what :mod:`humr.data.synthetic_stats`
measures: occluder and mask shares, hidden joints, the heatmap-sample spread of hidden against
visible joints, and on the test split the 3D spread of the alternative limb poses the images
allow (visible against hidden joints); then writes a contact sheet PNG of the sheet split.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
import torch

from humr.data.synthetic import SyntheticConfig, ensure_split, generator_body, load_split
from humr.data.synthetic_stats import alternative_spread, contact_sheet, format_report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--num-train", type=int, default=SyntheticConfig.num_train)
    parser.add_argument("--num-test", type=int, default=SyntheticConfig.num_test)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=None, help="cache root (default ~/.cache/humr/synthetic)")
    parser.add_argument("--workers", type=int, default=None, help="generation processes (default 2)")
    parser.add_argument("--out", default="synthetic_contact_sheet.png", help="contact sheet PNG")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--sheet-split", default="test", choices=("train", "test"))
    parser.add_argument(
        "--depth-frames", type=int, default=100, help="test frames for the 3D spread (0: skip)"
    )
    args = parser.parse_args()

    config = replace(SyntheticConfig(), num_train=args.num_train, num_test=args.num_test, seed=args.seed)
    for split in (s for s in ("train", "test") if config.num_frames(s)):
        t0 = time.perf_counter()
        directory = ensure_split(config, split, args.root, workers=args.workers)
        print(f"{split}: {directory} ready in {time.perf_counter() - t0:.1f} s")
    for split in (s for s in ("train", "test") if config.num_frames(s)):
        arrays = load_split(config, split, args.root, progress=False)
        depth = None
        if split == "test" and args.depth_frames > 0:
            frames = np.arange(min(args.depth_frames, config.num_frames(split)))
            body = generator_body(config.render_mesh)
            g = torch.Generator().manual_seed(0)
            depth = alternative_spread(arrays, config, body, frames, generator=g)
        print(format_report(split, arrays, depth))
        if split == args.sheet_split:
            contact_sheet(arrays, config, args.out, args.examples)
            print(f"contact sheet: {args.out}")


if __name__ == "__main__":
    main()
