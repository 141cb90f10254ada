"""The `fednlp-bench partition` command line that makes a given partition spec (standard library only).

Two places need it: the ``partition`` command's own flags (which scheme
parameter each option sets) and the hint a run prints when a saved partition
does not fit its data ("make the partition of exactly these rows with: ...").
The hint must be a complete command, runnable as printed, that writes a new
file instead of the user's, so the flag of every scheme parameter lives here.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Mapping

#: Scheme parameter -> ``partition`` option (only passed when given, and only to schemes that take it).
SCHEME_OPTIONS = {
    "alpha": "--alpha",
    "balance": "--no-balance",
    "distribution": "--distribution",
    "beta": "--beta",
    "exponent": "--exponent",
    "clusters": "--clusters",
    "classes_per_client": "--classes-per-client",
    "model": "--model",
    "max_length": "--max-length",
    "merge_below": "--merge-below",
    "group_column": "--group-column",
    "warn_below": "--warn-below",
    "warn_share": "--warn-share",
}
#: Schemes whose number of clients comes from the data (never passed as --clients: new data, new count).
_DATA_DEFINED_CLIENTS = ("natural_id",)


def scheme_flags(params: Mapping[str, Any]) -> list[str]:
    """``--alpha 0.5 --no-balance ...`` for a spec's parameters (``balance: true`` is the default: no flag)."""
    words: list[str] = []
    for key, value in sorted(params.items()):
        if key not in SCHEME_OPTIONS:
            raise KeyError(f"scheme parameter {key!r} has no `fednlp-bench partition` option")
        if key == "balance":
            words += [] if value else ["--no-balance"]
        else:
            words += [SCHEME_OPTIONS[key], str(value)]
    return words


def fresh_path(path: str | Path, tag: str = "fit") -> Path:
    """``part.json`` -> ``part-fit.json`` (or ``part-fit2.json`` ...): a name no file has yet."""
    path = Path(path)
    for n in range(1, 1000):
        candidate = path.with_name(f"{path.stem}-{tag}{n if n > 1 else ''}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"no free file name like {path.stem}-{tag}N{path.suffix} in {path.parent}")


def partition_command(spec: Mapping[str, Any], *, task: str, out: str | Path, data: str | None = None,
                      max_train_examples: int | None = None) -> str:
    """The complete ``fednlp-bench partition`` line that draws ``spec`` over a task's training rows."""
    words = ["fednlp-bench", "partition", "--task", task]
    if data:
        words += ["--data", data]
    if max_train_examples:
        words += ["--max-train-examples", str(max_train_examples)]
    words += ["--scheme", str(spec["scheme"])]
    if spec.get("num_clients") is not None and spec["scheme"] not in _DATA_DEFINED_CLIENTS:
        words += ["--clients", str(spec["num_clients"])]
    words += ["--seed", str(spec.get("seed", 0)), "--min-size", str(spec.get("min_size", 1))]
    words += scheme_flags(spec.get("params") or {})
    words += ["--out", str(out)]
    return shlex.join(words)
