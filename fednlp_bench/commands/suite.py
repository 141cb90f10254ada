"""`fednlp-bench suite SUITE.yaml`: run a benchmark grid (skipping recorded runs), then build the leaderboard.

A two-stage (tier) suite runs tuning, selection and the final seeds
(``--stage``), in chunks if need be (``--task``, ``--max-runs``); see
fednlp_bench/suite/stages.py and docs/leaderboard.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from typing import TYPE_CHECKING
from fednlp_bench.scalars import integer

if TYPE_CHECKING:
    from fednlp_bench.suite.spec import Suite


def register(subparsers: argparse._SubParsersAction) -> None:
    from fednlp_bench.leaderboard.tiers import tier_help

    parser = subparsers.add_parser(
        "suite",
        help="run a benchmark suite (grid of configs) and build its leaderboard",
        description="Expand the suite YAML (base config x tasks x partitions x algorithms x seeds), validate "
        "every config, run the ones without a record in --runs-dir, then build the leaderboard in --out. "
        "A suite with tier/tuning/final sections is run in two stages: tune each algorithm's grid on one seed "
        "(validation split), select, then run the chosen settings over the final seeds; out/plan.json records "
        f"the selection. Tiers: {tier_help()}.",
    )
    parser.add_argument("suite", help="suite YAML, e.g. configs/suite.yaml")
    parser.add_argument("--runs-dir", default=None,
                        help="where records are written and looked up (default: the suite's runs_dir, "
                        "else leaderboards/records)")
    parser.add_argument("--out", default=None,
                        help="leaderboard output folder (default: the suite's out, else leaderboards)")
    parser.add_argument("--stage", default="all", choices=("all", "tune", "final"),
                        help="two-stage suites: tune (grid search on the tuning seed), final (chosen settings over "
                        "the final seeds; needs complete tuning), all (default: tune, select, final, tables)")
    parser.add_argument("--task", action="extend", nargs="+", default=None, metavar="NAME",
                        help="run only these tasks of the suite (e.g. one task per sitting)")
    parser.add_argument("--max-runs", type=integer, default=None, metavar="N",
                        help="stop cleanly after N finished runs; the same command continues later")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate and list the runs to do (and count the final runs); run nothing")
    parser.add_argument("--no-leaderboard", action="store_true", help="only run; do not build tables")
    parser.add_argument("--no-plots", action="store_true", help="build tables without PNG curves")
    parser.set_defaults(func=run)


def _again(args: argparse.Namespace) -> str:
    """The command that continues this one (what the user typed, minus the flags the stages add back)."""
    words = ["fednlp-bench", "suite", args.suite]
    for flag in ("runs_dir", "out"):
        if getattr(args, flag):
            words += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from fednlp_bench.suite.spec import load_suite

    if args.max_runs is not None and args.max_runs < 1:
        raise ValueError(f"--max-runs {args.max_runs} must be a positive integer (runs to finish in this call)")
    suite = load_suite(args.suite)
    runs_dir = args.runs_dir or suite.runs_dir
    out = args.out or suite.out
    from fednlp_bench.commands.leaderboard import check_out_folder

    for flag, folder in (("--runs-dir", runs_dir), ("--out", out)):  # not after hours of runs
        try:
            check_out_folder(folder)
        except ValueError as err:
            raise ValueError(str(err).replace("--out", flag, 1)) from None
    if suite.two_stage:
        return _run_two_stage(args, suite, runs_dir, out)
    if args.stage != "all":
        raise ValueError(f"--stage {args.stage}: {args.suite} has no 'tuning' section, so it has one stage; "
                         "drop --stage (or add tuning and final sections, see docs/leaderboard.md)")
    return _run_one_stage(args, suite, runs_dir, out)


def _run_two_stage(args: argparse.Namespace, suite: Suite, runs_dir: str, out: str) -> int:
    from fednlp_bench.suite.stages import run_two_stage

    try:
        report = run_two_stage(suite, runs_dir, out, stage=args.stage, tasks=args.task, max_runs=args.max_runs,
                               dry_run=args.dry_run, command=_again(args))
    except RuntimeError as err:
        print(f"fednlp-bench suite: error: {err}", file=sys.stderr)
        return 1
    if args.dry_run or args.no_leaderboard or args.stage != "all" or not report.complete:
        return 0
    try:
        from fednlp_bench.leaderboard.tier_tables import write_tier_leaderboard
    except ImportError:
        print("tier tables: not available in this build")
        return 0
    assert report.plan_path is not None
    write_tier_leaderboard(report.plan_path, out)
    print(f"tier tables: written to {out} from {report.plan_path}")
    return 0


def _run_one_stage(args: argparse.Namespace, suite: Suite, runs_dir: str, out: str) -> int:
    from fednlp_bench.leaderboard.render import write_leaderboard
    from fednlp_bench.suite.stages import task_indexes
    from fednlp_bench.suite.spec import run_suite

    if args.task:
        keep = sorted(task_indexes(suite, args.task))
        suite = dataclasses.replace(suite, tasks=[suite.tasks[i] for i in keep],
                                    task_partitions=[suite.task_partitions[i] for i in keep]
                                    if suite.task_partitions else None)
    try:
        ran, skipped = run_suite(suite, runs_dir, dry_run=args.dry_run, max_runs=args.max_runs)
    except RuntimeError as err:
        print(f"fednlp-bench suite: error: {err}", file=sys.stderr)
        return 1
    if args.max_runs is not None and not args.dry_run:
        from fednlp_bench.suite.spec import existing_keys, plan_suite

        left = len({r.key for r in plan_suite(suite)} - existing_keys(runs_dir))
        if left:
            again = _again(args) + "".join(f" --task {t}" for t in args.task or []) + f" --max-runs {args.max_runs}"
            print(f"stopped after {len(ran)} run(s): {left} run(s) remain; continue with: {again}")
            return 0
    if args.dry_run or args.no_leaderboard:
        return 0
    output = write_leaderboard(runs_dir, out, plots=not args.no_plots, suite_label=args.suite)
    print(f"leaderboard: {len(output.records)} records -> {len(output.tables)} table(s) in {out}")
    return 0
