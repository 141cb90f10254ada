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
import signal
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
#: a peer's gRPC endpoint stopped accepting connections (its process died or its machine went away).
EXIT_PEER_LOST = 5
#: the server's clients (or a client's server) did not connect within ``connect_timeout_s``.
EXIT_CONNECT = 6
#: a peer counts as gone after this many failed TCP probes in a row, PROBE_EVERY_S apart.
PROBE_FAILURES = 3
PROBE_EVERY_S = 2.0
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


def _where(rank: int, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Which machine and address this rank runs on, for the record (``hardware.fedml.ranks``)."""
    import socket

    hosts = spec.get("hosts") or []
    endpoint = next((f"{h['ip']}:{h['port']}" for h in hosts if int(h["rank"]) == rank), None)
    return {"rank": rank, "role": "server" if rank == 0 else "client", "host": socket.gethostname(),
            "endpoint": endpoint, "pid": os.getpid()}


def _endpoint(spec: Mapping[str, Any], rank: int) -> tuple[str, int] | None:
    for h in spec.get("hosts") or []:
        if int(h["rank"]) == rank:
            return str(h["ip"]), int(h["port"])
    return None


def _reachable(endpoint: tuple[str, int], timeout_s: float = 2.0) -> bool:
    """Does a gRPC peer still accept TCP connections? (A killed process refuses at once; a lost machine times out.)"""
    import socket

    try:
        with socket.create_connection(endpoint, timeout=timeout_s):
            return True
    except OSError:
        return False


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
    # A client-only machine does not know how many rounds a resumed run has left; its clients stop on the
    # server's final payload instead (see _patch_fedml), so config.rounds is only an upper bound.
    comm_round = int(spec["fedml_rounds"]) if rank == 0 or spec.get("fedml_rounds") else int(spec["config"]["rounds"])
    cfg = {
        "common_args": {"training_type": "cross_silo", "scenario": "horizontal", "random_seed": int(spec["config"]["seed"]),
                        "using_mlops": False},
        "data_args": {"dataset": "fednlp-bench"},
        "model_args": {"model": "fednlp-bench"},
        "train_args": {"federated_optimizer": "FedAvg", "client_id_list": None,
                       "client_num_in_total": slots, "client_num_per_round": slots,
                       "comm_round": comm_round, "epochs": 1, "batch_size": 1,
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
        #: rank -> where it runs (host, endpoint, pid), from each client's latest upload; rank 0 is this process.
        self.placement: dict[int, dict[str, Any]] = {0: _where(0, spec)}
        #: client ranks whose ONLINE message FedML's server received (for the connect-timeout message).
        self.online: set[int] = set()
        self._probe_failures: dict[int, int] = {}
        self._rounds_put = 0  # payloads the runner queued; FedML has taken ``rounds_served`` of them
        self._handed_at = 0.0  # when FedML took the latest payload (the round's clock starts there)

    # --- runner thread (the engine's Backend protocol)
    def run_round(self, rnd: int, instructions: Mapping[int, Mapping[str, Any]], global_weights: Any, seed: int) -> Any:
        from fednlp_bench.engine.server.simulator import RoundOutcome

        order = [int(c) for c in instructions]
        # CPU tensors on the wire: every process may compute on a different device.
        assignments = {s: [(cid, to_device(dict(instructions[cid]), "cpu")) for cid in order[s :: self.slots]]
                       for s in range(self.slots)}
        t0 = time.perf_counter()
        self.last_round = rnd
        device = next(iter(global_weights.values())).device if global_weights else "cpu"
        wire = {k: v.detach().cpu() for k, v in global_weights.items()}
        self._rounds_put += 1
        self._payloads.put(RoundPayload(rnd=rnd, weights=wire, assignments=assignments, seed=int(seed)))
        uploads = self._wait_for_uploads(rnd, t0)
        self.round_seconds.append(time.perf_counter() - t0)
        by_client = {}
        outcome = RoundOutcome(results=[])
        for upload in uploads:
            if "where" in upload:
                self.placement[int(upload["where"]["rank"])] = upload["where"]
            for result in upload["results"]:
                result.delta = to_device(result.delta, device)
                result.payload = to_device(result.payload, device)
                by_client[result.client_id] = result
            outcome.rejected.update({int(k): v for k, v in upload["rejected"].items()})
        # Same order as the in-process backend, so float sums in Strategy.aggregate match.
        outcome.results = [by_client[c] for c in order if c in by_client]
        return outcome

    def _wait_for_uploads(self, rnd: int, t0: float) -> list[dict[str, Any]]:
        """Every upload of this round, within ``timeout_s``; a client rank whose endpoint stops answering ends it sooner.

        FedML 0.9.6's cross-silo server waits for every client it sent the round to,
        so a dead client process would otherwise hold the run for the whole timeout.
        Under gRPC each client rank listens on its own endpoint: one that refuses
        connections PROBE_FAILURES times in a row is gone, and the run stops with
        its rank named (the last round is checkpointed; --resume continues).
        """
        # Until FedML takes the payload (round 1: until every client is ONLINE) the connect timeout
        # governs (check_connected); the round's own clock starts when the payload goes out.
        connect_deadline = t0 + float(self.spec.get("connect_timeout_s", 0.0)) + self.timeout_s
        next_probe = 0.0
        while True:
            try:
                return self._uploads.get(timeout=1.0)
            except queue.Empty:
                pass
            now = time.perf_counter()
            handed = self.rounds_served >= self._rounds_put
            deadline = self._handed_at + self.timeout_s if handed else connect_deadline
            if not handed and now < deadline:
                continue
            if next_probe == 0.0:
                next_probe = now + PROBE_EVERY_S
            if now >= deadline:
                _die(EXIT_TIMEOUT, self._stuck_message(
                    rnd, f"no upload from every FedML client process within {self.timeout_s:.0f} s (one died or hangs)"), self.spec)
            if self.spec["comm"] == "GRPC" and now >= next_probe:
                next_probe = now + PROBE_EVERY_S
                lost = self._lost_ranks()
                if lost:
                    where = ", ".join(f"rank {r} at {h}:{p}" for r, (h, p) in lost)
                    _die(EXIT_PEER_LOST, self._stuck_message(
                        rnd, f"client {where} stopped accepting connections (its process died or its machine is "
                             f"unreachable), so its upload will never come"), self.spec)

    def _lost_ranks(self) -> list[tuple[int, tuple[str, int]]]:
        lost = []
        for rank in range(1, self.slots + 1):
            endpoint = _endpoint(self.spec, rank)
            if endpoint is None:
                continue
            failures = 0 if _reachable(endpoint) else self._probe_failures.get(rank, 0) + 1
            self._probe_failures[rank] = failures
            if failures >= PROBE_FAILURES:
                lost.append((rank, endpoint))
        return lost

    def check_connected(self, connect_timeout_s: float) -> None:
        """Server side: end the run, naming the missing ranks, if not every client came ONLINE in time."""
        deadline = time.monotonic() + connect_timeout_s
        while time.monotonic() < deadline:
            if self.rounds_served > 0:
                return
            time.sleep(0.5)
        if self.rounds_served > 0:
            return
        missing = [r for r in range(1, self.slots + 1) if r not in self.online]
        named = ", ".join(f"{r} (expected at {':'.join(map(str, _endpoint(self.spec, r) or ('?',)))})" for r in missing)
        _die(EXIT_CONNECT,
             f"FedML server: client rank(s) {named or '(all reported ONLINE, but the first round never started)'} "
             f"did not connect within {connect_timeout_s:.0f} s. Start them on their machine with the same config and "
             f"--hosts plus `--role client --client-ranks {','.join(map(str, missing)) or 'N'}`, and check that each "
             f"address is this machine's view of that host and that its port is open. Nothing was trained.",
             self.spec)

    # --- FedML main thread
    def next_payload(self) -> RoundPayload:
        if self.rounds_served >= self.fedml_rounds:
            return RoundPayload(rnd=self.last_round + 1, weights=None, done=True)
        try:
            payload = self._payloads.get(timeout=self.timeout_s)
        except queue.Empty:
            _die(EXIT_TIMEOUT, self._stuck_message(
                self.last_round + 1, f"the runner produced no next round within {self.timeout_s:.0f} s"), self.spec)
        self._handed_at = time.perf_counter()
        self.rounds_served += 1
        return payload

    def submit(self, uploads: list[dict[str, Any]]) -> None:
        self._uploads.put(uploads)

    def _stuck_message(self, rnd: int, what: str) -> str:
        return (
            f"FedML round {rnd}: {what}. The run stopped; the last finished round is checkpointed in {self.spec['run_dir']}; "
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
            self.where: dict[str, Any] = {}  # set by run_client

        def get_model_params(self) -> dict[str, Any]:
            return self.upload  # a plain dict: FedML passes it through untouched

        def set_model_params(self, model_parameters: Any) -> None:
            self.watchdog.touch()
            if not isinstance(model_parameters, RoundPayload):
                raise TypeError(f"expected a RoundPayload from the fednlp-bench server, got {type(model_parameters)}")
            self.payload = model_parameters

        def train(self, train_data: Any, device: Any, args: Any) -> None:
            from fednlp_bench.engine.client.model_state import ClientUpdateRejected
            from fednlp_bench.sampling.seeds import client_seed

            payload = self.payload
            assert payload is not None and not payload.done
            if os.environ.get(FAULT_ENV) == f"{self.slot + 1}:{payload.rnd}":
                os.kill(os.getpid(), signal.SIGKILL)  # failure drill: this client process is killed mid-round
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
                           "train_s": time.perf_counter() - t0, "where": self.where}

    return StrategyAggregator, SlotTrainer


class Watchdog:
    """Ends a client process whose server went away (gRPC has no mpirun to do it): silence or a refusing endpoint.

    ``first_timeout_s`` bounds the wait for the first message (the server may wait
    up to its connect timeout for the other clients); after that ``timeout_s``
    bounds the silence between messages. With a server endpoint (gRPC) it also
    probes it: PROBE_FAILURES refused connections in a row mean the server
    process is gone, and the client stops within seconds instead of the timeout.
    """

    def __init__(self, timeout_s: float, spec: Mapping[str, Any], first_timeout_s: float | None = None,
                 server: tuple[str, int] | None = None) -> None:
        self.timeout_s = timeout_s
        self.first_timeout_s = timeout_s if first_timeout_s is None else first_timeout_s
        self.spec = spec
        self.server = server
        self._heard = False
        self._last = time.monotonic()
        self._stop = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="fednlp-watchdog").start()

    def touch(self) -> None:
        self._heard = True
        self._last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        failures = 0
        while not self._stop.wait(PROBE_EVERY_S if self.server else 1.0):
            limit = self.timeout_s if self._heard else self.first_timeout_s
            if time.monotonic() - self._last > limit:
                _die(EXIT_TIMEOUT, f"client process: no message from the FedML server for {limit:.0f} s; "
                                   f"stopping (the server or a peer died)", self.spec)
            if self.server is not None:
                failures = 0 if _reachable(self.server) else failures + 1
                if failures >= PROBE_FAILURES and not self._stop.is_set():
                    _die(EXIT_PEER_LOST, f"client process: the FedML server at {self.server[0]}:{self.server[1]} "
                                         f"stopped accepting connections; stopping (the server ended or died)", self.spec)


# ----------------------------------------------------------------- FedML 0.9.6 adjustments
def _patch_fedml(bridge: RoundBridge | None = None) -> None:
    """Three small changes to FedML 0.9.6's cross-silo loop, each for a reason stated here.

    * Clients finish on the server's final payload (``RoundPayload.done``), not
      on a round count: a client-only machine cannot know how many rounds a
      resumed run has left, and FedML's client otherwise compares ``round_idx``
      with its own ``comm_round``.
    * The server records which client ranks reported ONLINE, so a connect
      timeout can name the missing ones.
    * The gRPC receive loop blocks on its queue (0.05 s) instead of spinning:
      FedML's loop polls ``qsize()`` with its ``sleep`` outside the ``while``,
      so every gRPC process burns a core while it waits, which on a small
      machine slows the training it waits for.
    """
    from fedml.cross_silo.client.fedml_client_master_manager import ClientMasterManager
    from fedml.cross_silo.client.message_define import MyMessage
    from fedml.cross_silo.server.fedml_server_manager import FedMLServerManager

    original_receive = ClientMasterManager.handle_message_receive_model_from_server

    def receive_model(self: Any, msg_params: Any) -> None:
        if getattr(msg_params.get(MyMessage.MSG_ARG_KEY_MODEL_PARAMS), "done", False):
            self.num_rounds = self.round_idx  # FedML's own "last round" branch: report FINISHED and stop
        original_receive(self, msg_params)

    ClientMasterManager.handle_message_receive_model_from_server = receive_model

    if bridge is not None:
        original_online = FedMLServerManager.process_online_status

        def online(self: Any, client_status: Any, msg_params: Any) -> None:
            bridge.online.add(int(msg_params.get_sender_id()))
            original_online(self, client_status, msg_params)

        FedMLServerManager.process_online_status = online

    from fedml.core.distributed.communication.grpc import grpc_comm_manager as gcm

    def handling_loop(self: Any) -> None:
        while self.is_running:
            try:
                msg_pkl = self.grpc_servicer.message_q.get(timeout=0.05)
            except queue.Empty:
                continue
            with gcm.lock:
                msg = gcm.pickle.loads(msg_pkl)
                sender_id = int(msg.get_sender_id())
                if sender_id not in self.grpc_mappings:
                    params = msg.get_params()
                    ip = str(params[gcm.GRPCCommManager.MSG_ARG_KEY_SENDER_IP])
                    self.grpc_mappings[sender_id] = gcm.GRPCMapping(
                        eid=sender_id, rank=int(params[gcm.GRPCCommManager.MSG_ARG_KEY_SENDER_RANK]),
                        grpc_server_ip=ip, grpc_server_port=int(params[gcm.GRPCCommManager.MSG_ARG_KEY_SENDER_PORT]),
                        ingress_ip=ip)
                for observer in self._observers:
                    observer.receive_message(msg.get_type(), msg)

    gcm.GRPCCommManager.message_handling_subroutine = handling_loop


# ----------------------------------------------------------------- per rank
def _prepare(spec: Mapping[str, Any]) -> tuple[Any, Any]:
    """Task object (or None: the engine builds it) and the engine's preparation seams, as the launcher asked."""
    import fednlp_bench.engine.run.sources as prepare

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

    from fednlp_bench.engine.run.runner import run_experiment

    task, _ = _prepare(spec)
    config = RunConfig.from_dict(spec["config"])
    bridge = RoundBridge(int(spec["processes"]), int(spec["fedml_rounds"]), float(spec["round_timeout_s"]), spec)
    _patch_fedml(bridge)
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
    if spec["comm"] == "GRPC":
        threading.Thread(target=bridge.check_connected, args=(float(spec["connect_timeout_s"]),), daemon=True,
                         name="fednlp-connect-timeout").start()
    model = torch.nn.Linear(1, 1)  # FedML wants a model object; the runner owns the real one
    FedMLRunner(args, torch.device("cpu"), _fedml_dataset(int(spec["processes"])), model,
                server_aggregator=StrategyAggregator(model, args, bridge)).run()
    fedml_s = time.perf_counter() - t_fedml
    thread.join(timeout=float(spec["round_timeout_s"]))
    if thread.is_alive() or "record" not in outcome:
        _die(EXIT_TIMEOUT, "FedML finished but the runner did not write the record in time", spec)
    _record_placement(outcome["record"], bridge, spec)
    stats = {"round_seconds": bridge.round_seconds, "runner_s": outcome["runner_s"], "fedml_server_s": fedml_s}
    Path(spec["stats_file"]).write_text(json.dumps(stats))


def _record_placement(record: Any, bridge: RoundBridge, spec: Mapping[str, Any]) -> None:
    """The record says which rank ran where (``hardware.fedml``); ``hardware`` is outside the config hash."""
    record.hardware["fedml"] = {"comm": spec["comm"], "processes": int(spec["processes"]),
                                "ranks": [bridge.placement[r] for r in sorted(bridge.placement)]}
    record.save(Path(spec["run_dir"]))


def run_client(spec: Mapping[str, Any], args: Any, rank: int) -> None:
    import numpy as np
    import torch
    from fedml import FedMLRunner

    from fednlp_bench.algorithms.registry import create_strategy
    from fednlp_bench.compute.device import device_for_rank
    from fednlp_bench.compute.setup import attach_frozen_cache, build_compute, check_run_options
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.client.runner import ClientRunner
    from fednlp_bench.engine.client.state import ClientStateStore
    from fednlp_bench.engine.client.trainer import LocalTrainer

    _patch_fedml()
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

    timeout = float(spec["round_timeout_s"]) + 60.0
    watchdog = Watchdog(timeout, spec, first_timeout_s=timeout + float(spec.get("connect_timeout_s", 0.0)),
                        server=_endpoint(spec, 0) if spec["comm"] == "GRPC" else None)
    _, SlotTrainer = make_server_classes()
    slot_trainer = SlotTrainer(model, args, rank - 1, local, rows, watchdog)
    slot_trainer.where = _where(rank, spec)
    server = _endpoint(spec, 0)
    try:
        FedMLRunner(args, torch.device("cpu"), _fedml_dataset(int(spec["processes"])), model,
                    client_trainer=slot_trainer).run()
    except Exception as err:
        if server is not None and not _reachable(server):  # a send to a server that ended: say so, not a traceback
            _die(EXIT_PEER_LOST, f"client rank {rank}: the FedML server at {server[0]}:{server[1]} is gone "
                                 f"({type(err).__name__}); stopping", spec)
        raise
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
        server = _endpoint(spec, 0)
        assert server is not None
        _wait_for_port(server, float(spec["connect_timeout_s"]), rank, spec)
    if rank == 0:
        run_server(spec, args)
    else:
        run_client(spec, args, rank)
    return 0


def _wait_for_port(server: tuple[str, int], timeout_s: float, rank: int, spec: Mapping[str, Any]) -> None:
    """gRPC clients announce themselves once, so wait (bounded) until the server listens; it may start later."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _reachable(server, timeout_s=1.0):
            return
        time.sleep(0.5)
    _die(EXIT_CONNECT, f"client rank {rank}: the FedML server at {server[0]}:{server[1]} did not accept connections "
                       f"within {timeout_s:.0f} s. Start the server machine's command (--role server), and check the "
                       f"address of rank 0 in --hosts and that the port is open.", spec)


if __name__ == "__main__":
    sys.exit(main())
