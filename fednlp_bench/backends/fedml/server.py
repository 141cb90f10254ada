"""Rank 0 of a FedML run: the project's runner, whose rounds FedML's cross-silo server carries to the clients.

Why cross-silo and not FedML's ``simulation`` MPI mode: in FedML 0.9.6 the
MPI *simulator* (``fedml/simulation/mpi/fedavg/FedAVGAggregator.py``) averages
client models with its own ``_fedavg_aggregation_`` and never calls
``ServerAggregator.aggregate``, so a project Strategy (FedAdam, FedNova, ...)
cannot run there unchanged. FedML's cross-silo server
(``fedml/cross_silo/server/fedml_aggregator.py``) hands every client's upload
to ``ServerAggregator.aggregate`` and sends back whatever it returns, over the
same MPI communication manager (``backend: MPI``) or gRPC.

Control flow: the project's ordinary runner loop (``run_experiment``:
sampling, dropout, Strategy.aggregate, evaluation, checkpoints, record) runs in
a helper thread with a backend whose ``run_round`` hands the round to FedML
through :class:`RoundBridge`; FedML's server loop runs in the main thread (MPI
must be finalized there). The aggregator class turns "FedML asks for the
global model" into "next round's payload" and "FedML aggregates" into "give
the uploads to the runner". Every wait is bounded: a stuck or dead peer ends
the run with a message and the last checkpoint, never a hang.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

from fednlp_bench.backends.fedml.messages import (
    EXIT_CONNECT, EXIT_PEER_LOST, EXIT_RUNNER_FAILED, EXIT_TIMEOUT, PROBE_EVERY_S, PROBE_FAILURES, RoundPayload, die,
    endpoint_of, reachable, where_of,
)
from fednlp_bench.backends.fedml.runtime import fedml_dataset, load_seams, patch_fedml
from fednlp_bench.compute.device import to_device


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
        self.placement: dict[int, dict[str, Any]] = {0: where_of(0, spec)}
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
                die(EXIT_TIMEOUT, self._stuck_message(
                    rnd, f"no upload from every FedML client process within {self.timeout_s:.0f} s (one died or hangs)"), self.spec)
            if self.spec["comm"] == "GRPC" and now >= next_probe:
                next_probe = now + PROBE_EVERY_S
                lost = self._lost_ranks()
                if lost:
                    self._stop_for_lost(rnd, lost)

    def _stop_for_lost(self, rnd: int, lost: list[tuple[int, tuple[str, int]]]) -> None:
        where = ", ".join(f"rank {r} at {h}:{p}" for r, (h, p) in lost)
        die(EXIT_PEER_LOST, self._stuck_message(
            rnd, f"client {where} stopped accepting connections (its process died or its machine is "
                 f"unreachable), so its upload will never come"), self.spec)

    def stop_if_a_client_is_lost(self) -> None:
        """FedML's loop raised (a send to a client dying mid-call raises gRPC UNAVAILABLE): name a gone client."""
        for attempt in range(PROBE_FAILURES if self.spec["comm"] == "GRPC" else 0):
            lost = self._lost_ranks()
            if lost:
                self._stop_for_lost(max(self.last_round, 1), lost)
            if attempt + 1 < PROBE_FAILURES:
                time.sleep(PROBE_EVERY_S)

    def _lost_ranks(self) -> list[tuple[int, tuple[str, int]]]:
        lost = []
        for rank in range(1, self.slots + 1):
            endpoint = endpoint_of(self.spec, rank)
            if endpoint is None:
                continue
            failures = 0 if reachable(endpoint) else self._probe_failures.get(rank, 0) + 1
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
        named = ", ".join(f"{r} (expected at {':'.join(map(str, endpoint_of(self.spec, r) or ('?',)))})" for r in missing)
        die(EXIT_CONNECT,
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
            die(EXIT_TIMEOUT, self._stuck_message(
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


def make_aggregator_class() -> type:
    """Define the FedML subclass lazily: importing fedml costs ~15 s and must not happen at module import."""
    from fedml.core import ServerAggregator

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
                die(EXIT_RUNNER_FAILED, f"FedML delivered an upload that no fednlp-bench client sent: {bad[0]!r:.200}",
                     self.bridge.spec)
            self.bridge.submit(uploads)
            self.current = self.bridge.next_payload()
            return self.current

        def test(self, test_data: Any, device: Any, args: Any) -> None:
            return None  # evaluation happens in the runner, on the global test set

        def test_all(self, *args: Any, **kwargs: Any) -> bool:
            return True

    return StrategyAggregator


def run_server(spec: Mapping[str, Any], args: Any) -> None:
    import torch
    from fedml import FedMLRunner

    from fednlp_bench.compute.device import device_for_rank
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.run.runner import run_experiment

    task = load_seams(spec)
    config = RunConfig.from_dict(spec["config"])
    bridge = RoundBridge(int(spec["processes"]), int(spec["fedml_rounds"]), float(spec["round_timeout_s"]), spec)
    patch_fedml(bridge)
    StrategyAggregator = make_aggregator_class()
    outcome: dict[str, Any] = {}

    def factory(trainer: Any, client_rows: Any, progress: Any = None) -> RoundBridge:
        return bridge

    def run() -> None:
        try:
            t0 = time.perf_counter()
            # backend_factory: the runner's rounds go to the bridge (and the "fedml" config is not relaunched).
            record = run_experiment(config, Path(spec["runs_dir"]), run_id=spec["run_id"], resume=bool(spec["resume"]),
                                    task=task, progress=False, partition_file=spec.get("partition_file"),
                                    backend_factory=factory, device=device_for_rank(spec.get("device"), 0),
                                    frozen_cache_dir=spec.get("frozen_cache_dir"))
            outcome["record"] = record
            outcome["runner_s"] = time.perf_counter() - t0
        except BaseException as err:  # noqa: BLE001 - reported to the launcher, then the process ends
            die(EXIT_RUNNER_FAILED, f"{type(err).__name__}: {err}\n{traceback.format_exc()}", spec)

    thread = threading.Thread(target=run, name="fednlp-runner", daemon=True)
    t_fedml = time.perf_counter()
    thread.start()
    if spec["comm"] == "GRPC":
        threading.Thread(target=bridge.check_connected, args=(float(spec["connect_timeout_s"]),), daemon=True,
                         name="fednlp-connect-timeout").start()
    model = torch.nn.Linear(1, 1)  # FedML wants a model object; the runner owns the real one
    try:
        FedMLRunner(args, torch.device("cpu"), fedml_dataset(int(spec["processes"])), model,
                    server_aggregator=StrategyAggregator(model, args, bridge)).run()
    except Exception:
        bridge.stop_if_a_client_is_lost()
        raise
    fedml_s = time.perf_counter() - t_fedml
    thread.join(timeout=float(spec["round_timeout_s"]))
    if thread.is_alive() or "record" not in outcome:
        die(EXIT_TIMEOUT, "FedML finished but the runner did not write the record in time", spec)
    _record_placement(outcome["record"], bridge, spec)
    stats = {"round_seconds": bridge.round_seconds, "runner_s": outcome["runner_s"], "fedml_server_s": fedml_s}
    Path(spec["stats_file"]).write_text(json.dumps(stats))


def _record_placement(record: Any, bridge: RoundBridge, spec: Mapping[str, Any]) -> None:
    """The record says which rank ran where (``hardware.fedml``); ``hardware`` is outside the config hash."""
    record.hardware["fedml"] = {"comm": spec["comm"], "processes": int(spec["processes"]),
                                "ranks": [bridge.placement[r] for r in sorted(bridge.placement)]}
    record.save(Path(spec["run_dir"]))
