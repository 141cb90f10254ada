"""What is left of a tier, in CPU hours, from rates measured in the records (``suite --dry-run``).

A tier runs in chunks across sessions, so before each chunk one must know
what the rest costs. Each record's rounds give two rates of its run shape
(task, data, model, length, trainable part, precision, batch, subsets):

- seconds per trained example: the median over its rounds without
  validation of round time / the round's expected examples
  (E * K * n / N, the same budget the centralized baseline is given);
- seconds per evaluated example: the median over its validated rounds of
  (round time - training time) / validation rows.

A planned run costs rounds x examples x the first rate, plus every example
it evaluates (validation rounds, test once or twice, per-client sets) x the
second. Medians, because a round the machine spent on something else must
not set the rate. A shape without a record uses the rates the suite declares
under ``rates:`` (from a pilot, say), and the printout says which rates are
declared rather than measured. Setup (loading data, building caches) is not
in any record's round times and is only counted where declared.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

from fednlp_bench.config import FIELDS_ADDED_LATER
from fednlp_bench.hints import closest_hint

RATE_KEYS = ("train_examples_per_s", "eval_examples_per_s", "train_rows", "validation_rows", "test_rows",
             "setup_s", "natural_clients", "note")
#: Declared keys that may be left out (the others are all needed for an estimate).
_OPTIONAL = {"setup_s": 0, "natural_clients": None}
_SHAPE = ("task", "data", "model", "max_length", "trainable", "trainable_params", "precision", "task_params",
          "batch_size", "batching", "attention_dropout", "max_train_examples", "max_eval_examples",
          "max_validation_examples")


@dataclass(frozen=True)
class Rate:
    """Seconds per trained and per evaluated example of one run shape, the split sizes, and where they come from."""

    train_s: float
    eval_s: float
    train_rows: int
    validation_rows: int
    test_rows: int
    setup_s: float = 0.0
    #: "measured (N records)" or "declared in the suite (...)".
    source: str = ""
    #: Clients of the task's natural partition (one per group; unknown before the data is loaded).
    natural_clients: int | None = None

    @property
    def declared(self) -> bool:
        return self.source.startswith("declared")


#: The suite's ``rates:`` entries are Rates too; the name says where they come from.
DeclaredRate = Rate


def parse_rates(value: Any, source: str) -> dict[str, Rate]:
    """``rates: {qa: {train_examples_per_s: 6.5, eval_examples_per_s: 24, train_rows: 7938, ...}}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: 'rates' must map a task name to its declared rates, got {value!r}")
    out = {}
    for task, entry in value.items():
        where = f"{source}: rates.{task}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a mapping with keys {list(RATE_KEYS)}")
        for key in entry:
            if key not in RATE_KEYS:
                raise ValueError(f"{where}: unknown key {key!r}.{closest_hint(str(key), RATE_KEYS)} "
                                 f"Valid keys: {', '.join(RATE_KEYS)}")
        numbers = {}
        for key in RATE_KEYS[:-1]:
            number = entry.get(key, _OPTIONAL.get(key))
            if number is None and key in _OPTIONAL:
                numbers[key] = None
                continue
            if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number) \
                    or number < 0 or (number == 0 and key.endswith("per_s")):
                raise ValueError(f"{where}.{key} = {number!r} must be a {'positive' if key.endswith('per_s') else 'non-negative'} "
                                 "number (all of train_examples_per_s, eval_examples_per_s, train_rows, validation_rows "
                                 "and test_rows are needed)")
            numbers[key] = number
        note = str(entry.get("note", "")).strip()
        out[str(task)] = Rate(1.0 / numbers["train_examples_per_s"], 1.0 / numbers["eval_examples_per_s"],
                              int(numbers["train_rows"]), int(numbers["validation_rows"]), int(numbers["test_rows"]),
                              float(numbers["setup_s"]), "declared in the suite" + (f" ({note})" if note else ""),
                              None if numbers["natural_clients"] is None else int(numbers["natural_clients"]))
    return out


def shape_key(config: Mapping[str, Any]) -> str:
    """Runs of one shape cost the same per example; a field a record predates counts as its old default."""
    return json.dumps({k: config.get(k, FIELDS_ADDED_LATER.get(k)) for k in _SHAPE}, sort_keys=True, default=str)


def examples_per_round(config: Mapping[str, Any], train_rows: int, num_clients: int) -> float:
    """Expected examples a round trains on: E * K * n / N (or K * S * batch with local_steps)."""
    if config.get("local_steps") is not None:
        return float(config["clients_per_round"] * config["local_steps"] * config["batch_size"])
    return float(config.get("local_epochs") or 1) * config["clients_per_round"] * train_rows / max(1, num_clients)


def _split_rows(record: Any) -> tuple[int, int, int]:
    splits = ((record.data or {}).get("splits") or {})
    train = int(record.partition.get("num_rows") or splits.get("train") or 0)
    return train, int(splits.get("validation") or 0), int(splits.get("test") or 0)


def _clients(config: Mapping[str, Any], record_partition: Mapping[str, Any] | None = None,
             rate: Rate | None = None) -> int | None:
    """The run's client count: the record's, the config's, else (a natural partition) the declared one."""
    found = (record_partition or {}).get("num_clients") or config["partition"].get("num_clients")
    if found is None and rate is not None:
        found = rate.natural_clients
    return None if found is None else int(found)


def measure(records: Iterable[Any]) -> dict[str, Rate]:
    """Measured rates per run shape.

    A shape whose records validate every round cannot separate training from
    validation: its per-example rate then covers both (the evaluation rate is
    0 and the source says so), which holds for planned runs of the same
    schedule and leaves out their test and per-client evaluation.
    """
    samples: dict[str, dict[str, list[float]]] = {}
    rows: dict[str, tuple[int, int, int]] = {}
    for record in records:
        train_rows, validation_rows, test_rows = _split_rows(record)
        clients = _clients(record.config, record.partition)
        if not train_rows or not validation_rows or clients is None:
            continue
        per_round = examples_per_round(record.config, train_rows, clients)
        key = shape_key(record.config)
        bucket = samples.setdefault(key, {"train": [], "eval": [], "all": [], "n": []})
        plain = [r.wall_time_s / per_round for r in record.rounds if not r.metrics and r.wall_time_s > 0]
        bucket["all"] += [r.wall_time_s / per_round for r in record.rounds if r.wall_time_s > 0]
        if plain:
            train_s = statistics.median(plain)
            bucket["train"] += plain
            bucket["eval"] += [e for e in ((r.wall_time_s - train_s * per_round) / validation_rows
                                           for r in record.rounds if r.metrics) if e > 0]
        bucket["n"].append(1.0)
        rows[key] = (train_rows, validation_rows, test_rows)
    out = {}
    for key, bucket in samples.items():
        n = len(bucket["n"])
        if bucket["train"] and bucket["eval"]:
            out[key] = Rate(statistics.median(bucket["train"]), statistics.median(bucket["eval"]), *rows[key],
                            source=f"measured ({n} record(s))")
        elif bucket["all"]:
            out[key] = Rate(statistics.median(bucket["all"]), 0.0, *rows[key],
                            source=f"measured ({n} record(s); every round validated, so validation is folded into "
                                   "the training rate and test/per-client evaluation are not counted)")
    return out


def evaluated_rounds(rounds: int, every: int) -> int:
    return sum(1 for r in range(1, rounds + 1) if r % every == 0 or r == rounds)


def client_eval_rows(config: Mapping[str, Any], rate: Rate, num_clients: int) -> int:
    """Rows the per-client evaluation reads: v2 local sets from test, or v1's 20% hold-out of train."""
    if not config.get("client_eval"):
        return 0
    params = config.get("client_eval_params") or {}
    if params.get("source") == "test":
        return int(params.get("rows", 0)) * num_clients
    return int(0.2 * rate.train_rows)


def _capped(rows: int, cap: Any) -> int:
    """Rows a seeded subset of ``cap`` leaves of a split (a declared rate's rows are the whole split's)."""
    return rows if not cap else min(rows, int(cap))


def run_seconds(config: Mapping[str, Any], rate: Rate) -> float | None:
    """The estimated wall time of one planned run (setup only where declared); None when its clients are unknown."""
    rounds, clients = int(config["rounds"]), _clients(config, rate=rate)
    if clients is None:
        return None
    train = rounds * examples_per_round(config, rate.train_rows, clients) * rate.train_s
    validation_cap = config.get("max_validation_examples") or config.get("max_eval_examples")
    evaluated = evaluated_rounds(rounds, int(config["eval_every"])) * _capped(rate.validation_rows, validation_cap)
    evaluated += _capped(rate.test_rows, config.get("max_eval_examples")) * (2 if config.get("test_best_round") else 1)
    evaluated += client_eval_rows(config, rate, clients)
    return train + evaluated * rate.eval_s + rate.setup_s


@dataclass
class Estimate:
    """Seconds per task, the sources of the rates used, and the runs no rate covers."""

    seconds: dict[str, float]
    sources: dict[str, set[str]]
    unknown: dict[str, int]

    @property
    def hours(self) -> float:
        return sum(self.seconds.values()) / 3600


def estimate(configs: Iterable[Mapping[str, Any]], measured: Mapping[str, Rate],
             declared: Mapping[str, Rate]) -> Estimate:
    out = Estimate({}, {}, {})
    for config in configs:
        task = str(config["task"])
        rate = measured.get(shape_key(config)) or declared.get(task)
        seconds = None if rate is None else run_seconds(config, rate)
        if seconds is None and rate is not None and declared.get(task) is not None:
            rate = declared[task]  # a natural partition's client count is declared, not measured
            seconds = run_seconds(config, rate)
        if rate is None or seconds is None:
            out.unknown[task] = out.unknown.get(task, 0) + 1
            continue
        out.seconds[task] = out.seconds.get(task, 0.0) + seconds
        out.sources.setdefault(task, set()).add(rate.source)
    return out


def made_on_cpu(record: Any) -> bool:
    """Whether a record's wall times are CPU times: no accelerator named in its hardware."""
    hardware = getattr(record, "hardware", None) or {}
    return not hardware.get("gpu") and str(hardware.get("device") or "cpu").startswith("cpu")


def load_rate_records(folders: Iterable[str | Path]) -> list[Any]:
    """Records of extra folders (pilots) that measure rates; bad or duplicate ones are skipped, not fatal.

    Only records made on a CPU: the estimate is in CPU hours, and a pilot run on a GPU (the QA and
    generation pilots of docs/protocol.md) would make a CPU run look 25 to 60 times cheaper than it is.
    """
    import warnings

    from fednlp_bench.leaderboard.records import collect_records

    out = []
    for folder in folders:
        if Path(folder).is_dir():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out += [i.record for i in collect_records(folder, skip_invalid=True, skip_duplicates=True)
                        if made_on_cpu(i.record)]
    return out
