"""The gap figure: FL − centralized (equal budget), paired by seed, against the partition's α, one panel per task.

The question a reader brings is "how much does skew cost each algorithm",
so x is the skew knob itself: α of dirichlet_label / feature_cluster on a
log axis, with IID (α → ∞) drawn one decade to the right of the largest α
and labelled "IID". Partitions without α (natural_id) have no place on that
axis and are left out; the caller lists them in the README. Lines of
different algorithms get distinct markers and dashes and a small horizontal
dodge, so identical results (FedProx with a tiny mu over FedAvg) stay visible.
A cell still rising at the end of its budget is drawn with a hollow marker:
its gap measures the budget, not federated learning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fednlp_bench.atomic import atomic_write
from fednlp_bench.leaderboard.labels import algorithm_label
from fednlp_bench.leaderboard.tier_cells import TierTask
from fednlp_bench.leaderboard.tier_render import plabel

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DASHES = ("-", "--", "-.", ":")
#: Multiplicative offset between algorithms on the log x axis (about ±10% for five lines).
DODGE = 1.05


def iid_position(task: TierTask) -> float:
    alphas = [p.alpha for p in task.partitions if p.alpha is not None]
    return 10.0 * max(alphas) if alphas else 10.0


def omitted_partitions(task: TierTask) -> list[str]:
    """Partitions with neither α nor IID: not drawable on the α axis."""
    return [plabel(p) for p in task.partitions if p.alpha is None and not p.is_iid]


def gap_points(task: TierTask, algorithm: str) -> list[tuple[float, float, float | None, bool]]:
    """(x, paired gap, its 95% half-width or None, converged) of one algorithm's complete cells, sorted by x."""
    out = []
    for p in task.partitions:
        x = p.alpha if p.alpha is not None else (iid_position(task) if p.is_iid else None)
        cell = task.cell(p.index, algorithm)
        if x is None or cell is None or cell.gap is None:
            continue
        gap = cell.gap
        value = gap.paired.mean if gap.paired is not None else gap.value
        out.append((x, value, gap.paired_half_width, cell.converged))
    return sorted(out)


def draw_gap_figure(tasks: list[TierTask]) -> Any:
    """A matplotlib Figure (Agg canvas, no pyplot state) with one panel per task."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = max(1, len(tasks))
    fig = Figure(figsize=(4.2 * n, 3.8), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, n, k + 1) for k in range(len(tasks))]
    for ax, task in zip(axes, tasks):
        drawn = 0
        for k, algorithm in enumerate(task.algorithms):
            points = gap_points(task, algorithm)
            if not points:
                continue
            shift = DODGE ** (k - (len(task.algorithms) - 1) / 2)
            xs = [x * shift for x, _, _, _ in points]
            ys = [y for _, y, _, _ in points]
            errs = [0.0 if hw is None else hw for _, _, hw, _ in points]
            line = ax.errorbar(xs, ys, yerr=errs, linestyle=DASHES[k % len(DASHES)], marker=MARKERS[k % len(MARKERS)],
                               markersize=max(3.5, 7.5 - 0.8 * k), markerfacecolor="none", capsize=3,
                               linewidth=max(1.0, 2.2 - 0.3 * k), label=algorithm_label(algorithm))
            solid = [(x, y) for x, (_, y, _, converged) in zip(xs, points) if converged]
            if solid:
                ax.plot([x for x, _ in solid], [y for _, y in solid], linestyle="none", marker=MARKERS[k % len(MARKERS)],
                        markersize=max(3.5, 7.5 - 0.8 * k), color=line.lines[0].get_color())
            drawn += 1
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ticks = sorted({p.alpha for p in task.partitions if p.alpha is not None})
        labels = [f"{a:g}" for a in ticks]
        if any(p.is_iid for p in task.partitions):
            ticks.append(iid_position(task))
            labels.append("IID")
        if ticks:
            ax.set_xticks(ticks)
            ax.set_xticklabels(labels)
            ax.minorticks_off()
            ax.set_xlim(min(ticks) / 3, max(ticks) * 3)
        ax.set_xlabel("partition α (smaller = more skewed)")
        ax.set_ylabel(f"gap in {task.metric} (FL − centralized)")
        ax.set_title(f"{task.task} · {task.data or 'task default'}", fontsize=10)
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no complete cell with α or IID yet", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8)
    fig.tight_layout()
    return fig


def write_gap_figure(tasks: list[TierTask], path: Path) -> Path:
    """Draw and write the figure atomically; fixed metadata keeps rebuilds byte-identical."""
    fig = draw_gap_figure(tasks)
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png", metadata={"Software": None}))
