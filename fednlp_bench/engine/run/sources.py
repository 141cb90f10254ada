"""Where a run's task and partition come from: the seams that tests and the FedML processes replace.

``build_task`` makes the registry task a config names (its ``task_params``
checked by the task's declarations), ``build_partition`` regenerates the
partition a config's spec describes, and ``load_partition_file`` loads a saved
one after checking it was made from exactly this data. The engine calls them
through this module (``sources.build_partition(...)``), so replacing the
module attribute (tests: a toy partition; FedML: ``partition_factory``)
replaces them everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol

import numpy as np

from fednlp_bench.config import PARTITION_KEYS, RunConfig
from fednlp_bench.tasks.base import Task


class PartitionLike(Protocol):
    """What the engine needs of ``fednlp_bench.partitioners.Partition``."""

    num_clients: int
    content_hash: str

    def indices(self, cid: int) -> np.ndarray: ...

    def sizes(self) -> np.ndarray: ...


def build_task(config: RunConfig) -> Task:
    from fednlp_bench.tasks import get_task_class

    cls = get_task_class(config.task)
    # task_params are checked by the task's declarations (Task.param_specs) as it is built. The data subset (and a held-out validation split) follows the partition seed, not the run
    # seed, so repeated seeds of one setting train on the same rows and the same partition.
    return cls(
        model=config.model,
        data=config.data,
        max_length=config.max_length,
        max_train_examples=config.max_train_examples,
        max_eval_examples=config.max_eval_examples,
        max_validation_examples=config.max_validation_examples,
        seed=int(config.partition["seed"]),
        columns=config.columns,
        **config.task_params,
    )


def build_partition(train: Any, spec: Mapping[str, Any]) -> PartitionLike:
    """Regenerate the partition a config describes (same spec + same data -> same partition)."""
    from fednlp_bench.partitioners import partition_dataset

    return partition_dataset(
        train,
        scheme=spec["scheme"],
        num_clients=None if spec["num_clients"] is None else int(spec["num_clients"]),
        seed=int(spec["seed"]),
        min_size=int(spec["min_size"]),
        label_column="partition_key",
        text_column="text",
        **dict(spec.get("params") or {}),
    )


def load_partition_file(path: str | Path, train: Any | None = None, config: RunConfig | None = None) -> PartitionLike:
    """A saved partition; with ``train`` given it must have been made from exactly that data.

    On a mismatch the error gives the ``fednlp-bench partition`` command that makes the partition of this
    run's training rows (the same task, subset size and seed: a run's subset follows the partition seed).
    """
    from fednlp_bench.partitioners import Partition, dataset_fingerprint
    from fednlp_bench.partitioners.errors import PartitionMismatchError

    if train is None:
        return Partition.load(path)
    try:
        return Partition.load(path, fingerprint=dataset_fingerprint(train))
    except PartitionMismatchError as err:
        if config is None:
            raise
        from fednlp_bench.partition_command import fresh_path, partition_command

        saved = Partition.load(path).spec
        command = partition_command(saved.to_dict(), task=config.task, data=config.data,
                                    max_train_examples=config.max_train_examples, out=fresh_path(path))
        raise PartitionMismatchError(
            f"{path} was made from {saved.num_rows} rows (fingerprint {saved.fingerprint[:12]}), but this run "
            f"trains on {len(train)} rows of task {config.task!r}{' (max_train_examples=' + str(config.max_train_examples) + ')' if config.max_train_examples else ''} "
            f"(fingerprint {dataset_fingerprint(train)[:12]}). Make the same partition of exactly these rows with: "
            f"{command} (then pass that file to --partition)"
        ) from err


def partition_spec_for_config(part: Any) -> dict[str, Any]:
    """The data-independent part of a partition's spec that a run config stores."""
    spec = part.spec.to_dict()
    return {k: spec[k] for k in PARTITION_KEYS if k in spec}
