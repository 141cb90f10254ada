"""The benchmark tiers (``tier:`` of a suite): one registry, so help, errors and table labels agree.

A published number means something only next to the budget that produced it;
the tier names that budget class. A suite declares its tier, and the plan and
the tables carry it, so a smoke-scale table is never mistaken for a citable
one. The budgets themselves live in the tier's suite YAML and docs/protocol.md.
"""

from __future__ import annotations

from typing import ClassVar

from fednlp_bench.registry import Registry


class Tier:
    """One tier: ``name`` (the YAML value), ``label`` (tables) and a one-line ``help``."""

    name: ClassVar[str]
    label: ClassVar[str]
    help: ClassVar[str]


#: The one list of tiers (suite validation, CLI help and table labels derive from it).
TIERS: Registry[type[Tier]] = Registry("tier", Tier)


@TIERS.register
class SmokeTier(Tier):
    name = "smoke"
    label = "Smoke tier"
    help = "CI and the README's main job: minutes; shows the pipeline works, not citable numbers"


@TIERS.register
class CpuTier(Tier):
    name = "cpu"
    label = "CPU tier"
    help = "the tables published from a 2-core CPU machine: at most 12 hours for the whole tier, resumable"


@TIERS.register
class GpuTier(Tier):
    name = "gpu"
    label = "GPU tier"
    help = "FedNLP scale (100 clients, 10 per round, full training sets) on one H100-class GPU"


def tier_help(sep: str = "; ") -> str:
    """``smoke: ...; cpu: ...; gpu: ...`` for CLI help and docs."""
    return sep.join(f"{name}: {cls.help}" for name, cls in TIERS.items())
