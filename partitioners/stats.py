"""How non-IID is a partition? Per-client sizes and label histograms plus single-number figures.

- mean Jensen-Shannon distance (base 2, so in [0, 1]) of each client's label
  distribution to the global one: 0 = every client looks like the whole data,
  1 = clients share no labels with the global mix. This is the number the
  benchmark plots the centralized-vs-federated gap against.
- mean total-variation distance: the earth mover's distance under a 0/1
  ground metric, which is the right metric for unordered class labels.
- Gini coefficient of client sizes: 0 = equal sizes, -> 1 = one client has all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from fednlp_bench.partitioners.partition import Partition


def label_counts(partition: Partition, labels: np.ndarray, num_labels: int | None = None) -> np.ndarray:
    """``(num_clients, num_labels)`` histogram of integer label codes per client."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (partition.num_rows,):
        raise ValueError(f"labels have shape {labels.shape}, the partition covers {partition.num_rows} rows")
    k = int(num_labels if num_labels is not None else (labels.max() + 1 if labels.size else 0))
    n_clients = partition.num_clients
    flat = partition.client_of_row() * k + labels
    return np.bincount(flat, minlength=n_clients * k).reshape(n_clients, k)


def _distributions(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype=np.float64)
    sizes = counts.sum(axis=1)
    nonempty = sizes > 0
    p = np.zeros_like(counts)
    p[nonempty] = counts[nonempty] / sizes[nonempty, None]
    q = counts.sum(axis=0) / max(counts.sum(), 1.0)
    return p, q, nonempty


def js_distances(counts: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2) of each client's label mix to the global mix; NaN for empty clients."""
    p, q, nonempty = _distributions(counts)
    m = 0.5 * (p + q[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_q = np.where(q[None, :] > 0, q[None, :] * np.log2(q[None, :] / m), 0.0).sum(axis=1)
    js = np.sqrt(np.clip(0.5 * (kl_p + kl_q), 0.0, 1.0))
    js[~nonempty] = np.nan
    return js


def tv_distances(counts: np.ndarray) -> np.ndarray:
    """Total-variation distance of each client's label mix to the global mix; NaN for empty clients."""
    p, q, nonempty = _distributions(counts)
    tv = 0.5 * np.abs(p - q[None, :]).sum(axis=1)
    tv[~nonempty] = np.nan
    return tv


def size_gini(sizes: Sequence[int] | np.ndarray) -> float:
    """Gini coefficient of client sizes (0 = all equal)."""
    x = np.sort(np.asarray(sizes, dtype=np.float64))
    n, total = x.size, x.sum()
    if n == 0 or total == 0:
        return 0.0
    ranks = np.arange(1, n + 1)
    return float((2.0 * (ranks * x).sum()) / (n * total) - (n + 1.0) / n)


@dataclass(frozen=True)
class PartitionStats:
    """Sizes, label histograms and heterogeneity figures of one partition."""

    partition: Partition
    sizes: np.ndarray
    counts: np.ndarray | None = None  # (clients, labels) when labels were given
    label_names: tuple[str, ...] = ()
    js: np.ndarray | None = field(default=None, repr=False)
    tv: np.ndarray | None = field(default=None, repr=False)

    @property
    def mean_js(self) -> float | None:
        return None if self.js is None else float(np.nanmean(self.js))

    @property
    def mean_tv(self) -> float | None:
        return None if self.tv is None else float(np.nanmean(self.tv))

    @property
    def gini(self) -> float:
        return size_gini(self.sizes)

    @property
    def classes_per_client(self) -> np.ndarray | None:
        return None if self.counts is None else (self.counts > 0).sum(axis=1)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly headline numbers (what records and the CLI report)."""
        s = self.sizes
        out: dict[str, Any] = {
            "num_clients": int(s.size),
            "num_rows": int(s.sum()),
            "size_min": int(s.min()),
            "size_median": float(np.median(s)),
            "size_mean": float(s.mean()),
            "size_max": int(s.max()),
            "size_gini": round(self.gini, 4),
        }
        if self.counts is not None:
            cpc = self.classes_per_client
            assert cpc is not None
            out.update(
                num_labels=int(self.counts.shape[1]),
                mean_js_distance=round(float(self.mean_js), 4),
                mean_tv_distance=round(float(self.mean_tv), 4),
                mean_labels_per_client=round(float(cpc.mean()), 2),
            )
        return out

    def table(self, max_clients: int = 20) -> str:
        """Plain-text report: headline figures, then one line per client (the first ``max_clients``)."""
        spec = self.partition.spec
        sm = self.summary()
        params = " ".join(f"{k}={v}" for k, v in sorted(spec.params.items())) or "-"
        lines = [
            f"scheme       {spec.scheme}  ({params})  seed={spec.seed}  min_size={spec.min_size}",
            f"data         {sm['num_rows']} rows, fingerprint {spec.fingerprint[:12] or '-'}; "
            f"partition hash {self.partition.content_hash[:12]}",
            f"clients      {sm['num_clients']}: size min {sm['size_min']} / median {sm['size_median']:g} / "
            f"mean {sm['size_mean']:.1f} / max {sm['size_max']}  (size Gini {sm['size_gini']:.3f})",
        ]
        if self.counts is not None:
            lines.append(
                f"label skew   mean JS distance to global {sm['mean_js_distance']:.3f} (0 = IID, 1 = disjoint), "
                f"mean TV {sm['mean_tv_distance']:.3f}, labels per client {sm['mean_labels_per_client']:.1f} "
                f"of {sm['num_labels']}"
            )
        shown = min(max_clients, self.sizes.size)
        if shown <= 0:
            return "\n".join(lines)
        lines.append("")
        names = self.label_names
        if self.counts is not None:
            width = max([len("top label")] + [len(n) for n in names]) if names else 10
            width = min(width, 28)
            lines.append(f"{'client':>6}  {'size':>7}  {'labels':>6}  {'top label':<{width}}  {'share':>5}  {'JS':>5}")
            assert self.js is not None
            for c in range(shown):
                row = self.counts[c]
                size = int(self.sizes[c])
                top = int(row.argmax())
                top_name = (names[top] if top < len(names) else str(top))[:width]
                share = row[top] / size if size else 0.0
                js = "-" if np.isnan(self.js[c]) else f"{self.js[c]:.3f}"
                lines.append(f"{c:>6}  {size:>7}  {int((row > 0).sum()):>6}  {top_name:<{width}}  {share:>5.2f}  {js:>5}")
        else:
            lines.append(f"{'client':>6}  {'size':>7}")
            lines.extend(f"{c:>6}  {int(self.sizes[c]):>7}" for c in range(shown))
        if shown < self.sizes.size:
            lines.append(f"   ... {self.sizes.size - shown} more clients (--show-clients N to list more)")
        return "\n".join(lines)


def partition_stats(
    partition: Partition, labels: np.ndarray | None = None, label_names: Sequence[str] = ()
) -> PartitionStats:
    """Statistics of ``partition``; label figures need integer label codes for its rows."""
    sizes = partition.sizes()
    if labels is None:
        return PartitionStats(partition=partition, sizes=sizes)
    num_labels = max(len(label_names), int(np.max(labels)) + 1 if len(labels) else 0)
    counts = label_counts(partition, labels, num_labels)
    return PartitionStats(
        partition=partition,
        sizes=sizes,
        counts=counts,
        label_names=tuple(label_names),
        js=js_distances(counts),
        tv=tv_distances(counts),
    )
