"""A benchmark suite: a grid of run configs, run once, skipping what already has a record.

The published tables must be reproducible by one command, so the grid lives
in a YAML file (``configs/suite.yaml``) instead of a shell loop:

```yaml
base: {model: minilm, rounds: 5, ...}        # RunConfig fields shared by every run
tasks: [{task: classification, data: 20news}, {task: tagging, data: wnut17, lr: 1e-4}]
partitions: [iid, {scheme: dirichlet_label, params: {alpha: 1}}]
algorithms: [centralized, fedavg, {algorithm: fedprox, algorithm_params: {mu: 0.01}}]
seeds: [0, 1]
partition_seed: run        # partition.seed = run seed (default), or a fixed integer
centralized_once: true     # centralized runs only with the first partition (see below)
keep_checkpoints: none     # none (default): delete each finished run's weights, the record stays; last: keep them
runs_dir: leaderboards/records
out: leaderboards
```

Each run = ``base`` <- task entry <- partition entry <- algorithm entry <- seed
(later entries override earlier ones; ``partition`` merges key by key). The
whole grid is validated through ``RunConfig.from_dict`` before the first run,
so a typo in the last entry does not surface an hour in. A run is skipped
when a record with the same ``config_hash`` and seed exists in ``runs_dir``,
so an interrupted suite resumes by running the same command again.

Centralized training sees the union of all clients' data, so its result does
not depend on the partition; with ``centralized_once`` (default) it runs only
with the first partition and the tables reuse it for every row (marked †).

A task entry may list its own ``partitions`` (else the top-level list is used).
A suite with ``tier``, ``tuning`` and ``final`` sections (and optional
per-algorithm ``grid``) is a two-stage suite: tune on one seed, then run the
chosen settings over fresh seeds; see ``protocol``, ``grid``, ``tier_plan``,
``selection`` and ``stages`` (docs/leaderboard.md).
"""

from __future__ import annotations

import copy
import difflib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, TextIO

from fednlp_bench.leaderboard.collect import collect_records
from fednlp_bench.suite.grid import parse_grid
from fednlp_bench.suite.protocol import FinalSpec, TuningSpec, check_seeds, parse_protocol
from fednlp_bench.results.record import RunRecord, config_hash

SUITE_KEYS = ("base", "tasks", "partitions", "algorithms", "seeds", "partition_seed", "centralized_once",
              "keep_checkpoints", "runs_dir", "out", "tier", "tuning", "final")
DEFAULT_RUNS_DIR = "leaderboards/records"
DEFAULT_OUT = "leaderboards"
Runner = Callable[[dict[str, Any], Path], RunRecord]


@dataclass
class Suite:
    base: dict[str, Any]
    tasks: list[dict[str, Any]]
    partitions: list[dict[str, Any]]
    algorithms: list[dict[str, Any]]
    seeds: list[int]
    partition_seed: str | int = "run"
    centralized_once: bool = True
    keep_checkpoints: str = "none"  # KEEP_CHECKPOINTS; the default drops weights of finished runs
    runs_dir: str = DEFAULT_RUNS_DIR
    out: str = DEFAULT_OUT
    source: str = "<suite>"
    #: Per task entry: its own partitions, or None for the top-level list.
    task_partitions: list[list[dict[str, Any]] | None] | None = None
    #: Per algorithm entry: its tuning grid ({} = its fixed settings only).
    grids: list[dict[str, list[Any]]] | None = None
    tier: str | None = None
    tuning: TuningSpec | None = None
    final: FinalSpec | None = None

    @property
    def two_stage(self) -> bool:
        return self.tuning is not None

    def partitions_for(self, task_index: int) -> list[dict[str, Any]]:
        own = (self.task_partitions or [None] * len(self.tasks))[task_index]
        return own if own is not None else self.partitions

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
        raise FileNotFoundError(f"suite file {str(path)!r} does not exist (e.g. configs/suite.yaml)")
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
        if key not in SUITE_KEYS:
            close = difflib.get_close_matches(str(key), SUITE_KEYS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{source}: unknown suite key {key!r}.{hint} Valid keys: {', '.join(SUITE_KEYS)}")
    tier, tuning, final = parse_protocol(data, source)
    for key in ("tasks", "algorithms"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise ValueError(f"{source}: '{key}' must be a non-empty list")
    tasks = [_entry(e, "task", source, "tasks") for e in data["tasks"]]
    task_partitions = [_task_partitions(t, source) for t in tasks]
    if "partitions" in data or None in task_partitions:
        if not isinstance(data.get("partitions"), list) or not data["partitions"]:
            raise ValueError(f"{source}: 'partitions' must be a non-empty list")
    algorithms = [_entry(e, "algorithm", source, "algorithms") for e in data["algorithms"]]
    grids = [_algorithm_grid(a, tuning is not None, source) for a in algorithms]
    base = data.get("base") or {}
    if not isinstance(base, Mapping):
        raise ValueError(f"{source}: 'base' must be a mapping of RunConfig fields, got {base!r}")
    seeds = check_seeds(data.get("seeds"), source) if final is None else []
    partition_seed = data.get("partition_seed", "run")
    if partition_seed != "run" and (not isinstance(partition_seed, int) or isinstance(partition_seed, bool)):
        raise ValueError(f"{source}: partition_seed must be 'run' (follow the run seed) or an integer, "
                         f"got {partition_seed!r}")
    once = data.get("centralized_once", True)
    if not isinstance(once, bool):
        raise ValueError(f"{source}: centralized_once must be true or false, got {once!r}")
    keep = data.get("keep_checkpoints", "none")
    keep = {False: "none", True: "last"}.get(keep, keep) if isinstance(keep, bool) else keep
    if keep not in ("last", "none"):
        raise ValueError(f"{source}: keep_checkpoints must be 'none' (default: drop the weights of each finished "
                         f"run) or 'last' (true/false work too), got {keep!r}")
    return Suite(
        base=dict(base),
        tasks=tasks,
        partitions=[_partition_entry(e, source) for e in data.get("partitions") or []],
        algorithms=algorithms,
        seeds=list(seeds),
        partition_seed=partition_seed,
        centralized_once=once,
        keep_checkpoints=keep,
        runs_dir=str(data.get("runs_dir", DEFAULT_RUNS_DIR)),
        out=str(data.get("out", DEFAULT_OUT)),
        source=source,
        task_partitions=task_partitions,
        grids=grids,
        tier=tier,
        tuning=tuning,
        final=final,
    )


def _task_partitions(task: dict[str, Any], source: str) -> list[dict[str, Any]] | None:
    """Pop a task entry's own ``partitions`` (a suite key, not a run config field)."""
    if "partitions" not in task:
        return None
    own = task.pop("partitions")
    if not isinstance(own, list) or not own:
        raise ValueError(f"{source}: task {task['task']!r}: 'partitions' must be a non-empty list of schemes")
    return [_partition_entry(e, source) for e in own]


def _algorithm_grid(algorithm: dict[str, Any], tuned: bool, source: str) -> dict[str, list[Any]]:
    """Pop an algorithm entry's ``grid`` (only a two-stage suite searches one)."""
    if "grid" not in algorithm:
        return {}
    if not tuned:
        raise ValueError(f"{source}: algorithm {algorithm['algorithm']!r} has a 'grid' but the suite has no "
                         "'tuning' section; add tuning: {seed: 0, partitions: all} and final: {seeds: [0, 1, 2]}")
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


def expand_suite(suite: Suite) -> list[tuple[dict[str, Any], str]]:
    """Raw configs of the grid, in run order (task, partition, algorithm, seed), with a label each."""
    runs = []
    for t_index, task in enumerate(suite.tasks):
        for p_index, partition in enumerate(suite.partitions_for(t_index)):
            for algorithm in suite.algorithms:
                if suite.centralized_once and algorithm["algorithm"] == "centralized" and p_index > 0:
                    continue
                for seed in suite.seeds:
                    config = _merge(suite.base, task)
                    config = _merge(config, {"partition": partition})
                    config = _merge(config, algorithm)
                    config["seed"] = seed
                    part_seed = seed if suite.partition_seed == "run" else suite.partition_seed
                    config["partition"] = {**config.get("partition", {}), "seed": part_seed}
                    params = ",".join(f"{k}={v}" for k, v in sorted(partition["params"].items()))
                    label = (f"{config.get('task')} · {partition['scheme']}"
                             f"{'(' + params + ')' if params else ''} · {algorithm['algorithm']} · seed {seed}")
                    runs.append((config, label))
    return runs


def _load_config_class() -> Any:
    from fednlp_bench.config import RunConfig

    return RunConfig


def plan_suite(suite: Suite, config_class: Any | None = None) -> list[PlannedRun]:
    """Validate every config of the grid (all errors at once) and canonicalise it like the engine does."""
    config_class = config_class or _load_config_class()
    planned, errors = [], []
    for raw, label in expand_suite(suite):
        try:
            planned.append(PlannedRun(config_class.from_dict(raw).to_dict(), label))
        except (ValueError, TypeError, KeyError) as err:
            errors.append(f"{label}: {err}")
    if errors:
        listing = "\n  ".join(errors)
        raise ValueError(f"{suite.source}: {len(errors)} invalid run config(s); nothing was run:\n  {listing}")
    seen: dict[tuple[str, int], str] = {}
    for run in planned:
        if run.key in seen:
            raise ValueError(f"{suite.source}: '{run.label}' and '{seen[run.key]}' are the same run "
                             "(identical config and seed); remove the repeated entry")
        seen[run.key] = run.label
    return planned


def existing_keys(runs_dir: str | Path) -> set[tuple[str, int]]:
    """(config_hash, seed) of the valid records already in ``runs_dir`` (bad records are an error)."""
    if not Path(runs_dir).exists():
        return set()
    return {item.key for item in collect_records(runs_dir)}


def _load_runner() -> Runner:
    from fednlp_bench.engine.runner import run_from_config_dict

    def run(config: dict[str, Any], runs_dir: Path) -> RunRecord:
        """Run one config; a run folder left by a killed suite (checkpoint, no record) is resumed."""
        from fednlp_bench.config import RunConfig
        from fednlp_bench.engine.checkpoint import has_checkpoint
        from fednlp_bench.engine.run_id import default_run_id
        from fednlp_bench.engine.runner import run_experiment

        run_config = RunConfig.from_dict(config)
        if has_checkpoint(Path(runs_dir) / default_run_id(run_config)):
            print(f"  resuming the interrupted run {default_run_id(run_config)}", file=sys.stderr)
            return run_experiment(run_config, runs_dir, resume=True)
        return run_from_config_dict(config, runs_dir)

    return run


def drop_checkpoint(run_dir: Path) -> None:
    """Delete a finished run's weights (checkpoint and client states, ~100 MB) so records stay small JSON."""
    from fednlp_bench.engine.checkpoint import drop_weights

    drop_weights(run_dir)


def run_suite(
    suite: Suite,
    runs_dir: str | Path,
    *,
    runner: Runner | None = None,
    config_class: Any | None = None,
    dry_run: bool = False,
    stream: TextIO | None = None,
    max_runs: int | None = None,
) -> tuple[list[PlannedRun], list[PlannedRun]]:
    """Run the missing part of the grid; return (ran, skipped). Stops at the first failing run.

    Records already written stay, so re-running the same command resumes;
    ``max_runs`` stops cleanly after that many finished runs (the rest is left for the next call).
    """
    stream = stream or sys.stdout
    planned = plan_suite(suite, config_class)
    have = existing_keys(runs_dir)
    todo = [run for run in planned if run.key not in have]
    skipped = [run for run in planned if run.key in have]
    print(f"suite {suite.source}: {len(planned)} runs in the grid, {len(skipped)} already recorded in "
          f"{runs_dir}, {len(todo)} to run", file=stream)
    if dry_run:
        for run in todo:
            print(f"  would run: {run.label}", file=stream)
        return [], skipped
    ran = execute_runs(todo, runs_dir, runner=runner, keep_checkpoints=suite.keep_checkpoints, stream=stream,
                       max_runs=max_runs)
    return ran, skipped


def execute_runs(
    todo: list[PlannedRun],
    runs_dir: str | Path,
    *,
    runner: Runner | None,
    keep_checkpoints: str,
    stream: TextIO,
    max_runs: int | None = None,
) -> list[PlannedRun]:
    """Run ``todo`` in order (at most ``max_runs`` of them); return the runs that finished.

    A failing run stops everything with the finished count and how to continue;
    each finished run's record is already on disk, so nothing is lost.
    """
    todo = todo if max_runs is None else todo[:max_runs]
    if todo:
        runner = runner or _load_runner()
        Path(runs_dir).mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for i, run in enumerate(todo, start=1):
        t0 = time.perf_counter()
        print(f"[{i}/{len(todo)}] {run.label} ...", file=stream, flush=True)
        try:
            record = runner(copy.deepcopy(run.config), Path(runs_dir))
        except Exception as err:
            raise RuntimeError(
                f"suite stopped at run {i}/{len(todo)} ({run.label}): {err}. The {i - 1} finished run(s) are "
                f"recorded in {runs_dir}; fix the problem and run the same command to continue"
            ) from err
        if keep_checkpoints == "none":
            drop_checkpoint(Path(runs_dir) / record.run_id)
        took = time.perf_counter() - t0
        metric = record.final_metrics.get(record.primary_metric)
        print(f"[{i}/{len(todo)}] done in {took:.1f} s: {record.primary_metric}={metric:.4f} "
              f"(run {record.run_id}); elapsed {time.perf_counter() - start:.0f} s", file=stream, flush=True)
        if (record.config_hash, record.seed) != run.key:
            print(f"warning: the engine recorded a different config than planned for {run.label} "
                  f"({json.dumps(record.config, sort_keys=True)[:200]}...); a re-run of the suite will not "
                  "recognise it as done", file=stream)
    return todo
