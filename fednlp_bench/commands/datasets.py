"""`fednlp-bench datasets`: which tasks exist, where their data comes from, how big each split is.

Answers "what will `run --task X` train on?" before any training: the
resolved source (local folder or hub name), split sizes (train, validation,
test), where the validation split came from, how many rows were skipped
(0 unless ``--skip-invalid-rows``), and what ``partition_key`` means.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "datasets",
        help="list tasks, their data sources, split sizes and partition_key meaning",
        description="List the registered tasks, their hub default and offline source, split sizes and partition_key.",
    )
    parser.add_argument("--task", action="append", help="only this task (repeatable); default: all")
    parser.add_argument("--data", help="data directory or hub name to inspect instead of the task's default")
    parser.add_argument("--no-sizes", action="store_true", help="do not load the data (fast; sizes are omitted)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def describe_task(name: str, data: str | None, sizes: bool) -> dict[str, Any]:
    """One row of the listing; a missing source is reported in the row, not raised."""
    from fednlp_bench.paths import TINY_MODEL, DataSourceError
    from fednlp_bench.tasks import get_task_class
    from fednlp_bench.tasks.sources import resolve_source

    cls = get_task_class(name)
    row: dict[str, Any] = {
        "task": name,
        "primary_metric": cls.primary_metric,
        "hub_default": cls.hub_default,
        "local_default": cls.local_default,
        "partition_key": getattr(cls, "partition_key_meaning", ""),
    }
    try:
        kind, where, _ = resolve_source(data, cls.local_default, cls.hub_default)
        row["source"] = f"{kind} {where}"
    except DataSourceError as err:
        row["source"] = f"error: {err}"
        return row
    if sizes:
        try:
            task = cls(model=TINY_MODEL, data=data)  # tiny: only the tokenizer is touched
            row["splits"] = task.split_sizes()
            row["skipped"] = dict(task.skipped)
            row["validation"] = dict(getattr(task, "validation_info", {}) or {})
            row["source"] = task.source
        except (DataSourceError, ValueError, FileNotFoundError) as err:
            row["error"] = str(err)
    return row


def run(args: argparse.Namespace) -> int:
    from fednlp_bench.tasks import task_names

    names = args.task or task_names()
    unknown = [n for n in names if n not in task_names()]
    if unknown:
        from fednlp_bench.tasks import get_task_class

        get_task_class(unknown[0])  # raises the "unknown task ... did you mean" error
    rows = [describe_task(n, args.data, not args.no_sizes) for n in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['task']}  (primary metric: {row['primary_metric']})")
        print(f"  hub default   : {row['hub_default']}")
        print(f"  offline source: $FEDNLP_DATA_DIR/{row['local_default']}")
        print(f"  resolved      : {row['source']}")
        if "splits" in row:
            sizes = ", ".join(f"{k} {v:,}" for k, v in row["splits"].items())
            print(f"  splits        : {sizes}")
        if "validation" in row:
            print(f"  validation    : {_validation_text(row['validation'])}")
        if "skipped" in row:
            print(f"  skipped rows  : {', '.join(f'{k} {v}' for k, v in row['skipped'].items())}")
        if "error" in row:
            print(f"  not available : {row['error']}")
        print(f"  partition_key : {row['partition_key']}")
    return 0


def _validation_text(info: dict[str, Any]) -> str:
    """Where the validation split came from, in one line."""
    if not info:
        return "none"
    if info.get("source") == "dataset":
        text = "the dataset's own validation split"
    else:
        text = (f"held out of train: {info['fraction']:.0%} {info['split_by']}, seed {info['seed']} "
                f"({info['rows']:,} of {info['train_rows_before']:,} rows)")
    if info.get("test_from") == "validation":
        text += "; the source's validation split is used as test"
    return text
