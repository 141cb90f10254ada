"""The one interface every scheme implements, its parameter checking, and the registry.

A scheme only says how to *draw* client sizes and how to turn a draw into one
client id per row (``_draw``). The base class owns what every scheme must do
identically: validate arguments before any work, seed one numpy Generator,
retry draws until every client has ``min_size`` rows (a bounded number of
times, as flwr-datasets' DirichletPartitioner does), and wrap the result in an
immutable :class:`Partition` with its spec.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import numpy as np

from fednlp_bench.checks import at_least
from fednlp_bench.partitioners.data import ColumnData
from fednlp_bench.partitioners.errors import MinSizeError, PartitionError
from fednlp_bench.partitioners.partition import Partition, PartitionSpec
from fednlp_bench.registry import Param, Registry, declare, resolve_params

#: A draw: client sizes (to test ``min_size`` cheaply) and a thunk giving one client id per row.
Draw = tuple[np.ndarray, Callable[[], np.ndarray]]


#: Rejection draws allowed before a scheme gives up on ``min_size``. Redraws are sequential from the seeded
#: generator, so a higher cap never changes a partition that an earlier draw already satisfied; 100 lets strong
#: skews (WNUT-17 feature clusters at alpha=0.1, 100 clients, min_size 2: 31 to 52 draws for seeds 1 to 3) succeed.
DEFAULT_MAX_TRIES = 100

#: What every scheme takes besides its own parameters (``partition_dataset``, ``fednlp-bench partition``).
SPLIT_PARAMS = declare(
    Param("num_clients", int, None, at_least(1, "use at least 1 client"), "number of clients (natural_id: optional, "
          "= number of groups)", flag="--clients"),
    Param("seed", int, 0, at_least(0, "use a non-negative integer seed"), "random seed (default: 0)"),
    Param("min_size", int, 1, at_least(0, "use 0 (allow empty clients) or more"), "minimum rows per client "
          "(default: 1)"),
    Param("max_tries", int, DEFAULT_MAX_TRIES, at_least(1, "allow at least 1 try"),
          f"draws tried to meet --min-size (default: {DEFAULT_MAX_TRIES})"),
)


class Partitioner(ABC):
    """Base class: construct with the request, call :meth:`partition` with the data."""

    #: Registry name (``--scheme``).
    name: ClassVar[str]
    #: Human name in leaderboard rows.
    label: ClassVar[str | None] = None
    #: Which :class:`ColumnData` fields the scheme reads: "labels", "texts", "groups".
    needs: ClassVar[frozenset[str]] = frozenset()
    #: The scheme's own parameters (recorded in the spec).
    param_specs: ClassVar[Mapping[str, Param]] = {}
    #: What to change when ``min_size`` cannot be met.
    fix_hint: ClassVar[str] = "lower num_clients or lower min_size"
    #: False when client sizes are fixed by the data, so retrying cannot help.
    random_sizes: ClassVar[bool] = True
    #: True when ``num_clients=None`` means "as many as the data defines" (natural_id).
    infers_num_clients: ClassVar[bool] = False

    def __init__(
        self,
        num_clients: int | None,
        seed: int = 0,
        min_size: int = 1,
        max_tries: int = DEFAULT_MAX_TRIES,
        **params: Any,
    ) -> None:
        if num_clients is None and not self.infers_num_clients:
            raise PartitionError(f"{self.name}: num_clients is required (an integer >= 1)")
        split = resolve_params(SPLIT_PARAMS, {"num_clients": num_clients, "seed": seed, "min_size": min_size,
                                              "max_tries": max_tries}, owner="partition", error=PartitionError,
                               bad="{name}={value!r} is invalid: {problem}")
        self.num_clients, self.seed, self.min_size, self.max_tries = (split[k] for k in SPLIT_PARAMS)
        self.params = resolve_params(self.param_specs, params, owner=f"scheme {self.name!r}", prefix=f"{self.name}: ",
                                     bad="{prefix}{name}={value!r} is invalid: {problem}", error=PartitionError)
        self._check_params(set(params))

    # ----- hooks for schemes -----------------------------------------------
    def _check_params(self, given: set[str]) -> None:
        """Cross-parameter checks (e.g. a parameter that only fits one variant)."""

    def _spec_params(self) -> dict[str, Any]:
        """Parameters recorded in the spec (all by default)."""
        return dict(self.params)

    def _check_data(self, data: ColumnData) -> None:
        """Data-dependent checks that must fail before the expensive part (embedding, drawing)."""

    def _prepare(self, data: ColumnData) -> ColumnData:
        """Expensive one-off preparation (e.g. embedding + clustering); default: nothing."""
        return data

    @abstractmethod
    def _draw(self, data: ColumnData, rng: np.random.Generator) -> Draw:
        """One random draw: sizes per client and a thunk that assigns every row to a client."""

    # ----- the shared algorithm ---------------------------------------------
    def resolve_num_clients(self, data: ColumnData) -> int:
        assert self.num_clients is not None
        return self.num_clients

    def check(self, data: ColumnData) -> None:
        """Every data-dependent check, before any expensive work."""
        for need in sorted(self.needs):
            if getattr(data, need) is None:
                raise PartitionError(f"scheme {self.name!r} needs the dataset's {need} column")
        self.check_size_limits(data.num_rows, self.resolve_num_clients(data))
        self._check_data(data)

    def check_size_limits(self, n: int, k: int) -> None:
        """Row-count limits, checkable from ``len(dataset)`` alone (before reading any column)."""
        if n < 1:
            raise PartitionError("the dataset is empty; nothing to partition")
        if k > n:
            raise PartitionError(f"num_clients={k} exceeds the {n} rows of the dataset; use at most {n} clients")
        if self.min_size * k > n:
            raise PartitionError(
                f"min_size={self.min_size} is impossible: {k} clients x {self.min_size} rows = {self.min_size * k} "
                f"> {n} rows; lower min_size (at most {n // k}) or lower num_clients"
            )

    def partition(self, data: ColumnData) -> Partition:
        """Assign every row of ``data`` to exactly one client, deterministically for ``seed``."""
        self.check(data)
        num_clients = self.resolve_num_clients(data)
        prepared = self._prepare(data)
        rng = np.random.default_rng(self.seed)
        tries = self.max_tries if self.random_sizes else 1
        smallest = None
        for _ in range(tries):
            sizes, materialize = self._draw(prepared, rng)
            if sizes.size != num_clients or int(sizes.sum()) != data.num_rows:  # pragma: no cover - scheme bug
                raise AssertionError(f"{self.name}: draw sizes do not cover the rows")
            smallest = int(sizes.min())
            if smallest >= self.min_size:
                break
        else:
            raise MinSizeError(
                f"{self.name}: no draw gave all {num_clients} clients at least min_size={self.min_size} rows "
                f"in {tries} tr{'ies' if tries > 1 else 'y'} (smallest client got {smallest}); {self.fix_hint}"
            )
        spec = PartitionSpec(
            scheme=self.name,
            num_clients=num_clients,
            seed=self.seed,
            min_size=self.min_size,
            params=self._spec_params(),
            fingerprint=data.fingerprint,
            num_rows=data.num_rows,
        )
        return Partition.from_assignment(spec, materialize())


# ----- shared helpers for schemes -------------------------------------------
def assign_in_order(order: np.ndarray, sizes_in_order: np.ndarray, client_ids: np.ndarray, n: int) -> np.ndarray:
    """Rows ``order[...]`` go, in consecutive runs of ``sizes_in_order``, to ``client_ids``."""
    client_of_row = np.empty(n, dtype=np.int64)
    client_of_row[order] = np.repeat(client_ids, sizes_in_order)
    return client_of_row


def _small_int_dtype(upper: int) -> type[np.signedinteger]:
    # numpy's stable argsort is a radix sort for keys of 16 bits or less, and narrow arrays shuffle in cache.
    return np.int16 if upper <= np.iinfo(np.int16).max else np.int32


def rows_by_label(labels: np.ndarray, num_labels: int, rng: np.random.Generator) -> np.ndarray:
    """Row indices grouped by label (ascending), in random order within each label.

    Two stable radix passes (numpy sorts 16-bit keys by radix): first by a
    random 16-bit key, then by label. This is ~2x faster than a full
    ``permutation(n)``; rows that draw the same key (1 in 65,536) keep their
    index order, a bias far below sampling noise.
    """
    keys = rng.integers(0, 1 << 16, size=labels.size, dtype=np.uint16)
    by_key = np.argsort(keys, kind="stable")
    by_label = np.argsort(labels.astype(_small_int_dtype(num_labels), copy=False)[by_key], kind="stable")
    return by_key[by_label]


def assign_by_table(labels: np.ndarray, table: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``table[k, c]`` rows of label ``k`` go to client ``c``; which rows is random."""
    num_labels, num_clients = table.shape
    order = rows_by_label(labels, num_labels, rng)
    client_dtype = _small_int_dtype(num_clients)
    client_of_row = np.empty(labels.size, dtype=client_dtype)
    client_of_row[order] = np.repeat(np.tile(np.arange(num_clients, dtype=client_dtype), num_labels), table.ravel())
    return client_of_row


def largest_remainder(proportions: np.ndarray, total: int) -> np.ndarray:
    """Integer counts summing to ``total`` closest to ``proportions * total`` (Hamilton rounding)."""
    raw = proportions * total
    counts = np.floor(raw).astype(np.int64)
    short = total - int(counts.sum())
    if short > 0:
        counts[np.argsort(-(raw - counts), kind="stable")[:short]] += 1
    return counts


# ----- registry -------------------------------------------------------------
#: Scheme name -> class, in the order schemes are listed (CLI help, leaderboard rows). The scheme
#: modules register themselves when ``fednlp_bench.partitioners`` is imported.
PARTITIONERS: Registry[type[Partitioner]] = Registry("partition scheme", Partitioner, error=PartitionError)
P = TypeVar("P", bound=type[Partitioner])


def register_partitioner(cls: P) -> P:
    """Class decorator: make a scheme available by name (``--scheme``, ``partition_dataset``)."""
    return PARTITIONERS.register(cls)


def get_partitioner_class(scheme: str) -> type[Partitioner]:
    return PARTITIONERS.lookup(scheme)
