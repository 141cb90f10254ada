"""The protocol's suite keys: ``tier``, ``convergence``, ``tuning`` and ``final`` (docs/protocol.md, v2).

A tuned leaderboard is honest only when the search is declared up front (one
seed, validation split, equal effort, a cap on grid extensions), the
reported numbers come from fresh seeds of the chosen setting, and the
budget is tested for convergence. These keys say that in the suite YAML;
this module checks their shape (typos get a did-you-mean) before anything
is planned. Expansion is in ``tier_plan``, extensions in ``extension``,
selection in ``selection``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from fednlp_bench.hints import closest_hint
from fednlp_bench.leaderboard.convergence import Criterion

TUNING_KEYS = ("seed", "partitions", "extensions")
FINAL_KEYS = ("seeds", "centralized_converged")
#: What ``centralized_converged`` may not change: it is the same cell trained longer, not another one.
CONVERGED_FORBIDDEN = ("task", "data", "partition", "algorithm", "seed")


@dataclass(frozen=True)
class TuningSpec:
    """One seed for the search; ``partitions`` is ``"all"`` or the 0-based partition indexes tuned on.

    ``extensions`` is the cap on extension steps per tuned unit, the same for
    every algorithm: a step extends each axis whose chosen value lies on its
    edge by one log step on that side (``extension.py``).
    """

    seed: int = 0
    partitions: str | tuple[int, ...] = "all"
    extensions: int = 0


@dataclass(frozen=True)
class FinalSpec:
    """The seeds each chosen setting is re-run with, and the overrides of the centralized upper bound."""

    seeds: tuple[int, ...]
    centralized_converged: dict[str, Any] | None = field(default=None)


@dataclass(frozen=True)
class Protocol:
    tier: str
    convergence: Criterion
    tuning: TuningSpec
    final: FinalSpec


def check_seeds(value: Any, source: str, name: str = "seeds") -> list[int]:
    """A non-empty list of distinct non-negative integers (each seed is one run)."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{source}: '{name}' must be a non-empty list of seeds, e.g. [0, 1, 2, 3, 4]")
    for seed in value:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"{source}: {name} must be non-negative integers, got {seed!r}")
    if len(set(value)) != len(value):
        raise ValueError(f"{source}: {name} {value} repeat a value; each seed is one run")
    return list(value)


def check_final_seeds(tier: str, task: str, seeds: tuple[int, ...], source: str) -> None:
    """A citable tier reports at least its tier's number of seeds (QA and generation may declare fewer)."""
    from fednlp_bench.leaderboard.tiers import TIERS

    cls = TIERS.lookup(tier)
    needed = cls.reduced_seeds.get(task, cls.min_final_seeds)
    if len(seeds) < needed:
        relaxed = ", ".join(f"{t}: {n}" for t, n in sorted(cls.reduced_seeds.items()))
        raise ValueError(f"{source}: task {task!r} reports {len(seeds)} final seed(s) {list(seeds)}, but the {tier} "
                         f"tier needs at least {needed} ({cls.min_final_seeds} per task"
                         f"{'; ' + relaxed if relaxed else ''}); list more seeds in final.seeds or the task's "
                         "final_seeds")


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


def _non_negative_int(value: Any, source: str, name: str, example: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{source}: {name} must be a non-negative integer ({example}), got {value!r}")
    return value


def parse_tuning(value: Any, source: str) -> TuningSpec:
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: 'tuning' must be a mapping such as {{seed: 0, partitions: [1], extensions: 2}}, "
                         f"got {value!r}")
    _check_keys(value, TUNING_KEYS, "tuning", source)
    seed = _non_negative_int(value.get("seed", 0), source, "tuning.seed", "the one seed of the search")
    extensions = _non_negative_int(value.get("extensions", 0), source, "tuning.extensions",
                                   "the cap on grid extension steps, the same for every algorithm")
    parts = value.get("partitions", "all")
    if parts != "all":
        if (not isinstance(parts, list) or not parts
                or any(not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in parts)):
            raise ValueError(f"{source}: tuning.partitions must be 'all' or a non-empty list of 0-based partition "
                             f"indexes such as [1], got {parts!r}")
        if len(set(parts)) != len(parts):
            raise ValueError(f"{source}: tuning.partitions {parts} repeats an index")
        parts = tuple(parts)
    return TuningSpec(seed=seed, partitions=parts, extensions=extensions)


def parse_final(value: Any, source: str) -> FinalSpec:
    if not isinstance(value, Mapping):
        raise ValueError(f"{source}: 'final' must be a mapping such as {{seeds: [0, 1, 2, 3, 4]}}, got {value!r}")
    _check_keys(value, FINAL_KEYS, "final", source)
    if "seeds" not in value:
        raise ValueError(f"{source}: 'final' needs 'seeds', the seeds each chosen setting is run with, "
                         "e.g. [0, 1, 2, 3, 4]")
    seeds = check_seeds(value["seeds"], source, "final.seeds")
    converged = value.get("centralized_converged")
    if converged is not None:
        converged = parse_converged(converged, source, "final.centralized_converged")
    return FinalSpec(seeds=tuple(seeds), centralized_converged=converged)


def parse_converged(value: Any, source: str, name: str) -> dict[str, Any]:
    """Run config overrides of the centralized upper bound (the same cell trained longer)."""
    from fednlp_bench.config import RunConfig

    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{source}: {name} must be a mapping of run config overrides such as "
                         f"{{rounds: 200, test_best_round: true}}, got {value!r}")
    names = RunConfig.field_names()
    for key in value:
        if key in CONVERGED_FORBIDDEN:
            raise ValueError(f"{source}: {name} may not set {key!r}: the upper bound is the same cell trained "
                             "longer (set e.g. rounds, test_best_round)")
        if key not in names:
            raise ValueError(f"{source}: unknown key {key!r} in '{name}'.{closest_hint(str(key), names)} It takes "
                             "run config fields such as rounds")
    return dict(value)


def parse_protocol(data: Mapping[str, Any], source: str) -> Protocol:
    """Every suite is a tier suite: tier, convergence, tuning and final are all required."""
    missing = [key for key in ("tier", "convergence", "tuning", "final") if key not in data]
    if missing:
        raise ValueError(
            f"{source}: a suite needs {', '.join(repr(k) for k in missing)}: every table is a tier table that "
            "tunes on one seed (tuning: {seed: 0, partitions: [1], extensions: 2}), reports the chosen setting "
            "over fresh seeds (final: {seeds: [0, 1, 2, 3, 4]}) and tests every cell for convergence "
            "(convergence: {window: 0.25, tolerance: 0.002, min_points: 3}); see docs/protocol.md")
    return Protocol(tier=parse_tier(data["tier"], source),
                    convergence=Criterion.from_dict(data["convergence"], source),
                    tuning=parse_tuning(data["tuning"], source), final=parse_final(data["final"], source))
