"""Which rows were really trained on: every training batch of every update that reached the global model.

With ``local_steps`` a client does not see all of its rows, and a client whose
update was rejected contributed nothing, so "the rows of participating
clients" overstates the members (6% of them had never been in a batch in the
first audit records). The trainer reports each batch (``LocalTrainer.batch_observer``);
the tracker keeps a client's rows pending until the round ends and commits
them only for clients whose update was aggregated. Committed rounds are saved
next to the checkpoints (``trained_rows.json``, written before each round's
checkpoint) so a resumed run knows what was trained before it stopped; a
round that is re-run after a resume replaces its entry.

``watch`` rows (the canaries) are also counted with multiplicity: how many
times they were in a batch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np

from fednlp_bench.atomic import atomic_write_text

TRACK_FILE = "trained_rows.json"


class BatchTracker:
    """Feature rows per round and client, as the trainer fed them; ``commit`` keeps only accepted updates."""

    def __init__(self, run_dir: str | Path | None, watch: Iterable[int] = ()) -> None:
        self.path = None if run_dir is None else Path(run_dir) / TRACK_FILE
        self.watch = {int(r) for r in watch}
        self._pending: dict[int, set[int]] = {}
        self._pending_watch: dict[int, int] = {}
        #: round -> {"clients": {client: sorted rows}, "watched": times a watched row was in a batch}
        self.rounds: dict[int, dict] = {}
        if self.path is not None and self.path.is_file():
            saved = json.loads(self.path.read_text())
            self.rounds = {int(r): {"clients": {int(c): rows for c, rows in v["clients"].items()},
                                    "watched": int(v["watched"])} for r, v in saved["rounds"].items()}

    def observe(self, client_id: int, rows: np.ndarray) -> None:
        batch = [int(r) for r in np.asarray(rows).tolist()]
        self._pending.setdefault(int(client_id), set()).update(batch)
        if self.watch:
            self._pending_watch[int(client_id)] = self._pending_watch.get(int(client_id), 0) + sum(
                r in self.watch for r in batch)

    def commit(self, rnd: int, accepted: Iterable[int]) -> None:
        """End of round ``rnd``: keep the batches of ``accepted`` clients, drop the rest, save."""
        keep = {int(c) for c in accepted}
        self.rounds = {r: v for r, v in self.rounds.items() if r < rnd}
        self.rounds[int(rnd)] = {
            "clients": {c: sorted(rows) for c, rows in self._pending.items() if c in keep},
            "watched": sum(n for c, n in self._pending_watch.items() if c in keep),
        }
        self._pending, self._pending_watch = {}, {}
        if self.path is not None:
            data = {"rounds": {str(r): {"clients": {str(c): rows for c, rows in v["clients"].items()},
                                        "watched": v["watched"]} for r, v in sorted(self.rounds.items())}}
            atomic_write_text(self.path, json.dumps(data, separators=(",", ":")) + "\n")

    def trained_rows(self) -> np.ndarray:
        """Every feature row that was in a batch of an aggregated update, sorted."""
        rows = {r for v in self.rounds.values() for per in v["clients"].values() for r in per}
        return np.array(sorted(rows), dtype=np.int64)

    def participants(self) -> set[int]:
        """Clients with at least one aggregated update."""
        return {c for v in self.rounds.values() for c in v["clients"]}

    def watched_count(self) -> int:
        return sum(v["watched"] for v in self.rounds.values())

    def rounds_of(self, client_id: int) -> list[int]:
        return sorted(r for r, v in self.rounds.items() if int(client_id) in v["clients"])
