"""Build a tier leaderboard from ``plan.json`` + records: task tables, the gap figure and the README.

The suite decides (tuning, selection, which runs make a cell) and writes that
into plan.json; this module only reports it, so the published tables cannot
re-implement, and drift from, the selection rule. Everything is read and
checked before the first file is written: a missing or mismatched record
stops the build with its run id and leaves the previous leaderboard as it
was. Every file is written atomically.
"""

from __future__ import annotations

from pathlib import Path

from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.leaderboard.markdown import README, cwd_label
from fednlp_bench.leaderboard.plan import Plan, load_plan, resolve_runs_dir
from fednlp_bench.leaderboard.tier_build import build_tier_tasks
from fednlp_bench.leaderboard.tier_cells import TierTask
from fednlp_bench.leaderboard.tier_plots import omitted_partitions, write_gap_figure
from fednlp_bench.leaderboard.tier_readme import FIGURE, readme_markdown
from fednlp_bench.leaderboard.tier_render import task_csv, task_markdown
from fednlp_bench.leaderboard.verification import load_verification


def build_tier(plan_path: str | Path, runs_dir: str | Path | None = None) -> tuple[Plan, list[TierTask]]:
    """Load the plan, find its records (``runs_dir`` overrides the plan's) and compute every cell."""
    plan = load_plan(plan_path)
    tasks = build_tier_tasks(plan, resolve_runs_dir(plan, runs_dir))
    if not tasks:
        raise ValueError(f"{plan.path}: no cells and no tuning entries yet; run `fednlp-bench suite` first")
    return plan, tasks


def write_tier_leaderboard(plan_path: str | Path, out_dir: str | Path, *, runs_dir: str | Path | None = None,
                           figure: bool = True) -> list[Path]:
    """Write ``<task>.md``, ``<task>.csv`` per task, ``gap_vs_alpha.png`` and ``README.md`` into ``out_dir``."""
    plan, tasks = build_tier(plan_path, runs_dir)
    return write_tier_files(plan, tasks, out_dir, figure=figure)


def write_tier_files(plan: Plan, tasks: list[TierTask], out_dir: str | Path, *, figure: bool = True) -> list[Path]:
    """The files of :func:`write_tier_leaderboard` from already built tasks (the CLI reuses them to verify)."""
    out = Path(out_dir)
    files: list[Path] = []
    for task in tasks:
        files.append(atomic_write_text(out / f"{task.task}.md", task_markdown(plan, task)))
        files.append(atomic_write_text(out / f"{task.task}.csv", task_csv(task)))
    if figure:
        files.append(write_gap_figure(tasks, out / FIGURE))
    plan_label = cwd_label(plan.path)
    out_label = cwd_label(out)
    omitted = {t.task: omitted_partitions(t) for t in tasks}
    files.append(atomic_write_text(out / README, readme_markdown(
        plan, tasks, out, plan_label, out_label, figure or (out / FIGURE).exists(), omitted, load_verification(out))))
    return files


__all__ = ["build_tier", "write_tier_files", "write_tier_leaderboard"]
