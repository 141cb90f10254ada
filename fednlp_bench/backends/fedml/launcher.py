"""``--backend fedml``: run one experiment on FedML, one server + P client processes, from the core environment.

FedML 0.9.6 pins numpy<2, protobuf<4, requests<2.32 and more, so it lives in
its own virtualenv (``scripts/setup_fedml_env.sh`` -> ``.fedml-venv``). This
module imports nothing from FedML: it checks the environment, writes a spec
file, starts ``mpirun -np P+1 <fedml python> -m fednlp_bench.backends.fedml.rank``
(or P+1 gRPC processes on loopback), waits with a bounded timeout and returns
the :class:`~fednlp_bench.results.record.RunRecord` that rank 0 wrote with the
project's own runner. Same config -> same record as the in-process backend,
up to float tolerance (tests/test_fedml_equivalence.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from fednlp_bench.backends.fedml.environment import (  # noqa: F401 - the errors are the launcher's too
    FedMLRunError, FedMLUnavailable, check_fedml_environment,
)
from fednlp_bench.backends.fedml.hosts import HostList, local_ranks, loopback_hosts, parse_hosts
from fednlp_bench.backends.fedml.processes import checkpoint_round, failure_message, launch
from fednlp_bench.config import RunConfig
from fednlp_bench.execution import COMMS
from fednlp_bench.results.record import RECORD_FILENAME, RunRecord


@dataclass
class FedMLRunStats:
    """Where a FedML run's time went (seconds), for the benchmark and the docs."""

    total_s: float
    runner_s: float | None = None
    fedml_server_s: float | None = None
    round_seconds: list[float] = field(default_factory=list)
    log_path: str = ""


@dataclass
class FedMLClientRun:
    """What a client-only machine (``--role client``) gets back: the server's machine writes the record."""

    ranks: list[int]
    total_s: float
    log_path: str


@dataclass
class _Plan:
    """Checked launch settings shared by the server-side and the client-only launchers."""

    processes: int
    hosts: HostList | None
    ranks: list[int]
    py: Path


def _plan(config: RunConfig, processes: int | None, comm: str, hosts: str | os.PathLike[str] | HostList | None,
          role: str | None, rank: int | None, client_ranks: str | list[int] | None, connect_timeout_s: float,
          round_timeout_s: float, python: str | os.PathLike[str] | None, server: bool) -> _Plan:
    """Validate everything before any process starts; the FedML environment is checked last (it runs a probe)."""
    from fednlp_bench.algorithms.registry import get_algorithm_class

    if get_algorithm_class(config.algorithm).centralized:
        raise ValueError("the centralized baseline has no clients to distribute; run it with --backend inprocess")
    if comm not in COMMS:
        raise ValueError(f"comm={comm!r}; choose one of {list(COMMS)}")
    split = role is not None or rank is not None or client_ranks is not None
    if comm != "GRPC" and (hosts is not None or split):
        raise ValueError("--hosts, --role, --rank and --client-ranks need --comm GRPC (mpirun starts every rank itself)")
    host_list = hosts if isinstance(hosts, HostList) or hosts is None else parse_hosts(hosts)
    if host_list is not None:
        if processes is not None and int(processes) != host_list.processes:
            raise ValueError(f"processes={processes} but --hosts {host_list.source} names {host_list.processes} "
                             f"client ranks; drop --processes or make them agree")
        processes = host_list.processes
    p = config.clients_per_round if processes is None else int(processes)
    if not 1 <= p <= config.clients_per_round:
        raise ValueError(f"processes={processes} must be between 1 and clients_per_round ({config.clients_per_round})")
    if round_timeout_s <= 0:
        raise ValueError(f"round_timeout_s={round_timeout_s} must be > 0")
    if connect_timeout_s <= 0:
        raise ValueError(f"connect_timeout_s={connect_timeout_s} must be > 0")
    ranks = local_ranks(p, role, rank, client_ranks)
    if split:
        from fednlp_bench.algorithms.registry import create_strategy

        procedure = create_strategy(config.algorithm, config.algorithm_params).make_client()
        if procedure is not None and procedure.stateful:
            raise ValueError(
                f"algorithm {config.algorithm!r} keeps per-client state on disk under the run directory, which the "
                f"server commits after each checkpoint; split over machines (--role/--rank) the clients would not "
                f"see it. Run it on one machine (MPI, or gRPC without --role), or choose a stateless algorithm")
    if server and 0 not in ranks:
        raise ValueError(f"this machine starts only client ranks {ranks}, which write no record: call "
                         "run_fedml_clients (CLI: the same `fednlp-bench run` command with --role client)")
    if not server and 0 in ranks:
        raise ValueError("rank 0 is the server; start it with run_fedml_experiment (CLI: --role server)")
    if comm == "GRPC" and host_list is None:
        host_list = loopback_hosts(p)
    return _Plan(p, host_list, ranks, check_fedml_environment(python, comm))


def run_fedml_experiment(
    config: RunConfig,
    runs_dir: str | Path,
    run_id: str | None = None,
    resume: bool = False,
    *,
    processes: int | None = None,
    comm: str = "MPI",
    hosts: str | os.PathLike[str] | HostList | None = None,
    role: str | None = None,
    rank: int | None = None,
    client_ranks: str | list[int] | None = None,
    connect_timeout_s: float = 300.0,
    task_factory: str | None = None,
    task_kwargs: Mapping[str, Any] | None = None,
    partition_factory: str | None = None,
    partition_file: str | Path | None = None,
    round_timeout_s: float = 600.0,
    python: str | os.PathLike[str] | None = None,
    torch_threads: int = 1,
    device: str | None = None,
    frozen_cache_dir: str | os.PathLike[str] | None = None,
    stats: list[FedMLRunStats] | None = None,
) -> RunRecord:
    """Run ``config`` on FedML cross-silo with P client processes and return rank 0's record.

    ``processes`` (P, default ``clients_per_round``) client processes each
    train ``clients_per_round / P`` sampled clients per round. ``task_factory``
    / ``partition_factory`` ("module:callable") stand in for the registry
    task and the partitioner, as ``run_experiment(task=...)`` does in-process.
    A dead or stuck process ends the run within ``round_timeout_s`` with the
    last round checkpointed; ``resume=True`` continues it. ``device``
    (auto|cpu|cuda|cuda:N|mps) goes to every process: with several GPUs, one
    GPU per process, round-robin (the server on cuda:0); every process finds
    the frozen-bottom cache in ``frozen_cache_dir``.

    Several machines (gRPC): ``hosts`` names every rank's ip[:port] (see
    :mod:`fednlp_bench.backends.fedml.hosts`), and ``role``/``rank``/
    ``client_ranks`` pick the ranks this machine starts. This runs rank 0's
    machine (``role="server"``), the others call :func:`run_fedml_clients`;
    the server waits ``connect_timeout_s`` for its clients, then names the missing.
    """
    from fednlp_bench.engine.run.run_id import default_run_id

    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}")
    config = config.replace(backend="fedml")  # the record says where it ran
    plan = _plan(config, processes, comm, hosts, role, rank, client_ranks, connect_timeout_s, round_timeout_s, python,
                 server=True)
    run_id = run_id or default_run_id(config)
    run_dir = Path(runs_dir) / run_id
    if resume and (run_dir / RECORD_FILENAME).is_file():
        return RunRecord.load(run_dir)
    remaining = _rounds_left(config, run_dir, resume)
    spec = _spec(config, plan, comm, run_id, task_factory, task_kwargs, partition_factory, partition_file,
                 round_timeout_s, connect_timeout_s, torch_threads, device, frozen_cache_dir)
    spec.update({"runs_dir": str(Path(runs_dir).resolve()), "run_dir": str(run_dir.resolve()), "resume": bool(resume),
                 "fedml_rounds": remaining})
    launched = launch(plan, spec, comm, 300.0 + connect_timeout_s + round_timeout_s * (remaining + 1))
    return _collect(*launched, run_dir, stats)


def _collect(work: Path, rc: int, total: float, log_path: Path, run_dir: Path,
             stats: list[FedMLRunStats] | None) -> RunRecord:
    """Rank 0's record (its log kept beside it), or the reason the ranks failed; the work dir goes."""
    if rc != 0 or not (run_dir / RECORD_FILENAME).is_file():
        raise FedMLRunError(failure_message(rc, work, log_path, run_dir))
    shutil.copyfile(log_path, run_dir / "fedml.log")
    if stats is not None:
        extra = json.loads((work / "stats.json").read_text()) if (work / "stats.json").is_file() else {}
        stats.append(FedMLRunStats(total_s=total, log_path=str(run_dir / "fedml.log"), **extra))
    shutil.rmtree(work, ignore_errors=True)
    return RunRecord.load(run_dir)


def _rounds_left(config: RunConfig, run_dir: Path, resume: bool) -> int:
    """Rounds this launch runs: all of them, or what a resumed run's checkpoint has left."""
    done_rounds = 0
    if resume:
        done_rounds = checkpoint_round(run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(f"run directory {run_dir} already exists; pass --resume to continue it, or choose another --run-id")
    if config.rounds - done_rounds < 1:
        raise ValueError(f"{run_dir}: checkpoint is at round {done_rounds} of {config.rounds}, nothing left to run")
    return config.rounds - done_rounds


def run_fedml_clients(
    config: RunConfig,
    *,
    hosts: str | os.PathLike[str] | HostList | None = None,
    client_ranks: str | list[int] | None = None,
    rank: int | None = None,
    run_id: str | None = None,
    processes: int | None = None,
    comm: str = "GRPC",
    role: str | None = "client",
    connect_timeout_s: float = 300.0,
    task_factory: str | None = None,
    task_kwargs: Mapping[str, Any] | None = None,
    partition_factory: str | None = None,
    partition_file: str | Path | None = None,
    round_timeout_s: float = 600.0,
    python: str | os.PathLike[str] | None = None,
    torch_threads: int = 1,
    device: str | None = None,
    frozen_cache_dir: str | os.PathLike[str] | None = None,
) -> FedMLClientRun:
    """A client-only machine of a multi-machine gRPC run: start ``client_ranks``, return when the server ends them.

    It needs the same config and data as the server machine (each client
    rank loads the task and partition itself) but no run directory: rank 0
    writes the record and checkpoints on its machine. Its clients stop on the
    server's final message, so they also serve a resumed run unchanged.
    """
    from fednlp_bench.engine.run.run_id import default_run_id

    if hosts is None:
        raise ValueError("a client-only machine needs --hosts (where rank 0, the server, listens)")
    if rank is not None:
        role = None  # --rank N is its own shorthand
    if config.backend != "fedml":
        config = config.replace(backend="fedml")
    plan = _plan(config, processes, comm, hosts, role, rank, client_ranks, connect_timeout_s, round_timeout_s, python,
                 server=False)
    spec = _spec(config, plan, comm, run_id or default_run_id(config), task_factory, task_kwargs, partition_factory,
                 partition_file, round_timeout_s, connect_timeout_s, torch_threads, device, frozen_cache_dir)
    # Per-client state (client-side algorithms) lives under the run directory; a client-only machine keeps
    # its own clients' states in its work folder (see docs/fedml.md: such algorithms need a shared --runs-dir).
    spec.update({"fedml_rounds": None, "run_dir": str(Path(spec["work_dir"]) / "run")})
    overall = 300.0 + connect_timeout_s + round_timeout_s * (config.rounds + 1)
    work, rc, total, log_path = launch(plan, spec, comm, overall)
    if rc != 0:
        raise FedMLRunError(failure_message(rc, work, log_path, None))
    return FedMLClientRun(ranks=plan.ranks, total_s=total, log_path=str(log_path))


def _spec(config: RunConfig, plan: _Plan, comm: str, run_id: str, task_factory: str | None,
          task_kwargs: Mapping[str, Any] | None, partition_factory: str | None, partition_file: str | Path | None,
          round_timeout_s: float, connect_timeout_s: float, torch_threads: int, device: str | None,
          frozen_cache_dir: str | os.PathLike[str] | None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="fednlp-fedml-"))
    return {
        "config": config.to_dict(), "run_id": run_id, "processes": plan.processes, "comm": comm,
        "task_factory": task_factory, "task_kwargs": dict(task_kwargs or {}), "partition_factory": partition_factory,
        "partition_file": None if partition_file is None else str(Path(partition_file).resolve()),
        "round_timeout_s": float(round_timeout_s), "connect_timeout_s": float(connect_timeout_s),
        "torch_threads": int(torch_threads), "work_dir": str(work), "device": device,
        "frozen_cache_dir": None if frozen_cache_dir is None else str(Path(frozen_cache_dir).resolve()),
        "error_file": str(work / "error.txt"), "stats_file": str(work / "stats.json"),
        "grpc_ipconfig": str(work / "grpc_ipconfig.csv"), "local_ranks": plan.ranks,
        "hosts": None if plan.hosts is None else plan.hosts.to_list(),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m fednlp_bench.backends.fedml.launcher CONFIG.yaml RUNS_DIR [--processes P] [--comm GRPC]`."""
    import argparse

    from fednlp_bench.scalars import load_yaml

    parser = argparse.ArgumentParser(description="run one fednlp-bench config on FedML")
    parser.add_argument("config", type=Path)
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("--processes", type=int, default=None)
    parser.add_argument("--comm", choices=COMMS, default="MPI")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--round-timeout", type=float, default=600.0)
    ns = parser.parse_args(argv)
    config = RunConfig.from_dict(load_yaml(ns.config.read_text()))
    try:
        record = run_fedml_experiment(config, ns.runs_dir, resume=ns.resume, processes=ns.processes, comm=ns.comm,
                                      round_timeout_s=ns.round_timeout)
    except (FedMLUnavailable, FedMLRunError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{record.run_id}: {record.primary_metric}={record.final_metrics.get(record.primary_metric)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
