"""Non-IID partitioners: turn one dataset split into federated clients.

One small class per scheme behind :class:`Partitioner` (``iid``,
``dirichlet_label``, ``quantity_skew``, ``feature_cluster``, ``shard``,
``natural_id``), an immutable :class:`Partition` result that saves/loads with
a content hash, and statistics/plots describing how skewed it is.
"""

from fednlp_bench.partitioners.api import make_partitioner, partition_dataset, partition_with
from fednlp_bench.partitioners.base import PARTITIONERS, Partitioner, get_partitioner_class, register_partitioner
from fednlp_bench.partitioners.data import ColumnData, dataset_fingerprint
from fednlp_bench.partitioners.errors import (
    MinSizeError,
    PartitionError,
    PartitionFileError,
    PartitionMismatchError,
)
from fednlp_bench.partitioners.partition import Partition, PartitionSpec

# Importing the scheme modules registers them in PARTITIONERS.
from fednlp_bench.partitioners.iid import IidPartitioner  # noqa: E402  (isort: keep registry order)
from fednlp_bench.partitioners.dirichlet import DirichletLabelPartitioner  # noqa: E402
from fednlp_bench.partitioners.quantity import QuantitySkewPartitioner  # noqa: E402
from fednlp_bench.partitioners.feature_cluster import FeatureClusterPartitioner  # noqa: E402
from fednlp_bench.partitioners.shard import ShardPartitioner  # noqa: E402
from fednlp_bench.partitioners.natural_id import NaturalIdPartitioner  # noqa: E402
from fednlp_bench.partitioners.stats import PartitionStats, partition_stats  # noqa: E402

__all__ = [
    "ColumnData",
    "DirichletLabelPartitioner",
    "FeatureClusterPartitioner",
    "IidPartitioner",
    "MinSizeError",
    "NaturalIdPartitioner",
    "PARTITIONERS",
    "Partition",
    "PartitionError",
    "PartitionFileError",
    "PartitionMismatchError",
    "PartitionSpec",
    "PartitionStats",
    "Partitioner",
    "QuantitySkewPartitioner",
    "ShardPartitioner",
    "dataset_fingerprint",
    "get_partitioner_class",
    "make_partitioner",
    "partition_dataset",
    "partition_stats",
    "partition_with",
    "register_partitioner",
]
