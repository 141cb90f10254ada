"""`fednlp-bench run`: one federated (or centralized) training run -> runs/<id>/record.json.

Settings come from a YAML file (``--config``) and/or flags; a flag given on
the command line overrides the file. Everything is validated before data is
loaded. ``--partition part.json`` uses a saved partition (checked against the
data's fingerprint; its spec is copied into the config so the record can be
re-run); otherwise the partition is regenerated from --scheme/--partition-alpha/--clients.
A bare ``--NAME VALUE`` is a parameter of the algorithm (``--mu 0.01``); the
other families' parameters are ``--partition-NAME``, ``--task-NAME``,
``--trainable-NAME`` and ``--sampling-NAME`` (e.g. ``--trainable-layers 2``).

Examples:
  fednlp-bench run --task classification --scheme dirichlet_label --partition-alpha 0.5 --clients 10 \\
      --algorithm fedprox --mu 0.01 --rounds 5 --clients-per-round 5 --local-epochs 1
  fednlp-bench run --config configs/quickstart.yaml --algorithm fedadam --server-lr 1e-3
  fednlp-bench run --config configs/quickstart.yaml --resume        # continue a killed run
  fednlp-bench run --config configs/quickstart.yaml --backend fedml --processes 4   # FedML, 4 client processes
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fednlp_bench.commands.flags import (
    SAMPLING, SCHEMES, TASK_OPTIONS, TRAINABLE, add_family, add_param, family_values, given, taken_flags,
)
from fednlp_bench.commands.algorithm_flags import algorithm_flags, check_flag_params
from fednlp_bench.commands.run_summary import summarize_record
from fednlp_bench.config import RunConfig, load_yaml_config, select_task, task_compare_section
from fednlp_bench.config_fields import FIELDS, PARTITION_FIELDS
from fednlp_bench.execution import FedML
from fednlp_bench.run_options import RUN_OPTIONS

#: Where each RunConfig field's flag is listed in --help (the flags themselves come from config_fields.FIELDS).
GROUPS = {
    "task and data": ("task", "data", "model", "max_length", "max_train_examples", "max_eval_examples",
                       "max_validation_examples", "columns"),
    "training budget": ("rounds", "clients_per_round", "local_epochs", "local_steps", "batch_size", "batching",
                        "attention_dropout", "lr", "optimizer", "sampling", "aggregation_weights", "dropout", "eval_every", "test_best_round",
                        "seed", "backend", "client_eval"),
    "compute (precision and trainable enter the config; device and cache folder do not)": ("precision", "trainable"),
}
#: Fields whose flags the families and the partition group fill instead of a flag of their own name.
_MERGED_BY_HAND = {"partition", "algorithm", "algorithm_params", "local_epochs", "local_steps", "trainable",
                   "trainable_params", "columns", "task_params", "sampling_params"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="train one FL algorithm (or the centralized baseline) on a task/partition; write a result record",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_experiment_arguments(p)
    add_param(p, FIELDS["algorithm"])
    for name in ("run_id", "resume"):
        add_param(p, RUN_OPTIONS[name])
    f = p.add_argument_group("FedML backend (--backend fedml; see docs/fedml.md)")
    for param in FedML.param_specs.values():
        if param.cli:
            add_param(f, param)
    p.set_defaults(func=main, algorithm_flags=algorithm_flags, flag_params={}, parser=p)


def add_experiment_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``run`` and ``compare``, all from declarations (all default to None = 'not given')."""
    add_param(p, RUN_OPTIONS["config"])
    groups = {title: p.add_argument_group(title) for title in GROUPS}
    for title, names in GROUPS.items():
        for name in names:
            add_param(groups[title], FIELDS[name])
    q = p.add_argument_group("partition (either --partition FILE or a scheme)")
    add_param(q, RUN_OPTIONS["partition_file"])
    for param in PARTITION_FIELDS.values():
        if param.cli:
            add_param(q, param, dest=f"partition_{param.name}")
    a = p.add_argument_group(
        "algorithm parameters",
        "any parameter of the algorithm as --NAME VALUE (e.g. --mu 0.01, --server-lr 1e-2); "
        "`fednlp-bench algorithms` lists each algorithm's parameters and defaults",
    )
    add_param(a, FIELDS["algorithm_params"], default=[])
    compute = groups["compute (precision and trainable enter the config; device and cache folder do not)"]
    for name in ("device", "frozen_cache_dir"):
        add_param(compute, RUN_OPTIONS[name])
    o = p.add_argument_group("output")
    for name in ("runs_dir", "keep_checkpoints", "no_progress", "threads"):
        add_param(o, RUN_OPTIONS[name], default=RUN_OPTIONS[name].default if name == "runs_dir" else None)

    def families(parser: argparse.ArgumentParser) -> None:
        # The registries' parameters: loaded when this command is parsed or its help shown (cli.CommandParser).
        taken = taken_flags(parser)
        add_family(groups["task and data"], TASK_OPTIONS, taken)
        add_family(q, SCHEMES, taken)
        add_family(groups["training budget"], SAMPLING, taken)
        add_family(compute, TRAINABLE, taken)

    p.defer(families)  # type: ignore[attr-defined]


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's thread count before any work (recorded in the record's hardware.torch_threads)."""
    if args.threads is None:
        return
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads} must be >= 1")
    import torch

    torch.set_num_threads(args.threads)


def parse_key_values(items: list[Any], flag: str, parse: bool = True) -> dict[str, Any]:
    """``KEY=VALUE`` items (or parsed pairs) -> dict; values are YAML scalars (1e-3 a float) unless ``parse`` is False."""
    from fednlp_bench.commands.flags import key_values
    from fednlp_bench.scalars import parse_scalar

    out: dict[str, Any] = {}
    for item in items:
        try:
            key, value = key_values(item) if isinstance(item, str) else item
        except argparse.ArgumentTypeError:
            raise ValueError(f"{flag} {item!r} must look like KEY=VALUE") from None
        out[key] = parse_scalar(value) if parse else str(value).strip()
    return out


def config_dict_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge ``--config`` and explicit flags into RunConfig fields; return (fields, compare section)."""
    data: dict[str, Any] = {}
    compare: dict[str, Any] = {}
    if args.config:
        data, compare = load_yaml_config(args.config)
        compare = task_compare_section(data, args.task, compare, args.config)
        data = select_task(data, args.task, args.config)  # a multi-task config: the entry of --task
    data.update({k: v for k, v in given(args, FIELDS.values()).items() if k not in _MERGED_BY_HAND})
    _merge_budget(args, data)
    _merge_mapping(data, "columns", parse_key_values(args.columns or [], "--column", parse=False))
    _merge_mapping(data, "task_params", family_values(args, TASK_OPTIONS))
    _merge_partition(args, data)
    _merge_named(data, "algorithm", getattr(args, "algorithm", None), "algorithm_params",
                 parse_key_values(args.algorithm_params or [], "--algo-param"))
    if hasattr(args, "algorithm") and args.flag_params:  # `run`; `compare` spreads them over its algorithms
        from fednlp_bench.algorithms.registry import get_algorithm_class

        chosen = data.get("algorithm", FIELDS["algorithm"].default)
        check_flag_params(args.flag_params, {chosen: get_algorithm_class(chosen)}, sorted(taken_flags(args.parser)))
        _merge_mapping(data, "algorithm_params", args.flag_params)
    _merge_named(data, "trainable", args.trainable, "trainable_params", family_values(args, TRAINABLE))
    _merge_named(data, "sampling", args.sampling, "sampling_params", family_values(args, SAMPLING))
    return data, compare


def _merge_budget(args: argparse.Namespace, data: dict[str, Any]) -> None:
    """``--local-steps`` means steps instead of epochs; both given goes to validation, which says so."""
    if args.local_steps is not None:
        data["local_steps"] = args.local_steps
        data["local_epochs"] = args.local_epochs  # None unless both given (then validation complains)
    elif args.local_epochs is not None:
        data["local_epochs"] = args.local_epochs
        data["local_steps"] = None


def _merge_mapping(data: dict[str, Any], name: str, values: dict[str, Any]) -> None:
    if values:
        data[name] = {**dict(data.get(name) or {}), **values}


def _merge_named(data: dict[str, Any], field: str, chosen: str | None, params_field: str,
                 params: dict[str, Any]) -> None:
    """``--algorithm``/``--trainable``/``--sampling`` and their parameters: another choice starts its own params."""
    if chosen is not None and chosen != data.get(field):
        data[field] = chosen
        data[params_field] = {}  # another entry's parameters do not carry over
    _merge_mapping(data, params_field, params)


def _merge_partition(args: argparse.Namespace, data: dict[str, Any]) -> None:
    flags = {name: getattr(args, f"partition_{name}") for name, p in PARTITION_FIELDS.items() if p.cli}
    flags = {k: v for k, v in flags.items() if v is not None}
    params = family_values(args, SCHEMES)
    if args.partition_file:
        from fednlp_bench.commands.flags import family_flag

        specs = {n: e[0][1] for n, e in SCHEMES.load().all_params().items()}
        named = [PARTITION_FIELDS[k].cli_flag() for k in flags] + [
            family_flag(SCHEMES, specs[k]) if k in specs else SCHEMES.generic() for k in params]
        if named:
            raise ValueError(f"--partition FILE already fixes the partition; drop {', '.join(named)}")
        return
    part = dict(data.get("partition") or {})
    if flags.get("scheme") is not None and flags["scheme"] != part.get("scheme"):
        part["params"] = {}  # another scheme's params (e.g. alpha) do not carry over
    part.update(flags)
    if params or "params" in part:
        part["params"] = {**dict(part.get("params") or {}), **params}
    if part:
        data["partition"] = part


def compute_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run options --device and --frozen-cache-dir for ``run_experiment`` (not config fields)."""
    return {"device": getattr(args, "device", None), "frozen_cache_dir": getattr(args, "frozen_cache_dir", None)}


def progress_flag(args: argparse.Namespace) -> bool | None:
    return False if args.no_progress else None


def main(args: argparse.Namespace) -> int:
    data, _ = config_dict_from_args(args)
    config = RunConfig.from_dict(data)  # every field, scheme and algorithm parameter: before any heavy import
    if args.partition_file and not Path(args.partition_file).is_file():
        raise FileNotFoundError(f"--partition {args.partition_file}: no such file")
    options = backend_options(args, config.backend)
    apply_threads(args)
    from fednlp_bench.backends.fedml.launcher import FedMLRunError, FedMLUnavailable  # no FedML import
    from fednlp_bench.backends.launch import run_config
    from fednlp_bench.engine.run.runner import NonFiniteModelError
    try:
        if options is not None and is_client_only(options):
            from fednlp_bench.backends.fedml.launcher import run_fedml_clients

            compute = {k: v for k, v in compute_options(args).items() if v is not None}
            done = run_fedml_clients(config, run_id=args.run_id, partition_file=args.partition_file, **options, **compute)
            print(f"client ranks {done.ranks} finished in {done.total_s:.1f} s; the record is written on the server "
                  f"machine (rank 0). Log: {done.log_path}")
            return 0
        record = run_config(
            config, Path(args.runs_dir), run_id=args.run_id, resume=bool(args.resume),
            partition_file=args.partition_file, progress=progress_flag(args),
            backend_options=options,
            keep_checkpoints=args.keep_checkpoints or "last",
            **compute_options(args),
        )
    except NonFiniteModelError as err:
        print(f"fednlp-bench run: stopped: {err}", file=sys.stderr)
        return 1
    except (FedMLUnavailable, FedMLRunError) as err:
        print(f"fednlp-bench run: {err}", file=sys.stderr)
        return 2 if isinstance(err, FedMLUnavailable) else 1
    from fednlp_bench.results.curves import CURVE_FILENAME, write_learning_curves

    curve = write_learning_curves({record.algorithm: [record]}, Path(args.runs_dir) / record.run_id / CURVE_FILENAME)
    print(summarize_record(record, Path(args.runs_dir)) + f"\n  learning curve (validation per round): {curve}")
    return 0


def backend_options(args: argparse.Namespace, backend: str) -> dict[str, Any] | None:
    """The backend's run options from its flags (FedML: --processes/--comm/...; --threads: per process)."""
    from fednlp_bench.execution import BACKENDS

    flags = {p.name: p.cli_flag() for p in FedML.param_specs.values() if p.cli}
    chosen = given(args, FedML.param_specs.values())
    specs = BACKENDS.lookup(backend).param_specs
    if not specs:
        if chosen:
            raise ValueError(f"{', '.join(flags[k] for k in chosen)}: only for --backend fedml (backend is {backend!r})")
        return None
    if args.threads is not None and "torch_threads" in specs:
        chosen["torch_threads"] = args.threads
    return chosen


def is_client_only(options: dict[str, Any]) -> bool:
    """--role client / --rank N>0: this machine runs client ranks only and gets no record."""
    return options.get("role") == "client" or (options.get("rank") or 0) > 0
