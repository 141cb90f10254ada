"""Which rounds the engine evaluates on validation: the one rule, shared by the round loop and the suite.

Tuning selects on the validation metric of the final round, so the suite must
know, before it starts hours of runs, that every run will have one. Keeping
the schedule here (standard library only) lets the planner ask the engine's
own rule instead of restating it.
"""

from __future__ import annotations


def evaluates_round(rnd: int, rounds: int, eval_every: int) -> bool:
    """Every ``eval_every``-th round, and always the last one (whatever ``eval_every`` is)."""
    return rnd % eval_every == 0 or rnd == rounds
