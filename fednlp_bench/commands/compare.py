"""`fednlp-bench compare`: centralized vs several FL algorithms on one task and partition -> the gap table.

Every algorithm runs with the same task, data, partition, budget and seed;
only ``algorithm`` (and its own parameters) changes. The table reports the
task's primary metric per algorithm and its difference to centralized
training. Finished runs in --runs-dir are reused (a killed compare resumes).

Algorithm parameters: ``--mu``/``--server-lr``/... apply to every listed
algorithm that has that parameter; ``--algo-param fedadam.server_lr=0.01``
targets one; a YAML ``compare:`` section may hold
``algorithms: [...]`` and ``params: {fedprox: {mu: 0.01}}``.

A config with a ``tasks:`` list (configs/quickstart.yaml) compares every
task in it, one gap table each and a summary of the gaps per task; ``--task``
picks one. Finished runs keep their record and drop their weights unless
``--keep-checkpoints last|all``.

Example:
  fednlp-bench compare --config configs/quickstart.yaml              # four tasks, 16 runs
  fednlp-bench compare --config configs/quickstart.yaml --task qa    # one of them
  fednlp-bench compare --task classification --scheme dirichlet_label --partition-alpha 0.5 --clients 10 \\
      --algorithms centralized,fedavg,fedprox,fedadam --rounds 5 --clients-per-round 5
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fednlp_bench.commands.flags import add_params, taken_flags
from fednlp_bench.commands.algorithm_flags import algorithm_flags, check_flag_params
from fednlp_bench.commands.compare_tables import gap_table, summary_table
from fednlp_bench.commands.run import (
    add_experiment_arguments, apply_threads, compute_options, config_dict_from_args, parse_key_values, progress_flag,
)
from fednlp_bench.progress import format_seconds
from fednlp_bench.registry import Param, declare

#: The federated algorithms compared by default; the centralized baseline (the registry entry that declares
#: ``centralized = True``) comes first.
DEFAULT_FEDERATED = ("fedavg", "fedprox", "fedadam")


COMPARE_OPTIONS = declare(
    Param("algorithms", str, None, help=f"comma-separated (default: the centralized baseline,{','.join(DEFAULT_FEDERATED)})"),
    Param("seeds", str, None, help="comma-separated run seeds; the table shows mean ± std (default: --seed)"),
    Param("out", str, None, help="also write the table as Markdown to this file"),
)


def default_algorithms() -> list[str]:
    from fednlp_bench.algorithms.registry import centralized_baseline

    return [centralized_baseline(), *DEFAULT_FEDERATED]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="run centralized + FL algorithms on one task/partition and print the gap table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_experiment_arguments(p)
    add_params(p, COMPARE_OPTIONS.values())
    p.set_defaults(func=main, algorithm_flags=algorithm_flags, flag_params={}, parser=p)


def plan(args: argparse.Namespace) -> tuple[list[str], list[int], dict[str, Any], dict[str, dict[str, Any]]]:
    """Validate everything up front: (algorithms, seeds, base config dict, params per algorithm)."""
    from fednlp_bench.algorithms.registry import get_algorithm_class
    from fednlp_bench.config import RunConfig

    generic = {k: v for k, v in parse_key_values(args.algorithm_params, "--algo-param").items() if "." not in k}
    targeted = {k: v for k, v in parse_key_values(args.algorithm_params, "--algo-param").items() if "." in k}
    args.algorithm_params = []  # handled here, not by the shared merge
    data, section = config_dict_from_args(args)
    data.pop("algorithm", None)
    base_params = data.pop("algorithm_params", {}) or {}
    if args.algorithms:
        algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    else:
        algorithms = list(section.get("algorithms") or default_algorithms())
    unknown_section = sorted(set(section) - {"algorithms", "params"})
    if unknown_section:
        raise ValueError(f"{args.config}: unknown key(s) {unknown_section} in 'compare' (use algorithms, params)")
    if not algorithms or len(set(algorithms)) != len(algorithms):
        raise ValueError(f"--algorithms must list distinct algorithms, got {algorithms}")
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [int(data.get("seed", 0))]
    except ValueError as err:
        raise ValueError(f"--seeds {args.seeds!r} must be comma-separated integers, e.g. 0,1,2") from err
    classes = {algo: get_algorithm_class(algo) for algo in algorithms}  # unknown names fail first
    check_flag_params(args.flag_params, classes, sorted(taken_flags(args.parser)))
    generic = {**args.flag_params, **generic}
    section_params = section.get("params") or {}
    if not isinstance(section_params, dict):
        raise ValueError(f"{args.config}: compare.params must map algorithm -> parameters, got {section_params!r}")
    params: dict[str, dict[str, Any]] = {}
    for algo in algorithms:
        cls = classes[algo]
        chosen = dict(section_params.get(algo) or {})
        chosen.update({k: v for k, v in {**base_params, **generic}.items() if k in cls.defaults})
        for key, value in targeted.items():
            target, _, name = key.partition(".")
            if target == algo:
                chosen[name] = value
        params[algo] = chosen
    for key in targeted:
        if key.partition(".")[0] not in algorithms:
            raise ValueError(f"--algo-param {key}: {key.partition('.')[0]!r} is not among the algorithms {algorithms}")
    for algo in algorithms:  # every config valid before the first run
        for seed in seeds:
            RunConfig.from_dict({**data, "algorithm": algo, "algorithm_params": params[algo], "seed": seed})
    return algorithms, seeds, data, params


@dataclass
class TaskPlan:
    """One task's comparison, fully validated: algorithms x seeds over one base config."""

    algorithms: list[str]
    seeds: list[int]
    data: dict[str, Any]
    params: dict[str, dict[str, Any]]

    @property
    def task(self) -> str:
        return str(self.data.get("task", "classification"))


def plan_tasks(args: argparse.Namespace) -> list[TaskPlan]:
    """One plan per task: every entry of a multi-task config (``tasks:``), or just ``--task``; all validated."""
    from fednlp_bench.config import config_tasks, load_yaml_config

    names: list[str | None] = [None]
    if args.config and args.task is None:
        names = list(config_tasks(load_yaml_config(args.config)[0], args.config)) or [None]
    plans = []
    for name in names:
        task_args = copy.copy(args)
        task_args.algorithm_params = list(args.algorithm_params)  # plan() consumes it
        if name is not None:
            task_args.task = name
        plans.append(TaskPlan(*plan(task_args)))
    return plans


def check_out_file(out: str | None) -> Path | None:
    """``--out`` is written after every run: its folder must exist now, not hours later."""
    if out is None:
        return None
    path = Path(out)
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"--out {out!r} is a folder; give a file name for the Markdown tables, e.g. gaps.md")
    if not parent.is_dir():
        raise ValueError(f"--out {out!r}: folder {str(parent)!r} does not exist; create it first")
    return path


def main(args: argparse.Namespace) -> int:
    plans = plan_tasks(args)  # everything validated before the heavy imports
    out = check_out_file(args.out)
    apply_threads(args)
    if args.partition_file and not Path(args.partition_file).is_file():
        raise FileNotFoundError(f"--partition {args.partition_file}: no such file")
    total = sum(len(p.algorithms) * len(p.seeds) for p in plans)
    counter = RunCounter(total)
    tables: list[str] = []
    results: list[tuple[TaskPlan, dict[str, list[Any]], dict[str, str]]] = []
    for task_plan in plans:
        records, failed = run_plan(args, task_plan, counter)
        table = gap_table(records, failed)
        results.append((task_plan, records, failed))
        tables.append(table)
        print(table + "\n", flush=True)
        curve = draw_curves(Path(args.runs_dir), task_plan.task, records)
        if curve is not None:
            print(f"learning curves (validation {next(r for rs in records.values() for r in rs).primary_metric} "
                  f"per round): {curve}", file=sys.stderr, flush=True)
    text = "\n\n".join(tables)
    if len(plans) > 1:
        summary = summary_table(results)
        print(summary, flush=True)
        text = summary + "\n\n" + text
        print(f"\n{len(plans)} tasks x {len(plans[0].algorithms)} algorithms: {counter.done} runs "
              f"({counter.reused} reused) in {format_seconds(time.perf_counter() - counter.start)}", file=sys.stderr)
    if out is not None:
        from fednlp_bench.atomic import atomic_write_text

        atomic_write_text(out, text + "\n")
        print(f"wrote {out}", file=sys.stderr)
    return 0 if not any(failed for _, _, failed in results) else 1


def draw_curves(runs_dir: Path, task: str, records: dict[str, list[Any]]) -> Path | None:
    """The task's learning curves (one line per algorithm) beside its records; None when no run finished."""
    from fednlp_bench.results.curves import compare_curve_path, write_learning_curves

    if not any(records.values()):
        return None
    return write_learning_curves(records, compare_curve_path(runs_dir, task, records))


@dataclass
class RunCounter:
    """Runs done out of all runs of the command, for the 'run i/N, ETA' line before each run."""

    total: int
    done: int = 0
    reused: int = 0
    trained_s: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    def eta(self) -> str:
        trained = self.done - self.reused
        if trained <= 0:
            return ""
        return f", ETA {format_seconds(self.trained_s / trained * (self.total - self.done))}"


def run_plan(args: argparse.Namespace, task_plan: TaskPlan, counter: RunCounter) -> tuple[dict[str, list[Any]], dict[str, str]]:
    """Run (or reuse) every algorithm and seed of one task; return records per algorithm and divergences."""
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.run.checkpoint import has_checkpoint
    from fednlp_bench.engine.run.run_id import default_run_id
    from fednlp_bench.backends.launch import run_config
    from fednlp_bench.engine.run.runner import NonFiniteModelError

    from fednlp_bench.engine.run.sources import build_task

    runs_dir = Path(args.runs_dir)
    data, params = task_plan.data, task_plan.params
    records: dict[str, list[Any]] = {a: [] for a in task_plan.algorithms}
    # One task object for all runs of this task: its data is loaded and tokenized once, not once per run
    # (the runs differ only in algorithm and seed; the data subset follows the partition seed).
    shared_task: Any = None
    failed: dict[str, str] = {}
    for algo in task_plan.algorithms:
        for seed in task_plan.seeds:
            config = RunConfig.from_dict({**data, "algorithm": algo, "algorithm_params": params[algo], "seed": seed})
            run_id = None
            if args.partition_file:
                # The run id must reflect the file's spec, which run_experiment copies into the config.
                from fednlp_bench.engine.run.sources import load_partition_file, partition_spec_for_config

                run_id = default_run_id(config.replace(partition=partition_spec_for_config(load_partition_file(args.partition_file))))
            run_id = run_id or default_run_id(config)
            resume = has_checkpoint(runs_dir / run_id) or (runs_dir / run_id / "record.json").is_file()
            finished = (runs_dir / run_id / "record.json").is_file()
            print(f"{time.strftime('%H:%M:%S')} compare: run {counter.done + 1}/{counter.total}: {config.task} {algo} "
                  f"(seed {seed}){' - reusing ' + run_id if finished else ' - resuming ' + run_id if resume else ''}; "
                  f"elapsed {format_seconds(time.perf_counter() - counter.start)}{counter.eta()}",
                  file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            if shared_task is None and not finished:
                shared_task = build_task(config)
            try:
                record = run_config(
                    config, runs_dir, run_id=run_id, resume=resume, partition_file=args.partition_file,
                    task=shared_task, progress=progress_flag(args), **compute_options(args),
                    keep_checkpoints=args.keep_checkpoints or "none",
                )
            except NonFiniteModelError as err:
                failed[algo] = str(err)
                print(f"compare: {config.task} {algo} diverged: {err}", file=sys.stderr)
                counter.done += len(task_plan.seeds) - len(records[algo])
                break
            counter.done += 1
            if finished:
                counter.reused += 1
            else:
                counter.trained_s += time.perf_counter() - t0
            records[algo].append(record)
    return records, failed
