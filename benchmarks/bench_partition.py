"""Benchmark: Dirichlet label skew of 1,000,000 labels (20 classes) into 1,000 clients.

Times fednlp-bench's ``dirichlet_label`` against flwr-datasets'
``DirichletPartitioner`` on the same labels in the same run, with the same
alpha, minimum client size and self-balancing, and prints the speed ratio and
both partitions' heterogeneity figures (mean Jensen-Shannon distance to the
global label mix, size Gini) so "faster" is checked at equal statistics.

flwr-datasets is not a project dependency; make its venv first:

    benchmarks/setup_bench_env.sh            # -> .bench-venv
    .bench-venv/bin/python benchmarks/bench_partition.py

flwr-datasets is timed two ways: on an Arrow-formatted Dataset (its label
column converts to numpy without copying, so this is its partitioning
algorithm alone), alternating with fednlp-bench so machine load hits both
alike; and once on a default-format Dataset, as its documentation uses it,
where ``np.array(dataset[column])`` iterates rows in Python. The latter runs
in a child process with a time limit (``--flwr-timeout``); if it does not
finish, everything is re-run at ``--fallback-rows`` and both sizes printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

from fednlp_bench.partitioners import ColumnData, partition_dataset
from fednlp_bench.partitioners.dirichlet import DirichletLabelPartitioner
from fednlp_bench.partitioners.stats import js_distances, size_gini, tv_distances


def make_labels(rows: int, classes: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, size=rows, dtype=np.int64)


def figures(counts: np.ndarray) -> dict[str, float]:
    sizes = counts.sum(axis=1)
    return {
        "mean_js": float(np.nanmean(js_distances(counts))),
        "mean_tv": float(np.nanmean(tv_distances(counts))),
        "size_gini": size_gini(sizes),
        "size_min": int(sizes.min()),
        "size_max": int(sizes.max()),
        "labels_per_client": float((counts > 0).sum(axis=1).mean()),
    }


def _ours_once(ds: Any, labels: np.ndarray, args: argparse.Namespace) -> tuple[float, float, Any]:
    t0 = time.perf_counter()
    part = partition_dataset(ds, "dirichlet_label", args.clients, seed=args.seed, min_size=args.min_size,
                             label_column="label", alpha=args.alpha)
    end_to_end = time.perf_counter() - t0
    data = ColumnData.from_labels(labels)
    t0 = time.perf_counter()
    DirichletLabelPartitioner(args.clients, seed=args.seed, min_size=args.min_size, alpha=args.alpha).partition(data)
    return end_to_end, time.perf_counter() - t0, part


def _flwr_once(ds: Any, args: argparse.Namespace) -> tuple[float, dict[int, list[int]]]:
    from flwr_datasets.partitioner import DirichletPartitioner

    partitioner = DirichletPartitioner(
        num_partitions=args.clients, partition_by="label", alpha=args.alpha,
        min_partition_size=args.min_size, self_balancing=True, shuffle=True, seed=args.seed,
    )
    partitioner.dataset = ds
    t0 = time.perf_counter()
    partitioner.load_partition(0)  # the first load computes the whole assignment
    seconds = time.perf_counter() - t0
    mapping = getattr(partitioner, "_partition_id_to_indices", None) or getattr(partitioner, "_node_id_to_indices")
    return seconds, mapping


def _counts_from_mapping(mapping: dict[int, list[int]], labels: np.ndarray, args: argparse.Namespace) -> np.ndarray:
    counts = np.zeros((args.clients, args.classes), dtype=np.int64)
    for cid, idx in mapping.items():
        counts[cid] = np.bincount(labels[np.asarray(idx, dtype=np.int64)], minlength=args.classes)
    return counts


def run_interleaved(labels: np.ndarray, args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """fednlp-bench and flwr-datasets' fast path alternate, so machine load hits both alike.

    flwr-datasets gets an Arrow-formatted Dataset here: its ``np.array(dataset[column])``
    is then a zero-copy conversion instead of a per-row Python iteration, i.e. this
    times its partitioning algorithm, not datasets' column access.
    """
    from datasets import Dataset

    ds = Dataset.from_dict({"label": labels})
    ours_e2e, ours_core, flwr_fast = [], [], []
    part = mapping = None
    for _ in range(args.repeats):
        e2e, core, part = _ours_once(ds, labels, args)
        ours_e2e.append(e2e)
        ours_core.append(core)
        if not args.no_flwr:
            seconds, mapping = _flwr_once(ds.with_format("arrow"), args)
            flwr_fast.append(seconds)
    assert part is not None
    counts = np.bincount(part.client_of_row() * args.classes + labels,
                         minlength=args.clients * args.classes).reshape(args.clients, args.classes)
    ours = {"seconds": statistics.median(ours_e2e), "core_seconds": statistics.median(ours_core),
            **figures(counts), "counts": counts}
    if mapping is None:
        return ours, None
    fcounts = _counts_from_mapping(mapping, labels, args)
    return ours, {"seconds": statistics.median(flwr_fast), **figures(fcounts), "counts": fcounts}


def _flwr_default_child(labels: np.ndarray, args: argparse.Namespace, queue: Any) -> None:
    try:
        from datasets import Dataset

        seconds, _ = _flwr_once(Dataset.from_dict({"label": labels}), args)
        queue.put({"seconds": seconds})
    except BaseException as err:  # report, do not hang the parent
        queue.put({"error": f"{type(err).__name__}: {err}"})


def run_flwr_default(labels: np.ndarray, args: argparse.Namespace) -> float | None:
    """flwr-datasets on a plain (default-format) Dataset, as its docs use it; forked child with a time limit."""
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_flwr_default_child, args=(labels, args, queue))
    proc.start()
    deadline = time.monotonic() + args.flwr_timeout
    result = None
    while time.monotonic() < deadline:
        try:
            result = queue.get(timeout=1.0)
            break
        except Exception:
            if not proc.is_alive():
                break
    if result is None:
        proc.terminate()
        proc.join()
        return None
    proc.join()
    if "error" in result:
        raise RuntimeError(f"flwr-datasets failed: {result['error']}")
    return float(result["seconds"])


def compare(rows: int, args: argparse.Namespace) -> dict[str, Any]:
    labels = make_labels(rows, args.classes, args.seed)
    print(f"\n== {rows:,} labels, {args.classes} classes, {args.clients:,} clients, alpha={args.alpha}, "
          f"min_size={args.min_size}, self-balancing on ==", flush=True)
    ours, flwr = run_interleaved(labels, args)
    print(f"fednlp-bench dirichlet_label: {ours['seconds']:.3f}s end to end (Dataset -> Partition, incl. column "
          f"read and fingerprint), {ours['core_seconds']:.3f}s core; median of {args.repeats}", flush=True)
    result: dict[str, Any] = {"rows": rows, "ours": ours}
    if flwr is None:
        ours.pop("counts")
        return result
    print(f"flwr-datasets DirichletPartitioner, Arrow-formatted Dataset: {flwr['seconds']:.3f}s; "
          f"median of {args.repeats}", flush=True)
    # Same seed, same per-label Dirichlet draws and split rule: the (client x label) count tables agree
    # up to float rounding at a few split points (numpy's pairwise sum vs Python's sequential sum).
    diff = np.abs(ours.pop("counts") - flwr.pop("counts"))
    result["count_table_agreement"] = {"cells": int(diff.size), "cells_differing": int((diff > 0).sum()),
                                       "max_cell_difference": int(diff.max())}
    result["flwr"] = flwr
    result["ratio_fast_path"] = flwr["seconds"] / ours["seconds"]
    result["ratio_fast_path_core"] = flwr["seconds"] / ours["core_seconds"]
    default = run_flwr_default(labels, args)
    if default is None:
        print(f"flwr-datasets on a default-format Dataset: did not finish within {args.flwr_timeout}s", flush=True)
    else:
        print(f"flwr-datasets DirichletPartitioner, default-format Dataset: {default:.3f}s (1 run)", flush=True)
        flwr["default_format_seconds"] = default
        result["ratio_default"] = default / ours["seconds"]
    return result


def report(res: dict[str, Any]) -> None:
    ours, flwr = res["ours"], res.get("flwr")
    keys = [("mean_js", "mean JS distance to global", ".4f"), ("mean_tv", "mean TV distance", ".4f"),
            ("size_gini", "client size Gini", ".4f"), ("size_min", "smallest client", "d"),
            ("size_max", "largest client", "d"), ("labels_per_client", "labels per client", ".2f")]
    print(f"\n{'statistic':<28}{'fednlp-bench':>14}{'flwr-datasets':>15}")
    for key, label, fmt in keys:
        other = format(flwr[key], fmt) if flwr else "-"
        print(f"{label:<28}{format(ours[key], fmt):>14}{other:>15}")
    seconds_other = f"{flwr['seconds']:.3f}" if flwr else "-"
    print(f"{'seconds (median)':<28}{ours['seconds']:>14.3f}{seconds_other:>15}")
    if flwr:
        agree = res["count_table_agreement"]
        print(f"\n(client x label) count tables vs flwr-datasets: {agree['cells_differing']} of {agree['cells']:,} cells "
              f"differ, by at most {agree['max_cell_difference']} row(s)")
        print(f"speed-up vs flwr-datasets' algorithm (Arrow-formatted input): {res['ratio_fast_path']:.1f}x end to end, "
              f"{res['ratio_fast_path_core']:.1f}x core  ({res['rows']:,} rows)")
        if "ratio_default" in res:
            print(f"speed-up vs flwr-datasets on a default-format Dataset (its usual input): {res['ratio_default']:.1f}x")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--classes", type=int, default=20)
    p.add_argument("--clients", type=int, default=1_000)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--min-size", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each side (median reported)")
    p.add_argument("--flwr-timeout", type=float, default=900.0,
                   help="seconds allowed for flwr-datasets on a default-format Dataset")
    p.add_argument("--fallback-rows", type=int, default=100_000, help="size to retry at if flwr times out")
    p.add_argument("--no-flwr", action="store_true", help="time fednlp-bench only")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if not args.no_flwr:
        try:
            import flwr_datasets  # noqa: F401
        except ModuleNotFoundError:
            print("flwr-datasets is not installed here; run benchmarks/setup_bench_env.sh and use .bench-venv/bin/python "
                  "(or pass --no-flwr)", file=sys.stderr)
            return 2
    from importlib.metadata import version

    pkgs = ["numpy", "datasets"] + ([] if args.no_flwr else ["flwr-datasets"])
    print(f"python {platform.python_version()} on {platform.machine()}, "
          + ", ".join(f"{p} {version(p)}" for p in pkgs))
    results = [compare(args.rows, args)]
    first = results[0]
    if not args.no_flwr and "ratio_default" not in first and args.fallback_rows < args.rows:
        results.append(compare(args.fallback_rows, args))
    for res in results:
        report(res)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
