"""Server-side FL algorithms (strategies) and their registry."""

from fednlp_bench.algorithms.base import ClientResult, Strategy, Weights, add_scaled, weighted_mean_delta
from fednlp_bench.algorithms.registry import algorithm_names, create_strategy, get_algorithm_class, register_algorithm

__all__ = [
    "ClientResult",
    "Strategy",
    "Weights",
    "add_scaled",
    "weighted_mean_delta",
    "algorithm_names",
    "create_strategy",
    "get_algorithm_class",
    "register_algorithm",
]
