"""``partition_dataset``: the one call the rest of the project uses.

Order matters for the "bad input fails before any work" rule: scheme and
parameters are checked first, then the columns, then the data-dependent
limits, and only then are columns read, texts embedded and rows drawn.
"""

from __future__ import annotations

from typing import Any

from fednlp_bench.partitioners.base import DEFAULT_MAX_TRIES, Partitioner, get_partitioner_class
from fednlp_bench.partitioners.data import ColumnData, arrow_column, dataset_fingerprint, encode_values, require_columns
from fednlp_bench.partitioners.errors import PartitionError
from fednlp_bench.partitioners.partition import Partition


def make_partitioner(
    scheme: str,
    num_clients: int | None,
    seed: int = 0,
    min_size: int = 1,
    group_column: str | None = None,
    max_tries: int = DEFAULT_MAX_TRIES,
    **params: Any,
) -> Partitioner:
    """Validate a request and build its scheme object (no data needed, nothing computed)."""
    cls = get_partitioner_class(scheme)
    if group_column is not None:
        if "group_column" not in cls.param_specs:
            raise PartitionError(f"group_column is only used by scheme 'natural_id', not {scheme!r}; drop it")
        params["group_column"] = group_column
    return cls(num_clients, seed=seed, min_size=min_size, max_tries=max_tries, **params)


def partition_dataset(
    dataset: Any,
    scheme: str,
    num_clients: int | None,
    seed: int = 0,
    min_size: int = 1,
    label_column: str = "partition_key",
    text_column: str = "text",
    group_column: str | None = None,
    max_tries: int = DEFAULT_MAX_TRIES,
    **params: Any,
) -> Partition:
    """Partition a ``datasets.Dataset`` (one split) into ``num_clients`` clients.

    ``params`` are the scheme's own (``alpha``, ``beta``, ``clusters``,
    ``classes_per_client`` ...); see ``PARTITIONERS[scheme].param_specs``.
    Labels and groups may be ints or strings.
    """
    partitioner = make_partitioner(
        scheme, num_clients, seed=seed, min_size=min_size, group_column=group_column, max_tries=max_tries, **params
    )
    return partition_with(partitioner, dataset, label_column=label_column, text_column=text_column)


def partition_with(
    partitioner: Partitioner, dataset: Any, label_column: str = "partition_key", text_column: str = "text"
) -> Partition:
    """Run an already-validated partitioner on a dataset split."""
    data = load_columns(partitioner, dataset, label_column=label_column, text_column=text_column)
    return partitioner.partition(data)


def load_columns(
    partitioner: Partitioner, dataset: Any, label_column: str = "partition_key", text_column: str = "text"
) -> ColumnData:
    """Read exactly the columns the scheme needs, after checking they exist."""
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        kind = type(dataset).__name__
        hint = " (pass one split, e.g. dataset['train'])" if kind == "DatasetDict" else ""
        raise PartitionError(f"expected a datasets.Dataset, got {kind}{hint}")
    roles: dict[str, str] = {}
    if "labels" in partitioner.needs:
        roles["label column"] = label_column
    if "texts" in partitioner.needs:
        roles["text column"] = text_column
    if "groups" in partitioner.needs:
        roles["group column"] = partitioner.params["group_column"]
    require_columns(dataset, roles)
    if partitioner.num_clients is not None:
        partitioner.check_size_limits(len(dataset), partitioner.num_clients)
    fields: dict[str, Any] = {}
    if "labels" in partitioner.needs:
        codes, names = encode_values(arrow_column(dataset, label_column), f"label column {label_column!r}:")
        if names == ("-1",) and label_column == "partition_key":
            raise PartitionError(
                f"every row has partition_key -1 (this task defines no label for skew); scheme "
                f"{partitioner.name!r} needs one: use iid, quantity_skew or feature_cluster"
            )
        fields.update(labels=codes, label_names=names)
    if "groups" in partitioner.needs:
        column = partitioner.params["group_column"]
        codes, names = encode_values(arrow_column(dataset, column), f"group column {column!r}:")
        fields.update(groups=codes, group_names=names)
    if "texts" in partitioner.needs:
        texts = arrow_column(dataset, text_column)
        if texts.null_count:
            raise PartitionError(f"text column {text_column!r} has {texts.null_count} missing values")
        fields["texts"] = texts.to_pylist()
    return ColumnData(num_rows=len(dataset), fingerprint=dataset_fingerprint(dataset), **fields)
