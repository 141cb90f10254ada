"""Command-line flags built from :class:`~fednlp_bench.registry.Param` declarations, never typed out by hand.

Three kinds of flags, one rule each:

* a declared field or option (``RunConfig`` fields, run options, a backend's
  options, a command's own options): ``--name-with-dashes`` (``Param.cli_flag``),
  with the Param's type, choices and help;
* a parameter of a registry's entries (schemes, task options, trainable
  modes, sampling policies): ``--FAMILY-name`` (``--partition-alpha``,
  ``--task-tag-scheme``, ``--trainable-layers``, ``--sampling-gamma``), one
  flag for every entry that declares that name, whose help lists those
  entries. In ``run`` and ``compare`` a bare ``--name`` is always an
  algorithm's parameter (``--mu``, ``--server-lr``, FedDyn's ``--alpha``;
  commands/algorithm_flags.py), so the two can never collide. ``partition``
  has no algorithms and spells its schemes' parameters bare (``--alpha``;
  partition_command.py);
* ``--FAMILY-param KEY=VALUE`` (repeatable) for any parameter, plug-ins' too.

Every action carries the Param it came from (``action.param``), which is what
``tests/test_flags.py`` compares with the registries' declarations.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from fednlp_bench.registry import Param
from fednlp_bench.scalars import integer, number, parse_scalar


class Names:
    """``str()`` gives ``a | b | c`` from a callable, computed when help is printed."""

    def __init__(self, load: Callable[[], Iterable[Any]]) -> None:
        self._load = load

    def __str__(self) -> str:
        return " | ".join(str(n) for n in self._load())


def _escape(text: str) -> str:
    return text.replace("%", "%%").replace("%%(names)s", "%(names)s")


def key_values(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} must look like KEY=VALUE")
    return key.strip(), value


def _kwargs(param: Param) -> dict[str, Any]:
    """argparse keyword arguments of one Param (every flag defaults to None: "not given")."""
    if param.type is bool:
        return {"action": "store_const", "const": not param.default if param.default is not None else True}
    if param.type is dict:
        return {"action": "append", "metavar": "KEY=VALUE"}
    kind: Any = {int: integer, float: number, list: lambda s: [w for w in s.split(",") if w],
                 object: parse_scalar}.get(param.type, str)
    out: dict[str, Any] = {"type": kind}
    if param.choices is not None and not callable(param.choices):
        out["choices"] = [c for c in param.choices if c is not None]
    else:
        out["metavar"] = param.name.upper()
    return out


def add_param(group: Any, param: Param, *, flag: str | None = None, dest: str | None = None,
              default: Any = None, **extra: Any) -> argparse.Action:
    """One flag for ``param`` (dest: its name unless given); the action remembers the Param."""
    kwargs = {**_kwargs(param), **extra}
    help_text = param.help
    if param.type is bool and param.default is True:
        help_text = f"switch off (on by default): {help_text}"
    if callable(param.choices) and "%(names)s" not in help_text:
        help_text = f"%(names)s: {help_text}" if help_text else "%(names)s"
    action = group.add_argument(flag or param.cli_flag(), dest=dest or param.name, default=default,
                                help=_escape(help_text), **kwargs)
    names = param.listed or (param.choices if callable(param.choices) else None)
    if names is not None:
        action.names = Names(names)  # type: ignore[attr-defined]
    action.param = param  # type: ignore[attr-defined]
    return action


def add_params(group: Any, params: Iterable[Param], *, defaults: bool = False) -> list[argparse.Action]:
    """A flag per CLI Param (``defaults``: the Param's default instead of None)."""
    return [add_param(group, p, default=p.default if defaults and not p.required else None)
            for p in params if p.cli]


@dataclass(frozen=True)
class Family:
    """A registry whose entries' parameters become flags, and the config section they fill."""

    key: str  # flag prefix and dest prefix: partition, task, trainable, sampling
    section: str  # the config section the values go to (partition.params, task_params, ...)
    load: Callable[[], Any]  # the registry
    what: str  # "schemes", "tasks", ...
    example: str = ""  # KEY=VALUE examples for the help of --FAMILY-param

    def generic(self) -> str:
        return f"--{self.key}-param"


def _registry(module: str, name: str) -> Callable[[], Any]:
    def load() -> Any:
        import importlib

        return getattr(importlib.import_module(module), name)

    return load


SCHEMES = Family("partition", "partition.params", _registry("fednlp_bench.partitioners", "PARTITIONERS"), "schemes",
                 "classes_per_client=2")
TASK_OPTIONS = Family("task", "task_params", _registry("fednlp_bench.tasks.registry", "TASKS"), "tasks",
                      "tag_scheme=iob1, doc_stride=128, max_target_length=24")
TRAINABLE = Family("trainable", "trainable_params", _registry("fednlp_bench.compute.trainable", "MODES"),
                   "trainable modes", "layers=2, cache=true, r=8")
SAMPLING = Family("sampling", "sampling_params", _registry("fednlp_bench.sampling.policies", "SAMPLING_POLICIES"),
                  "sampling policies", "gamma=0.5")


def taken_flags(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def family_flag(family: Family, param: Param) -> str:
    """``--partition-alpha``; a boolean that defaults to true is switched off: ``--no-partition-balance``."""
    stem = f"{family.key}-{param.name.replace('_', '-')}"
    return f"--no-{stem}" if param.type is bool and param.default is True else f"--{stem}"


def add_family(group: Any, family: Family, taken: set[str], *, generic: bool = True) -> None:
    """A ``--FAMILY-name`` flag per parameter name the family's entries declare, plus ``--FAMILY-param``."""
    for name, entries in family.load().all_params().items():
        param = entries[0][1]
        if not param.cli:
            continue
        flag = family_flag(family, param)
        if flag in taken:
            raise ValueError(f"{flag} ({family.what}) is already a flag of this command")
        owners = ", ".join(e for e, _ in entries)
        action = add_param(group, param, flag=flag, dest=f"{family.key}.{name}")
        action.help = (action.help or "") + _escape(f" ({family.what}: {owners})")
        action.family = family  # type: ignore[attr-defined]
        taken.add(flag)
    if generic:
        action = group.add_argument(family.generic(), dest=f"{family.key}_param", action="append", default=[],
                                    metavar="KEY=VALUE",
                                    help=f"any {family.section} entry, plug-ins' too, e.g. {family.example} "
                                    f"(repeatable)")
        action.family = family  # type: ignore[attr-defined]
        taken.add(family.generic())


def family_values(args: argparse.Namespace, family: Family) -> dict[str, Any]:
    """The family parameters given on the command line: its own flags, then ``--KEY-param`` items (YAML scalars)."""
    out: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if dest.startswith(family.key + ".") and value is not None:
            out[dest.split(".", 1)[1]] = value
    for item in getattr(args, f"{family.key}_param", None) or []:
        try:
            key, value = key_values(item)
        except argparse.ArgumentTypeError:
            raise ValueError(f"{family.generic()} {item!r} must look like KEY=VALUE") from None
        out[key] = parse_scalar(value)
    return out


def given(args: argparse.Namespace, params: Iterable[Param]) -> dict[str, Any]:
    """Values of the flags of ``params`` that were given (not None)."""
    return {p.name: getattr(args, p.name) for p in params if p.cli and getattr(args, p.name, None) is not None}
