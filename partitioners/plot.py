"""PNG picture of a partition: stacked label bars per client (as flwr-datasets' visualization).

Two panels share the client axis: absolute counts (shows quantity skew) and
label shares (shows label skew even for tiny clients). Uses matplotlib's
object API with the Agg canvas, so it works headless and never touches a
global pyplot state; the file is written atomically.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from fednlp_bench.partitioners.errors import PartitionError
from fednlp_bench.partitioners.stats import PartitionStats
from fednlp_bench.atomic import atomic_write


def check_plot_path(path: str | os.PathLike[str]) -> Path:
    """Validate a ``--plot`` path before any work."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise PartitionError(f"plot file {str(path)!r} must end in .png")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise PartitionError(f"folder {str(parent)!r} for plot {str(path)!r} does not exist; create it first")
    return path


def _colors(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        # tab20 pairs light/dark shades; reorder so neighbouring labels differ in hue.
        order = list(range(0, 20, 2)) + list(range(1, 20, 2))
        return [colormaps["tab20"](order[i]) for i in range(n)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, n)]


def plot_partition(
    stats: PartitionStats, path: str | os.PathLike[str], title: str | None = None, max_clients: int = 200
) -> Path:
    """Write the stacked-bar PNG of ``stats`` to ``path`` (first ``max_clients`` clients)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = check_plot_path(path)
    n = min(stats.sizes.size, max_clients)
    if stats.counts is not None:
        counts = stats.counts[:n].astype(float)
        names = list(stats.label_names) or [str(i) for i in range(counts.shape[1])]
    else:
        counts = stats.sizes[:n, None].astype(float)
        names = ["rows"]
    sizes = counts.sum(axis=1)
    shares = np.divide(counts, sizes[:, None], out=np.zeros_like(counts), where=sizes[:, None] > 0)

    width = float(np.clip(4.0 + 0.11 * n, 8.0, 30.0))
    legend_cols = 1 if len(names) <= 25 else 2
    fig = Figure(figsize=(width + 2.5 * legend_cols, 7.5), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax_counts, ax_share = fig.subplots(2, 1, sharex=True, height_ratios=[1.0, 1.0])
    x = np.arange(n)
    colors = _colors(len(names))
    bottom_c = np.zeros(n)
    bottom_s = np.zeros(n)
    bar_w = 0.85 if n <= 300 else 1.0
    handles = []
    for j, name in enumerate(names):
        h = ax_counts.bar(x, counts[:, j], bottom=bottom_c, width=bar_w, color=colors[j], label=name, linewidth=0)
        ax_share.bar(x, shares[:, j], bottom=bottom_s, width=bar_w, color=colors[j], linewidth=0)
        bottom_c += counts[:, j]
        bottom_s += shares[:, j]
        handles.append(h)
    ax_counts.set_ylabel("rows")
    ax_share.set_ylabel("label share")
    ax_share.set_ylim(0, 1)
    ax_share.set_xlabel("client id")
    ax_share.set_xlim(-0.6, n - 0.4)
    step = max(1, int(np.ceil(n / 25)))
    ax_share.set_xticks(x[::step])
    for ax in (ax_counts, ax_share):
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(_heading(stats, title, n), fontsize=11)
    if len(names) > 1:
        fig.legend(
            handles[::-1], names[::-1], loc="outside right center", title="label", fontsize=8, ncols=legend_cols,
            frameon=False,
        )
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, lambda fh: fh.write(buf.getvalue()))
    return path


def _heading(stats: PartitionStats, title: str | None, n: int) -> str:
    """The title line (scheme, parameters, clients, rows, seed) and the figures line (JS distance, Gini)."""
    spec, n_all = stats.partition.spec, stats.sizes.size
    params = ", ".join(f"{k}={v}" for k, v in sorted(spec.params.items()))
    heading = title or f"{spec.scheme}({params})  ·  {n_all} clients  ·  {spec.num_rows} rows  ·  seed {spec.seed}"
    figures = f"size Gini {stats.gini:.3f}"
    if stats.mean_js is not None:
        figures = f"mean JS distance to global {stats.mean_js:.3f}  ·  " + figures
    if n < n_all:
        figures += f"  ·  showing clients 0-{n - 1} of {n_all}"
    return f"{heading}\n{figures}"
