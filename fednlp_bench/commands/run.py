"""`fednlp-bench run`: one federated (or centralized) training run -> runs/<id>/record.json.

Settings come from a YAML file (``--config``) and/or flags; a flag given on
the command line overrides the file. Everything is validated before data is
loaded. ``--partition part.json`` uses a saved partition (checked against the
data's fingerprint; its spec is copied into the config so the record can be
re-run); otherwise the partition is regenerated from --scheme/--alpha/--clients.

Examples:
  fednlp-bench run --task classification --scheme dirichlet_label --alpha 0.5 --clients 10 \\
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

from fednlp_bench.commands.registry_help import (
    add_named, add_scheme_option, algorithm_flags, algorithms, check_flag_params, schemes, tasks,
)
from fednlp_bench.config import (
    BACKENDS, KEEP_CHECKPOINTS, OPTIMIZERS, SAMPLING_METHODS, RunConfig, load_yaml_config, select_task,
)
from fednlp_bench.scalars import integer, number, parse_scalar

#: RunConfig fields set by their own flag of the same name (``--max-length`` -> ``max_length``) are all
#: the others; these are merged by hand below.
_MERGED_BY_HAND = {"partition", "algorithm", "algorithm_params", "local_epochs", "local_steps", "trainable",
                   "trainable_params", "columns", "task_params"}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="train one FL algorithm (or the centralized baseline) on a task/partition; write a result record",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_experiment_arguments(p)
    add_named(p, "--algorithm", algorithms, "%(names)s | package.module:Class (default: fedavg)")
    p.add_argument("--run-id", help="folder name under --runs-dir (default: <task>-<algorithm>-<config hash>-s<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --runs-dir/--run-id from its last checkpoint")
    f = p.add_argument_group("FedML backend (--backend fedml; see docs/fedml.md)")
    f.add_argument("--processes", type=integer, help="client processes P, 1..clients-per-round (default: clients-per-round)")
    f.add_argument("--comm", choices=("MPI", "GRPC"),
                   help="FedML transport: mpirun (default) or gRPC (127.0.0.1, or the machines of --hosts)")
    f.add_argument("--round-timeout", type=number,
                   help="seconds a round may take before the run stops, resumable (default: 600)")
    from fednlp_bench.backends.fedml_hosts import HOSTS_HELP, ROLES

    f.add_argument("--hosts", help=f"gRPC across machines: every rank's address, {HOSTS_HELP}")
    f.add_argument("--role", choices=ROLES,
                   help="start only this machine's ranks: server = rank 0 (plus --client-ranks, if given), "
                        "client = only --client-ranks (default: every rank here)")
    f.add_argument("--client-ranks", help="client ranks this machine starts, e.g. 1,2 or 1-3")
    f.add_argument("--rank", type=integer, help="shorthand: --rank 0 = --role server, --rank N = --role client --client-ranks N")
    f.add_argument("--connect-timeout", type=number,
                   help="seconds the server waits for every client rank (then names the missing ones), and a client "
                        "for the server (default: 300)")
    p.set_defaults(func=main, algorithm_flags=algorithm_flags, flag_params={},
                   parser_flags=[s for a in p._actions for s in a.option_strings])


def add_experiment_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``run`` and ``compare`` (all default to None = 'not given')."""
    p.add_argument("--config", help="YAML file of RunConfig fields (flags override it)")
    t = p.add_argument_group("task and data")
    add_named(t, "--task", tasks, "%(names)s (default: classification)")
    t.add_argument("--data", help="local folder/file or hub dataset (default: the task's offline copy)")
    t.add_argument("--model", help="minilm (offline default) | tiny (tests) | HF name or folder")
    t.add_argument("--max-length", type=integer, help="max tokens per example (default: 128)")
    t.add_argument("--max-train-examples", type=integer, help="seeded random subset of the train split")
    t.add_argument("--max-eval-examples", type=integer, help="seeded random subset of the validation and of the test split")
    t.add_argument("--column", action="append", default=[], metavar="FIELD=NAME",
                   help="read task field FIELD from your column NAME, e.g. --column text=body --column label=topic "
                        "(repeatable; config: columns: {text: body})")
    t.add_argument("--text-format", choices=("auto", "email", "plain"),
                   help="strip e-mail/netnews headers: auto (only real headers such as From:/Subject:, default), "
                        "email (always), plain (never)")
    t.add_argument("--skip-invalid-rows", action="store_true", default=None,
                   help="skip rows that cannot be used (counted in the record) instead of stopping at file:line")
    t.add_argument("--validation-fraction", type=number,
                   help="share of train held out as validation when the data has none (default: 0.1)")
    t.add_argument("--task-param", action="append", default=[], metavar="KEY=VALUE",
                   help="any other task option, e.g. tag_scheme=iob1, doc_stride=128, max_target_length=24")
    q = p.add_argument_group("partition (either --partition FILE or a scheme)")
    q.add_argument("--partition", dest="partition_file", help="saved partition (.json/.npz from `fednlp-bench partition`)")
    add_named(q, "--scheme", schemes, "%(names)s")
    add_scheme_option(q, "--alpha", "alpha", "Dirichlet concentration", type=number)
    q.add_argument("--clients", type=integer, help="number of clients")
    q.add_argument("--partition-seed", type=integer, help="seed of the partition draw (default: 0)")
    q.add_argument("--min-size", type=integer, help="minimum examples per client")
    q.add_argument("--partition-param", action="append", default=[], metavar="KEY=VALUE",
                   help="any other scheme parameter, e.g. classes_per_client=2 (repeatable)")
    a = p.add_argument_group(
        "algorithm parameters",
        "any parameter of the algorithm as --NAME VALUE (e.g. --mu 0.01, --server-lr 1e-2); "
        "`fednlp-bench algorithms` lists each algorithm's parameters and defaults",
    )
    a.add_argument("--algo-param", action="append", default=[], metavar="KEY=VALUE",
                   help="the same as KEY=VALUE (repeatable)")
    b = p.add_argument_group("training budget")
    b.add_argument("--rounds", type=integer, help="communication rounds (default: 10)")
    b.add_argument("--clients-per-round", type=integer, help="clients sampled per round, K (default: 5)")
    b.add_argument("--local-epochs", type=integer, help="local epochs per round (default: 1)")
    b.add_argument("--local-steps", type=integer, help="local optimizer steps per round instead of epochs")
    b.add_argument("--batch-size", type=integer, help="batch size (default: 16)")
    b.add_argument("--lr", type=number, help="client learning rate (default: 5e-5)")
    b.add_argument("--optimizer", choices=OPTIMIZERS, help="client optimizer (default: adamw)")
    b.add_argument("--sampling", choices=SAMPLING_METHODS, help="client sampling policy (inclusion probabilities and default aggregation weights: docs/trust.md, section 6)")
    b.add_argument("--dropout", type=number, help="probability a sampled client fails mid-round (default: 0)")
    b.add_argument("--eval-every", type=integer, help="evaluate on validation every N rounds and at the end (default: 1)")
    b.add_argument("--test-best-round", action="store_true", default=None,
                   help="also evaluate test on the best-validation round (test is always evaluated on the final model)")
    b.add_argument("--seed", type=integer, help="run seed: model init, sampling, shuffling (default: 0)")
    b.add_argument("--backend", choices=BACKENDS,
                   help="execution backend: inprocess (default) | fedml (multi-process, own venv: docs/fedml.md)")
    from fednlp_bench.compute.device import DEVICE_CHOICES
    from fednlp_bench.compute.precision import PRECISIONS
    from fednlp_bench.compute.trainable import MODES, mode_help

    c = p.add_argument_group("compute (precision and trainable enter the config; device and cache folder do not)")
    c.add_argument("--precision", choices=tuple(PRECISIONS), help="autocast precision (default: fp32; fp16 needs a GPU)")
    c.add_argument("--trainable", choices=tuple(MODES), help=f"which weights train and travel: {mode_help()}")
    c.add_argument("--trainable-param", action="append", default=[], metavar="KEY=VALUE",
                   help="a trainable_params entry, e.g. layers=2, cache=true, r=8 (repeatable)")
    c.add_argument("--device", help=f"where to compute: {' | '.join(DEVICE_CHOICES)} (default: auto)")
    c.add_argument("--frozen-cache-dir",
                   help="folder of the frozen-bottom cache (top_layers with cache=true; default: $FEDNLP_CACHE_DIR/frozen_bottom)")
    o = p.add_argument_group("output")
    o.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs/)")
    o.add_argument("--keep-checkpoints", choices=KEEP_CHECKPOINTS,
                   help="model weights kept: last checkpoint (run's default; ~90-260 MB with MiniLM), none (drop "
                   "them when the run finishes; compare's default; the record stays), all (one per round)")
    o.add_argument("--no-progress", action="store_true",
                   help="no progress bars: one line per phase and round instead (the default when not on a terminal)")
    o.add_argument("--threads", type=integer,
                   help="torch CPU threads (default: torch's choice; 1 is faster on an oversubscribed machine)")


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's thread count before any work (recorded in the record's hardware.torch_threads)."""
    if args.threads is None:
        return
    if args.threads < 1:
        raise ValueError(f"--threads {args.threads} must be >= 1")
    import torch

    torch.set_num_threads(args.threads)


def parse_key_values(items: list[str], flag: str, parse: bool = True) -> dict[str, Any]:
    """``KEY=VALUE`` items -> dict; values are YAML scalars (1e-3 a float) unless ``parse`` is False (kept as text)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} {item!r} must look like KEY=VALUE")
        out[key.strip()] = parse_scalar(value) if parse else value.strip()
    return out


def config_dict_from_args(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge ``--config`` and explicit flags into RunConfig fields; return (fields, compare section)."""
    data: dict[str, Any] = {}
    compare: dict[str, Any] = {}
    if args.config:
        data, compare = load_yaml_config(args.config)
        data = select_task(data, args.task, args.config)  # a multi-task config: the entry of --task
    for name in RunConfig.field_names():
        value = getattr(args, name, None)
        if name not in _MERGED_BY_HAND and value is not None:
            data[name] = value
    if args.local_steps is not None:
        data["local_steps"] = args.local_steps
        data["local_epochs"] = args.local_epochs  # None unless both given (then validation complains)
    elif args.local_epochs is not None:
        data["local_epochs"] = args.local_epochs
        data["local_steps"] = None

    columns = parse_key_values(args.column, "--column", parse=False)
    if columns:
        data["columns"] = {**dict(data.get("columns") or {}), **columns}
    task_params = parse_key_values(args.task_param, "--task-param")
    for flag, key in (("text_format", "text_format"), ("skip_invalid_rows", "skip_invalid_rows"),
                      ("validation_fraction", "validation_fraction")):
        if getattr(args, flag, None) is not None:
            task_params[key] = getattr(args, flag)
    if task_params:
        data["task_params"] = {**dict(data.get("task_params") or {}), **task_params}

    scheme_flags = {"scheme": args.scheme, "alpha": args.alpha, "clients": args.clients,
                    "partition_seed": args.partition_seed, "min_size": args.min_size}
    extra_part = parse_key_values(args.partition_param, "--partition-param")
    if args.partition_file:
        given = [f"--{k.replace('_', '-')}" for k, v in scheme_flags.items() if v is not None]
        given += ["--partition-param"] if extra_part else []
        if given:
            raise ValueError(f"--partition FILE already fixes the partition; drop {', '.join(given)}")
    else:
        part = dict(data.get("partition") or {})
        if args.scheme is not None and args.scheme != part.get("scheme"):
            part["scheme"] = args.scheme
            part["params"] = {}  # another scheme's params (e.g. alpha) do not carry over
        if args.clients is not None:
            part["num_clients"] = args.clients
        if args.partition_seed is not None:
            part["seed"] = args.partition_seed
        if args.min_size is not None:
            part["min_size"] = args.min_size
        params = dict(part.get("params") or {}) if "params" in part or args.alpha is not None or extra_part else None
        if params is not None:
            if args.alpha is not None:
                params["alpha"] = args.alpha
            params.update(extra_part)
            part["params"] = params
        if part:
            data["partition"] = part

    algo_params = parse_key_values(args.algo_param, "--algo-param")
    algorithm = getattr(args, "algorithm", None)
    if algorithm is not None and algorithm != data.get("algorithm"):
        data["algorithm"] = algorithm
        data["algorithm_params"] = {}
    if algo_params:
        data["algorithm_params"] = {**dict(data.get("algorithm_params") or {}), **algo_params}
    if hasattr(args, "algorithm") and args.flag_params:  # `run`; `compare` spreads them over its algorithms
        from fednlp_bench.algorithms.registry import get_algorithm_class

        chosen = data.get("algorithm", RunConfig.algorithm)
        check_flag_params(args.flag_params, {chosen: get_algorithm_class(chosen)}, args.parser_flags)
        data["algorithm_params"] = {**dict(data.get("algorithm_params") or {}), **args.flag_params}
    trainable = getattr(args, "trainable", None)
    if trainable is not None and trainable != data.get("trainable"):
        data["trainable"] = trainable
        data["trainable_params"] = {}  # another mode's parameters do not carry over
    trainable_params = parse_key_values(getattr(args, "trainable_param", []) or [], "--trainable-param")
    if trainable_params:
        data["trainable_params"] = {**dict(data.get("trainable_params") or {}), **trainable_params}
    return data, compare


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
    from fednlp_bench.backends.fedml_backend import FedMLRunError, FedMLUnavailable  # no FedML import
    from fednlp_bench.engine.runner import NonFiniteModelError, run_experiment
    try:
        if options is not None and is_client_only(options):
            from fednlp_bench.backends.fedml_backend import run_fedml_clients

            compute = {k: v for k, v in compute_options(args).items() if v is not None}
            done = run_fedml_clients(config, run_id=args.run_id, partition_file=args.partition_file, **options, **compute)
            print(f"client ranks {done.ranks} finished in {done.total_s:.1f} s; the record is written on the server "
                  f"machine (rank 0). Log: {done.log_path}")
            return 0
        record = run_experiment(
            config, Path(args.runs_dir), run_id=args.run_id, resume=args.resume,
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
    """The FedML launcher's run options from --processes/--comm/--round-timeout (--threads: per process)."""
    flags = {"processes": "--processes", "comm": "--comm", "round_timeout_s": "--round-timeout", "hosts": "--hosts",
             "role": "--role", "client_ranks": "--client-ranks", "rank": "--rank",
             "connect_timeout_s": "--connect-timeout"}
    given = {k: getattr(args, flag[2:].replace("-", "_")) for k, flag in flags.items()}
    given = {k: v for k, v in given.items() if v is not None}
    if backend != "fedml":
        if given:
            raise ValueError(f"{', '.join(flags[k] for k in given)}: only for --backend fedml (backend is {backend!r})")
        return None
    if args.threads is not None:
        given["torch_threads"] = args.threads
    return given


def is_client_only(options: dict[str, Any]) -> bool:
    """--role client / --rank N>0: this machine runs client ranks only and gets no record."""
    return options.get("role") == "client" or (options.get("rank") or 0) > 0


def summarize_record(record: Any, runs_dir: Path) -> str:
    metric = record.primary_metric
    others = ", ".join(f"{k}={v:.4f}" for k, v in sorted(record.final_metrics.items()) if k != metric)
    extra = ""
    best = (record.test or {}).get("best_round")
    if best:
        extra += f"\n  best validation round {best['round']}: test {metric}={best['test'][metric]:.4f}"
    if record.resumed_after:
        extra += ("\n  resumed from its checkpoint after round " +
                  ", ".join(str(r) for r in record.resumed_after) + f" (continued from round {record.resumed_after[-1] + 1})")
    lead = (record.baselines or {}).get("lead")
    if lead:
        extra += f"\n  lead baseline (first {lead['k']} words, k chosen on validation): test {metric}={lead['test'][metric]:.4f}"
    return (
        f"{record.algorithm} on {record.task}: test {metric}={record.final_metrics[metric]:.4f}"
        f"{' (' + others + ')' if others else ''}{extra}\n"
        f"  {len(record.rounds)} rounds in {record.wall_time_s:.1f} s; "
        f"communication {record.bytes_up / 2**20:.1f} MiB up, {record.bytes_down / 2**20:.1f} MiB down\n"
        f"{compute_line(record.hardware)}"
        f"  record: {runs_dir / record.run_id / 'record.json'}"
    )


def compute_line(hardware: Any) -> str:
    """Device, trained share of the model and frozen-bottom cache size (empty for records without them)."""
    if not isinstance(hardware, dict) or "trainable_parameters" not in hardware:
        return ""
    line = (f"  device {hardware.get('device')}; {hardware['trainable_parameters']:,} of "
            f"{hardware['total_parameters']:,} parameters trained")
    if "frozen_cache_bytes" in hardware:
        line += f"; frozen-bottom cache {hardware['frozen_cache_bytes'] / 2**20:.1f} MiB"
    return line + "\n"
