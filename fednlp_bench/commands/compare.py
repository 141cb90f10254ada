"""`fednlp-bench compare`: centralized vs several FL algorithms on one task and partition -> the gap table.

Every algorithm runs with the same task, data, partition, budget and seed;
only ``algorithm`` (and its own parameters) changes. The table reports the
task's primary metric per algorithm and its difference to centralized
training. Finished runs in --runs-dir are reused (a killed compare resumes).

Algorithm parameters: ``--mu``/``--server-lr``/... apply to every listed
algorithm that has that parameter; ``--algo-param fedadam.server_lr=0.01``
targets one; a YAML ``compare:`` section may hold
``algorithms: [...]`` and ``params: {fedprox: {mu: 0.01}}``.

Example:
  fednlp-bench compare --config configs/quickstart.yaml
  fednlp-bench compare --task classification --scheme dirichlet_label --alpha 0.5 --clients 10 \\
      --algorithms centralized,fedavg,fedprox,fedadam --rounds 5 --clients-per-round 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, Sequence

from fednlp_bench.commands.registry_help import algorithm_flags, check_flag_params
from fednlp_bench.commands.run import (
    add_experiment_arguments, apply_threads, compute_options, config_dict_from_args, parse_key_values, progress_flag,
)

DEFAULT_ALGORITHMS = ("centralized", "fedavg", "fedprox", "fedadam")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compare",
        help="run centralized + FL algorithms on one task/partition and print the gap table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_experiment_arguments(p)
    p.add_argument("--algorithms", help=f"comma-separated (default: {','.join(DEFAULT_ALGORITHMS)})")
    p.add_argument("--seeds", help="comma-separated run seeds; the table shows mean ± std (default: --seed)")
    p.add_argument("--out", help="also write the table as Markdown to this file")
    p.set_defaults(func=main, algo_param=[], algorithm_flags=algorithm_flags, flag_params={},
                   parser_flags=[s for a in p._actions for s in a.option_strings])


def plan(args: argparse.Namespace) -> tuple[list[str], list[int], dict[str, Any], dict[str, dict[str, Any]]]:
    """Validate everything up front: (algorithms, seeds, base config dict, params per algorithm)."""
    from fednlp_bench.algorithms.registry import get_algorithm_class
    from fednlp_bench.config import RunConfig

    generic = {k: v for k, v in parse_key_values(args.algo_param, "--algo-param").items() if "." not in k}
    targeted = {k: v for k, v in parse_key_values(args.algo_param, "--algo-param").items() if "." in k}
    args.algo_param = []  # handled here, not by the shared merge
    data, section = config_dict_from_args(args)
    data.pop("algorithm", None)
    base_params = data.pop("algorithm_params", {}) or {}
    if args.algorithms:
        algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    else:
        algorithms = list(section.get("algorithms") or DEFAULT_ALGORITHMS)
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
    check_flag_params(args.flag_params, classes, args.parser_flags)
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


def main(args: argparse.Namespace) -> int:
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.checkpoint import has_checkpoint
    from fednlp_bench.engine.run_id import default_run_id
    from fednlp_bench.engine.runner import NonFiniteModelError, run_experiment

    algorithms, seeds, data, params = plan(args)
    apply_threads(args)
    runs_dir = Path(args.runs_dir)
    if args.partition_file and not Path(args.partition_file).is_file():
        raise FileNotFoundError(f"--partition {args.partition_file}: no such file")
    records: dict[str, list[Any]] = {a: [] for a in algorithms}
    failed: dict[str, str] = {}
    for algo in algorithms:
        for seed in seeds:
            config = RunConfig.from_dict({**data, "algorithm": algo, "algorithm_params": params[algo], "seed": seed})
            run_id = None
            if args.partition_file:
                # The run id must reflect the file's spec, which run_experiment copies into the config.
                from fednlp_bench.engine.prepare import load_partition_file, partition_spec_for_config

                run_id = default_run_id(config.replace(partition=partition_spec_for_config(load_partition_file(args.partition_file))))
            run_id = run_id or default_run_id(config)
            resume = has_checkpoint(runs_dir / run_id) or (runs_dir / run_id / "record.json").is_file()
            print(f"compare: {algo} (seed {seed}){' - reusing/resuming ' + run_id if resume else ''}", file=sys.stderr, flush=True)
            try:
                record = run_experiment(
                    config, runs_dir, run_id=run_id, resume=resume, partition_file=args.partition_file,
                    progress=progress_flag(args), **compute_options(args),
                )
            except NonFiniteModelError as err:
                failed[algo] = str(err)
                print(f"compare: {algo} diverged: {err}", file=sys.stderr)
                break
            records[algo].append(record)
    table = gap_table(records, failed)
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0 if not failed else 1


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    if len(values) == 1:
        return values[0], None
    return statistics.fmean(values), statistics.stdev(values)


def _fmt(mean: float, std: float | None, signed: bool = False) -> str:
    text = f"{mean:+.4f}" if signed else f"{mean:.4f}"
    return text if std is None else f"{text} ± {std:.4f}"


def gap_table(records: dict[str, list[Any]], failed: dict[str, str] | None = None) -> str:
    """Markdown table: primary metric per algorithm and its difference to centralized."""
    failed = failed or {}
    done = {a: rs for a, rs in records.items() if rs}
    if not done:
        return "no run finished"
    first = next(iter(done.values()))[0]
    metric = first.primary_metric
    cfg = first.config
    part = first.partition
    params = ",".join(f"{k}={v}" for k, v in sorted((part.get("params") or {}).items()))
    budget = (f"{cfg['local_epochs']} local epoch(s)" if cfg["local_epochs"] is not None
              else f"{cfg['local_steps']} local step(s)")
    seeds = sorted({r.seed for rs in done.values() for r in rs})
    header = (
        f"Gap table: {cfg['task']} ({cfg['data'] or 'default data'}, model {cfg['model']}, "
        f"{cfg['max_train_examples'] or 'all'} train examples), partition {part['scheme']}"
        f"{'(' + params + ')' if params else ''} over {part['num_clients']} clients, "
        f"{cfg['clients_per_round']} clients/round, {cfg['rounds']} rounds, {budget}, "
        f"{cfg['optimizer']} lr={cfg['lr']}, seed(s) {seeds}; metric: test {metric} of the final model "
        f"(higher is better; rounds were evaluated on validation)"
    )
    central = done.get("centralized")
    central_mean = _mean_std([r.final_metrics[metric] for r in central])[0] if central else None
    rows = [f"| algorithm | {metric} | gap vs centralized | relative gap | final train loss | MiB up | wall s |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for algo, rs in records.items():
        if not rs:
            rows.append(f"| {algo} | diverged | | | | | |")
            continue
        values = [r.final_metrics[metric] for r in rs]
        mean, std = _mean_std(values)
        if central_mean is None:
            gap = rel = "n/a"
        else:
            gaps = [v - central_mean for v in values]
            gap = _fmt(*_mean_std(gaps), signed=True)
            rel = f"{100 * statistics.fmean(gaps) / central_mean:+.1f}%" if central_mean else "n/a"
        losses = [r.rounds[-1].train_loss for r in rs if r.rounds[-1].train_loss is not None]
        loss = f"{statistics.fmean(losses):.4f}" if losses else "-"
        up = statistics.fmean(r.bytes_up for r in rs) / 2**20
        wall = statistics.fmean(r.wall_time_s for r in rs)
        rows.append(f"| {algo} | {_fmt(mean, std)} | {gap} | {rel} | {loss} | {up:.1f} | {wall:.1f} |")
    notes = [f"diverged: {a}: {msg}" for a, msg in failed.items()]
    notes = baseline_lines(first, metric) + notes
    return "\n".join([header, "", *rows, *([""] + notes if notes else [])])


def baseline_lines(record: Any, metric: str) -> list[str]:
    """Reference baselines stored in the record (generation: lead-k), so a score can be read against them."""
    lines = []
    for name, base in sorted((getattr(record, "baselines", None) or {}).items()):
        if name == "lead":
            lines.append(
                f"lead baseline (first {base['k']} words of the input, k chosen on validation): "
                f"test {metric} {base['test'][metric]:.4f} (validation {base['validation'][metric]:.4f})"
            )
        else:
            lines.append(f"{name} baseline: test {metric} {base['test'][metric]:.4f}")
    return lines
