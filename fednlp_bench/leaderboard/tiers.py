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
    """One tier: ``name`` (the YAML value), ``label`` (tables), a one-line ``help`` and its seed minimum.

    ``min_final_seeds`` is how many seeds every reported cell needs (protocol
    v2: 5, so a paired t interval has 4 degrees of freedom); ``reduced_seeds``
    names the tasks whose runs cost so much that the tier may report fewer.
    """

    name: ClassVar[str]
    label: ClassVar[str]
    help: ClassVar[str]
    min_final_seeds: ClassVar[int] = 5
    reduced_seeds: ClassVar[dict[str, int]] = {"qa": 3, "generation": 3}


#: The one list of tiers (suite validation, CLI help and table labels derive from it).
TIERS: Registry[type[Tier]] = Registry("tier", Tier)


@TIERS.register
class SmokeTier(Tier):
    name = "smoke"
    label = "Smoke tier"
    help = "the pipeline end to end in well under an hour on 2 cores: tiny grid, 2 seeds; not citable numbers"
    min_final_seeds = 2
    reduced_seeds: ClassVar[dict[str, int]] = {}


@TIERS.register
class CpuTier(Tier):
    name = "cpu"
    label = "CPU tier"
    help = "the tables published from a 2-core CPU machine, all four tasks; resumable, run in chunks"


@TIERS.register
class GpuTier(Tier):
    name = "gpu"
    label = "GPU tier"
    help = "FedNLP scale (100 clients, 10 per round, full training sets) on one H100-class GPU"


def tier_help(sep: str = "; ") -> str:
    """``smoke: ...; cpu: ...; gpu: ...`` for CLI help and docs."""
    return sep.join(f"{name}: {cls.help}" for name, cls in TIERS.items())
