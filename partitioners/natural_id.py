"""Natural partition: one client per distinct value of an existing column (author, site, source).

This is the only scheme whose non-IIDness comes from the data itself, so it
has no randomness and no free ``num_clients``: the column decides both.

Real populations have a long tail of tiny groups (AESLC: 19 of 143 Enron
mailboxes hold fewer than 10 e-mails). ``merge_below=N`` pools every group
with fewer than N rows into one extra client, the last one, instead of
dropping rows or refusing the column; ``merge_below`` is a scheme parameter,
so it is in the partition's spec and hash.

A long tail is easy to miss: 20News by ``author`` is 5,342 clients, median
size 1. So the scheme warns, in one line, when more than ``warn_share`` of its
clients hold fewer than ``warn_below`` rows (or ``min_size``, if larger), and
names the smallest ``merge_below`` that brings the share under the limit.
These two only decide whether to warn; they change no client, so they are not
in the spec.
"""

from __future__ import annotations

import logging

import numpy as np

from fednlp_bench.registry import Param, declare
from fednlp_bench.checks import at_least
from fednlp_bench.partitioners.base import Draw, Partitioner, register_partitioner
from fednlp_bench.partitioners.data import ColumnData
from fednlp_bench.partitioners.errors import PartitionError

log = logging.getLogger(__name__)
#: Parameters that only steer the small-client warning (left out of the spec and its hash).
WARNING_PARAMS = ("warn_below", "warn_share")
_WARNED: set[str] = set()


@register_partitioner
class NaturalIdPartitioner(Partitioner):
    """Client ``i`` = rows whose group value is the i-th in sorted order of the distinct values."""

    name = "natural_id"
    label = "Natural"
    needs = frozenset({"groups"})
    param_specs = declare(
        Param("group_column", str, "author", help="column whose distinct values become the clients"),
        Param("merge_below", int, 0, at_least(0, "0 turns merging off"),
              "pool the groups with fewer rows than this into one last client (0: off)"),
        Param("warn_below", int, 10, at_least(1),
              "a client with fewer rows than this (or min_size) counts as small for the warning"),
        Param("warn_share", float, 0.5, lambda v: None if 0 <= v <= 1 else "must be in [0, 1]",
              "warn when more than this share of the clients is small (1: never)"),
    )
    random_sizes = False
    infers_num_clients = True

    def _clients(self, data: ColumnData) -> tuple[np.ndarray, int]:
        """Client of each row and the number of clients, after pooling the groups below ``merge_below``."""
        assert data.groups is not None
        sizes = np.bincount(data.groups, minlength=len(data.group_names))
        small = sizes < int(self.params.get("merge_below", 0))
        if not small.any():
            return data.groups.astype(np.int64), len(sizes)
        if small.all():
            raise PartitionError(
                f"natural_id: every group of column {self.params['group_column']!r} has fewer than "
                f"merge_below={self.params['merge_below']} rows, so all would merge into one client; lower merge_below"
            )
        code = np.full(len(sizes), -1, dtype=np.int64)
        code[~small] = np.arange(int((~small).sum()))
        code[small] = int((~small).sum())  # the pooled client comes last
        return code[data.groups], int((~small).sum()) + 1

    def resolve_num_clients(self, data: ColumnData) -> int:
        assert data.groups is not None
        distinct = self._clients(data)[1]
        if self.num_clients is not None and self.num_clients != distinct:
            raise PartitionError(
                f"natural_id: column {self.params['group_column']!r} has {len(data.group_names)} distinct values"
                f"{f', {distinct} clients after merge_below' if distinct != len(data.group_names) else ''}, so "
                f"num_clients must be {distinct} (or omitted), not {self.num_clients}"
            )
        return distinct

    def check_size_limits(self, n: int, k: int) -> None:
        # Groups never outnumber rows, and too-small groups get the specific message of _check_data.
        if n < 1:
            raise PartitionError("the dataset is empty; nothing to partition")

    def _check_data(self, data: ColumnData) -> None:
        assert data.groups is not None
        sizes = np.bincount(data.groups, minlength=len(data.group_names))
        small = np.nonzero(sizes < self.min_size)[0]
        merge_below = int(self.params.get("merge_below", 0))
        if small.size and (merge_below < self.min_size or self._pooled_size(data) < self.min_size):
            example = data.group_names[int(small[0])]
            raise PartitionError(
                f"natural_id: {small.size} groups of column {self.params['group_column']!r} have fewer than "
                f"min_size={self.min_size} rows (e.g. {example!r} has {int(sizes[small[0]])}); lower min_size, "
                f"pool them with merge_below={self.min_size} (their pooled client needs {self.min_size} rows too) "
                f"or group by a coarser column"
            )
        self._warn_small_clients(sizes)

    def _spec_params(self) -> dict[str, object]:
        return {k: v for k, v in self.params.items() if k not in WARNING_PARAMS}

    def _warn_small_clients(self, group_sizes: np.ndarray) -> None:
        """One warning line when too many clients are small, with the ``merge_below`` that fixes it."""
        small_rows = max(int(self.params["warn_below"]), self.min_size)
        share_limit = float(self.params["warn_share"])
        merge_below = int(self.params.get("merge_below", 0))
        clients = _client_sizes(group_sizes, merge_below)
        small = int((clients < small_rows).sum())
        if small <= share_limit * clients.size:
            return
        fix = _fixing_merge_below(group_sizes, small_rows, share_limit)
        advice = (f"pool them with merge_below={fix} ({_client_sizes(group_sizes, fix).size:,} clients then) "
                  "or group by a coarser column" if fix is not None else "group by a coarser column")
        message = (f"natural_id: {small:,} of {clients.size:,} clients ({small / clients.size:.0%}) of column "
                   f"{self.params['group_column']!r} have fewer than {small_rows} rows (median "
                   f"{float(np.median(clients)):g}); {advice} (warn_share=1 turns this warning off)")
        if message not in _WARNED:  # a compare builds the same partition once per run: say it once
            _WARNED.add(message)
            log.warning("%s", message)

    def _pooled_size(self, data: ColumnData) -> int:
        assert data.groups is not None
        sizes = np.bincount(data.groups, minlength=len(data.group_names))
        return int(sizes[sizes < int(self.params.get("merge_below", 0))].sum())

    def _draw(self, data: ColumnData, rng: np.random.Generator) -> Draw:
        clients, k = self._clients(data)
        return np.bincount(clients, minlength=k), lambda: clients


def _client_sizes(group_sizes: np.ndarray, merge_below: int) -> np.ndarray:
    """Client sizes after pooling the groups below ``merge_below`` into one (as :meth:`_clients` does)."""
    small = group_sizes < merge_below
    if not small.any() or small.all():
        return group_sizes
    return np.append(group_sizes[~small], group_sizes[small].sum())


def _fixing_merge_below(group_sizes: np.ndarray, small_rows: int, share_limit: float) -> int | None:
    """The smallest ``merge_below`` after which at most ``share_limit`` of the clients are small, or None."""
    for merge_below in range(2, small_rows + 1):
        if (group_sizes < merge_below).all():
            return None
        clients = _client_sizes(group_sizes, merge_below)
        if (clients < small_rows).sum() <= share_limit * clients.size:
            return merge_below
    return None
