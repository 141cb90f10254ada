"""How tables name and order what records contain: algorithm and partition labels, budgets, canonical values.

Labels, order and families come from the registries (algorithms, partition
schemes), so a new algorithm or scheme appears in every table with its own
label and place without touching this package. A table must build from
records alone: an algorithm whose plug-in is not installed here keeps its
registry-free name and is simply not a member of any family.
"""

from __future__ import annotations

import json
from typing import Any

#: Family whose members compete for one best mark (Reddi et al.'s adaptive server optimizers).
FEDOPT_FAMILY = "fedopt"
_GREEK = {"alpha": "α", "beta": "β"}
#: Config keys that are not part of a table's budget: they pick the table, row or column.
_NOT_BUDGET = {"task", "data", "model", "algorithm", "algorithm_params", "seed", "partition"}


def _algorithms() -> Any:
    from fednlp_bench.algorithms.registry import ALGORITHMS

    return ALGORITHMS


def _schemes() -> Any:
    from fednlp_bench.partitioners import PARTITIONERS

    return PARTITIONERS


def is_centralized(name: str) -> bool:
    """The centralized baseline, recognised by its strategy's declaration (an uninstalled plug-in never is)."""
    from fednlp_bench.algorithms.registry import is_centralized as declared

    return declared(name)


def centralized_baseline() -> str:
    """The registry name of the centralized baseline."""
    from fednlp_bench.algorithms.registry import centralized_baseline as name

    return name()


def is_fedopt(name: str) -> bool:
    """Member of the FedOpt family (a plug-in joins by subclassing ``FedOpt``)."""
    return _algorithms().family(name) == FEDOPT_FAMILY


def algorithm_label(name: str) -> str:
    return _algorithms().label(name)


def algorithm_rank(name: str) -> tuple[int, int, str]:
    """Registry order, with each family kept together at its first member's place."""
    algos = _algorithms()
    family = algos.family(name)
    members = [n for n in algos.names() if family is not None and algos.family(n) == family]
    first = algos.order(members[0]) if members else algos.order(name)
    return (first, algos.order(name), name)


def _norm(value: Any) -> Any:
    """Canonical form so ``alpha: 1`` and ``alpha: 1.0`` compare equal."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _norm(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_norm(v) for v in value]
    return str(value)


def canonical(value: Any) -> str:
    """JSON text of ``value`` with numbers as floats and keys sorted: equal settings give equal text."""
    return json.dumps(_norm(value), sort_keys=True)


def fmt_param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def partition_label(scheme: str, params: dict[str, Any]) -> str:
    """Human label: ``IID``, ``Dirichlet α=0.1``, ``Quantity skew (β=0.5)``, ``Natural (author)``."""
    base = _schemes().label(scheme)
    if not params:
        return base
    if scheme == "dirichlet_label" and set(params) == {"alpha"}:
        return f"{base} α={fmt_param(params['alpha'])}"
    if scheme == "natural_id" and len(params) == 1:
        return f"{base} ({fmt_param(next(iter(params.values())))})"
    shown = ", ".join(f"{_GREEK.get(k, k)}={fmt_param(v)}" for k, v in sorted(params.items()))
    return f"{base} ({shown})"


def budget_of(config: dict[str, Any]) -> dict[str, Any]:
    """Everything in a config that must be equal for two runs to share a table."""
    budget = {k: v for k, v in config.items() if k not in _NOT_BUDGET}
    part = config.get("partition") or {}
    for name in ("num_clients", "min_size"):
        if name in part:
            budget[f"partition.{name}"] = part[name]
    return budget
