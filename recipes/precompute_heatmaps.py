r"""Precompute ViTPose heatmap samples for a real data set (paper Sec. 4.5), resumable.

For every annotation row: crop the ground-truth box expanded to ViTPose's 3:4 aspect, run
ViTPose from a local ``transformers`` checkpoint directory (never downloaded), draw 150 samples
per COCO joint with their cell confidence and distance to the union person mask, and store the
highest-likelihood pose (``humr.data.precompute.precompute_heatmaps``). Stores go to
``<out>/<data set>/``; rows already stored are skipped, so an interrupted run resumes.

    python recipes/precompute_heatmaps.py --data-root data --dataset agora-bfh \
        --vitpose checkpoints/vitpose-plus-huge --out data/humr_samples
    python recipes/precompute_heatmaps.py --data-root data --dataset all --vitpose DIR --out DIR

Train with ``--data.samples_dir <out>`` (``humr.experiment.real_data`` finds each store).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from humr.data.bedlam_cliff import PRESET_KEYS, TRAIN_KEYS, preset
from humr.data.precompute import HeatmapPrecomputeConfig, load_vitpose, precompute_heatmaps


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, required=True, help="the reference's data/ directory")
    parser.add_argument(
        "--dataset",
        nargs="+",
        default=["all"],
        choices=("all", *PRESET_KEYS),
        metavar="KEY",
        help="data-set keys (BEDLAM scenes, agora-bfh, agora-body, 3dpw-train-smplx, ...) or "
        "'all' (every training set)",
    )
    parser.add_argument(
        "--vitpose", type=Path, required=True, help="local transformers ViTPose checkpoint dir"
    )
    parser.add_argument("--out", type=Path, required=True, help="stores go to OUT/<data set>")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-samples", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--convention", choices=("center", "udp"), default="center")
    args = parser.parse_args(argv)
    keys = [k for name in args.dataset for k in (TRAIN_KEYS if name == "all" else (name,))]
    model = load_vitpose(args.vitpose, args.device)
    config = HeatmapPrecomputeConfig(
        num_samples=args.num_samples, batch_size=args.batch_size, seed=args.seed, convention=args.convention
    )
    for key in keys:
        spec = preset(key, args.data_root)
        store = precompute_heatmaps(spec=spec, model=model, out_dir=args.out / spec.name, config=config,
                                    model_dir=args.vitpose)
        print(f"{spec.name}: {int(store.done().sum())} / {store.num_rows} rows in {store.root}")


if __name__ == "__main__":
    main()
