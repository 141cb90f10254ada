"""Algorithm name -> Strategy class: the one list behind ``--algorithm``, CLI help and table labels.

A new built-in algorithm is one module plus one line in :func:`_builtins`.
Code outside the package is named as ``"package.module:ClassName"`` in
``--algorithm`` or a YAML config: the module is imported and the class
registered under its ``name``. Built-in modules never import this registry,
so no import cycle can form.
"""

from __future__ import annotations

from typing import Iterable, TypeVar

from fednlp_bench.algorithms.base import Strategy
from fednlp_bench.registry import Registry

S = TypeVar("S", bound=type[Strategy])


def _builtins() -> Iterable[type[Strategy]]:
    from fednlp_bench.algorithms import (
        centralized, fedavg, feddyn, fedmedian, fednova, fedopt, fedprox, fedtrimmedavg, krum, qfedavg, scaffold,
    )

    return (
        centralized.Centralized,
        fedavg.FedAvg,
        fedprox.FedProx,
        fedopt.FedAdam,
        fedopt.FedYogi,
        fedopt.FedAdagrad,
        fedopt.FedAvgM,
        scaffold.Scaffold,
        feddyn.FedDyn,
        fednova.FedNova,
        fedmedian.FedMedian,
        fedtrimmedavg.FedTrimmedAvg,
        krum.Krum,
        qfedavg.QFedAvg,
    )


ALGORITHMS: Registry[type[Strategy]] = Registry("algorithm", Strategy, builtins=_builtins, importable=True)


def register_algorithm(cls: S) -> S:
    """Make ``cls`` available as ``cls.name``; re-registering another class under a taken name fails."""
    return ALGORITHMS.register(cls)


def algorithm_names() -> list[str]:
    return ALGORITHMS.names()


def get_algorithm_class(name: str) -> type[Strategy]:
    """Look up a registered name, or import ``module:Class``; unknown names suggest the closest."""
    return ALGORITHMS.lookup(name)


def is_centralized(name: str) -> bool:
    """Whether ``name`` is the centralized baseline, by its strategy's declaration (``Strategy.centralized``).

    Unknown names (a record of a plug-in not installed here) are not the baseline.
    """
    cls = ALGORITHMS.find(name)
    return bool(cls is not None and cls.centralized)


def centralized_baseline() -> str:
    """The registry name of the centralized baseline (the entry that declares ``centralized = True``)."""
    return next(name for name in ALGORITHMS.names() if ALGORITHMS[name].centralized)


def create_strategy(name: str, params: dict | None = None) -> Strategy:
    return get_algorithm_class(name)(**(params or {}))
