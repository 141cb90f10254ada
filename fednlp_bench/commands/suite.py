"""`fednlp-bench suite SUITE.yaml`: run a tier (skipping recorded runs), then build its tables.

A tier suite runs tuning (with grid extensions), selection and the final
seeds (``--stage``), in chunks if need be (``--task``, ``--max-runs``);
``--dry-run`` counts what is left and estimates its CPU hours. See
fednlp_bench/suite/stages.py, docs/protocol.md and docs/leaderboard.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from fednlp_bench.checks import at_least
from fednlp_bench.commands.flags import add_param, add_params
from fednlp_bench.registry import Param, declare

#: The command's flags (the tier itself is declared by the suite YAML: fednlp_bench/suite/spec.py).
SUITE_OPTIONS = declare(
    Param("runs_dir", str, None, help="where records are written and looked up (default: the suite's runs_dir, "
          "else leaderboards/records)"),
    Param("out", str, None, help="leaderboard output folder (default: the suite's out, else leaderboards)"),
    Param("stage", str, "all", help="tune (grid search on the tuning seed, extensions included), final (chosen "
          "settings over the final seeds; needs settled tuning), all (default: tune, select, final, tables)",
          choices=("all", "tune", "final")),
    Param("task", list, None, help="run only these tasks of the suite (e.g. one task per sitting)"),
    Param("max_runs", int, None, at_least(1), "stop cleanly after N finished runs; the same command continues later"),
    Param("dry_run", bool, False, help="validate, list the runs to do, count the final runs and estimate the CPU "
          "hours left from measured rates; run nothing"),
    Param("plan_only", bool, False, help="run nothing: select from the records so far and rewrite <out>/plan.json "
          "(then `fednlp-bench leaderboard --plan` shows the tier as it stands)"),
    Param("no_leaderboard", bool, False, help="only run; do not build tables"),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    from fednlp_bench.leaderboard.tiers import tier_help

    parser = subparsers.add_parser(
        "suite",
        help="run a benchmark tier (tune, select, final seeds) and build its tables",
        description="Expand the tier suite YAML, validate every config, then run in two stages the runs without "
        "a record in --runs-dir: tune each algorithm's grid on one seed (validation split; an axis whose choice "
        "lies on its edge is extended, up to the suite's cap), select, then run the chosen settings over the "
        "final seeds; out/plan.json records the selection, and the tier tables are built in --out. "
        f"Tiers: {tier_help()}.",
    )
    parser.add_argument("suite", help="tier suite YAML, e.g. configs/suite.yaml (smoke) or configs/suite-cpu.yaml")
    add_params(parser, [p for name, p in SUITE_OPTIONS.items() if name != "task"], defaults=True)
    add_param(parser, SUITE_OPTIONS["task"], action="extend", nargs="+", type=str, metavar="NAME")
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
    from fednlp_bench.suite.stages import run_two_stage

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
    if args.plan_only:
        if args.dry_run or args.max_runs is not None or args.stage != "all":
            raise ValueError("--plan-only runs nothing; drop --dry-run, --max-runs and --stage")
        from fednlp_bench.suite.stages import refresh_plan

        refresh_plan(suite, runs_dir, out)
        return 0
    try:
        report = run_two_stage(suite, runs_dir, out, stage=args.stage, tasks=args.task, max_runs=args.max_runs,
                               dry_run=args.dry_run, command=_again(args))
    except RuntimeError as err:
        print(f"fednlp-bench suite: error: {err}", file=sys.stderr)
        return 1
    if args.dry_run or args.no_leaderboard or args.stage != "all" or not report.complete:
        return 0
    from fednlp_bench.leaderboard.tier_tables import write_tier_leaderboard

    assert report.plan_path is not None
    write_tier_leaderboard(report.plan_path, out)
    print(f"tier tables: written to {out} from {report.plan_path}")
    return 0
