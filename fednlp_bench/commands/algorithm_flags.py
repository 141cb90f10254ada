"""Algorithm parameters as flags: any ``--name VALUE`` the parser does not know is one.

Algorithms are the one family whose flags are not built in advance (a
plug-in named by ``--algorithm module:Class`` brings its own): the unknown
flags are read here and checked against the chosen algorithms' declared
parameters (``Strategy.param_specs``), so a typo gets "Did you mean ...?".
The other families' flags are built by ``commands/flags.py``.
"""

from __future__ import annotations

from typing import Any

from fednlp_bench.hints import closest_hint


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
