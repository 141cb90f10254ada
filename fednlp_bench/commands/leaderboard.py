"""`fednlp-bench leaderboard --plan <out>/plan.json`: a tier's tables, figure and README from its records.

``--trust KIND --runs DIR --out FILE.md`` builds one trust table instead (``leaderboard/trust_tables.py``).

Building never trains anything: the plan (written by ``fednlp-bench suite``)
says which records make each cell, so the tables report the suite's tuning
choice rather than re-deriving it. ``--verify RUN_ID`` re-runs one record
from its stored config and checks it reproduces within ``--tolerance``;
``--verify-per-task`` re-runs one record per task.

Whatever can be checked is checked before the first file is written: the
records, the run id to verify (or that every task has a record to verify),
that the engine can re-run it, and that ``--out`` can be a folder. A bad
``--verify`` leaves ``--out`` as it was.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fednlp_bench.leaderboard.trust_tables import KINDS as TRUST_KINDS
from fednlp_bench.scalars import number



def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "leaderboard",
        help="build a tier's tables (Markdown + CSV + figure + README) from its plan.json and records, or a "
        "trust table (--trust)",
        description="Read plan.json (written by `fednlp-bench suite`) and the records it names, check that every "
        "cell traces to its records, and write per-task tables (convergence, paired gaps, tuning with its grid "
        "extensions), the gap-vs-alpha figure and the headline README to --out. With --verify or "
        "--verify-per-task, also re-run records and check they reproduce. With --trust KIND instead of --plan, "
        f"build one trust table ({', '.join(TRUST_KINDS)}) from a folder of records.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--plan", metavar="PATH",
                        help="plan.json written by a tier suite, e.g. leaderboards/cpu/plan.json")
    source.add_argument("--trust", choices=TRUST_KINDS,
                        help="a trust table instead (docs/trust.md): --runs names its records folder and --out its "
                        "Markdown file, e.g. --trust privacy-utility --runs leaderboards/trust/privacy_utility "
                        "--out leaderboards/trust/privacy_utility_20news.md")
    parser.add_argument("--runs", default=None,
                        help="folder with the plan's records (default: the plan's runs_dir); with --trust, required")
    parser.add_argument("--out", default="leaderboards",
                        help="output folder (default: leaderboards); with --trust, the table's .md file")
    parser.add_argument("--verify", metavar="RUN_ID_OR_PATH",
                        help="re-run this record (run id under the runs folder, run folder or record.json) and compare")
    parser.add_argument("--verify-per-task", action="store_true",
                        help="re-run the fastest finished record of each task and check it reproduces; exits "
                        "non-zero if any does not")
    parser.add_argument("--tolerance", type=number, default=None,
                        help="absolute tolerance for --verify (default 1e-6: same machine, deterministic CPU run; "
                        "use e.g. 1e-3 across machines)")
    parser.add_argument("--no-plots", action="store_true", help="skip the gap-vs-alpha PNG")
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


def run_trust(args: argparse.Namespace) -> int:
    """``--trust KIND``: one trust table from a records folder (no plan, nothing re-run)."""
    from fednlp_bench.leaderboard.trust_tables import write_trust_table

    if args.runs is None:
        raise ValueError(f"--trust {args.trust} needs --runs, the folder of its records, e.g. leaderboards/trust/records")
    if args.verify is not None or args.verify_per_task or args.tolerance is not None:
        raise ValueError("--verify, --verify-per-task and --tolerance apply to a tier (--plan), not to --trust")
    if not Path(args.runs).is_dir():
        raise ValueError(f"--runs {args.runs!r} is not a folder of records")
    print(f"wrote {write_trust_table(args.trust, Path(args.runs), Path(args.out))}")
    return 0


def run(args: argparse.Namespace) -> int:
    """The tier leaderboard, then optionally ``--verify RUN_ID`` or ``--verify-per-task``."""
    if args.trust is not None:
        return run_trust(args)
    from fednlp_bench.leaderboard.plan import resolve_runs_dir
    from fednlp_bench.leaderboard.records import find_record
    from fednlp_bench.leaderboard.tier_tables import build_tier, write_tier_files
    from fednlp_bench.suite.tier_verify import fastest_record, verify_per_task
    from fednlp_bench.suite.verify import DEFAULT_TOLERANCE, save_verification, verify_record

    if args.tolerance is not None and args.verify is None and not args.verify_per_task:
        raise ValueError("--tolerance only applies to --verify RUN_ID or --verify-per-task")
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if not tolerance >= 0:
        raise ValueError(f"--tolerance {tolerance!r} must be a non-negative number, e.g. 1e-6")
    if args.verify is not None and args.verify_per_task:
        raise ValueError("pass either --verify RUN_ID or --verify-per-task, not both")
    check_out_folder(args.out)
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
