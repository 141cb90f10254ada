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
from typing import TYPE_CHECKING

from fednlp_bench.checks import at_least, positive
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

#: How a stage's runs are executed (fednlp_bench/suite/execution.py); records do not depend on them.
EXECUTION_OPTIONS = declare(
    Param("jobs", int, 1, at_least(1), "N runs at once in worker processes (default 1: one at a time in this "
          "process); refused when N runs would not fit in memory"),
    Param("threads", int, None, at_least(1), "torch CPU threads per run (default: the cores / --jobs with "
          "--jobs > 1, else torch's choice)"),
    Param("gpus", str, None, help="spread the workers over these GPUs (worker i on GPU i mod count); default: the "
          "runs pick their device (cuda:0 when there is one), so all workers share it"),
    Param("budget_minutes", float, None, positive, "start no run that would end after M minutes (mean of the "
          "finished runs) and stop the runs still going at M minutes; they resume from their checkpoints on the "
          "next call"),
    Param("list_runs", bool, False, help="print the current stage's pending runs, one self-contained "
          "`fednlp-bench run` command per line (for Slurm, xargs -P, ...); run nothing. The next suite call picks "
          "up their records"),
    Param("device_tflops", float, None, positive, "with --dry-run: estimate device minutes at R TFLOP/s (default "
          "for the gpu tier: a declared rate, see fednlp_bench/suite/compute_estimate.py)"),
)
EXECUTION_METAVARS = {"jobs": "N", "threads": "T", "gpus": "0,1", "budget_minutes": "M", "device_tflops": "R"}

if TYPE_CHECKING:
    from fednlp_bench.suite.execution import Execution
    from fednlp_bench.suite.spec import Suite
    from fednlp_bench.suite.stages import StageReport


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
    x = parser.add_argument_group("execution (how the runs of a stage are executed; records do not depend on it)")
    for param in EXECUTION_OPTIONS.values():
        extra = {"metavar": EXECUTION_METAVARS[param.name]} if param.name in EXECUTION_METAVARS else {}
        add_param(x, param, default=param.default, **extra)
    parser.set_defaults(func=run)


def _again(args: argparse.Namespace) -> str:
    """The command that continues this one (what the user typed, minus the flags the stages add back)."""
    words = ["fednlp-bench", "suite", args.suite]
    for flag in ("runs_dir", "out"):
        if getattr(args, flag):
            words += [f"--{flag.replace('_', '-')}", getattr(args, flag)]
    if getattr(args, "jobs", 1) != 1:
        words += ["--jobs", str(args.jobs)]
    for flag in ("threads", "gpus"):
        if getattr(args, flag, None) is not None:
            words += [f"--{flag}", str(getattr(args, flag))]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from fednlp_bench.suite.execution import using
    from fednlp_bench.suite.listing import RunsListed
    from fednlp_bench.suite.spec import load_suite

    if args.max_runs is not None and args.max_runs < 1:
        raise ValueError(f"--max-runs {args.max_runs} must be a positive integer (runs to finish in this call)")
    execution = _execution(args)
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
        with using(execution):
            report = _stages(args, suite, runs_dir, out)
    except RunsListed as listed:
        print("\n".join(listed.commands))
        print(f"{len(listed.commands)} pending run(s) of the current stage listed; run them (any order, in "
              f"parallel), then `{_again(args)}` picks up their records and goes on", file=sys.stderr)
        return 0
    except RuntimeError as err:
        print(f"fednlp-bench suite: error: {err}", file=sys.stderr)
        return 1
    if args.list_runs:
        print("nothing pending: every run of the current stage has a record", file=sys.stderr)
        return 0
    if args.dry_run and (suite.tier == "gpu" or args.device_tflops):
        _print_device_estimate(args, suite, runs_dir)
    if args.dry_run or args.no_leaderboard or args.stage != "all" or not report.complete:
        return 0
    from fednlp_bench.leaderboard.tier_tables import write_tier_leaderboard

    assert report.plan_path is not None
    write_tier_leaderboard(report.plan_path, out)
    print(f"tier tables: written to {out} from {report.plan_path}")
    return 0


def _stages(args: argparse.Namespace, suite: Suite, runs_dir: str, out: str) -> StageReport:
    from fednlp_bench.suite.stages import run_two_stage

    stream = sys.stderr if args.list_runs else sys.stdout  # with --list-runs stdout holds only the commands
    return run_two_stage(suite, runs_dir, out, stage=args.stage, tasks=args.task, max_runs=args.max_runs,
                         dry_run=args.dry_run, command=_again(args), stream=stream)


def _execution(args: argparse.Namespace) -> Execution:
    """The flags' Execution, checked before anything loads (bad values are one-line errors)."""
    import time

    from fednlp_bench.suite.execution import Execution, parse_gpus
    from fednlp_bench.suite.listing import RunLister

    if args.budget_minutes is not None and not args.budget_minutes > 0:
        raise ValueError(f"--budget-minutes {args.budget_minutes} must be a positive number of minutes")
    if args.list_runs and (args.dry_run or args.budget_minutes is not None or args.jobs != 1 or args.plan_only):
        raise ValueError("--list-runs only lists commands; drop --dry-run, --plan-only, --jobs and --budget-minutes "
                         "(the scheduler that runs the commands decides how many at once)")
    deadline = None if args.budget_minutes is None else time.monotonic() + args.budget_minutes * 60
    lister = RunLister(threads=args.threads) if args.list_runs else None
    return Execution(jobs=args.jobs, threads=args.threads, gpus=parse_gpus(args.gpus), deadline=deadline,
                     lister=lister)


def _print_device_estimate(args: argparse.Namespace, suite: Suite, runs_dir: str) -> None:
    from fednlp_bench.suite.compute_estimate import print_estimate, runs_left
    from fednlp_bench.suite.stages import task_indexes

    configs = runs_left(suite, task_indexes(suite, args.task), runs_dir)
    print_estimate(configs, args.device_tflops, args.jobs, sys.stdout)
