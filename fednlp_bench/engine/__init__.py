"""The FL engine in four rooms (docs/architecture.md):

* ``run/``: one run from config to record (runner, prepare, the data sources, features, checkpoint, finish, run id);
* ``server/``: the round loop and who takes part (rounds, simulator backend, populations, aggregation weights);
* ``client/``: one client's local training (setup, trainer, model state, procedure host, per-client state);
* ``eval/``: validation per round, the test split once, per-client evaluation, audits and fairness on the final model.

The runner's names load on first use (PEP 562), so importing a light module of
the engine (``run.run_id``, ``run.checkpoint``) does not import torch's
training stack: a suite's worker processes and ``--list-runs`` start in a
fraction of the time.
"""

from typing import Any

__all__ = ["NonFiniteModelError", "run_experiment", "run_from_config_dict"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fednlp_bench.engine.run import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'fednlp_bench.engine' has no attribute {name!r}")
