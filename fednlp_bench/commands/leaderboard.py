"""`fednlp-bench leaderboard`: records -> per-task Markdown/CSV tables, curves and README.

Building never trains anything; ``--verify RUN_ID`` additionally re-runs one
record from its stored config and checks it reproduces within ``--tolerance``.
"""

from __future__ import annotations

import argparse
import sys
import warnings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard",
        help="build leaderboard tables (Markdown + CSV + plots) from run records",
        description="Read every record.json under --runs, validate them, and write per-task tables, "
        "metric-vs-round plots and a README to --out. With --verify, also re-run one record and check it "
        "reproduces.",
    )
    parser.add_argument("--runs", default="runs", help="folder searched recursively for record.json (default: runs)")
    parser.add_argument("--out", default="leaderboards", help="output folder (default: leaderboards)")
    parser.add_argument("--verify", metavar="RUN_ID_OR_PATH",
                        help="re-run this record (run id under --runs, run folder or record.json) and compare")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="absolute tolerance for --verify (default 1e-6: same machine, deterministic CPU run; "
                        "use e.g. 1e-3 across machines)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="warn about and leave out invalid records instead of refusing to build")
    parser.add_argument("--skip-duplicates", action="store_true",
                        help="keep the first of two records with the same config hash and seed (default: refuse)")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG curves")
    parser.add_argument("--suite", default="configs/suite.yaml",
                        help="suite file named in the README's regenerate section (default: configs/suite.yaml)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fednlp_bench.leaderboard.collect import find_record
    from fednlp_bench.leaderboard.render import write_leaderboard
    from fednlp_bench.leaderboard.verify import DEFAULT_TOLERANCE, save_verification, verify_record

    if args.tolerance is not None and args.verify is None:
        raise ValueError("--tolerance only applies to --verify RUN_ID")
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance >= 0:
        raise ValueError(f"--tolerance {tolerance!r} must be a non-negative number, e.g. 1e-6")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        output = write_leaderboard(args.runs, args.out, skip_invalid=args.skip_invalid,
                                   skip_duplicates=args.skip_duplicates, plots=not args.no_plots,
                                   suite_label=args.suite)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    cells = sum(len(t.cells) for t in output.tables)
    print(f"{len(output.records)} records -> {len(output.tables)} table(s), {cells} cells; wrote "
          f"{len(output.files)} files to {args.out}")
    for table in output.tables:
        print(f"  {table.task}: data {table.data}, model {table.model}, {len(table.rows)} partitions x "
              f"{len(table.columns)} algorithms, {len(table.records)} records")
    if args.verify is None:
        return 0

    item = find_record(args.runs, args.verify)
    result = verify_record(item, tolerance=tolerance)
    print(result.report())
    save_verification(result, args.out)
    # Rewrite the README so its verification section includes this result.
    write_leaderboard(args.runs, args.out, plots=False, suite_label=args.suite, records=output.records)
    return 0 if result.passed else 1
