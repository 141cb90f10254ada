"""One rank of a FedML run, started by the launcher: ``python -m fednlp_bench.backends.fedml.rank SPEC.json``.

Runs only inside the FedML virtualenv, one process per rank
(``mpirun -np P+1 ...`` or one process per ``--rank`` under gRPC): rank 0 is
the server (server.py), ranks 1..P the client processes (client.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from fednlp_bench.backends.fedml.client import run_client, wait_for_port
from fednlp_bench.backends.fedml.messages import EXIT_RUNNER_FAILED, die, endpoint_of
from fednlp_bench.backends.fedml.runtime import fedml_args, offline_fedml
from fednlp_bench.backends.fedml.server import run_server


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
            die(EXIT_RUNNER_FAILED, f"mpirun started {size} processes; this run needs {int(spec['processes']) + 1}", spec)
    else:
        rank = int(ns.rank)
    import torch

    torch.set_num_threads(int(spec.get("torch_threads", 1)))
    level = getattr(logging, os.environ.get("FEDNLP_FEDML_LOG", "WARNING").upper(), logging.WARNING)
    logging.basicConfig(level=level)
    import fedml

    offline_fedml()
    args = fedml.init(fedml_args(spec, rank), check_env=False, should_init_logs=False)
    logging.getLogger().setLevel(level)  # FedML logs every message at INFO
    if spec["comm"] == "GRPC" and rank > 0:
        server = endpoint_of(spec, 0)
        assert server is not None
        wait_for_port(server, float(spec["connect_timeout_s"]), rank, spec)
    if rank == 0:
        run_server(spec, args)
    else:
        run_client(spec, args, rank)
    return 0




if __name__ == "__main__":
    sys.exit(main())
