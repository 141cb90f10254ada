"""A tier task as text: the Markdown table (cells, per-cell details, tuning) and the CSV beside it.

Pure functions of (plan, records): no timestamps, fixed order, so rebuilding
from unchanged inputs gives identical files. The Markdown is for people (4
digits, MiB); the CSV carries the same numbers at full precision plus every
run id, which is how each cell traces to records.
"""

from __future__ import annotations

import csv
import io
import json

from fednlp_bench.leaderboard.labels import algorithm_label, centralized_baseline, partition_label
from fednlp_bench.leaderboard.markdown import budget_sentence
from fednlp_bench.leaderboard.plan import Plan, PlanPartition, PlanTuning
from fednlp_bench.leaderboard.summary import CONFIDENCE, difference_text
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
from fednlp_bench.leaderboard.tier_fairness import fairness_markdown

ROLE_TITLES = {CENTRALIZED_CONVERGED: "Centralized (converged)", CENTRALIZED_EQUAL: "Centralized (equal budget)"}
CSV_FIELDS = [
    "task", "data", "metric", "partition_index", "partition", "partition_scheme", "partition_params",
    "algorithm", "algorithm_label", "role", "hyperparameters", "tuned_on", "tuned_on_partition",
    "n_planned", "n_done", "complete", "seeds", "mean", "std", "ci_low", "ci_high", "validation_mean",
    "converged", "slope_per_round", "best", "gap_to_centralized_equal", "gap_paired_ci_half_width", "gap_paired_n",
    "gap_welch_ci_half_width", "mean_total_bytes", "target_validation", "target_reference", "bytes_to_target_mean",
    "bytes_to_target_reached", "bytes_to_target_runs", "mean_wall_time_s", "worst_10pct", "worst_10pct_ci_low",
    "worst_10pct_ci_high", "clients_qualified", "run_ids", "done_run_ids",
]


def plabel(partition: PlanPartition | None) -> str:
    return "?" if partition is None else partition_label(partition.scheme, partition.params)


def column_title(cell: TierCell) -> str:
    return ROLE_TITLES.get(cell.plan.role, algorithm_label(cell.plan.algorithm))


def bytes_text(value: float) -> str:
    """MiB with 2 decimals; below 0.01 MiB in bytes, so a tiny run does not read as 0.00 MiB."""
    return f"{value / MIB:.2f} MiB" if value >= 0.01 * MIB else f"{value:.0f} B"


def status_text(cell: TierCell) -> str:
    status = cell.convergence
    return "—" if status is None else status.text()


def gap_text(cell: TierCell) -> str:
    return "gap —" if cell.gap is None else f"gap {difference_text(cell.gap)}"


def cell_text(cell: TierCell | None, pending: bool = False, best: bool = False) -> str:
    if cell is None:
        return "tuning pending" if pending else "—"
    summary = cell.summary
    if summary is None:
        return f"{cell.n_done}/{cell.n_planned} runs done"
    text = summary.text(sep="<br>")
    if best:
        text = f"**{text}**"
    parts = [text, gap_text(cell)] if cell.plan.is_federated else [text]
    return "<br>".join([*parts, status_text(cell)])


def bytes_to_target_text(task: TierTask, cell: TierCell) -> str:
    if not cell.plan.is_federated:
        return "— (no communication)"
    if task.target is None:
        return "no reference yet"
    if not cell.complete:
        return _status(cell)
    k, n = len(cell.reached), cell.n_done
    if not k:
        return f"not reached (0/{n})"
    return f"{bytes_text(cell.mean_bytes_to_target)} ({k}/{n} reached)"  # type: ignore[arg-type]


def clients_text(cell: TierCell) -> str:
    clients = cell.clients
    if clients is None:
        return "—" if cell.complete else _status(cell)
    interval = clients.interval
    shown = f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval is not None else ""
    return f"{clients.worst.mean:.4f}{shown} ({clients.qualified_text()})"


def pending(task: TierTask, index: int | None, algorithm: str) -> bool:
    """Whether the choice for (partition ``index``, or any partition, ``algorithm``) is still open.

    A partition that is not tuned itself takes the choice of the tuned one, so it waits on that one.
    """
    entries = [t for t in task.tuning if t.algorithm == algorithm]
    own = [t for t in entries if index is None or t.partition.index == index]
    return any(t.chosen is None for t in (own or entries))


def ordered_cells(task: TierTask) -> list[TierCell]:
    """Centralized first (converged, equal), then FL cells by partition then algorithm (registry order)."""
    out = [c for role in (CENTRALIZED_CONVERGED, CENTRALIZED_EQUAL) if (c := task.centralized(role))]
    for p in task.partitions:
        out += task.federated_cells(p.index)
    return out


def _status(cell: TierCell) -> str:
    return f"{cell.n_done}/{cell.n_planned} runs done"


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
    if task.centralized(CENTRALIZED_CONVERGED) is not None:
        shown = ", ".join(f"{k}={v}" for k, v in task.converged_overrides.items()) or "no different settings recorded"
        lines.append(f"- Centralized (converged): the equal-budget setting (its tuned lr) with {shown}; its figure is "
                     "the test metric of the round with the best validation score when the run recorded it "
                     "(`test_best_round`), else of the final model")
    lines.append(f"- Convergence: {plan.convergence.text()}")
    lines.append(f"- Selection: {plan.selection} (tuning grid and choices below; test metrics never select)")
    lines.append("- Hardware: " + (" | ".join(task.hardware) or "(no finished runs yet)"))
    lines.append(f"- CPU time of the records so far: {task.cpu_hours:.2f} h (sum of their wall times)")
    lines.append(f"- Every cell: run ids in [{task.task}.csv]({task.task}.csv)")
    return lines


def task_markdown(plan: Plan, task: TierTask) -> str:
    central = [task.centralized(role) for role in (CENTRALIZED_CONVERGED, CENTRALIZED_EQUAL)]
    header = ["Partition"] + [f"{t} †" for t in ROLE_TITLES.values()] + [algorithm_label(a) for a in task.algorithms]
    lines = [f"# {task.task} · tier `{plan.tier}`", "",
             "Generated from plan.json and the result records by `fednlp-bench leaderboard --plan`; do not edit by hand.",
             "", *header_lines(plan, task), "",
             f"Cell: test `{task.metric}` mean ± sample std (ddof=1) over seeds, {CONFIDENCE:.0%} confidence interval "
             "(Student t, n−1 df; none for n=1) and n seeds; then, for FL cells, the gap FL − centralized (equal "
             "budget), paired by seed (same seed: same partition draw and client sequence) with its t interval and "
             "Welch's unpaired interval beside it; then the convergence status. **Bold**: the best FL cell of the row "
             "by *validation* among converged cells (a cell still rising is never marked). `k/n runs done`: not every "
             "seed has finished; such a cell is not averaged.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for p in task.partitions:
        best = task.best_federated(p.index)
        central_pending = pending(task, None, centralized_baseline())
        row = [plabel(p)] + [cell_text(c, central_pending) if c is not None or central_pending else "not run"
                             for c in central]
        row += [cell_text(task.cell(p.index, a), pending(task, p.index, a), best is not None and
                          task.cell(p.index, a) is best) for a in task.algorithms]
        lines.append("| " + " | ".join(row) + " |")
    source = next((c.plan.partition for c in central if c is not None), task.partitions[0] if task.partitions else None)
    lines += ["", f"† Centralized training pools every client's data, so it does not depend on the partition: it "
                  f"runs once, on the {plabel(source)} partition, and every row shows those same runs.", ""]
    fairness = fairness_markdown(ordered_cells(task), lambda c: (plabel(c.plan.partition), column_title(c)))
    return "\n".join(lines + details_markdown(task) + fairness + tuning_markdown(task)) + "\n"


def details_markdown(task: TierTask) -> list[str]:
    """Per cell: tuned settings, validation, bytes, bytes to 90% of centralized, wall time, worst-10% clients."""
    lines = ["## Per cell: settings, validation, communication, time, clients", ""]
    if task.target is not None:
        reference = ROLE_TITLES[task.target_role or CENTRALIZED_EQUAL].lower()
        lines.append(f"Bytes to {TARGET_SHARE:.0%} of centralized: per run, the cumulative bytes up + down through the "
                     f"first round whose validation `{task.metric}` ≥ {TARGET_SHARE} × the mean best validation "
                     f"`{task.metric}` of {reference} = {task.target:.4f}; mean over the runs that reach it (k/n reached).")
    else:
        lines.append(f"Bytes to {TARGET_SHARE:.0%} of centralized: no reference yet (the centralized runs are not all done).")
    lines += ["", "Worst 10% clients: mean over seeds of the final model's metric on the worst-served 10% of the "
                  "clients whose local evaluation set meets the minimum (`client_eval`), with a 95% bootstrap interval "
                  "(clients resampled within each seed) and how many clients qualified."]
    header = ["Partition", "Algorithm", "Hyperparameters (tuned on)", "Validation (window mean)", "Mean bytes up+down",
              "Bytes to 90% of centralized", "Mean wall time", "Worst 10% clients"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in ordered_cells(task):
        tuned = task.partition(c.plan.tuned_on) if c.plan.tuned_on is not None else None
        where = f" (tuned on {plabel(tuned)})" if tuned is not None else ""
        done = c.complete
        validation = c.validation
        row = [plabel(c.plan.partition), column_title(c), point_text(c.plan.hyperparameters) + where,
               validation.text() if validation is not None else _status(c),
               bytes_text(c.mean_total_bytes) if done and c.mean_total_bytes is not None else _status(c),
               bytes_to_target_text(task, c),
               f"{c.mean_wall_time_s:.1f} s" if done and c.mean_wall_time_s is not None else _status(c),
               clients_text(c)]
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def _extension_text(entry: PlanTuning) -> str:
    if not entry.extensions:
        return "none"
    steps: dict[int, list[str]] = {}
    for e in entry.extensions:
        steps.setdefault(int(e["step"]), []).append(f"{e['axis']} {'↓' if e['side'] == 'low' else '↑'} {e['value']:g}")
    return "; ".join(f"step {k}: {', '.join(v)}" for k, v in sorted(steps.items()))


def tuning_markdown(task: TierTask) -> list[str]:
    lines = ["## Tuning", ""]
    if not task.tuning:
        return lines + ["No tuning entries in plan.json for this task.", ""]
    lines += [f"Validation `{task.metric}` of each grid point (tuning seed), averaged over the evaluated rounds of the convergence window; **chosen** is the "
              "suite's choice (highest validation, ties to the earlier point). A choice on an edge of an axis extends "
              "that axis by one log step (step ≥ 1 below), up to the cap; a choice still on an edge after the cap is "
              "flagged ⚠.", "",
              "| Partition | Algorithm | Runs | Extensions (cap) | Choice |", "|---|---|---|---|---|"]
    entries = sorted(task.tuning, key=lambda t: (t.partition.index, _algo_order(task, t.algorithm)))
    for entry in entries:
        if entry.chosen is None:
            choice = "pending"
        else:
            choice = point_text(entry.chosen)
            if entry.on_edge:
                choice += f" ⚠ still on the edge of {', '.join(entry.on_edge)} after the cap"
        lines.append(f"| {plabel(entry.partition)} | {algorithm_label(entry.algorithm)} | {len(entry.grid)} | "
                     f"{_extension_text(entry)} ({entry.extension_cap}) | {choice} |")
    lines += ["", "| Partition | Algorithm | Grid point | Step | Seed | Validation | |", "|---|---|---|---|---|---|---|"]
    for entry in entries:
        for point in entry.grid:
            chosen = same_point(point.point, entry.chosen)
            value = "pending" if point.validation is None else f"{point.validation:.4f}"
            mark = "**chosen**" if chosen else ("choice pending" if entry.chosen is None else "")
            if chosen:
                value = f"**{value}**"
            lines.append(f"| {plabel(entry.partition)} | {algorithm_label(entry.algorithm)} | {point_text(point.point)} "
                         f"| {point.step} | {point.seed} | {value} | {mark} |")
    return lines + [""]


def _algo_order(task: TierTask, algorithm: str) -> int:
    return task.algorithms.index(algorithm) if algorithm in task.algorithms else -1


# ---------------------------------------------------------------- csv
def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def _row(task: TierTask, c: TierCell) -> dict[str, object]:
    s, v, status, clients = c.summary, c.validation, c.convergence, c.clients
    interval = s.interval if s is not None else None
    tuned = task.partition(c.plan.tuned_on) if c.plan.tuned_on is not None else None
    worst_ci = clients.interval if clients is not None else None
    gap = c.gap
    return {
        "task": task.task, "data": task.data or "", "metric": task.metric,
        "partition_index": c.plan.partition.index, "partition": plabel(c.plan.partition),
        "partition_scheme": c.plan.partition.scheme, "partition_params": json.dumps(c.plan.partition.params, sort_keys=True),
        "algorithm": c.plan.algorithm, "algorithm_label": column_title(c), "role": c.plan.role,
        "hyperparameters": json.dumps(c.plan.hyperparameters, sort_keys=True),
        "tuned_on": "" if c.plan.tuned_on is None else c.plan.tuned_on,
        "tuned_on_partition": "" if tuned is None else plabel(tuned),
        "n_planned": c.n_planned, "n_done": c.n_done, "complete": c.complete,
        "seeds": " ".join(str(x) for x in c.seeds),
        "mean": _num(s.mean if s else None), "std": _num(s.std if s else None),
        "ci_low": _num(interval[0] if interval else None), "ci_high": _num(interval[1] if interval else None),
        "validation_mean": _num(v.mean if v else None),
        "converged": "" if status is None or status.converged is None else status.converged,
        "slope_per_round": _num(status.slope if status else None),
        "best": c.plan.is_federated and task.best_federated(c.plan.partition.index) is c,
        "gap_to_centralized_equal": _num(gap.paired.mean if gap and gap.paired else gap.value if gap else None),
        "gap_paired_ci_half_width": _num(gap.paired_half_width if gap else None),
        "gap_paired_n": "" if gap is None or gap.paired is None else gap.paired.n,
        "gap_welch_ci_half_width": _num(gap.welch_half_width if gap else None),
        "mean_total_bytes": _num(c.mean_total_bytes), "target_validation": _num(task.target),
        "target_reference": task.target_role or "", "bytes_to_target_mean": _num(c.mean_bytes_to_target),
        "bytes_to_target_reached": "" if c.bytes_to_target is None else f"{len(c.reached)}/{c.n_done}",
        "bytes_to_target_runs": "" if c.bytes_to_target is None else
        " ".join("none" if b is None else str(b) for b in c.bytes_to_target),
        "mean_wall_time_s": _num(c.mean_wall_time_s), "worst_10pct": _num(clients.worst.mean if clients else None),
        "worst_10pct_ci_low": _num(worst_ci[0] if worst_ci else None),
        "worst_10pct_ci_high": _num(worst_ci[1] if worst_ci else None),
        "clients_qualified": "" if clients is None else " ".join(str(q) for q in clients.qualified),
        "run_ids": " ".join(c.run_ids), "done_run_ids": " ".join(i.record.run_id for i in c.records),
    }


def task_csv(task: TierTask) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for c in ordered_cells(task):
        writer.writerow(_row(task, c))
    return buf.getvalue()
