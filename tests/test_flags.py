"""Every flag of ``partition``, ``run`` and ``suite`` comes from a declared Param, and every declared Param has its flag.

The flags are compared with the declarations themselves (the registries'
``param_specs``, the config fields, the run and backend options, the
commands' own option tables), not with a list typed out here: a parameter
added to a scheme or a task shows up as a flag, or this fails.
"""

from __future__ import annotations

import argparse
from typing import Any, Iterable

import pytest

from fednlp_bench import cli
from fednlp_bench.commands.flags import SAMPLING, SCHEMES, TASK_OPTIONS, TRAINABLE, family_flag
from fednlp_bench.config_fields import FIELDS, PARTITION_FIELDS
from fednlp_bench.execution import FedML
from fednlp_bench.partition_command import DATA_OPTIONS, OUTPUT_OPTIONS, scheme_flag
from fednlp_bench.registry import Param
from fednlp_bench.run_options import RUN_OPTIONS


def command(name: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name].complete()  # type: ignore[attr-defined]


def flag_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def family_params(families: Iterable[Any]) -> dict[str, list[tuple[str, Param]]]:
    return {f"{family.key}.{name}": entries for family in families for name, entries in family.load().all_params().items()}


def _plain(text: str) -> str:
    return text.replace("%%", "%").replace("%(names)s", "")


def assert_declared(actions: list[argparse.Action], declared: Iterable[Param]) -> None:
    """Each flag carries one of ``declared`` (by identity: nothing re-typed), with its help."""
    ids = {id(p) for p in declared}
    for action in actions:
        param = getattr(action, "param", None)
        assert param is not None, f"{action.option_strings} is not built from a Param"
        assert id(param) in ids, f"{action.option_strings} carries a Param that no declaration holds: {param}"
        assert _plain(param.help)[:30] in _plain(action.help or ""), action.option_strings


def test_run_flags_are_the_declarations() -> None:
    parser = command("run")
    actions = flag_actions(parser)
    families = family_params([TASK_OPTIONS, SCHEMES, SAMPLING, TRAINABLE])
    declared = [*FIELDS.values(), *PARTITION_FIELDS.values(), *RUN_OPTIONS.values(), *FedML.param_specs.values(),
                *(p for entries in families.values() for _, p in entries)]
    generic = [a for a in actions if a.dest.endswith("_param") and getattr(a, "family", None)]
    assert {a.option_strings[0] for a in generic} == {"--task-param", "--partition-param", "--sampling-param",
                                                      "--trainable-param"}
    assert_declared([a for a in actions if a not in generic], declared)
    by_dest = {a.dest: a for a in actions}
    for dest, entries in families.items():  # every registry parameter: its --FAMILY-name flag, its Param
        if not entries[0][1].cli:
            continue
        family = next(f for f in (TASK_OPTIONS, SCHEMES, SAMPLING, TRAINABLE) if dest.startswith(f.key + "."))
        action = by_dest[dest]
        assert action.param is entries[0][1] and action.option_strings == [family_flag(family, entries[0][1])]
        assert all(owner in action.help for owner, _ in entries)
    for name in ("lr", "rounds", "seed", "client_eval", "backend"):  # config fields: --name
        assert by_dest[name].param is FIELDS[name] and by_dest[name].option_strings == [FIELDS[name].cli_flag()]
    for param in FedML.param_specs.values():
        assert not param.cli or by_dest[param.name].param is param
    # Every config field a flag can set has one (a field missing from run.GROUPS would have none).
    from fednlp_bench.commands.run import _MERGED_BY_HAND

    flagless = [n for n, p in FIELDS.items() if p.cli and n not in _MERGED_BY_HAND and n not in by_dest]
    assert flagless == [], f"config fields without a run flag: {flagless}"


def test_partition_flags_are_the_declarations() -> None:
    from fednlp_bench.partitioners.base import SPLIT_PARAMS

    actions = flag_actions(command("partition"))
    schemes = family_params([SCHEMES])
    assert_declared(actions, [*DATA_OPTIONS.values(), *OUTPUT_OPTIONS.values(), *SPLIT_PARAMS.values(),
                              PARTITION_FIELDS["scheme"], *(p for entries in schemes.values() for _, p in entries)])
    flags = {a.option_strings[0]: a for a in actions}
    for dest, entries in schemes.items():
        flag = scheme_flag(entries[0][1])
        assert flags[flag].param is entries[0][1] and flags[flag].dest == dest
    assert flags["--merge-below"].param is schemes["partition.merge_below"][0][1]
    assert {p.cli_flag() for p in [*DATA_OPTIONS.values(), *OUTPUT_OPTIONS.values()]} <= set(flags)


def test_suite_flags_are_the_declarations() -> None:
    from fednlp_bench.commands.suite import EXECUTION_OPTIONS, SUITE_OPTIONS

    declared = {**SUITE_OPTIONS, **EXECUTION_OPTIONS}
    parser = command("suite")
    actions = flag_actions(parser)
    assert_declared(actions, declared.values())
    assert sorted(a.param.name for a in actions) == sorted(declared)  # type: ignore[attr-defined]
    jobs = parser.parse_args(["s.yaml", "--jobs", "2", "--budget-minutes", "1e1", "--list-runs"])
    assert (jobs.jobs, jobs.budget_minutes, jobs.list_runs, jobs.threads) == (2, 10.0, True, None)
    args = parser.parse_args(["s.yaml", "--task", "qa", "tagging", "--max-runs", "2e1", "--dry-run"])
    assert (args.task, args.max_runs, args.dry_run, args.stage, args.no_leaderboard) == (["qa", "tagging"], 20, True,
                                                                                         "all", False)


def test_a_flag_without_a_param_is_caught() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--typed-by-hand")
    with pytest.raises(AssertionError, match="typed-by-hand.*not built from a Param"):
        assert_declared(flag_actions(parser), [])
