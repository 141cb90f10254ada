"""Learning curves of a few records: the validation metric per round, one line per algorithm.

A final number hides whether a run was still improving, had converged or had
diverged; ``run`` and ``compare`` draw this picture beside their records so
the first look at a result shows it. Lines are the mean over seeds at each
evaluated round and the band is min..max over seeds. Rounds were evaluated on
the validation split (test is evaluated once, at the end, and is not drawn).
matplotlib's object API on the Agg canvas (no display, no pyplot state); the
file is written atomically.
"""

from __future__ import annotations

import hashlib
import io
import statistics
from pathlib import Path
from typing import Mapping, Sequence

from fednlp_bench.atomic import atomic_write_bytes
from fednlp_bench.results.record import RunRecord

CURVE_FILENAME = "curve.png"


def validation_curve(records: Sequence[RunRecord], metric: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """(rounds, mean, min, max) of ``metric`` over the records, at every round some record evaluated."""
    per_round: dict[int, list[float]] = {}
    for record in records:
        for r in record.rounds:
            if metric in r.metrics:
                per_round.setdefault(r.round, []).append(float(r.metrics[metric]))
    rounds = sorted(per_round)
    return (rounds, [statistics.fmean(per_round[r]) for r in rounds],
            [min(per_round[r]) for r in rounds], [max(per_round[r]) for r in rounds])


def compare_curve_path(runs_dir: str | Path, task: str, records: Mapping[str, Sequence[RunRecord]]) -> Path:
    """``<runs>/compare-<task>-<digest>.png``: one name per set of runs, the same when a compare is re-run."""
    ids = sorted(r.run_id for rs in records.values() for r in rs)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:8]
    return Path(runs_dir) / f"compare-{task}-{digest}.png"


def write_learning_curves(records: Mapping[str, Sequence[RunRecord]], path: str | Path,
                          title: str | None = None) -> Path:
    """Draw the validation curve of each algorithm's records into one PNG at ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    done = {algo: rs for algo, rs in records.items() if rs}
    if not done:
        raise ValueError("no finished run to draw a learning curve of")
    first = next(iter(done.values()))[0]
    metric = first.primary_metric
    fig = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    from fednlp_bench.algorithms.registry import is_centralized

    markers = ("o", "s", "^", "D", "v", "P", "X", "*")
    drawn = 0
    for index, (algo, rs) in enumerate(done.items()):
        rounds, mean, low, high = validation_curve(rs, metric)
        if not rounds:
            continue
        # Later lines thinner with hollow markers, so identical curves stay visible on top of each other.
        (line,) = ax.plot(rounds, mean, linestyle="--" if is_centralized(algo) else "-",
                          marker=markers[index % len(markers)], markerfacecolor="none",
                          markersize=max(3.0, 8.0 - 1.2 * drawn), linewidth=max(1.0, 2.4 - 0.35 * drawn),
                          label=f"{algo} (n={len(rs)})" if len(rs) > 1 else algo)
        if len(rs) > 1:
            ax.fill_between(rounds, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        drawn += 1
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(title or f"{first.task} · {first.config.get('model')} · {first.partition.get('scheme')}", fontsize=10)
    ax.grid(True, alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no round was evaluated on validation", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())
