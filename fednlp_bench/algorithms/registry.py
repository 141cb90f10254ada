"""Algorithm name -> Strategy class.

A new algorithm is one ``Strategy`` subclass plus ``register_algorithm``
(usable as a decorator). Code outside the package can also be named directly
as ``"package.module:ClassName"`` in ``--algorithm`` or a YAML config; the
module is imported and the class registered under its ``name``.
"""

from __future__ import annotations

import importlib
from typing import TypeVar

from fednlp_bench.algorithms.base import Strategy
from fednlp_bench.config import closest_hint

_ALGORITHMS: dict[str, type[Strategy]] = {}
_BUILTINS_LOADED = False
S = TypeVar("S", bound=type[Strategy])


def register_algorithm(cls: S) -> S:
    """Make ``cls`` available as ``cls.name``; re-registering another class under a taken name fails."""
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a Strategy subclass")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{cls.__qualname__} needs a class attribute `name` (the --algorithm value)")
    existing = _ALGORITHMS.get(name)
    if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
        raise ValueError(f"algorithm name {name!r} is already registered by {existing.__qualname__}")
    _ALGORITHMS[name] = cls
    return cls


def algorithm_names() -> list[str]:
    _import_builtins()
    return sorted(_ALGORITHMS)


def get_algorithm_class(name: str) -> type[Strategy]:
    """Look up a registered name, or import ``module:Class``; unknown names suggest the closest."""
    _import_builtins()
    if not isinstance(name, str):
        raise ValueError(f"algorithm must be a name such as 'fedavg', got {name!r}")
    if name in _ALGORITHMS:
        return _ALGORITHMS[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ValueError(f"algorithm {name!r}: cannot import module {module_name!r} ({err})") from err
        cls = getattr(module, attr, None)
        if cls is None:
            raise ValueError(f"algorithm {name!r}: module {module_name!r} has no attribute {attr!r}")
        register_algorithm(cls)
        return cls
    raise ValueError(
        f"unknown algorithm {name!r}.{closest_hint(name, list(_ALGORITHMS))} "
        f"Choose one of {sorted(_ALGORITHMS)} or give 'package.module:ClassName'"
    )


def create_strategy(name: str, params: dict | None = None) -> Strategy:
    return get_algorithm_class(name)(**(params or {}))


def _import_builtins() -> None:
    global _BUILTINS_LOADED
    if _BUILTINS_LOADED:
        return
    _BUILTINS_LOADED = True
    from fednlp_bench.algorithms import centralized, examples, fedavg, fedopt, fedprox

    for cls in (
        centralized.Centralized,
        fedavg.FedAvg,
        fedprox.FedProx,
        fedopt.FedAdam,
        fedopt.FedYogi,
        fedopt.FedAdagrad,
        fedopt.FedAvgM,
        examples.FedNova,
    ):
        register_algorithm(cls)
