"""Metric-vs-round curves: one PNG per (table, partition), one line per algorithm.

A final number hides whether an algorithm was still improving or had
diverged; the curve shows it. Lines are the mean over seeds at each evaluated
round, the band is min..max over seeds. Uses matplotlib's object API with the
Agg canvas (no pyplot global state, no display needed).
"""

from __future__ import annotations

import os
import statistics
import tempfile
from pathlib import Path

from fednlp_bench.leaderboard.tables import Cell, PartitionKey, Table


def curve(cell: Cell) -> tuple[list[int], list[float], list[float], list[float]]:
    """Rounds where the primary metric was evaluated, with mean/min/max over the cell's seeds."""
    per_round: dict[int, list[float]] = {}
    for item in cell.records:
        for r in item.record.rounds:
            if cell.metric in r.metrics:
                per_round.setdefault(r.round, []).append(float(r.metrics[cell.metric]))
    rounds = sorted(per_round)
    return (
        rounds,
        [statistics.fmean(per_round[r]) for r in rounds],
        [min(per_round[r]) for r in rounds],
        [max(per_round[r]) for r in rounds],
    )


def plot_filename(table: Table, row: PartitionKey, with_group: bool) -> str:
    group = f"-{table.group_id}" if with_group else ""
    return f"{table.task}{group}-{row.slug}.png"


def write_plot(table: Table, row: PartitionKey, path: Path) -> Path:
    """Draw one (table, partition) figure and write it atomically to ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    drawn = 0
    # Each line its own marker and dash pattern, later ones thinner with smaller hollow markers: identical
    # curves (FedProx with mu=0 over FedAvg) stay visible on top of each other instead of hiding one.
    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    dashes = ("-", "--", "-.", ":")
    for index, column in enumerate(table.columns):
        cell = table.cell(row, column)
        if cell is None:
            continue
        rounds, mean, low, high = curve(cell)
        if not rounds:
            continue
        style = "--" if column.is_centralized else dashes[drawn % len(dashes)]
        label = f"{table.column_label(column)} (n={cell.n})"
        (line,) = ax.plot(rounds, mean, linestyle=style, marker=markers[index % len(markers)],
                          markersize=max(3.0, 8.0 - 1.2 * drawn), markerfacecolor="none",
                          linewidth=max(1.0, 2.4 - 0.35 * drawn), label=label)
        if cell.n > 1:
            ax.fill_between(rounds, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        drawn += 1
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(table.metric)
    ax.set_title(f"{table.task} · {row.label} · model {table.model}", fontsize=10)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no per-round evaluations in these records", ha="center", transform=ax.transAxes)
    fig.tight_layout()

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".png")
    os.close(fd)
    try:
        # Fixed metadata keeps regenerated PNGs byte-identical when the records are unchanged.
        fig.savefig(tmp, format="png", metadata={"Software": None})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
