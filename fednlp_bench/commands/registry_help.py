"""CLI help and flags derived from the registries, never typed out by hand.

Help strings name a registry's entries through ``%(names)s``; the names are
looked up only when argparse actually prints help, so building the parser
(every CLI call) imports no task, model or torch code. Algorithm
hyperparameters need no flag list either: any ``--name VALUE`` the parser does
not know is read as a parameter of the chosen algorithm(s) and validated
against their ``defaults`` (a typo gets "Did you mean ...?").
"""

from __future__ import annotations

import argparse
from typing import Any, Callable

from fednlp_bench.hints import closest_hint


class RegistryNames:
    """``str()`` gives ``a | b | c`` of a registry, computed on first display."""

    def __init__(self, load: Callable[[], Any]) -> None:
        self._load = load

    def __str__(self) -> str:
        return self._load().help()


class SchemesTaking:
    """``str()`` gives the schemes whose parameters include ``param`` (for a scheme option's help)."""

    def __init__(self, param: str) -> None:
        self.param = param

    def __str__(self) -> str:
        reg = schemes()
        return ", ".join(n for n in reg.names() if self.param in reg[n].param_specs)


def add_scheme_option(group: Any, flag: str, param: str, help: str, **kwargs: Any) -> argparse.Action:
    """A scheme-parameter option whose help ends with the schemes that take it (``%(schemes)s``)."""
    action = group.add_argument(flag, help=f"{help} (%(schemes)s)", **kwargs)
    action.schemes = SchemesTaking(param)  # type: ignore[attr-defined]
    return action


def algorithms() -> Any:
    from fednlp_bench.algorithms.registry import ALGORITHMS

    return ALGORITHMS


def tasks() -> Any:
    from fednlp_bench.tasks.registry import TASKS

    return TASKS


def schemes() -> Any:
    from fednlp_bench.partitioners import PARTITIONERS

    return PARTITIONERS


def add_named(group: Any, flag: str, load: Callable[[], Any], help: str, **kwargs: Any) -> argparse.Action:
    """An option whose help lists a registry's names (write ``%(names)s`` where they go)."""
    action = group.add_argument(flag, help=help, **kwargs)
    action.names = RegistryNames(load)  # type: ignore[attr-defined]
    return action


def algorithm_flags(extra: list[str]) -> dict[str, Any]:
    """Unknown ``--some-param VALUE`` (or ``--some-param=VALUE``) pairs -> ``{"some_param": value}`` (1e-3: a float)."""
    from fednlp_bench.scalars import parse_scalar

    params: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        token = extra[i]
        if not token.startswith("--") or len(token) < 3:
            raise ValueError(f"unexpected argument {token!r}")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise ValueError(f"unknown option {token!r} (an algorithm parameter needs a value: {token} VALUE)")
            value = extra[i + 1]
            i += 1
        params[key.replace("-", "_")] = parse_scalar(value)
        i += 1
    return params


def check_flag_params(params: dict[str, Any], classes: dict[str, Any], parser_flags: list[str]) -> None:
    """Every ``--NAME`` read as an algorithm parameter must belong to one of ``classes`` (name -> Strategy class)."""
    taken = sorted({k for cls in classes.values() for k in cls.defaults})
    for key in params:
        if key not in taken:
            flag = "--" + key.replace("_", "-")
            options = parser_flags + ["--" + k.replace("_", "-") for k in taken]
            raise ValueError(
                f"unknown option {flag}: not an option of this command and not a parameter of "
                f"{', '.join(sorted(classes))} (parameters: {taken or 'none'}).{closest_hint(flag, options)}"
            )
