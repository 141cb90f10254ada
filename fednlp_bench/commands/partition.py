"""`fednlp-bench partition`: split a dataset into non-IID clients, print its statistics, save it.

Two data modes:
  --task NAME   the task's own loader (``get_task(NAME, data=--data).load()``),
                partitioned by its ``partition_key`` column;
  (no --task)   a local folder/file of JSONL, JSON, CSV or Parquet (``train.jsonl``
                etc.) or a hub dataset name, partitioned by ``--label-column``.
Every argument is checked before data is loaded, and the partition file is
written atomically, so bad input never leaves a partial file behind.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from fednlp_bench.commands.flags import SCHEMES, add_param, add_params, family_values
from fednlp_bench.partition_command import DATA_OPTIONS, OUTPUT_OPTIONS, scheme_flag

RAW_SUFFIXES = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "partition",
        help="split a dataset into non-IID federated clients; print statistics; save the partition (+ PNG)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_params(p.add_argument_group("data"), DATA_OPTIONS.values(), defaults=True)
    sch = p.add_argument_group("scheme")
    out = p.add_argument_group("output")
    add_params(out, OUTPUT_OPTIONS.values(), defaults=True)
    out._group_actions[0].required = True  # --out
    p.set_defaults(func=run)

    def schemes(parser: argparse.ArgumentParser) -> None:
        # The partitioners' declarations: the split's own (clients, seed, ...) and every scheme parameter.
        from fednlp_bench.config_fields import PARTITION_FIELDS
        from fednlp_bench.partitioners.base import SPLIT_PARAMS

        add_param(sch, PARTITION_FIELDS["scheme"], required=True)
        add_params(sch, SPLIT_PARAMS.values(), defaults=True)
        for name, entries in SCHEMES.load().all_params().items():
            param = entries[0][1]
            action = add_param(sch, param, flag=scheme_flag(param), dest=f"{SCHEMES.key}.{name}")
            action.help += f" ({', '.join(e for e, _ in entries)})"

    p.defer(schemes)  # type: ignore[attr-defined]


def scheme_params(args: argparse.Namespace, accepted: set[str], scheme: str) -> dict[str, Any]:
    """The scheme options the user gave; an option the scheme does not use is an error, not a silent no-op."""
    from fednlp_bench.partitioners import PARTITIONERS

    given = family_values(args, SCHEMES)
    flag = {name: scheme_flag(entries[0][1]) for name, entries in PARTITIONERS.all_params().items()}
    unused = sorted(flag[k] for k in given if k not in accepted)
    if unused:
        valid = sorted(flag[k] for k in accepted)
        raise ValueError(f"{', '.join(unused)} not used by scheme {scheme!r}; its options are {valid or 'none'}")
    return given


def load_raw_split(data: str | None, split: str) -> Any:
    """A local JSONL/JSON/CSV/Parquet folder or file, else a hub dataset name."""
    from fednlp_bench.paths import resolve_local_dir

    local = resolve_local_dir(data, "20news")
    if local is None:
        if data is None:
            raise FileNotFoundError("no --data given and $FEDNLP_DATA_DIR/20news not found; pass --data DIR|FILE|HUB_NAME")
        from datasets import load_dataset

        from fednlp_bench.hub import unreachable_reason

        why = unreachable_reason()
        if why:
            raise FileNotFoundError(f"--data {data!r} is not a local path, and {why}; or pass a local folder or file")
        try:
            return load_dataset(data, split=split)
        except Exception as err:  # hub errors come in many types; report them as bad input
            raise FileNotFoundError(
                f"--data {data!r} is not a local path and could not be loaded from the hub "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            ) from None
    if local.is_file():
        file = local
    else:
        candidates = [local / f"{split}{suffix}" for suffix in RAW_SUFFIXES]
        found = [c for c in candidates if c.is_file()]
        if not found:
            present = sorted(x.name for x in local.iterdir())
            raise FileNotFoundError(
                f"no {split}.jsonl/.json/.csv/.parquet in {str(local)!r} (it has {present}); pass --split or a file"
            )
        file = found[0]
    builder = RAW_SUFFIXES.get(file.suffix.lower())
    if builder is None:
        raise ValueError(f"cannot read {str(file)!r}: use a .jsonl, .json, .csv or .parquet file")
    from datasets import load_dataset

    _check_rows(file)  # a malformed file -> the same one-line file:line error as `run`, before datasets sees it
    try:
        return load_dataset(builder, data_files=str(file), split="train")
    except Exception as err:  # DatasetGenerationError & co.: say it in one line
        raise ValueError(_locate_bad_row(file, err)) from None


def _check_rows(file: Path) -> None:
    """Read the file with the task readers, which name ``file:line`` for the first bad row."""
    from fednlp_bench.tasks.sources import read_csv, read_jsonl, read_parquet

    reader = {".jsonl": read_jsonl, ".csv": read_csv, ".parquet": read_parquet}.get(file.suffix.lower())
    if reader is not None:
        reader(file, ())


def _locate_bad_row(file: Path, err: Exception) -> str:
    """The same ``file:line`` message ``run`` gives for a file ``datasets`` could not read."""
    from fednlp_bench.tasks.sources import read_csv, read_jsonl, read_parquet

    reader = {".jsonl": read_jsonl, ".csv": read_csv, ".parquet": read_parquet}.get(file.suffix.lower())
    if reader is not None:
        try:
            reader(file, ())
        except ValueError as found:
            return str(found)
    cause = err.__cause__ or err.__context__ or err
    first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return f"{file}: could not be read as {file.suffix.lstrip('.')} ({type(cause).__name__}: {first})"


def load_split(args: argparse.Namespace) -> tuple[Any, str, list[str] | None]:
    """The split to partition, the label column to use, and the names of its integer values (if known)."""
    if args.task:
        from fednlp_bench.tasks import get_task

        # A run draws its training subset with the partition seed; the same (N, seed) gives the same rows here.
        task = get_task(args.task, data=args.data, max_train_examples=args.max_train_examples, seed=args.seed)
        splits = task.load()
        if args.split not in splits:
            raise ValueError(f"task {args.task!r} has no split {args.split!r}; it has {sorted(splits)}")
        column = args.label_column or "partition_key"
        names = task.partition_key_names() if column == "partition_key" else None
        return splits[args.split], column, names
    return load_raw_split(args.data, args.split), args.label_column or "label", None


def check_request(args: argparse.Namespace) -> tuple[Path, Path | None, Any]:
    """Everything that can be checked without data: (output file, plot file or None, the scheme object)."""
    from fednlp_bench.partitioners import get_partitioner_class, make_partitioner
    from fednlp_bench.partitioners.plot import check_plot_path
    from fednlp_bench.partitioners.storage import check_output_path

    out = check_output_path(args.out)
    plot = check_plot_path(args.plot) if args.plot else None
    if args.show_clients < 0:
        raise ValueError(f"--show-clients={args.show_clients} must be >= 0")
    if args.max_train_examples is not None:
        if not args.task:
            raise ValueError("--max-train-examples needs --task: it selects the subset a task's `run` trains on")
        if args.max_train_examples < 1:
            raise ValueError(f"--max-train-examples={args.max_train_examples} must be >= 1")
        if args.split != "train":
            raise ValueError(f"--max-train-examples subsets the train split, not --split {args.split}")
    cls = get_partitioner_class(args.scheme)
    params = scheme_params(args, set(cls.param_specs), args.scheme)
    extra: dict[str, Any] = {}
    if args.scheme == "feature_cluster":
        extra["progress"] = True
    partitioner = make_partitioner(
        args.scheme, args.num_clients, seed=args.seed, min_size=args.min_size, max_tries=args.max_tries,
        **params, **extra,
    )
    return out, plot, partitioner


def run(args: argparse.Namespace) -> int:
    from fednlp_bench.atomic import AllOrNothing
    from fednlp_bench.partitioners import partition_stats, partition_with
    from fednlp_bench.partitioners.data import arrow_column, encode_values
    from fednlp_bench.partitioners.plot import plot_partition
    from fednlp_bench.partitioners.storage import JSON_ROW_LIMIT

    # 1. Everything that can be checked without data.
    out, plot, partitioner = check_request(args)

    # 2. Data, then the partition (data-dependent checks run before any drawing).
    dataset, label_column, key_names = load_split(args)
    start = time.perf_counter()
    partition = partition_with(partitioner, dataset, label_column=label_column, text_column=args.text_column)
    elapsed = time.perf_counter() - start

    # 3. Statistics on the label column when the data has one.
    labels = names = None
    if label_column in dataset.column_names:
        labels, names = encode_values(arrow_column(dataset, label_column), f"label column {label_column!r}:")
        if names == ("-1",):
            labels = names = None
        elif key_names is not None and names is not None:
            names = tuple(key_names[int(n)] if n.lstrip("-").isdigit() and 0 <= int(n) < len(key_names) else n
                          for n in names)
    stats = partition_stats(partition, labels, names or ())

    with AllOrNothing(out, *([plot] if plot is not None else [])):  # the file and its PNG, or neither
        partition.save(out)
        if plot is not None:
            plot_partition(stats, plot)
    print(stats.table(max_clients=args.show_clients))
    print()
    print(f"partitioned {partition.num_rows} rows into {partition.num_clients} clients in {elapsed:.2f}s")
    print(f"wrote {out} (content hash {partition.content_hash[:12]})")
    if out.suffix.lower() == ".json" and partition.num_rows > JSON_ROW_LIMIT:
        print(f"note: {partition.num_rows} rows; a .npz file is smaller and faster to load")
    if plot is not None:
        print(f"wrote {Path(plot)}")
    return 0
