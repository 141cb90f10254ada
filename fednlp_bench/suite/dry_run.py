"""``suite --dry-run``: what is left of a tier, run by run, and what it costs in CPU hours.

The tier runs in chunks across sessions; each chunk starts from this
printout. Counts are exact where the records fix them (the tuning runs due
now, the final runs of settled tasks) and stated as "pending" otherwise; the
grid extensions still possible are a bound, never counted as if certain.
Hours come from ``cost.py``: rates measured on records of the same run shape
(the tier's own, else its ``rate_records`` folders), else the suite's
declared rates, and the printout says which.
"""

from __future__ import annotations

from typing import TextIO

from fednlp_bench.suite import cost
from fednlp_bench.suite.extension import max_extension_runs
from fednlp_bench.suite.selection import Records
from fednlp_bench.suite.spec import PlannedRun
from fednlp_bench.suite.tier_plan import TierPlan, pending_final_runs


def _rates(plan: TierPlan, records: Records) -> dict[str, cost.Rate]:
    """The tier's own records measure a shape they cover; ``rate_records`` (pilots) only the shapes they do not.

    Pilots may predate a change of how a shape computes (the first-token last layer made 20News runs ~6x
    cheaper than its pilots), and the tier's records are the runs being estimated.
    """
    pilots = cost.measure(cost.load_rate_records(plan.suite.rate_records))
    return {**pilots, **cost.measure([item.record for item in records.values()])}


def print_dry_run(plan: TierPlan, tasks: set[int], records: Records, tuning: list[PlannedRun],
                  final: dict[int, list[PlannedRun]], pending: set[int], stream: TextIO) -> int:
    """Print the runs to do and their estimated CPU hours; return how many runs are known to be left."""
    suite = plan.suite
    declared = plan.tuning_runs(tasks)
    print(f"suite {suite.source} (tier {suite.tier}): tuning: {len(declared)} runs in the grid, "
          f"{sum(r.key in records for r in declared)} already recorded in the runs folder, {len(tuning)} to run now",
          file=stream)
    for run in tuning:
        print(f"  would run: {run.label}", file=stream)
    extra = sum(max_extension_runs(u, suite.tuning.extensions) for u in plan.units if u.task_index in tasks)
    if extra:
        print(f"tuning: grid extensions may add up to {extra} more run(s) (cap {suite.tuning.extensions} step(s) "
              "per unit, taken only when a choice lies on an axis edge)", file=stream)
    total_final = 0
    left = {t: [] for t in sorted(tasks)}  # type: dict[int, list[PlannedRun]]
    for run in tuning:
        left[_task_of(plan, run)].append(run)
    for t in sorted(tasks):
        name = plan.task_name(t)
        if t in pending:
            runs = pending_final_runs(plan, t)
            print(f"final: {name}: pending tuning: {len(runs)} runs once tuning is complete", file=stream)
        else:
            runs = final[t]
            print(f"final: {name}: {len(runs)} runs to do", file=stream)
        total_final += len(runs)
        left[t] += runs
    print(f"total: {len(tuning) + total_final} runs to do ({len(tuning)} tuning + {total_final} final)", file=stream)
    _print_hours(plan, records, left, extra, stream)
    return len(tuning) + total_final


def _task_of(plan: TierPlan, run: PlannedRun) -> int:
    names = [str(t["task"]) for t in plan.suite.tasks]
    return names.index(str(run.config["task"]))


def _print_hours(plan: TierPlan, records: Records, left: dict[int, list[PlannedRun]], extra: int,
                 stream: TextIO) -> None:
    measured = _rates(plan, records)
    found = cost.estimate([r.config for runs in left.values() for r in runs], measured, plan.suite.rates)
    print("estimated hours of what is left, on the machine the rates were measured on (setup and cache building "
          "not included unless declared):", file=stream)
    for t, runs in left.items():
        name = plan.task_name(t)
        if not runs:
            print(f"  {name}: nothing left", file=stream)
            continue
        unknown = found.unknown.get(name, 0)
        missing = f"{unknown} run(s) without a rate (no record of their shape, none declared under rates:)"
        if unknown == len(runs):
            print(f"  {name}: {len(runs)} run(s), hours unknown: {missing}", file=stream)
            continue
        hours = found.seconds.get(name, 0.0) / 3600
        sources = "; ".join(sorted(found.sources.get(name, set())))
        print(f"  {name}: {len(runs)} run(s), {hours:.2f} h [rates: {sources}]{'; ' + missing if unknown else ''}",
              file=stream)
    unknown = sum(found.unknown.values())
    print(f"  total: {found.hours:.2f} h" + (f" for the runs with a rate ({unknown} without)" if unknown else "")
          + (f", plus the extension runs (at most {extra}) if taken" if extra else ""), file=stream)
