"""The ``fairness:`` section of a run config: which counterfactual test the final model gets."""

from __future__ import annotations

from typing import Any, Mapping

from fednlp_bench.hints import closest_hint

KEYS = ("counterfactual",)
#: Tasks whose predictions a counterfactual swap is defined for (a class per text).
FAIRNESS_TASKS = ("classification",)


def check_fairness(fairness: Mapping[str, Any] | None, *, task: str) -> None:
    """Refuse an unknown key, word list or task before any work."""
    if fairness is None:
        return
    from fednlp_bench.fairness.wordlists import WORD_LISTS

    if not isinstance(fairness, Mapping):
        raise ValueError(f"fairness must be a mapping such as {{counterfactual: gender}}, got {fairness!r}")
    for key in fairness:
        if key not in KEYS:
            raise ValueError(f"unknown fairness key {key!r}.{closest_hint(str(key), KEYS)} Valid keys: {', '.join(KEYS)}")
    name = fairness.get("counterfactual")
    if name not in WORD_LISTS:
        raise ValueError(f"fairness.counterfactual={name!r} is not a word list.{closest_hint(str(name), WORD_LISTS)} "
                         f"Choose one of {sorted(WORD_LISTS)}")
    if task not in FAIRNESS_TASKS:
        raise ValueError(f"fairness.counterfactual evaluates class predictions; task {task!r} has none "
                         f"(supported: {list(FAIRNESS_TASKS)})")
