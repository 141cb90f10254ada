"""`fednlp-bench leaderboard`: records -> per-task Markdown/CSV tables, curves and README.

Building never trains anything; ``--verify RUN_ID`` additionally re-runs one
record from its stored config and checks it reproduces within ``--tolerance``.
With ``--plan <out>/plan.json`` (written by a tier suite) it builds the tier
leaderboard instead: the plan says which records make each cell, so the
tables report the suite's tuning choice rather than re-deriving it;
``--verify-per-task`` then re-runs one record per task.

Whatever can be checked is checked before the first file is written: the
records, the run id to verify (or that every task has a record to verify),
that the engine can re-run it, and that ``--out`` can be a folder. A bad
``--verify`` leaves ``--out`` as it was.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any
from fednlp_bench.scalars import number


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard",
        help="build leaderboard tables (Markdown + CSV + plots) from run records",
        description="Read every record.json under --runs, validate them, and write per-task tables, "
        "metric-vs-round plots and a README to --out. With --verify, also re-run one record and check it "
        "reproduces. With --plan, build the tier leaderboard from a tier suite's plan.json and its records.",
    )
    parser.add_argument("--runs", default=None,
                        help="folder searched recursively for record.json (default: runs); with --plan: overrides "
                        "the plan's runs_dir")
    parser.add_argument("--plan", metavar="PATH",
                        help="plan.json written by a tier suite: build the tier leaderboard (task tables with "
                        "intervals, tuning, bytes to 90%% of centralized, the gap-vs-alpha figure, headline README) "
                        "from it and its records")
    parser.add_argument("--verify-per-task", action="store_true",
                        help="with --plan: re-run the fastest finished record of each task and check it reproduces; "
                        "exits non-zero if any does not")
    parser.add_argument("--out", default="leaderboards", help="output folder (default: leaderboards)")
    parser.add_argument("--verify", metavar="RUN_ID_OR_PATH",
                        help="re-run this record (run id under --runs, run folder or record.json) and compare")
    parser.add_argument("--tolerance", type=number, default=None,
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


def check_out_folder(out: str | Path) -> Path:
    """``--out`` must be a folder or a path one can be made at (before anything is written)."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a file; give a folder for the tables")
    parent = next((p for p in path.absolute().parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ValueError(f"--out {str(path)!r}: {str(parent)!r} is a file, so the folder cannot be made")
    return path


def verify_runner() -> Any:
    """The engine's re-run entry point, loaded before any table is written (a missing engine fails first)."""
    from fednlp_bench.suite import verify as verify_mod

    return verify_mod._load_runner()


def run(args: argparse.Namespace) -> int:
    from fednlp_bench.leaderboard.collect import find_record
    from fednlp_bench.leaderboard.render import write_leaderboard
    from fednlp_bench.suite.verify import DEFAULT_TOLERANCE, save_verification, verify_record

    verify_per_task = getattr(args, "verify_per_task", False)
    if args.tolerance is not None and args.verify is None and not verify_per_task:
        raise ValueError("--tolerance only applies to --verify RUN_ID or --verify-per-task")
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance >= 0:
        raise ValueError(f"--tolerance {tolerance!r} must be a non-negative number, e.g. 1e-6")
    check_out_folder(args.out)
    if getattr(args, "plan", None) is not None:
        return run_plan(args, tolerance)
    if verify_per_task:
        raise ValueError("--verify-per-task needs --plan <out>/plan.json (it picks one record per task of the plan)")
    if args.runs is None:
        args.runs = "runs"
    # The record to verify and the engine that re-runs it: found before any table is written.
    item = find_record(args.runs, args.verify) if args.verify is not None else None
    runner = verify_runner() if item is not None else None

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
    if item is None:
        return 0

    result = verify_record(item, tolerance=tolerance, runner=runner)
    print(result.report())
    save_verification(result, args.out)
    # Rewrite the README so its verification section includes this result.
    write_leaderboard(args.runs, args.out, plots=False, suite_label=args.suite, records=output.records)
    return 0 if result.passed else 1


def run_plan(args: argparse.Namespace, tolerance: float) -> int:
    """``--plan``: the tier leaderboard, then optionally ``--verify RUN_ID`` or ``--verify-per-task``."""
    from fednlp_bench.leaderboard.collect import find_record
    from fednlp_bench.leaderboard.plan import resolve_runs_dir
    from fednlp_bench.leaderboard.tier_tables import build_tier, write_tier_files
    from fednlp_bench.suite.tier_verify import fastest_record, verify_per_task
    from fednlp_bench.suite.verify import save_verification, verify_record

    for flag, value in (("--skip-invalid", args.skip_invalid), ("--skip-duplicates", args.skip_duplicates)):
        if value:
            raise ValueError(f"{flag} does not apply with --plan: a tier table uses exactly the records plan.json "
                             "names; fix or re-run the named record instead")
    if args.verify is not None and args.verify_per_task:
        raise ValueError("pass either --verify RUN_ID or --verify-per-task, not both")
    plan, tasks = build_tier(args.plan, args.runs)
    # What --verify / --verify-per-task will re-run, checked before any file is written.
    item = find_record(resolve_runs_dir(plan, args.runs), args.verify) if args.verify is not None else None
    if args.verify_per_task:
        missing = [t.task for t in tasks if fastest_record(t) is None]
        if missing:
            raise ValueError(f"--verify-per-task: task(s) {', '.join(missing)} of {plan.path} have no finished run "
                             "to verify yet; run the suite for them first, or verify one record with --verify RUN_ID")
    runner = verify_runner() if item is not None or args.verify_per_task else None
    files = write_tier_files(plan, tasks, args.out, figure=not args.no_plots)
    print(f"plan {plan.path} (tier {plan.tier}): {len(tasks)} task(s); wrote {len(files)} files to {args.out}")
    for task in tasks:
        done = sum(c.complete for c in task.cells.values())
        print(f"  {task.task}: {len(task.partitions)} partitions x {len(task.algorithms)} FL algorithms, "
              f"{done}/{len(task.cells)} cells complete, {len(task.records)} records")
    if item is not None:
        result = verify_record(item, tolerance=tolerance, runner=runner)
        print(result.report())
        save_verification(result, args.out)
        passed = result.passed
    elif args.verify_per_task:
        passed = all(v.passed for v in verify_per_task(tasks, args.out, tolerance=tolerance, runner=runner))
    else:
        return 0
    # Rewrite the README so its verification section includes the result(s).
    write_tier_files(plan, tasks, args.out, figure=False)
    return 0 if passed else 1
