"""The FL engine: local training (client), strategies over a backend (server), runner, checkpoints."""

from fednlp_bench.engine.runner import NonFiniteModelError, run_experiment, run_from_config_dict

__all__ = ["NonFiniteModelError", "run_experiment", "run_from_config_dict"]
