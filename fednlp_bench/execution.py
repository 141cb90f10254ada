"""Where a run executes: the backend registry (``backend:`` in a config) and each backend's run options.

A backend changes how a run executes, never its result, so its options are
not config fields: they are run options (``fednlp-bench run --processes 4``,
``backend_options={...}``), declared here as :class:`~fednlp_bench.registry.Param`
so the CLI flags, their help and the check of an API call's options are read
from one list. The code of each backend is named by its ``launcher``
(``module:function``) and imported only when a run starts
(``fednlp_bench/backends/launch.py``): this module sits below the config,
which validates ``backend`` against :data:`BACKENDS`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Mapping

from fednlp_bench.checks import at_least, positive
from fednlp_bench.registry import Param, Registry, declare, resolve_params

#: "server" starts rank 0 (and any --client-ranks given), "client" starts only --client-ranks.
ROLES = ("server", "client")
COMMS = ("MPI", "GRPC")
HOSTS_HELP = (
    "a FedML grpc_ipconfig CSV file (header eid,rank,grpc_server_ip,grpc_server_port; one row per rank 0..P) "
    "or inline 'IP[:PORT],IP[:PORT],...' in rank order (rank 0 = server; port default 18890+rank)"
)


class Backend:
    """One way of executing a run: its name, its run options and the function that launches it."""

    name: ClassVar[str]
    help: ClassVar[str]
    #: ``module:function(config, runs_dir, run_id, resume, *, partition_file, **options) -> RunRecord``.
    launcher: ClassVar[str]
    param_specs: ClassVar[Mapping[str, Param]] = {}

    @classmethod
    def check_options(cls, options: Mapping[str, Any] | None) -> dict[str, Any]:
        """The options a caller gave (only those), each checked; an unknown one names the closest."""
        given = dict(options or {})
        if given and not cls.param_specs:
            raise ValueError(f"backend options {sorted(given)} apply only to backend 'fedml' (this run's backend is "
                             f"{cls.name!r}); drop them or set backend: fedml")
        checked = resolve_params(cls.param_specs, given, owner=f"backend {cls.name!r}", prefix="backend option ")
        return {k: checked[k] for k in given}


class InProcess(Backend):
    name = "inprocess"
    help = "every client in this process, one after another (default)"
    launcher = "fednlp_bench.engine.run.runner:run_experiment"


def _ranks(value: Any) -> str | None:
    return None if isinstance(value, (str, list)) else "must be a rank list such as 1,2 or 1-3"


class FedML(Backend):
    name = "fedml"
    help = "one server + P client processes on FedML (its own venv: docs/fedml.md)"
    launcher = "fednlp_bench.backends.fedml.launcher:run_fedml_experiment"
    param_specs = declare(
        Param("processes", int, None, at_least(1), "client processes P, 1..clients-per-round (default: clients-per-round)"),
        Param("comm", str, "MPI", help="FedML transport: mpirun (default) or gRPC (127.0.0.1, or the machines of "
              "--hosts)", choices=COMMS),
        Param("round_timeout_s", float, 600.0, positive, "seconds a round may take before the run stops, resumable "
              "(default: 600)", flag="--round-timeout"),
        Param("hosts", object, None, help=f"gRPC across machines: every rank's address, {HOSTS_HELP}"),
        Param("role", str, None, help="start only this machine's ranks: server = rank 0 (plus --client-ranks, if "
              "given), client = only --client-ranks (default: every rank here)", choices=(*ROLES, None)),
        Param("client_ranks", object, None, _ranks, "client ranks this machine starts, e.g. 1,2 or 1-3"),
        Param("rank", int, None, at_least(0), "shorthand: --rank 0 = --role server, --rank N = --role client "
              "--client-ranks N"),
        Param("connect_timeout_s", float, 300.0, positive, "seconds the server waits for every client rank (then names "
              "the missing ones), and a client for the server (default: 300)", flag="--connect-timeout"),
        Param("torch_threads", int, 1, at_least(1), "torch threads per process (CLI: --threads)", cli=False),
        Param("device", str, None, help="where each process computes (CLI: --device)", cli=False),
        Param("frozen_cache_dir", str, None, help="where every process finds the frozen-bottom cache", cli=False),
        Param("task_factory", str, None, help="'module:callable' building the task in every process", cli=False),
        Param("task_kwargs", object, None, help="keyword arguments of task_factory", cli=False),
        Param("partition_factory", str, None, help="'module:callable' standing in for the partitioner", cli=False),
        Param("python", str, None, help="the FedML venv's python (default: $FEDNLP_FEDML_PYTHON, .fedml-venv)",
              cli=False),
        Param("stats", object, None, help="a list that receives the run's FedMLRunStats", cli=False),
    )


#: The one list of backend names (``backend:`` in a config, ``--backend``).
BACKENDS: Registry[type[Backend]] = Registry("backend", Backend, builtins=lambda: (InProcess, FedML))
