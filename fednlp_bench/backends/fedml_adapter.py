"""The FedML side of ``--backend fedml``: the project's Strategy and LocalTrainer inside FedML 0.9.6.

Runs only inside the FedML virtualenv, one process per rank, started by
:func:`fednlp_bench.backends.fedml_backend.run_fedml_experiment`::

    mpirun -np P+1 <fedml-venv>/bin/python -m fednlp_bench.backends.fedml_adapter SPEC.json

Why cross-silo and not FedML's ``simulation`` MPI mode: in FedML 0.9.6 the
MPI *simulator* (``fedml/simulation/mpi/fedavg/FedAVGAggregator.py``) averages
client models with its own ``_fedavg_aggregation_`` and never calls
``ServerAggregator.aggregate``, so a project Strategy (FedAdam, FedNova, ...)
cannot run there unchanged. FedML's cross-silo server
(``fedml/cross_silo/server/fedml_aggregator.py``) hands every client's upload
to ``ServerAggregator.aggregate`` and sends back whatever it returns, over the
same MPI communication manager (``backend: MPI``) or gRPC.

Control flow in rank 0: the project's ordinary runner loop
(``run_experiment``: sampling, dropout, Strategy.aggregate, evaluation,
checkpoints, record) runs in a helper thread with a backend whose
``run_round`` hands the round to FedML through :class:`RoundBridge`; FedML's
server loop runs in the main thread (MPI must be finalized there).
:class:`StrategyAggregator` turns "FedML asks for the global model" into
"next round's payload" and "FedML aggregates" into "give the uploads to the
runner". Ranks 1..P run :class:`SlotTrainer`, a FedML ``ClientTrainer`` that
trains the clients assigned to its slot with the project's ``LocalTrainer``
(client seeds are the in-process ones, so results match the in-process
backend to float tolerance). Every wait is bounded: a stuck or dead peer ends
the run with a message and the last checkpoint, never a hang.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from fednlp_bench.compute.device import to_device

#: Exit codes the launcher translates into messages.
EXIT_RUNNER_FAILED = 3
EXIT_TIMEOUT = 4
#: Failure drill for tests and docs: "RANK:ROUND" makes that client process die when that round starts.
FAULT_ENV = "FEDNLP_FEDML_FAULT"

log = logging.getLogger("fednlp_bench.fedml")


@dataclass
class RoundPayload:
    """Server -> every client process, once per FedML round (not a dict: FedML would index a dict by client)."""

    rnd: int
    weights: dict[str, Any] | None
    #: slot -> [(client_id, instructions)], in the in-process order.
    assignments: dict[int, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    seed: int = 0
    done: bool = False


# --------------------------------------------------------------------- helpers
def _load_object(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    obj = getattr(importlib.import_module(module), attr, None)
    if obj is None:
        raise ValueError(f"{ref!r}: module {module!r} has no attribute {attr!r}")
    return obj


def _die(code: int, message: str, spec: Mapping[str, Any]) -> None:
    """Leave the reason where the launcher looks, then end this process at once (peers are ended by mpirun)."""
    try:
        Path(spec["error_file"]).write_text(message)
    except OSError:
        pass
    print(f"[fednlp-fedml] {message}", file=sys.stderr, flush=True)
    if code == EXIT_TIMEOUT:  # show where every thread was stuck
        import faulthandler

        faulthandler.dump_traceback(all_threads=True)
    sys.stderr.flush()
    os._exit(code)


def _offline_fedml() -> None:
    """FedML's init asks its MLOps config server five times; there is no such server here, so skip it."""
    import fedml.core.mlops as mlops

    def fetch_config(args: Any, version: str = "release") -> None:
        for key, value in {
            "current_running_dir": os.path.expanduser("~/.fedml"), "os_name": "Linux", "version": version,
            "log_file_dir": "", "device_id": "0", "config_version": version, "cloud_region": "",
        }.items():
            setattr(args, key, value)

    mlops.fetch_config = fetch_config


def fedml_args(spec: Mapping[str, Any], rank: int) -> Any:
    """FedML's argument object for this rank: cross-silo horizontal, no MLOps, no wandb."""
    import yaml
    from fedml.arguments import Arguments

    slots = int(spec["processes"])
    comm = spec["comm"]
    cfg = {
        "common_args": {"training_type": "cross_silo", "scenario": "horizontal", "random_seed": int(spec["config"]["seed"]),
                        "using_mlops": False},
        "data_args": {"dataset": "fednlp-bench"},
        "model_args": {"model": "fednlp-bench"},
        "train_args": {"federated_optimizer": "FedAvg", "client_id_list": None,
                       "client_num_in_total": slots, "client_num_per_round": slots,
                       "comm_round": int(spec["fedml_rounds"]), "epochs": 1, "batch_size": 1,
                       "client_optimizer": "sgd", "learning_rate": 0.0},
        "validation_args": {"frequency_of_the_test": 10**9},
        "device_args": {"worker_num": slots, "using_gpu": False},
        "comm_args": {"backend": comm, "is_mobile": 0},
        "tracking_args": {"enable_wandb": False, "enable_tracking": False},
    }
    if comm == "GRPC":
        cfg["comm_args"]["grpc_ipconfig_path"] = spec["grpc_ipconfig"]
    path = Path(spec["work_dir"]) / f"fedml_rank{rank}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    ns = argparse.Namespace(yaml_config_file=str(path), run_id=str(spec["run_id"]), rank=rank, local_rank=0,
                            node_rank=0, role="server" if rank == 0 else "client", run_device_id="0",
                            using_mlops=False)
    return Arguments(ns)


def _fedml_dataset(slots: int) -> list[Any]:
    """FedML's 8-slot dataset list; the project's clients load their own data, so it only names the slots."""
    ones = {i: 1 for i in range(slots)}
    empty = {i: None for i in range(slots)}
    return [slots, 0, None, None, ones, dict(empty), dict(empty), 0]


# ----------------------------------------------------------------- server side
class RoundBridge:
    """Hands rounds from the runner thread to FedML's server loop and uploads back; every wait is bounded."""

    name = "fedml"

    def __init__(self, slots: int, fedml_rounds: int, timeout_s: float, spec: Mapping[str, Any]) -> None:
        self.slots = slots
        self.fedml_rounds = fedml_rounds
        self.timeout_s = timeout_s
        self.spec = spec
        self._payloads: queue.Queue[RoundPayload] = queue.Queue()
        self._uploads: queue.Queue[list[dict[str, Any]]] = queue.Queue()
        self.rounds_served = 0
        self.last_round = 0
        #: seconds FedML spent between handing out a round and returning every upload.
        self.round_seconds: list[float] = []

    # --- runner thread (the engine's Backend protocol)
    def run_round(self, rnd: int, instructions: Mapping[int, Mapping[str, Any]], global_weights: Any, seed: int) -> Any:
        from fednlp_bench.engine.simulator import RoundOutcome

        order = [int(c) for c in instructions]
        # CPU tensors on the wire: every process may compute on a different device.
        assignments = {s: [(cid, to_device(dict(instructions[cid]), "cpu")) for cid in order[s :: self.slots]]
                       for s in range(self.slots)}
        t0 = time.perf_counter()
        self.last_round = rnd
        device = next(iter(global_weights.values())).device if global_weights else "cpu"
        wire = {k: v.detach().cpu() for k, v in global_weights.items()}
        self._payloads.put(RoundPayload(rnd=rnd, weights=wire, assignments=assignments, seed=int(seed)))
        try:
            uploads = self._uploads.get(timeout=self.timeout_s)
        except queue.Empty:
            _die(EXIT_TIMEOUT, self._stuck_message(rnd, "no upload from every FedML client process"), self.spec)
        self.round_seconds.append(time.perf_counter() - t0)
        by_client = {}
        outcome = RoundOutcome(results=[])
        for upload in uploads:
            for result in upload["results"]:
                result.delta = to_device(result.delta, device)
                result.payload = to_device(result.payload, device)
                by_client[result.client_id] = result
            outcome.rejected.update({int(k): v for k, v in upload["rejected"].items()})
        # Same order as the in-process backend, so float sums in Strategy.aggregate match.
        outcome.results = [by_client[c] for c in order if c in by_client]
        return outcome

    # --- FedML main thread
    def next_payload(self) -> RoundPayload:
        if self.rounds_served >= self.fedml_rounds:
            return RoundPayload(rnd=self.last_round + 1, weights=None, done=True)
        try:
            payload = self._payloads.get(timeout=self.timeout_s)
        except queue.Empty:
            _die(EXIT_TIMEOUT, self._stuck_message(self.last_round + 1, "the runner produced no next round"), self.spec)
        self.rounds_served += 1
        return payload

    def submit(self, uploads: list[dict[str, Any]]) -> None:
        self._uploads.put(uploads)

    def _stuck_message(self, rnd: int, what: str) -> str:
        return (
            f"FedML round {rnd}: {what} within {self.timeout_s:.0f} s (a client process died or hangs). "
            f"The run stopped; the last finished round is checkpointed in {self.spec['run_dir']}; "
            f"rerun the same command with --resume to continue."
        )


def make_server_classes() -> tuple[type, type]:
    """Define the FedML subclasses lazily: importing fedml costs ~15 s and must not happen at module import."""
    from fedml.core import ClientTrainer, ServerAggregator

    class StrategyAggregator(ServerAggregator):
        """FedML ServerAggregator whose "global model" is the next round's payload from the project's runner.

        The Strategy itself runs in the runner (``Strategy.aggregate`` on the
        uploads in client order); here FedML's aggregate step only forwards the
        uploads and returns what the clients must get next.
        """

        def __init__(self, model: Any, args: Any, bridge: RoundBridge) -> None:
            super().__init__(model, args)
            self.bridge = bridge
            self.current: RoundPayload | None = None

        def get_model_params(self) -> RoundPayload:
            # FedML's server may send the init message twice (a client that reports ONLINE twice makes
            # "all online" true twice): hand out the same round again instead of waiting for a new one.
            if self.current is None:
                self.current = self.bridge.next_payload()
            return self.current

        def set_model_params(self, model_parameters: Any) -> None:
            pass  # the runner holds the global weights

        def aggregate(self, raw_client_model_or_grad_list: list[tuple[float, Any]]) -> RoundPayload:
            uploads = [upload for _, upload in raw_client_model_or_grad_list]
            bad = [u for u in uploads if not isinstance(u, dict) or "results" not in u]
            if bad:
                _die(EXIT_RUNNER_FAILED, f"FedML delivered an upload that no fednlp-bench client sent: {bad[0]!r:.200}",
                     self.bridge.spec)
            self.bridge.submit(uploads)
            self.current = self.bridge.next_payload()
            return self.current

        def test(self, test_data: Any, device: Any, args: Any) -> None:
            return None  # evaluation happens in the runner, on the global test set

        def test_all(self, *args: Any, **kwargs: Any) -> bool:
            return True

    class SlotTrainer(ClientTrainer):
        """FedML ClientTrainer for one client process: trains the clients the payload assigns to its slot."""

        def __init__(self, model: Any, args: Any, slot: int, local: Any, rows: Callable[[int], Any],
                     watchdog: "Watchdog") -> None:
            super().__init__(model, args)
            self.slot = slot
            self.local = local
            self.rows = rows
            self.watchdog = watchdog
            self.payload: RoundPayload | None = None
            self.upload: dict[str, Any] = {"results": [], "rejected": {}}

        def get_model_params(self) -> dict[str, Any]:
            return self.upload  # a plain dict: FedML passes it through untouched

        def set_model_params(self, model_parameters: Any) -> None:
            self.watchdog.touch()
            if not isinstance(model_parameters, RoundPayload):
                raise TypeError(f"expected a RoundPayload from the fednlp-bench server, got {type(model_parameters)}")
            self.payload = model_parameters

        def train(self, train_data: Any, device: Any, args: Any) -> None:
            from fednlp_bench.engine.local_trainer import ClientUpdateRejected
            from fednlp_bench.engine.sampling import client_seed

            payload = self.payload
            assert payload is not None and not payload.done
            if os.environ.get(FAULT_ENV) == f"{self.slot + 1}:{payload.rnd}":
                os._exit(9)  # failure drill: this client process dies mid-round
            t0 = time.perf_counter()
            results, rejected = [], {}
            device = self.local.trainer.device
            weights = to_device(payload.weights, device)  # CPU tensors on the wire
            for cid, instructions in payload.assignments.get(self.slot, []):
                try:
                    result = self.local.train(cid, self.rows(cid), weights, to_device(instructions, device),
                                              client_seed(payload.seed, payload.rnd, cid), rnd=payload.rnd)
                    result.delta = to_device(result.delta, "cpu")
                    result.payload = to_device(result.payload, "cpu")
                    results.append(result)
                except ClientUpdateRejected as err:
                    rejected[cid] = str(err)
                self.watchdog.touch()
            self.upload = {"slot": self.slot, "rnd": payload.rnd, "results": results, "rejected": rejected,
                           "train_s": time.perf_counter() - t0}

    return StrategyAggregator, SlotTrainer


class Watchdog:
    """Ends a client process that has heard nothing from the server for ``timeout_s`` (gRPC has no mpirun to do it)."""

    def __init__(self, timeout_s: float, spec: Mapping[str, Any]) -> None:
        self.timeout_s = timeout_s
        self.spec = spec
        self._last = time.monotonic()
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="fednlp-watchdog").start()

    def touch(self) -> None:
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(1.0):
            if time.monotonic() - self._last > self.timeout_s:
                _die(EXIT_TIMEOUT, f"client process: no message from the FedML server for {self.timeout_s:.0f} s; "
                                   f"stopping (the server or a peer died)", self.spec)


# ----------------------------------------------------------------- per rank
def _prepare(spec: Mapping[str, Any]) -> tuple[Any, Any]:
    """Task object (or None: the engine builds it) and the engine's preparation seams, as the launcher asked."""
    import fednlp_bench.engine.prepare as prepare

    task = None
    if spec.get("task_factory"):
        task = _load_object(spec["task_factory"])(**dict(spec.get("task_kwargs") or {}))
    if spec.get("partition_factory"):
        prepare.build_partition = _load_object(spec["partition_factory"])
    return task, prepare


def run_server(spec: Mapping[str, Any], args: Any) -> None:
    import torch
    from fedml import FedMLRunner

    from fednlp_bench.compute.device import device_for_rank
    from fednlp_bench.config import RunConfig

    from fednlp_bench.engine.runner import run_experiment

    task, _ = _prepare(spec)
    config = RunConfig.from_dict(spec["config"])
    bridge = RoundBridge(int(spec["processes"]), int(spec["fedml_rounds"]), float(spec["round_timeout_s"]), spec)
    StrategyAggregator, _ = make_server_classes()
    outcome: dict[str, Any] = {}

    def factory(trainer: Any, client_rows: Any, progress: Any = None) -> RoundBridge:
        return bridge

    def run() -> None:
        try:
            t0 = time.perf_counter()
            # backend_factory: the runner's rounds go to the bridge (and the "fedml" config is not relaunched).
            record = run_experiment(config, Path(spec["runs_dir"]), run_id=spec["run_id"],
                                           resume=bool(spec["resume"]), task=task, progress=False,
                                           partition_file=spec.get("partition_file"), backend_factory=factory,
                                           device=device_for_rank(spec.get("device"), 0),
                                           frozen_cache_dir=spec.get("frozen_cache_dir"))
            outcome["record"] = record
            outcome["runner_s"] = time.perf_counter() - t0
        except BaseException as err:  # noqa: BLE001 - reported to the launcher, then the process ends
            _die(EXIT_RUNNER_FAILED, f"{type(err).__name__}: {err}\n{traceback.format_exc()}", spec)

    thread = threading.Thread(target=run, name="fednlp-runner", daemon=True)
    t_fedml = time.perf_counter()
    thread.start()
    model = torch.nn.Linear(1, 1)  # FedML wants a model object; the runner owns the real one
    FedMLRunner(args, torch.device("cpu"), _fedml_dataset(int(spec["processes"])), model,
                server_aggregator=StrategyAggregator(model, args, bridge)).run()
    fedml_s = time.perf_counter() - t_fedml
    thread.join(timeout=float(spec["round_timeout_s"]))
    if thread.is_alive() or "record" not in outcome:
        _die(EXIT_TIMEOUT, "FedML finished but the runner did not write the record in time", spec)
    stats = {"round_seconds": bridge.round_seconds, "runner_s": outcome["runner_s"], "fedml_server_s": fedml_s}
    Path(spec["stats_file"]).write_text(json.dumps(stats))


def run_client(spec: Mapping[str, Any], args: Any, rank: int) -> None:
    import numpy as np
    import torch
    from fedml import FedMLRunner

    from fednlp_bench.algorithms.registry import create_strategy
    from fednlp_bench.compute.device import device_for_rank
    from fednlp_bench.compute.setup import attach_frozen_cache, build_compute, check_run_options
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.client_runner import ClientRunner
    from fednlp_bench.engine.client_state import ClientStateStore
    from fednlp_bench.engine.local_trainer import LocalTrainer

    task, prepare = _prepare(spec)
    config = RunConfig.from_dict(spec["config"])
    task = task if task is not None else prepare.build_task(config)
    splits = task.load()
    train_raw = splits["train"]
    if spec.get("partition_file"):
        part = prepare.load_partition_file(spec["partition_file"], train_raw)
    else:
        part = prepare.build_partition(train_raw, config.partition)
    # One GPU per client process, round-robin over the visible ones (``--device cuda``).
    device, precision = check_run_options(config.precision, device_for_rank(spec.get("device"), rank))
    compute = build_compute(task, config, device, precision)
    model = compute.model
    features = task.preprocess(train_raw, train=True)
    attach_frozen_cache(compute, task, [features], spec.get("frozen_cache_dir"))
    trainer = LocalTrainer(task, model, features, batch_size=config.batch_size, lr=config.lr,
                           optimizer=config.optimizer, local_epochs=config.local_epochs, local_steps=config.local_steps,
                           precision=precision)
    # The algorithm's client procedure and the run's on-disk client states, exactly as in process: the
    # server (rank 0) commits each round's staged states after its checkpoint.
    local = ClientRunner(trainer, create_strategy(config.algorithm, config.algorithm_params).make_client(),
                         ClientStateStore(spec["run_dir"]))
    cache: dict[int, np.ndarray] = {}

    def rows(cid: int) -> np.ndarray:
        if cid not in cache:
            cache[cid] = trainer.rows_for(part.indices(cid))
        return cache[cid]

    watchdog = Watchdog(float(spec["round_timeout_s"]) + 60.0, spec)
    _, SlotTrainer = make_server_classes()
    slot_trainer = SlotTrainer(model, args, rank - 1, local, rows, watchdog)
    FedMLRunner(args, torch.device("cpu"), _fedml_dataset(int(spec["processes"])), model,
                client_trainer=slot_trainer).run()
    watchdog.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one FedML rank of a fednlp-bench run (started by the launcher)")
    parser.add_argument("spec", type=Path)
    parser.add_argument("--rank", type=int, default=None, help="gRPC only: this process's rank (MPI gives it)")
    ns = parser.parse_args(argv)
    spec = json.loads(ns.spec.read_text())
    if spec["comm"] == "MPI":
        from mpi4py import MPI

        rank, size = MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()
        if size != int(spec["processes"]) + 1:
            _die(EXIT_RUNNER_FAILED, f"mpirun started {size} processes; this run needs {int(spec['processes']) + 1}", spec)
    else:
        rank = int(ns.rank)
    import torch

    torch.set_num_threads(int(spec.get("torch_threads", 1)))
    level = getattr(logging, os.environ.get("FEDNLP_FEDML_LOG", "WARNING").upper(), logging.WARNING)
    logging.basicConfig(level=level)
    import fedml

    _offline_fedml()
    args = fedml.init(fedml_args(spec, rank), check_env=False, should_init_logs=False)
    logging.getLogger().setLevel(level)  # FedML logs every message at INFO
    if spec["comm"] == "GRPC" and rank > 0:
        _wait_for_port("127.0.0.1", int(spec["grpc_base_port"]), float(spec["round_timeout_s"]), spec)
    if rank == 0:
        run_server(spec, args)
    else:
        run_client(spec, args, rank)
    return 0


def _wait_for_port(host: str, port: int, timeout_s: float, spec: Mapping[str, Any]) -> None:
    """gRPC clients announce themselves once; wait (bounded) until the server listens on loopback."""
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.5)
    _die(EXIT_TIMEOUT, f"the FedML gRPC server never listened on {host}:{port} within {timeout_s:.0f} s", spec)


if __name__ == "__main__":
    sys.exit(main())
