"""`fednlp-bench suite SUITE.yaml`: run a benchmark grid (skipping recorded runs), then build the leaderboard."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "suite",
        help="run a benchmark suite (grid of configs) and build its leaderboard",
        description="Expand the suite YAML (base config x tasks x partitions x algorithms x seeds), validate "
        "every config, run the ones without a record in --runs-dir, then build the leaderboard in --out.",
    )
    parser.add_argument("suite", help="suite YAML, e.g. configs/suite.yaml")
    parser.add_argument("--runs-dir", default=None,
                        help="where records are written and looked up (default: the suite's runs_dir, "
                        "else leaderboards/records)")
    parser.add_argument("--out", default=None,
                        help="leaderboard output folder (default: the suite's out, else leaderboards)")
    parser.add_argument("--dry-run", action="store_true", help="validate and list the runs to do; run nothing")
    parser.add_argument("--no-leaderboard", action="store_true", help="only run; do not build tables")
    parser.add_argument("--no-plots", action="store_true", help="build tables without PNG curves")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from fednlp_bench.leaderboard.render import write_leaderboard
    from fednlp_bench.leaderboard.suite import load_suite, run_suite

    suite = load_suite(args.suite)
    runs_dir = args.runs_dir or suite.runs_dir
    out = args.out or suite.out
    try:
        run_suite(suite, runs_dir, dry_run=args.dry_run)
    except RuntimeError as err:
        print(f"fednlp-bench suite: error: {err}", file=sys.stderr)
        return 1
    if args.dry_run or args.no_leaderboard:
        return 0
    output = write_leaderboard(runs_dir, out, plots=not args.no_plots, suite_label=args.suite)
    print(f"leaderboard: {len(output.records)} records -> {len(output.tables)} table(s) in {out}")
    return 0
