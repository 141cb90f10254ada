"""What the FedML ranks of one run share: the round message, exit codes, where a rank runs, how it dies.

The launcher (launcher.py) and every rank (rank.py: server.py on rank 0,
client.py on ranks 1..P) read these, so the message that goes over FedML's
wire and the exit code a dead rank leaves mean the same on both ends.
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

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



@dataclass
class RoundPayload:
    """Server -> every client process, once per FedML round (not a dict: FedML would index a dict by client)."""

    rnd: int
    weights: dict[str, Any] | None
    #: slot -> [(client_id, instructions)], in the in-process order.
    assignments: dict[int, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    seed: int = 0
    done: bool = False


def where_of(rank: int, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Which machine and address this rank runs on, for the record (``hardware.fedml.ranks``)."""
    import socket

    hosts = spec.get("hosts") or []
    endpoint = next((f"{h['ip']}:{h['port']}" for h in hosts if int(h["rank"]) == rank), None)
    return {"rank": rank, "role": "server" if rank == 0 else "client", "host": socket.gethostname(),
            "endpoint": endpoint, "pid": os.getpid()}


def endpoint_of(spec: Mapping[str, Any], rank: int) -> tuple[str, int] | None:
    for h in spec.get("hosts") or []:
        if int(h["rank"]) == rank:
            return str(h["ip"]), int(h["port"])
    return None


def reachable(endpoint: tuple[str, int], timeout_s: float = 2.0) -> bool:
    """Does a gRPC peer still accept TCP connections? (A killed process refuses at once; a lost machine times out.)"""
    import socket

    try:
        with socket.create_connection(endpoint, timeout=timeout_s):
            return True
    except OSError:
        return False


def load_object(ref: str) -> Callable[..., Any]:
    module, _, attr = ref.partition(":")
    obj = getattr(importlib.import_module(module), attr, None)
    if obj is None:
        raise ValueError(f"{ref!r}: module {module!r} has no attribute {attr!r}")
    return obj


def die(code: int, message: str, spec: Mapping[str, Any]) -> None:
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
