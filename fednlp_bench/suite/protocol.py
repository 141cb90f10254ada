"""The two-stage tuning protocol's suite keys: ``tier``, ``tuning`` and ``final``.

A tuned leaderboard is honest only when the search is declared up front (one
seed, validation split, equal grid sizes) and the reported numbers come from
fresh seeds of the chosen setting. These keys say that in the suite YAML; this
module checks their shape (typos get a did-you-mean) before anything is
planned. Expansion and selection are in ``tier_plan`` and ``selection``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from fednlp_bench.hints import closest_hint

TUNING_KEYS = ("seed", "partitions")
FINAL_KEYS = ("seeds", "centralized_converged")
#: What ``centralized_converged`` may not change: it is the same cell trained longer, not another one.
CONVERGED_FORBIDDEN = ("task", "data", "partition", "algorithm", "seed")


@dataclass(frozen=True)
class TuningSpec:
    """One seed for the search; ``partitions`` is ``"all"`` or the 0-based partition indexes tuned on."""

    seed: int = 0
    partitions: str | tuple[int, ...] = "all"


@dataclass(frozen=True)
class FinalSpec:
    """The seeds each chosen setting is re-run with, and the overrides of the centralized upper bound."""

    seeds: tuple[int, ...]
    centralized_converged: dict[str, Any] | None = field(default=None)


def check_seeds(value: Any, source: str, name: str = "seeds") -> list[int]:
    """A non-empty list of distinct non-negative integers (each seed is one run)."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{source}: '{name}' must be a non-empty list")
    for seed in value:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"{source}: {name} must be non-negative integers, got {seed!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{source}: {name} {value} repeat a value; each seed is one run")
    return list(value)


def _check_keys(section: Mapping[str, Any], allowed: tuple[str, ...], name: str, source: str) -> None:
    for key in section:
        if key not in allowed:
            raise ValueError(f"{source}: unknown key {key!r} in '{name}'.{closest_hint(str(key), allowed)} "
                             f"Valid keys: {', '.join(allowed)}")


def parse_tier(value: Any, source: str) -> str:
    from fednlp_bench.leaderboard.tiers import TIERS

    try:
        return TIERS.lookup(value).name
    except ValueError as err:
        raise ValueError(f"{source}: tier: {err}") from None


def parse_tuning(value: Any, source: str) -> TuningSpec:
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: 'tuning' must be a mapping such as {{seed: 0, partitions: all}}, got {value!r}")
    _check_keys(value, TUNING_KEYS, "tuning", source)
    seed = value.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{source}: tuning.seed must be a non-negative integer (the one seed of the search), "
                         f"got {seed!r}")
    parts = value.get("partitions", "all")
    if parts != "all":
        if (not isinstance(parts, list) or not parts
                or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in parts)):
            raise ValueError(f"{source}: tuning.partitions must be 'all' or a non-empty list of 0-based partition "
                             f"indexes such as [1], got {parts!r}")
        if len(set(parts)) != len(parts):
            raise ValueError(f"{source}: tuning.partitions {parts} repeats an index")
        parts = tuple(parts)
    return TuningSpec(seed=seed, partitions=parts)


def parse_final(value: Any, source: str) -> FinalSpec:
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: 'final' must be a mapping such as {{seeds: [0, 1, 2]}}, got {value!r}")
    _check_keys(value, FINAL_KEYS, "final", source)
    if "seeds" not in value:
        raise ValueError(f"{source}: 'final' needs 'seeds', the seeds each chosen setting is run with, e.g. [0, 1, 2]")
    seeds = check_seeds(value["seeds"], source, "final.seeds")
    converged = value.get("centralized_converged")
    if converged is not None:
        from fednlp_bench.config import RunConfig

        if not isinstance(converged, Mapping) or not converged:
            raise ValueError(f"{source}: final.centralized_converged must be a mapping of run config overrides "
                             f"such as {{rounds: 20, test_best_round: true}}, got {converged!r}")
        names = RunConfig.field_names()
        for key in converged:
            if key in CONVERGED_FORBIDDEN:
                raise ValueError(f"{source}: final.centralized_converged may not set {key!r}: the upper bound is "
                                 f"the same cell trained longer (set e.g. rounds, test_best_round)")
            if key not in names:
                raise ValueError(f"{source}: unknown key {key!r} in 'final.centralized_converged'."
                                 f"{closest_hint(str(key), names)} It takes run config fields such as rounds")
        converged = dict(converged)
    return FinalSpec(seeds=tuple(seeds), centralized_converged=converged)


def parse_protocol(data: Mapping[str, Any], source: str) -> tuple[str | None, TuningSpec | None, FinalSpec | None]:
    """``(tier, tuning, final)`` of a suite; all ``None`` for a one-stage suite such as configs/suite.yaml."""
    tier = parse_tier(data["tier"], source) if "tier" in data else None
    if ("tuning" in data) != ("final" in data):
        given, missing = ("tuning", "final") if "tuning" in data else ("final", "tuning")
        raise ValueError(f"{source}: '{given}' needs a '{missing}' section too: the protocol tunes on one seed "
                         "(tuning) and reports the chosen setting over fresh seeds (final)")
    if "tuning" not in data:
        if tier is not None:
            raise ValueError(f"{source}: a tier suite (tier: {tier}) publishes tuned results; add 'tuning' "
                             "(e.g. {seed: 0, partitions: all}) and 'final' (e.g. {seeds: [0, 1, 2]})")
        return None, None, None
    if "seeds" in data:
        raise ValueError(f"{source}: a two-stage suite takes its seeds from tuning.seed and final.seeds; "
                         "remove the top-level 'seeds'")
    if data.get("centralized_once", True) is not True:
        raise ValueError(f"{source}: a two-stage suite runs centralized once per task (on its first partition); "
                         "remove centralized_once: false")
    return tier, parse_tuning(data["tuning"], source), parse_final(data["final"], source)
