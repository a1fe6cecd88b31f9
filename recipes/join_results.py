"""One table from ablation rows trained in separate processes or on separate machines.

    python recipes/ablation_table3.py --seeds 0,1 --rows table3_3 --output-dir runs/a   # process 1
    python recipes/ablation_table3.py --seeds 0,1 --rows table3_4 --output-dir runs/b   # process 2
    python recipes/join_results.py runs/a runs/b --out runs/table3 --compare "+ RealNVP>+ L_MMD"

Prints the mean±std table, writes ``<out>/results.json`` and ``<out>/rows.png``; each
``--compare "BEFORE>AFTER"`` prints the change of the ablation metrics and whether it exceeds
one standard deviation. ``--run "LABEL=DIR"`` adds a single run (e.g. the main job as the full
model's row). Rows of different data seeds are refused: join each data seed on its own.
"""

import argparse
from pathlib import Path

from humr.eval.accumulator import format_table
from humr.eval.seeds import aggregate_rows
from humr.experiment.join import compare_rows, join_results
from humr.experiment.recipe import report_seeded_rows

COMPARED = ("mpjpe_mode", "mpjpe_best", "pve_best", "spread_vis", "spread_invis", "perc_in", "min_dist")


def _pair(text: str, sep: str, flag: str) -> tuple[str, str]:
    left, found, right = text.partition(sep)
    if not found or not left.strip() or not right.strip():
        raise SystemExit(f"{flag} {text!r}: expected 'A{sep}B'")
    return left.strip(), right.strip()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="*", help="ablation output folders (or their results.json)")
    parser.add_argument("--run", action="append", default=[], metavar="LABEL=DIR",
                        help="a single run as a row")
    parser.add_argument("--out", type=Path, help="folder for results.json and rows.png")
    parser.add_argument("--compare", action="append", default=[], metavar="BEFORE>AFTER")
    args = parser.parse_args()
    try:
        per_seed = join_results(args.folders, dict(_pair(r, "=", "--run") for r in args.run))
        table = aggregate_rows(per_seed)
        comparisons = [(b, a, compare_rows(table, b, a, COMPARED))
                       for b, a in (_pair(c, ">", "--compare") for c in args.compare)]
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"join_results: {err}") from None
    seeds = ",".join(str(s) for s in sorted({s for runs in per_seed.values() for s in runs}))
    title = f"mean±std over seeds {seeds}"
    if args.out is not None:
        report_seeded_rows(per_seed, args.out, title)  # prints the table, writes results.json, rows.png
    else:
        print(format_table(table, title=title))
    for before, after, changes in comparisons:
        print(f"{after} vs {before}: " + "; ".join(
            f"{k} {d:+.2f}{' (>1 std)' if sep else ''}" for k, d, sep in changes))
    if args.out is not None:
        print(f"results in {args.out}")


if __name__ == "__main__":
    main()
