r"""Cache frozen HRNet-W48 features of the unaugmented crops of a real data set, resumable.

The paper freezes the BEDLAM-CLIFF backbone (Sec. 4.5); without image augmentation its output
per crop never changes, so it can be computed once (``humr.data.precompute.precompute_features``).
Features ``(720,)`` per annotation row go to a memory-mapped store under ``<out>/<data set>/``;
an interrupted run resumes where it stopped. Train with ``--data.features_dir <out>
--data.augment false --model.encoder features``.

    python recipes/precompute_features.py --data-root data --dataset agora-bfh 3dpw-test-cam \
        --checkpoint data/ckpt/bedlam_cliff_3dpw_ft_backbone.pth --out data/features
"""

from __future__ import annotations

import argparse
from pathlib import Path

from humr.data.bedlam_cliff import PRESET_KEYS, BedlamCliffDataset, FilterConfig, preset
from humr.data.precompute import precompute_features


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-root", type=Path, required=True, help="the reference's data/ directory")
    parser.add_argument(
        "--dataset",
        nargs="+",
        required=True,
        choices=PRESET_KEYS,
        metavar="KEY",
        help="data-set keys (BEDLAM scenes, agora-bfh, 3dpw-test-cam, emdb-p1, ...)",
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="BEDLAM-CLIFF HRNet-W48 weights")
    parser.add_argument("--out", type=Path, required=True, help="stores go to OUT/<data set>")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--crop-size", type=int, default=224)
    parser.add_argument("--no-filter", action="store_true", help="also cache rows the training filter drops")
    args = parser.parse_args(argv)
    from humr.model.encoders import HRNetW48Encoder, load_hrnet_checkpoint

    encoder = HRNetW48Encoder()
    load_hrnet_checkpoint(encoder, args.checkpoint)
    encoder.to(args.device)
    for key in args.dataset:
        spec = preset(key, args.data_root, samples=None, features=None)
        data = BedlamCliffDataset(
            spec, crop_size=args.crop_size, filter=FilterConfig(enabled=not args.no_filter)
        )
        store = precompute_features(dataset=data, encoder=encoder, out_dir=args.out / spec.name,
                                    batch_size=args.batch_size, num_workers=args.num_workers)
        print(f"{spec.name}: {int(store.done().sum())} / {store.num_rows} rows in {store.root}")


if __name__ == "__main__":
    main()
