"""Tier tables as text: one Markdown + CSV per task, and the README with the headline table.

Pure functions of (plan, records): no timestamps, fixed order, so rebuilding
from unchanged inputs gives identical files. The Markdown is for people (4
digits, MiB); the CSV carries the same numbers at full precision plus every
run id, which is how each cell traces to records.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from fednlp_bench.leaderboard.plan import Plan, PlanPartition
from fednlp_bench.leaderboard.render import _link, budget_sentence, verification_lines
from fednlp_bench.leaderboard.tables import algorithm_label, partition_label
from fednlp_bench.leaderboard.tier_cells import (
    CENTRALIZED_CONVERGED,
    CENTRALIZED_EQUAL,
    MIB,
    TARGET_SHARE,
    TierCell,
    TierTask,
    point_text,
    same_point,
)
from fednlp_bench.leaderboard.tier_stats import Summary

FIGURE = "gap_vs_alpha.png"
ROLE_TITLES = {CENTRALIZED_CONVERGED: "Centralized (converged)", CENTRALIZED_EQUAL: "Centralized (equal budget)"}
CSV_FIELDS = [
    "task", "data", "metric", "partition_index", "partition", "partition_scheme", "partition_params",
    "algorithm", "algorithm_label", "role", "hyperparameters", "tuned_on", "tuned_on_partition",
    "n_planned", "n_done", "complete", "seeds", "mean", "std", "ci_low", "ci_high", "gap_to_centralized_equal",
    "gap_ci_half_width", "mean_total_bytes", "target_validation", "target_reference", "bytes_to_target_mean",
    "bytes_to_target_reached", "bytes_to_target_runs", "mean_wall_time_s", "worst_10pct", "run_ids",
    "done_run_ids",
]


def plabel(partition: PlanPartition | None) -> str:
    return "?" if partition is None else partition_label(partition.scheme, partition.params)


def column_title(cell: TierCell) -> str:
    return ROLE_TITLES.get(cell.plan.role, algorithm_label(cell.plan.algorithm))


def bytes_text(value: float) -> str:
    """MiB with 2 decimals; below 0.01 MiB in bytes, so a tiny run does not read as 0.00 MiB."""
    return f"{value / MIB:.2f} MiB" if value >= 0.01 * MIB else f"{value:.0f} B"


def _f(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def summary_text(summary: Summary, sep: str = "<br>") -> str:
    """``0.6000 ± 0.1000<br>95% CI [0.3516, 0.8484], n=3``; one seed: ``0.6000<br>n=1``."""
    if summary.std is None:
        return f"{summary.mean:.4f}{sep}n=1"
    low, high = summary.interval  # type: ignore[misc]
    return f"{summary.mean:.4f} ± {summary.std:.4f}{sep}95% CI [{low:.4f}, {high:.4f}], n={summary.n}"


def gap_text(cell: TierCell) -> str:
    if cell.gap is None:
        return "gap —"
    hw = "" if cell.gap.half_width is None else f" (95% CI ±{cell.gap.half_width:.4f})"
    return f"gap {cell.gap.value:+.4f}{hw}"


def cell_text(cell: TierCell | None, pending: bool = False) -> str:
    if cell is None:
        return "tuning pending" if pending else "—"
    summary = cell.summary
    if summary is None:
        return f"{cell.n_done}/{cell.n_planned} runs done"
    text = summary_text(summary)
    return f"{text}<br>{gap_text(cell)}" if cell.plan.is_federated else text


def bytes_to_target_text(task: TierTask, cell: TierCell) -> str:
    if not cell.plan.is_federated:
        return "— (no communication)"
    if task.target is None:
        return "no reference yet"
    if not cell.complete:
        return f"{cell.n_done}/{cell.n_planned} runs done"
    k, n = len(cell.reached), cell.n_done
    if not k:
        return f"not reached (0/{n})"
    return f"{bytes_text(cell.mean_bytes_to_target)} ({k}/{n} reached)"  # type: ignore[arg-type]


def _pending(task: TierTask, index: int, algorithm: str) -> bool:
    return any(t.partition.index == index and t.algorithm == algorithm and t.chosen is None for t in task.tuning)


def _ordered_cells(task: TierTask) -> list[TierCell]:
    """Centralized first (converged, equal), then FL cells by partition then algorithm (registry order)."""
    out = [c for role in (CENTRALIZED_CONVERGED, CENTRALIZED_EQUAL) if (c := task.centralized(role))]
    for p in task.partitions:
        out += [c for a in task.algorithms if (c := task.cell(p.index, a)) is not None]
    return out


# ---------------------------------------------------------------- markdown
def header_lines(plan: Plan, task: TierTask) -> list[str]:
    models = ", ".join(f"`{m}`" for m in task.models) or "(no finished runs yet)"
    model = task.models[0] if len(task.models) == 1 else ", ".join(task.models) or "?"
    lines = [
        f"- Tier: `{plan.tier}`",
        f"- Data: `{task.data if task.data is not None else 'task default'}`; model: {models}; metric: `{task.metric}` "
        "on the test split (higher is better)",
        f"- Budget (settings shared by every run except the tuned ones): {budget_sentence(task.budget, model, task.data)}",
    ]
    overrides = task.converged_overrides
    if task.centralized(CENTRALIZED_CONVERGED) is not None:
        shown = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "no different settings recorded"
        lines.append(f"- Centralized (converged): the equal-budget setting with {shown}; its figure is the test "
                     "metric of the round with the best validation score when the run recorded it (`test_best_round`), "
                     "else of the final model")
    lines.append(f"- Selection: {plan.selection} (tuning grid and choices below; test metrics never select)")
    lines.append("- Hardware: " + (" | ".join(task.hardware) or "(no finished runs yet)"))
    lines.append(f"- Every cell: run ids in [{task.task}.csv]({task.task}.csv)")
    return lines


def task_markdown(plan: Plan, task: TierTask) -> str:
    first = task.partitions[0] if task.partitions else None
    central = [task.centralized(role) for role in (CENTRALIZED_CONVERGED, CENTRALIZED_EQUAL)]
    header = ["Partition"] + [f"{t} †" for t in ROLE_TITLES.values()] + [algorithm_label(a) for a in task.algorithms]
    lines = [f"# {task.task} · tier `{plan.tier}`", "",
             "Generated from plan.json and the result records by `fednlp-bench leaderboard --plan`; do not edit by hand.",
             "", *header_lines(plan, task), "",
             f"Cell: test `{task.metric}` mean ± sample std (ddof=1) over seeds, 95% confidence interval (Student t, "
             "n−1 df; none for n=1) and n seeds. FL cells also give the gap: FL mean − centralized (equal budget) "
             "mean, with Welch's 95% interval. `k/n runs done`: not every seed has finished; such a cell is not "
             "averaged.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in task.partitions:
        row = [plabel(p)]
        row += [("not run" if c is None else cell_text(c)) for c in central]
        row += [cell_text(task.cell(p.index, a), _pending(task, p.index, a)) for a in task.algorithms]
        lines.append("| " + " | ".join(row) + " |")
    source = next((c.plan.partition for c in central if c is not None), first)
    lines += ["", f"† Centralized training pools every client's data, so it does not depend on the partition: it "
                  f"runs once, on the {plabel(source)} partition, and every row shows those same runs.", ""]
    lines += details_markdown(task)
    lines += tuning_markdown(task)
    return "\n".join(lines) + "\n"


def details_markdown(task: TierTask) -> list[str]:
    """Per cell: tuned settings, bytes, bytes to 90% of centralized, wall time, worst-10% clients."""
    cells = _ordered_cells(task)
    worst = any(c.worst_10pct is not None for c in cells)
    lines = ["## Per cell: settings, communication, time", ""]
    if task.target is not None:
        reference = ROLE_TITLES[task.target_role or CENTRALIZED_EQUAL].lower()
        lines.append(f"Bytes to {TARGET_SHARE:.0%} of centralized: per run, the cumulative bytes up + down through the "
                     f"first round whose validation `{task.metric}` ≥ {TARGET_SHARE} × the mean best validation "
                     f"`{task.metric}` of {reference} = {task.target:.4f}; mean over the runs that reach it (k/n reached).")
    else:
        lines.append(f"Bytes to {TARGET_SHARE:.0%} of centralized: no reference yet (the centralized runs are not all done).")
    header = ["Partition", "Algorithm", "Hyperparameters (tuned on)", "Mean bytes up+down", "Bytes to 90% of centralized",
              "Mean wall time"] + (["Worst 10% clients"] if worst else [])
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in cells:
        tuned = task.partition(c.plan.tuned_on) if c.plan.tuned_on is not None else None
        where = f" (tuned on {plabel(tuned)})" if tuned is not None else ""
        done = c.complete
        row = [plabel(c.plan.partition), column_title(c), point_text(c.plan.hyperparameters) + where,
               bytes_text(c.mean_total_bytes) if done and c.mean_total_bytes is not None else _status(c),
               bytes_to_target_text(task, c),
               f"{c.mean_wall_time_s:.1f} s" if done and c.mean_wall_time_s is not None else _status(c)]
        if worst:
            row.append(_f(c.worst_10pct) if done else _status(c))
        lines.append("| " + " | ".join(row) + " |")
    if worst:
        lines += ["", "Worst 10% clients: mean over seeds of the final model's metric on the worst-served 10% of "
                      "clients' local test rows (`client_eval`)."]
    return lines + [""]


def _status(cell: TierCell) -> str:
    return f"{cell.n_done}/{cell.n_planned} runs done"


def tuning_markdown(task: TierTask) -> list[str]:
    lines = ["## Tuning", ""]
    if not task.tuning:
        return lines + ["No tuning entries in plan.json for this task (every algorithm ran its fixed settings).", ""]
    lines += [f"Validation `{task.metric}` of the final round of each grid point (tuning seed); **chosen** is the "
              "suite's choice (highest validation, ties to the earlier point).", "",
              "| Partition | Algorithm | Grid point | Seed | Validation | |", "|---|---|---|---|---|---|"]
    for entry in sorted(task.tuning, key=lambda t: (t.partition.index, _algo_order(task, t.algorithm))):
        for point in entry.grid:
            chosen = same_point(point.point, entry.chosen)
            value = "pending" if point.validation is None else f"{point.validation:.4f}"
            mark = "**chosen**" if chosen else ("choice pending" if entry.chosen is None else "")
            if chosen:
                value = f"**{value}**"
            lines.append(f"| {plabel(entry.partition)} | {algorithm_label(entry.algorithm)} | {point_text(point.point)} "
                         f"| {point.seed} | {value} | {mark} |")
    return lines + [""]


def _algo_order(task: TierTask, algorithm: str) -> int:
    return task.algorithms.index(algorithm) if algorithm in task.algorithms else -1


# ---------------------------------------------------------------- csv
def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def task_csv(task: TierTask) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for c in _ordered_cells(task):
        s = c.summary
        interval = s.interval if s is not None else None
        tuned = task.partition(c.plan.tuned_on) if c.plan.tuned_on is not None else None
        writer.writerow({
            "task": task.task, "data": task.data or "", "metric": task.metric,
            "partition_index": c.plan.partition.index, "partition": plabel(c.plan.partition),
            "partition_scheme": c.plan.partition.scheme,
            "partition_params": json.dumps(c.plan.partition.params, sort_keys=True),
            "algorithm": c.plan.algorithm, "algorithm_label": column_title(c), "role": c.plan.role,
            "hyperparameters": json.dumps(c.plan.hyperparameters, sort_keys=True),
            "tuned_on": "" if c.plan.tuned_on is None else c.plan.tuned_on,
            "tuned_on_partition": "" if tuned is None else plabel(tuned),
            "n_planned": c.n_planned, "n_done": c.n_done, "complete": c.complete,
            "seeds": " ".join(str(x) for x in c.seeds),
            "mean": _num(s.mean if s else None), "std": _num(s.std if s else None),
            "ci_low": _num(interval[0] if interval else None), "ci_high": _num(interval[1] if interval else None),
            "gap_to_centralized_equal": _num(c.gap.value if c.gap else None),
            "gap_ci_half_width": _num(c.gap.half_width if c.gap else None),
            "mean_total_bytes": _num(c.mean_total_bytes), "target_validation": _num(task.target),
            "target_reference": task.target_role or "",
            "bytes_to_target_mean": _num(c.mean_bytes_to_target),
            "bytes_to_target_reached": "" if c.bytes_to_target is None else f"{len(c.reached)}/{c.n_done}",
            "bytes_to_target_runs": "" if c.bytes_to_target is None else
            " ".join("none" if b is None else str(b) for b in c.bytes_to_target),
            "mean_wall_time_s": _num(c.mean_wall_time_s), "worst_10pct": _num(c.worst_10pct),
            "run_ids": " ".join(c.run_ids), "done_run_ids": " ".join(i.record.run_id for i in c.records),
        })
    return buf.getvalue()


# ---------------------------------------------------------------- readme
def headline_row(task: TierTask) -> list[str]:
    """Task, data, metric, both centralized figures, best FL on the most skewed partition, its gap, links."""
    def central(role: str) -> str:
        cell = task.centralized(role)
        if cell is None:
            return "not run"
        return summary_text(cell.summary, sep=" ") if cell.summary else _status(cell)

    skewed = task.most_skewed() if task.partitions else None
    best = task.best_federated(skewed.index) if skewed is not None else None
    if best is None:
        best_text, gap = (f"— ({plabel(skewed)}: no complete FL cell yet)" if skewed else "—"), "—"
    else:
        best_text = f"{algorithm_label(best.plan.algorithm)} on {plabel(skewed)}: {summary_text(best.summary, sep=' ')}"  # type: ignore[arg-type]
        gap = gap_text(best).removeprefix("gap ")
    return [task.task, f"`{task.data if task.data is not None else 'task default'}`", f"`{task.metric}`",
            central(CENTRALIZED_CONVERGED), central(CENTRALIZED_EQUAL), best_text, gap,
            f"[{task.task}.md]({task.task}.md) · [csv]({task.task}.csv)"]


def readme_markdown(plan: Plan, tasks: list[TierTask], out_dir: Path, plan_label: str, out_label: str,
                    figure: bool, omitted: dict[str, list[str]], verification: list[dict[str, Any]]) -> str:
    n_records = len({i.record.run_id for t in tasks for i in t.records})
    lines = [f"# Leaderboards · tier `{plan.tier}`", "",
             f"Generated by `fednlp-bench leaderboard --plan {plan_label} --out {out_label}` from "
             f"[plan.json]({_link(plan.path, out_dir)}) and {n_records} result record(s); do not edit by hand.", "",
             "## Headline", "",
             "| Task | Data | Metric | Centralized (converged) | Centralized (equal budget) | "
             "Best FL on the most skewed partition | Gap to centralized (equal) | Tables |",
             "|---|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(headline_row(t)) + " |" for t in tasks]
    lines += ["", "Test metric, mean ± sample std over seeds with the 95% Student-t interval. Most skewed partition: "
                  "the smallest α where partitions have one, else the last non-IID partition of the plan. Gap: FL "
                  "mean − centralized (equal budget) mean, Welch's 95% interval. Selection: " + plan.selection + ".",
              "", "## Tables", ""]
    lines += [f"- {t.task} (`{t.data if t.data is not None else 'task default'}`): [{t.task}.md]({t.task}.md) "
              f"(with per-cell settings, bytes, wall time and tuning), [{t.task}.csv]({t.task}.csv) (full precision, "
              "run ids)" for t in tasks]
    if figure:
        lines += ["", "## Gap to centralized against α", "",
                  f"![gap to centralized (equal budget) against the partition's α, one panel per task]({FIGURE})", "",
                  "x: the partition's concentration α (log scale; IID drawn at the right); y: FL mean − centralized "
                  "(equal budget) mean, error bars: Welch's 95% interval."]
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
