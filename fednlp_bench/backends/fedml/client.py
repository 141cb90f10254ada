"""Ranks 1..P of a FedML run: each trains the clients the server assigns to its slot, as the simulator would.

A client process builds its side of the run with the engine's own
:func:`~fednlp_bench.engine.client.setup.prepare_client`, from the same
config, task and partition as rank 0: the same model under the same seed, the
same trainable mode and frozen-bottom cache, the algorithm's client procedure
and the run's on-disk client states, and the same rows per client and round
(client_eval hold-outs and continual periods included). Client seeds are the
in-process ones, so results match the in-process backend to float tolerance
(tests/test_fedml_equivalence.py). A client whose server goes away stops
within seconds (:class:`Watchdog`), never hangs.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable, Mapping

from fednlp_bench.backends.fedml.messages import (
    EXIT_CONNECT, EXIT_PEER_LOST, EXIT_TIMEOUT, FAULT_ENV, PROBE_EVERY_S, PROBE_FAILURES, RoundPayload, die,
    endpoint_of, reachable, where_of,
)
from fednlp_bench.backends.fedml.runtime import fedml_dataset, load_seams, patch_fedml
from fednlp_bench.compute.device import to_device


def make_slot_trainer_class() -> type:
    """Define the FedML subclass lazily: importing fedml costs ~15 s and must not happen at module import."""
    from fedml.core import ClientTrainer

    class SlotTrainer(ClientTrainer):
        """FedML ClientTrainer for one client process: trains the clients the payload assigns to its slot."""

        def __init__(self, model: Any, args: Any, slot: int, local: Any, rows: Callable[[int, int], Any],
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
                    result = self.local.train(cid, self.rows(cid, payload.rnd), weights, to_device(instructions, device),
                                              client_seed(payload.seed, payload.rnd, cid), rnd=payload.rnd)
                    result.delta = to_device(result.delta, "cpu")
                    result.payload = to_device(result.payload, "cpu")
                    results.append(result)
                except ClientUpdateRejected as err:
                    rejected[cid] = str(err)
                self.watchdog.touch()
            self.upload = {"slot": self.slot, "rnd": payload.rnd, "results": results, "rejected": rejected,
                           "train_s": time.perf_counter() - t0, "where": self.where}

    return SlotTrainer


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
                die(EXIT_TIMEOUT, f"client process: no message from the FedML server for {limit:.0f} s; "
                                   f"stopping (the server or a peer died)", self.spec)
            if self.server is not None:
                failures = 0 if reachable(self.server) else failures + 1
                if failures >= PROBE_FAILURES and not self._stop.is_set():
                    die(EXIT_PEER_LOST, f"client process: the FedML server at {self.server[0]}:{self.server[1]} "
                                         f"stopped accepting connections; stopping (the server ended or died)", self.spec)


def prepare_rank_client(spec: Mapping[str, Any], rank: int) -> Any:
    """This process's client side: the same :func:`prepare_client` the in-process run calls."""
    from fednlp_bench.algorithms.registry import create_strategy
    from fednlp_bench.compute.device import device_for_rank
    from fednlp_bench.compute.setup import check_run_options
    from fednlp_bench.config import RunConfig
    from fednlp_bench.engine.client.setup import prepare_client
    from fednlp_bench.engine.run import sources

    task = load_seams(spec)
    config = RunConfig.from_dict(spec["config"])
    task = task if task is not None else sources.build_task(config)
    train_raw = task.load()["train"]
    if spec.get("partition_file"):
        part = sources.load_partition_file(spec["partition_file"], train_raw)
    else:
        part = sources.build_partition(train_raw, config.partition)
    # One GPU per client process, round-robin over the visible ones (``--device cuda``).
    device, precision = check_run_options(config.precision, device_for_rank(spec.get("device"), rank))
    # The run's on-disk client states: the server (rank 0) commits each round's staged states after its checkpoint.
    procedure = create_strategy(config.algorithm, config.algorithm_params).make_client()
    return prepare_client(config, task, train_raw, part, spec["run_dir"], procedure=procedure, device=device,
                          precision=precision, frozen_cache_dir=spec.get("frozen_cache_dir"))


def run_client(spec: Mapping[str, Any], args: Any, rank: int) -> None:
    import torch
    from fedml import FedMLRunner

    patch_fedml()
    client = prepare_rank_client(spec, rank)
    timeout = float(spec["round_timeout_s"]) + 60.0
    watchdog = Watchdog(timeout, spec, first_timeout_s=timeout + float(spec.get("connect_timeout_s", 0.0)),
                        server=endpoint_of(spec, 0) if spec["comm"] == "GRPC" else None)
    slot_trainer = make_slot_trainer_class()(client.compute.model, args, rank - 1, client.runner, client.rows, watchdog)
    slot_trainer.where = where_of(rank, spec)
    server = endpoint_of(spec, 0)
    try:
        FedMLRunner(args, torch.device("cpu"), fedml_dataset(int(spec["processes"])), client.compute.model,
                    client_trainer=slot_trainer).run()
    except Exception as err:
        if server is not None and not reachable(server):  # a send to a server that ended: say so, not a traceback
            die(EXIT_PEER_LOST, f"client rank {rank}: the FedML server at {server[0]}:{server[1]} is gone "
                                f"({type(err).__name__}); stopping", spec)
        raise
    watchdog.stop()


def wait_for_port(server: tuple[str, int], timeout_s: float, rank: int, spec: Mapping[str, Any]) -> None:
    """gRPC clients announce themselves once, so wait (bounded) until the server listens; it may start later."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if reachable(server, timeout_s=1.0):
            return
        time.sleep(0.5)
    die(EXIT_CONNECT, f"client rank {rank}: the FedML server at {server[0]}:{server[1]} did not accept connections "
                       f"within {timeout_s:.0f} s. Start the server machine's command (--role server), and check the "
                       f"address of rank 0 in --hosts and that the port is open.", spec)
