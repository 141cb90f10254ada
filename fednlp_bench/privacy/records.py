"""What a DP run's record may publish: the released quantities only; the rest goes to a marked side file.

A round row of a plain run holds who took part, the clients' size-weighted
training loss, the exact bytes (which count the clients) and the round's
wall time (which grows with them). None of these is noised, so a DP record
publishing them would leak what epsilon does not cover. In DP records a
round row keeps only what the mechanism released or is public:

* ``clients`` and ``rejected_clients`` are empty and ``train_loss`` is null;
* ``bytes_up`` / ``bytes_down`` are the *expected* bytes, clients_per_round x model
  (x (1 - dropout) up), the same every round;
* ``wall_time_s`` is the run's mean round time;
* ``privacy`` holds epsilon so far, the clip norm and noise std used and (adaptive) the noised
  unclipped fraction, never the exact clipped fraction or client count.

The exact values are written to ``nonprivate_diagnostics.json`` beside the
record, for debugging a run: marked as not covered, git-ignored, and read by
no table (tables read ``record.json`` alone). The checkpoint keeps them too
(it is private: it also holds the secret noise seed).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

from fednlp_bench.atomic import atomic_write_text

NONPRIVATE_FILENAME = "nonprivate_diagnostics.json"
NONPRIVATE_KEY = "nonprivate"
WARNING = (
    "NOT COVERED BY THE RUN'S DIFFERENTIAL PRIVACY GUARANTEE: exact per-round participants, losses, counts, bytes "
    "and times of a DP run. For debugging only; never publish this file, no table reads it."
)


def public_rounds(rounds: Sequence[Any], *, clients_per_round: int, model_bytes: int, dropout: float) -> list[Any]:
    """Copies of a DP run's round rows with every non-released value replaced (see the module docstring)."""
    if not rounds:
        return []
    mean_time = sum(r.wall_time_s for r in rounds) / len(rounds)
    down = int(clients_per_round * model_bytes)
    up = int(round(clients_per_round * (1.0 - dropout) * model_bytes))
    public = []
    for r in rounds:
        privacy = {k: v for k, v in (r.privacy or {}).items() if k != NONPRIVATE_KEY}
        public.append(dataclasses.replace(r, clients=[], rejected_clients=[], train_loss=None, bytes_up=up,
                                          bytes_down=down, wall_time_s=mean_time, privacy=privacy))
    return public


def write_nonprivate(run_dir: str | Path, rounds: Sequence[Any]) -> Path:
    """The exact per-round values a DP record leaves out, in a file marked as such."""
    rows = [{
        "round": r.round, "clients": list(r.clients), "rejected_clients": list(r.rejected_clients),
        "train_loss": r.train_loss, "bytes_up": r.bytes_up, "bytes_down": r.bytes_down, "wall_time_s": r.wall_time_s,
        **dict((r.privacy or {}).get(NONPRIVATE_KEY) or {}),
    } for r in rounds]
    path = Path(run_dir) / NONPRIVATE_FILENAME
    atomic_write_text(path, json.dumps({"warning": WARNING, "rounds": rows}, indent=1) + "\n")
    return path
