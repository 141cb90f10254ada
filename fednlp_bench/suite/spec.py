"""A benchmark tier suite: the YAML file that says which runs a tier is made of, parsed and checked.

The published tables must be reproducible by one command, so the whole grid
lives in a YAML file (``configs/suite-cpu.yaml``) instead of a shell loop:

```yaml
tier: cpu                          # smoke | cpu | gpu (fednlp_bench/leaderboard/tiers.py)
base: {model: minilm, rounds: 100, eval_every: 5, ...}     # RunConfig fields shared by every run
tasks:                             # a name, or a mapping overriding base fields
  - {task: classification, data: 20news, partitions: [iid, ...]}
  - {task: qa, data: squad, final_seeds: [0, 1, 2], algorithms: [centralized, fedavg]}   # own seeds, a subset
partitions: [iid, {scheme: dirichlet_label, params: {alpha: 1}}]   # tasks without their own list
algorithms:
  - {algorithm: fedavg, grid: {lr: [5.0e-4, 1.0e-3, 2.0e-3, 4.0e-3]}}
convergence: {window: 0.25, tolerance: 0.002, min_points: 3}
tuning: {seed: 0, partitions: [1], extensions: 2}
final: {seeds: [0, 1, 2, 3, 4], centralized_converged: {rounds: 200, test_best_round: true}}
partition_seed: run                # partition.seed = run seed (default), or a fixed integer
keep_checkpoints: none             # none (default): delete each finished run's weights; last: keep them
runs_dir: leaderboards/cpu/records
out: leaderboards/cpu
```

Each run = ``base`` <- task entry <- partition entry <- algorithm entry <-
grid point <- seed (later entries override earlier ones; ``partition``
merges key by key). The protocol keys (tier, grid, convergence, tuning,
final) are checked in ``protocol``; the runs they imply are expanded and
validated in ``tier_plan``, all before the first run, so a typo in the last
entry does not surface an hour in. A run is skipped when a record with the
same ``config_hash`` and seed exists in ``runs_dir``, so an interrupted tier
resumes by running the same command again.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from fednlp_bench.hints import closest_hint
from fednlp_bench.leaderboard.convergence import Criterion
from fednlp_bench.results.record import RunRecord, config_hash
from fednlp_bench.suite.cost import DeclaredRate, parse_rates
from fednlp_bench.suite.grid import parse_grid
from fednlp_bench.suite.protocol import (
    FinalSpec,
    TuningSpec,
    check_final_seeds,
    check_seeds,
    parse_converged,
    parse_protocol,
)


SUITE_KEYS = ("tier", "base", "tasks", "partitions", "algorithms", "convergence", "tuning", "final",
              "partition_seed", "keep_checkpoints", "runs_dir", "out", "rates", "rate_records")
#: Keys of the one-stage suites of protocol v1, and what replaced them.
RETIRED_KEYS = {"seeds": "the tuning seed is tuning.seed and the reported seeds are final.seeds",
                "centralized_once": "centralized always runs once per task, on its first partition"}
DEFAULT_RUNS_DIR = "leaderboards/records"
DEFAULT_OUT = "leaderboards"
Runner = Callable[[dict[str, Any], Path], RunRecord]


@dataclass
class Suite:
    tier: str
    base: dict[str, Any]
    tasks: list[dict[str, Any]]
    partitions: list[dict[str, Any]]
    algorithms: list[dict[str, Any]]
    convergence: Criterion
    tuning: TuningSpec
    final: FinalSpec
    partition_seed: str | int = "run"
    keep_checkpoints: str = "none"  # KEEP_CHECKPOINTS; the default drops weights of finished runs
    runs_dir: str = DEFAULT_RUNS_DIR
    out: str = DEFAULT_OUT
    source: str = "<suite>"
    #: Per task entry: its own partitions, or None for the top-level list.
    task_partitions: list[list[dict[str, Any]] | None] | None = None
    #: Per task entry: its own final seeds, or None for final.seeds.
    task_seeds: list[tuple[int, ...] | None] | None = None
    #: Per task entry: its own centralized_converged overrides (its rounds differ), or None for final's.
    task_converged: list[dict[str, Any] | None] | None = None
    #: Per task entry: the names of the suite's algorithms it runs, or None for all of them.
    task_algorithms: list[tuple[str, ...] | None] | None = None
    #: Per algorithm entry: its tuning grid (``{key: [values]}``, log-spaced axes).
    grids: list[dict[str, list[Any]]] | None = None
    #: Cost rates declared per task for ``--dry-run`` when no record measures them (cost.py).
    rates: dict[str, DeclaredRate] = field(default_factory=dict)
    #: Extra folders of records (e.g. pilots) whose rates ``--dry-run`` may measure.
    rate_records: tuple[str, ...] = ()

    def partitions_for(self, task_index: int) -> list[dict[str, Any]]:
        own = (self.task_partitions or [None] * len(self.tasks))[task_index]
        return own if own is not None else self.partitions

    def seeds_for(self, task_index: int) -> tuple[int, ...]:
        own = (self.task_seeds or [None] * len(self.tasks))[task_index]
        return own if own is not None else self.final.seeds

    def converged_for(self, task_index: int) -> dict[str, Any] | None:
        own = (self.task_converged or [None] * len(self.tasks))[task_index]
        return own if own is not None else self.final.centralized_converged

    def runs_algorithm(self, task_index: int, algorithm_index: int) -> bool:
        own = (self.task_algorithms or [None] * len(self.tasks))[task_index]
        return own is None or self.algorithms[algorithm_index]["algorithm"] in own

    def grid_for(self, algorithm_index: int) -> dict[str, list[Any]]:
        return (self.grids or [{}] * len(self.algorithms))[algorithm_index]


@dataclass
class PlannedRun:
    config: dict[str, Any]  # canonical: RunConfig.from_dict(...).to_dict()
    label: str

    @property
    def key(self) -> tuple[str, int]:
        return (config_hash(self.config), int(self.config["seed"]))


# ---------------------------------------------------------------- parsing
def load_suite(path: str | Path) -> Suite:
    import yaml

    from fednlp_bench.scalars import load_yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"suite file {str(path)!r} does not exist (e.g. configs/suite-cpu.yaml)")
    try:
        data = load_yaml(path.read_text())  # 1e-3 is a number here as in run configs
    except yaml.YAMLError as err:
        raise ValueError(f"suite file {path} is not valid YAML: {err}") from err
    return parse_suite(data, source=str(path))


def parse_suite(data: Any, source: str = "<suite>") -> Suite:
    """Check the suite's shape (not the run fields: RunConfig does that) and normalise entries."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: a suite must be a mapping with keys {list(SUITE_KEYS)}")
    for key in data:
        if key in RETIRED_KEYS:
            raise ValueError(f"{source}: {key!r} is not a suite key any more (protocol v2): {RETIRED_KEYS[key]}")
        if key not in SUITE_KEYS:
            raise ValueError(f"{source}: unknown suite key {key!r}.{closest_hint(str(key), SUITE_KEYS)} "
                             f"Valid keys: {', '.join(SUITE_KEYS)}")
    protocol = parse_protocol(data, source)
    for key in ("tasks", "algorithms"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise ValueError(f"{source}: '{key}' must be a non-empty list")
    tasks = [_entry(e, "task", source, "tasks") for e in data["tasks"]]
    task_partitions = [_task_partitions(t, source) for t in tasks]
    task_seeds = [_task_seeds(t, source) for t in tasks]
    task_converged = [parse_converged(t.pop("centralized_converged"), source,
                                      f"task {t['task']!r}: centralized_converged")
                      if "centralized_converged" in t else None for t in tasks]
    for task, own in zip(tasks, task_seeds):
        check_final_seeds(protocol.tier, str(task["task"]), own or protocol.final.seeds, source)
    if "partitions" in data or None in task_partitions:
        if not isinstance(data.get("partitions"), list) or not data["partitions"]:
            raise ValueError(f"{source}: 'partitions' must be a non-empty list")
    algorithms = [_entry(e, "algorithm", source, "algorithms") for e in data["algorithms"]]
    task_algorithms = [_task_algorithms(t, [a["algorithm"] for a in algorithms], source) for t in tasks]
    grids = [_algorithm_grid(a, source) for a in algorithms]
    base = data.get("base") or {}
    if not isinstance(base, Mapping):
        raise ValueError(f"{source}: 'base' must be a mapping of RunConfig fields, got {base!r}")
    partition_seed = data.get("partition_seed", "run")
    if partition_seed != "run" and (not isinstance(partition_seed, int) or isinstance(partition_seed, bool)):
        raise ValueError(f"{source}: partition_seed must be 'run' (follow the run seed) or an integer, "
                         f"got {partition_seed!r}")
    keep = data.get("keep_checkpoints", "none")
    keep = {False: "none", True: "last"}.get(keep, keep) if isinstance(keep, bool) else keep
    if keep not in ("last", "none"):
        raise ValueError(f"{source}: keep_checkpoints must be 'none' (default: drop the weights of each finished "
                         f"run) or 'last' (true/false work too), got {keep!r}")
    rate_records = data.get("rate_records") or []
    if not isinstance(rate_records, list) or not all(isinstance(r, str) for r in rate_records):
        raise ValueError(f"{source}: rate_records must be a list of folders with run records (e.g. the tier's "
                         f"pilots), got {rate_records!r}")
    return Suite(
        tier=protocol.tier, base=dict(base), tasks=tasks,
        partitions=[_partition_entry(e, source) for e in data.get("partitions") or []],
        algorithms=algorithms, convergence=protocol.convergence, tuning=protocol.tuning, final=protocol.final,
        partition_seed=partition_seed, keep_checkpoints=keep,
        runs_dir=str(data.get("runs_dir", DEFAULT_RUNS_DIR)), out=str(data.get("out", DEFAULT_OUT)),
        source=source, task_partitions=task_partitions, task_seeds=task_seeds, task_algorithms=task_algorithms,
        task_converged=task_converged, grids=grids,
        rates=parse_rates(data.get("rates"), source), rate_records=tuple(rate_records),
    )


def _task_algorithms(task: dict[str, Any], names: list[str], source: str) -> tuple[str, ...] | None:
    """Pop a task entry's own ``algorithms``: a subset of the suite's, by name (a costly task may run fewer)."""
    if "algorithms" not in task:
        return None
    own = task.pop("algorithms")
    where = f"{source}: task {task['task']!r}: algorithms"
    if not isinstance(own, list) or not own or not all(isinstance(a, str) for a in own):
        raise ValueError(f"{where} must be a non-empty list of the suite's algorithm names, e.g. [centralized, fedavg]")
    for name in own:
        if name not in names:
            raise ValueError(f"{where}: {name!r} is not one of the suite's algorithms.{closest_hint(name, names)} "
                             f"It lists {names}")
    if len(set(own)) != len(own):
        raise ValueError(f"{where} {own} repeats a name")
    return tuple(own)


def _task_seeds(task: dict[str, Any], source: str) -> tuple[int, ...] | None:
    """Pop a task entry's own ``final_seeds`` (a suite key: QA and generation may report 3)."""
    if "final_seeds" not in task:
        return None
    return tuple(check_seeds(task.pop("final_seeds"), source, f"task {task['task']!r}: final_seeds"))


def _task_partitions(task: dict[str, Any], source: str) -> list[dict[str, Any]] | None:
    """Pop a task entry's own ``partitions`` (a suite key, not a run config field)."""
    if "partitions" not in task:
        return None
    own = task.pop("partitions")
    if not isinstance(own, list) or not own:
        raise ValueError(f"{source}: task {task['task']!r}: 'partitions' must be a non-empty list of schemes")
    return [_partition_entry(e, source) for e in own]


def _algorithm_grid(algorithm: dict[str, Any], source: str) -> dict[str, list[Any]]:
    """Pop an algorithm entry's ``grid`` (its tuning axes; checked for equal effort in ``grid``)."""
    if "grid" not in algorithm:
        return {}
    return parse_grid(algorithm.pop("grid"), algorithm["algorithm"], source)


def _entry(entry: Any, name: str, source: str, section: str) -> dict[str, Any]:
    if isinstance(entry, str):
        return {name: entry}
    if isinstance(entry, Mapping) and isinstance(entry.get(name), str):
        return dict(entry)
    raise ValueError(f"{source}: each '{section}' entry must be a name or a mapping with a '{name}' key, "
                     f"got {entry!r}")


def _partition_entry(entry: Any, source: str) -> dict[str, Any]:
    if isinstance(entry, str):
        entry = {"scheme": entry}
    if not isinstance(entry, Mapping) or not isinstance(entry.get("scheme"), str):
        raise ValueError(f"{source}: each 'partitions' entry must be a scheme name or a mapping with 'scheme' "
                         f"(and 'params', e.g. {{alpha: 0.1}}), got {entry!r}")
    out = dict(entry)
    # Always explicit: RunConfig's default partition params (alpha) must not leak into e.g. iid.
    out["params"] = dict(out.get("params") or {})
    return out


# ---------------------------------------------------------------- expansion
def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if key == "partition" and isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **copy.deepcopy(dict(value))}
        else:
            merged[key] = copy.deepcopy(value)
    return merged
