"""The FL engine: local training (client), strategies over a backend (server), runner, checkpoints.

The runner's names load on first use (PEP 562), so importing a light module of
the engine (``run_id``, ``checkpoint``) does not import torch's training stack:
a suite's worker processes and ``--list-runs`` start in a fraction of the time.
"""

from typing import Any

__all__ = ["NonFiniteModelError", "run_experiment", "run_from_config_dict"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from fednlp_bench.engine import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'fednlp_bench.engine' has no attribute {name!r}")
