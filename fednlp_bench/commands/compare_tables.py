"""The tables ``fednlp-bench compare`` prints: the gap table of one task and the summary over tasks.

Kept apart from the command (compare.py), which plans and runs: these only
read finished records. Every primary metric is higher-is-better (its metric
declares it so: tasks/metrics.py), so a gap is FL minus centralized.
"""

from __future__ import annotations

import statistics
from typing import Any, Sequence

from fednlp_bench.leaderboard.convergence import DEFAULT, Criterion, records_status


def baseline_of(algorithms: Sequence[str]) -> str | None:
    """The centralized baseline among ``algorithms`` (by its declaration), if listed."""
    from fednlp_bench.algorithms.registry import is_centralized

    return next((a for a in algorithms if is_centralized(a)), None)


#: compare has no tier: it marks each cell with the protocol's default convergence criterion.
CRITERION = Criterion.from_dict(DEFAULT)


def summary_table(results: list[tuple[Any, dict[str, list[Any]], dict[str, str]]]) -> str:
    """One row per task (a compare TaskPlan, its records, its failures): centralized and each FL gap to it."""
    algorithms: list[str] = []
    for task_plan, _, _ in results:
        algorithms += [a for a in task_plan.algorithms if a != baseline_of(task_plan.algorithms) and a not in algorithms]
    rows = ["Gap to centralized per task (final primary metric; FL minus centralized, higher is better)", "",
            "| task | metric | centralized | " + " | ".join(algorithms) + " |",
            "|---|---|---:|" + "---:|" * len(algorithms)]
    for task_plan, records, failed in results:
        done = [rs for rs in records.values() if rs]
        if not done:
            rows.append(f"| {task_plan.task} | - | no run finished |" + " |" * len(algorithms))
            continue
        metric = done[0][0].primary_metric
        central = records.get(baseline_of(list(records)) or "") or []
        central_mean = statistics.fmean(r.final_metrics[metric] for r in central) if central else None
        cells = []
        for algo in algorithms:
            rs = records.get(algo) or []
            if algo in failed:
                cells.append("diverged")
            elif not rs:
                cells.append("-")
            else:
                mean = statistics.fmean(r.final_metrics[metric] for r in rs)
                cells.append(f"{mean:.4f}" if central_mean is None else f"{mean:.4f} ({mean - central_mean:+.4f})")
        central_text = "-" if central_mean is None else f"{central_mean:.4f}"
        rows.append(f"| {task_plan.task} | {metric} | {central_text} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    if len(values) == 1:
        return values[0], None
    return statistics.fmean(values), statistics.stdev(values)


def _fmt(mean: float, std: float | None, signed: bool = False) -> str:
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text if std is None else f"{text} ± {std:.4f}"


def gap_table(records: dict[str, list[Any]], failed: dict[str, str] | None = None) -> str:
    """Markdown table: primary metric per algorithm and its difference to centralized."""
    failed = failed or {}
    done = {a: rs for a, rs in records.items() if rs}
    if not done:
        return "no run finished"
    first = next(iter(done.values()))[0]
    metric = first.primary_metric
    cfg = first.config
    part = first.partition
    params = ",".join(f"{k}={v}" for k, v in sorted((part.get("params") or {}).items()))
    budget = (f"{cfg['local_epochs']} local epoch(s)" if cfg["local_epochs"] is not None
              else f"{cfg['local_steps']} local step(s)")
    seeds = sorted({r.seed for rs in done.values() for r in rs})
    header = (
        f"Gap table: {cfg['task']} ({cfg['data'] or 'default data'}, model {cfg['model']}, "
        f"{cfg['max_train_examples'] or 'all'} train examples), partition {part['scheme']}"
        f"{'(' + params + ')' if params else ''} over {part['num_clients']} clients, "
        f"{cfg['clients_per_round']} clients/round, {cfg['rounds']} rounds, {budget}, "
        f"{cfg['optimizer']} lr={cfg['lr']}, seed(s) {seeds}; metric: test {metric} of the final model "
        f"(higher is better; rounds were evaluated on validation)"
    )
    central = done.get(baseline_of(list(done)) or "")
    central_mean = _mean_std([r.final_metrics[metric] for r in central])[0] if central else None
    rows = [f"| algorithm | {metric} | gap vs centralized | relative gap | final train loss | MiB up | wall s | "
            "convergence |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for algo, rs in records.items():
        if not rs:
            rows.append(f"| {algo} | diverged | | | | | | |")
            continue
        values = [r.final_metrics[metric] for r in rs]
        mean, std = _mean_std(values)
        if central_mean is None:
            gap = rel = "n/a"
        else:
            gaps = [v - central_mean for v in values]
            gap = _fmt(*_mean_std(gaps), signed=True)
            rel = f"{100 * statistics.fmean(gaps) / central_mean:+.1f}%" if central_mean else "n/a"
        losses = [r.rounds[-1].train_loss for r in rs if r.rounds[-1].train_loss is not None]
        loss = f"{statistics.fmean(losses):.4f}" if losses else "-"
        up = statistics.fmean(r.bytes_up for r in rs) / 2**20
        wall = statistics.fmean(r.wall_time_s for r in rs)
        rows.append(f"| {algo} | {_fmt(mean, std)} | {gap} | {rel} | {loss} | {up:.1f} | {wall:.1f} | "
                    f"{convergence_text(rs)} |")
    notes = [f"diverged: {a}: {msg}" for a, msg in failed.items()]
    notes.append(f"convergence: {CRITERION.text()} (docs/protocol.md; the tiers declare their own)")
    notes = baseline_lines(first, metric) + notes
    return "\n".join([header, "", *rows, *([""] + notes if notes else [])])


def convergence_text(records: Sequence[Any]) -> str:
    """Converged / still rising (+x per round) over the seeds, by the protocol's default criterion."""
    return records_status(records, CRITERION).text()


def baseline_lines(record: Any, metric: str) -> list[str]:
    """Reference baselines stored in the record (generation: lead-k), so a score can be read against them."""
    lines = []
    for name, base in sorted((getattr(record, "baselines", None) or {}).items()):
        if name == "lead":
            lines.append(
                f"lead baseline (first {base['k']} words of the input, k chosen on validation): "
                f"test {metric} {base['test'][metric]:.4f} (validation {base['validation'][metric]:.4f})"
            )
        else:
            lines.append(f"{name} baseline: test {metric} {base['test'][metric]:.4f}")
    return lines
