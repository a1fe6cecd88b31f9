"""Predict 3D body hypotheses for the people in a folder of images (``humr.inference``).

Give the person boxes as a JSON (``[{"image": "a.jpg", "box": [x0, y0, x1, y1]}, ...]`` or
``{"a.jpg": [[x0, y0, x1, y1], ...]}``) or a CSV (``image,x0,y0,x1,y1`` per line); detection is
not part of humr. ViTPose is read from a local ``transformers`` checkpoint directory (never
downloaded). Writes ``OUT/predictions.npz`` (per person N hypotheses: rotations, axis-angle,
log-likelihood, shape, camera, translation, keypoints) and pictures in ``OUT/plots``;
``--export npz,obj,glb`` adds ``OUT/hypotheses.npz`` (humr.export's documented keys, per-joint
spread, the hypothesis chosen without ground truth) and meshes in ``OUT/meshes`` coloured by
their spread. A missing or corrupt image is skipped and reported; the run then ends with a
summary and exit status 1 (the others are written).

    python recipes/predict.py runs/paper_full/checkpoints/last.ckpt --images photos \
        --boxes photos/boxes.csv --vitpose checkpoints/vitpose-plus-huge --out predictions \
        --export npz,glb
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from humr.inference import EXPORT_FORMATS, predict_folder


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", type=Path, help="a humr checkpoint (training's checkpoints/last.ckpt)")
    parser.add_argument("--images", type=Path, required=True, help="folder the box file's image names are in")
    parser.add_argument("--boxes", type=Path, required=True, help="JSON or CSV of image, x0, y0, x1, y1")
    parser.add_argument(
        "--vitpose", type=Path, required=True, help="local transformers ViTPose checkpoint dir"
    )
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--num-hypotheses", type=int, default=100, help="per person, the mode first")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--encoder-checkpoint",
        type=Path,
        default=None,
        help="HRNet-W48 weights, for models trained on cached features",
    )
    parser.add_argument(
        "--body-model-dir",
        type=Path,
        default=None,
        help="body model files, if not where the checkpoint's config says",
    )
    parser.add_argument(
        "--focal", type=float, default=None, help="focal length in pixels (default sqrt(W^2+H^2))"
    )
    parser.add_argument("--box-scale", type=float, default=1.2, help="square crop side / longer box side")
    parser.add_argument("--no-plots", action="store_true", help="write no pictures")
    parser.add_argument("--no-mesh-plots", action="store_true", help="only the joint-hypothesis pictures")
    parser.add_argument(
        "--export",
        default="",
        help=f"comma-separated formats among {','.join(EXPORT_FORMATS)} (e.g. npz,glb)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    export = [f.strip() for f in args.export.split(",") if f.strip()]
    bad = [f for f in export if f not in EXPORT_FORMATS]
    if bad:
        parser.error(f"--export: unknown formats {bad}; choose among {', '.join(EXPORT_FORMATS)}")
    run = predict_folder(
        image_dir=args.images,
        boxes=args.boxes,
        checkpoint=args.checkpoint,
        vitpose_dir=args.vitpose,
        out_dir=args.out,
        num_hypotheses=args.num_hypotheses,
        batch_size=args.batch_size,
        encoder_checkpoint=args.encoder_checkpoint,
        body_model_path=args.body_model_dir,
        focal=args.focal,
        box_scale=args.box_scale,
        plots=not args.no_plots,
        mesh_plots=not args.no_mesh_plots,
        export=export,
        seed=args.seed,
        device=args.device,
    )
    with np.load(run.npz) as result:
        print(f"{len(result['image'])} persons, {result['rotmat'].shape[1]} hypotheses each -> {run.npz}")
    if run.exports:
        print(f"exported {len(run.exports)} files ({', '.join(export)}) to {Path(args.out)}")
    if run.failed:
        print(run.summary(), file=sys.stderr)
        raise SystemExit(1)
    return run.npz


if __name__ == "__main__":
    main()
