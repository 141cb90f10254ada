"""The README of a tier folder: the headline table (one row per task), links, the figure, how to regenerate.

The headline answers the benchmark's question per task: both centralized
figures, and the best FL algorithm on IID and on the most skewed partition
with its paired gap to centralized. "Best" is chosen by validation among
converged cells only (``TierTask.best_federated``): test never selects, and a
cell still rising at the end of its budget measures the budget, not FL. A
task with no complete or no converged cell says so instead of a number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fednlp_bench.leaderboard.labels import algorithm_label, centralized_baseline
from fednlp_bench.leaderboard.markdown import link
from fednlp_bench.leaderboard.plan import Plan, PlanPartition
from fednlp_bench.leaderboard.summary import CONFIDENCE, difference_text
from fednlp_bench.leaderboard.tier_cells import CENTRALIZED_CONVERGED, CENTRALIZED_EQUAL, TierTask
from fednlp_bench.leaderboard.tier_render import pending, plabel, status_text
from fednlp_bench.leaderboard.verification import verification_lines

FIGURE = "gap_vs_alpha.png"
HEADLINE_HEADER = ("| Task | Data | Metric | Centralized (converged) | Centralized (equal budget) | Best FL · IID | "
                   "Best FL · most skewed partition | Tables |")


def _central(task: TierTask, role: str) -> str:
    cell = task.centralized(role)
    if cell is None:
        return "tuning pending" if pending(task, None, centralized_baseline()) else "not run"
    if cell.summary is None:
        return f"{cell.n_done}/{cell.n_planned} runs done"
    return f"{cell.summary.text()}; {status_text(cell)}"


def best_text(task: TierTask, partition: PlanPartition | None) -> str:
    """The best converged FL cell on ``partition`` (by validation) with its paired gap, or why there is none."""
    if partition is None:
        return "— (no such partition)"
    cells = task.federated_cells(partition.index)
    best = task.best_federated(partition.index)
    if best is not None:
        gap = f"; gap {difference_text(best.gap)}" if best.gap is not None else ""
        return (f"{algorithm_label(best.plan.algorithm)} on {plabel(partition)}: {best.summary.text()}"  # type: ignore[union-attr]
                f"{gap}; {status_text(best)}")
    complete = [c for c in cells if c.complete]
    if not cells and any(pending(task, partition.index, a) for a in task.algorithms):
        return f"— ({plabel(partition)}: tuning pending)"
    if not cells or len(complete) < len(cells):
        return f"— ({plabel(partition)}: {len(complete)}/{len(cells)} FL cells complete)"
    return f"— ({plabel(partition)}: no converged FL cell; " + ", ".join(
        f"{algorithm_label(c.plan.algorithm)} {status_text(c)}" for c in complete) + ")"


def headline_row(task: TierTask) -> list[str]:
    iid = next((p for p in task.partitions if p.is_iid), None)
    skewed = task.most_skewed() if task.partitions else None
    if skewed is not None and skewed.is_iid:
        skewed = None
    return [task.task, f"`{task.data if task.data is not None else 'task default'}`", f"`{task.metric}`",
            _central(task, CENTRALIZED_CONVERGED), _central(task, CENTRALIZED_EQUAL), best_text(task, iid),
            best_text(task, skewed), f"[{task.task}.md]({task.task}.md) · [csv]({task.task}.csv)"]


def headline_lines(plan: Plan, tasks: list[TierTask]) -> list[str]:
    lines = ["## Headline", "", HEADLINE_HEADER, "|" + "---|" * 8]
    lines += ["| " + " | ".join(headline_row(t)) + " |" for t in tasks]
    lines += ["", f"Test metric, mean ± sample std over seeds with the {CONFIDENCE:.0%} Student-t interval. Best FL: the "
                  "FL cell with the highest *validation* metric (mean over the convergence window) among the converged cells of that "
                  "partition (test never selects). Most skewed partition: the smallest α where partitions have one, "
                  "else the last non-IID partition. Gap: FL − centralized (equal budget), paired by seed with its t "
                  "interval, Welch's unpaired interval beside it. Convergence: " + plan.convergence.text() + ". "
                  "Selection: " + plan.selection + "."]
    return lines


def cost_lines(tasks: list[TierTask]) -> list[str]:
    lines = ["", "## Cost", "", "| Task | Records | CPU hours (sum of wall times) |", "|---|---|---|"]
    for t in tasks:
        runs = {i.record.run_id for i in (*t.records, *t.tuning_records)}
        lines.append(f"| {t.task} | {len(runs)} | {t.cpu_hours:.2f} |")
    return lines


def readme_markdown(plan: Plan, tasks: list[TierTask], out_dir: Path, plan_label: str, out_label: str,
                    figure: bool, omitted: dict[str, list[str]], verification: list[dict[str, Any]]) -> str:
    n_records = len({i.record.run_id for t in tasks for i in (*t.records, *t.tuning_records)})
    lines = [f"# Leaderboards · tier `{plan.tier}`", "",
             f"Generated by `fednlp-bench leaderboard --plan {plan_label} --out {out_label}` from "
             f"[plan.json]({link(plan.path, out_dir)}) and {n_records} result record(s); do not edit by hand.", "",
             *headline_lines(plan, tasks), "", "## Tables", ""]
    lines += [f"- {t.task} (`{t.data if t.data is not None else 'task default'}`): [{t.task}.md]({t.task}.md) "
              f"(with per-cell settings, validation, bytes, wall time, clients and tuning), [{t.task}.csv]({t.task}.csv) "
              "(full precision, run ids)" for t in tasks]
    lines += cost_lines(tasks)
    if figure:
        lines += ["", "## Gap to centralized against α", "",
                  f"![gap to centralized (equal budget) against the partition's α, one panel per task]({FIGURE})", "",
                  "x: the partition's concentration α (log scale; IID drawn at the right); y: FL − centralized "
                  "(equal budget), paired by seed; error bars: the paired 95% interval; hollow markers: cells still "
                  "rising or undecided at the end of their budget."]
        notes = [f"{task}: {', '.join(labels)}" for task, labels in omitted.items() if labels]
        if notes:
            lines.append("Partitions without α are not in the figure (see their tables): " + "; ".join(notes) + ".")
    suite = plan.suite or "<tier suite YAML>"
    lines += ["", "## Regenerate", "", "From the committed records (no training, seconds):", "", "```bash",
              f"fednlp-bench leaderboard --plan {plan_label} --out {out_label}", "```", "",
              "Runs what is missing (finished runs are skipped), then rewrites plan.json:", "", "```bash",
              f"fednlp-bench suite {suite}", "```", "",
              "Re-run the fastest record of each task and check it reproduces:", "", "```bash",
              f"fednlp-bench leaderboard --plan {plan_label} --out {out_label} --verify-per-task", "```"]
    return "\n".join(lines + verification_lines(verification)) + "\n"


__all__ = ["FIGURE", "HEADLINE_HEADER", "best_text", "headline_row", "readme_markdown"]
