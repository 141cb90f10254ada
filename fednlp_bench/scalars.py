"""Numbers as researchers write them: one reading of ``1e-3`` for YAML files and command lines alike.

PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent:
``yaml.safe_load("lr: 1e-3")`` gives the *string* ``"1e-3"`` and ``5E-5`` is a
string too, while a paper, a sweep script and Python all write them. Every
config file, ``KEY=VALUE`` flag and algorithm flag (``--server-lr 1e-3``) is
read through :func:`load_yaml` / :func:`parse_scalar`, whose loader resolves
the YAML 1.2 float forms (``1e-3``, ``5E-5``, ``1.0e-3``, ``.5``, ``3.``) as
floats, and numeric argparse options use :func:`number` / :func:`integer`,
which parse through the same loader. So a value means the same wherever it
is written. Integer fields accept an integral float (``max_train_examples:
2e3``) through :func:`integral`, as ints.
"""

from __future__ import annotations

import argparse
import math
import numbers
import re
from typing import Any, Mapping

import yaml

#: YAML 1.2 core-schema floats plus PyYAML's own 1.1 forms (underscores, .inf, .nan).
_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class ScalarLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads ``1e-3``-style numbers as floats (see the module docstring)."""


# Put the float rule before the others for these first characters, so "1e3" is a float, not a string.
ScalarLoader.yaml_implicit_resolvers = {
    key: list(value) for key, value in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "-+0123456789.":
    ScalarLoader.yaml_implicit_resolvers.setdefault(_first, []).insert(0, ("tag:yaml.org,2002:float", _FLOAT))


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` with numbers read as :class:`ScalarLoader` reads them."""
    return yaml.load(text, Loader=ScalarLoader)  # noqa: S506 - a SafeLoader subclass


def parse_scalar(text: str) -> Any:
    """One command-line value read as a YAML scalar: ``1e-3`` -> 0.001, ``true`` -> True, ``abc`` -> 'abc'."""
    return load_yaml(text)


def number(text: str) -> float:
    """argparse ``type`` of a real-valued option: ``1e-3``, ``5E-5``, ``1.0e-3``, ``0.001``, ``3``."""
    value = parse_scalar(text) if isinstance(text, str) else text
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number (write e.g. 0.001 or 1e-3)")
    return float(value)


def integer(text: str) -> int:
    """argparse ``type`` of an integer option; an integral float such as ``2e3`` is the integer 2000."""
    value = parse_scalar(text) if isinstance(text, str) else text
    whole = integral(value)
    if not isinstance(whole, int) or isinstance(whole, bool):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer (write e.g. 2000 or 2e3)")
    return whole


def integral(value: Any) -> Any:
    """An integral finite float (``2000.0`` from ``2e3``) as an int; anything else unchanged."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


# argparse names the type in its "invalid <type> value" message.
number.__name__ = "number"
integer.__name__ = "integer"


def typed_value(kind: type, value: Any) -> tuple[Any, str | None]:
    """(``value`` as a declared type reads it, the problem phrase or None): a Param's type check.

    ``int`` takes an integral float (2e3 reads as 2000), ``float`` a finite
    number, ``bool`` true/false (NumPy's too), ``str`` a non-empty string,
    ``dict`` a mapping, ``list`` names (one string is a one-item list),
    ``object`` anything.
    """
    if kind is int:
        value = integral(float(value)) if isinstance(value, numbers.Real) and not isinstance(
            value, (bool, numbers.Integral)) else value
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or type(value).__name__ == "bool_":
            return value, "must be an integer"
        value = int(value)
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or type(value).__name__ == "bool_":
            return value, "must be a number"
        value = float(value)
        if not math.isfinite(value):
            return value, "must be a finite number"
    elif kind is bool:
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            return value, "must be true or false"
        value = bool(value)
    elif kind is str:
        if not isinstance(value, str) or not value:
            return value, "must be a non-empty string"
    elif kind is dict:
        if not isinstance(value, Mapping):
            return value, "must be a mapping"
    elif kind is object:
        pass  # any value (a plug-in declared before Param: checked by the class itself)
    elif kind is list:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
            return value, "must be a non-empty list of names"
        value = list(value)
    return value, None
