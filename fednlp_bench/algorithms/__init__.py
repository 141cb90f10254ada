"""FL algorithms: the server-side ``Strategy``, its optional client side (``ClientProcedure``) and the registry."""

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights, add_scaled, weighted_mean_delta
from fednlp_bench.algorithms.client import ClientProcedure, Composed, FitContext
from fednlp_bench.algorithms.registry import algorithm_names, create_strategy, get_algorithm_class, register_algorithm

__all__ = [
    "ClientProcedure",
    "ClientResult",
    "Composed",
    "FitContext",
    "Strategy",
    "Weights",
    "add_scaled",
    "weighted_mean_delta",
    "algorithm_names",
    "create_strategy",
    "get_algorithm_class",
    "register_algorithm",
]
