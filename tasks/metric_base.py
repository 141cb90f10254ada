"""What a metric declares, as HF ``evaluate`` modules do: its inputs, its outputs and which way each is better.

A metric used to check its inputs by hand (or not at all), and "higher is
better" was a convention every reader of a score had to know. Here a metric
declares both: :class:`Input` says what each argument holds (the type of each
item, and of each item's entries for sequences), ``outputs`` maps every score
it returns to :data:`HIGHER` or :data:`LOWER`. :meth:`Metric.__call__` checks
the inputs once against the declaration (same number of items everywhere,
each item of the declared type, aligned sequences of equal length) with a
one-line error naming the metric, the input and the item, before anything is
computed; the subclass's ``compute`` only computes.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

_NONE = object()
#: Which way a score is better.
HIGHER = "higher"
LOWER = "lower"


@dataclass(frozen=True)
class Input:
    """One argument of a metric: a sequence with one item per example."""

    name: str
    #: What each item is: int, str, or list (a sequence of ``entries``); a tuple allows several.
    item: type | tuple[type, ...]
    #: For list items: what each entry is (None: anything).
    entries: type | None = None
    help: str = ""


def _kind_ok(value: Any, kind: type) -> bool:
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, Sequence) and not isinstance(value, str)
    return isinstance(value, kind)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({"list": "a list"}.get(k.__name__, k.__name__) for k in kinds)


class Metric:
    """A metric: declared inputs and outputs; ``metric(*inputs, **options)`` checks, then computes."""

    name: ClassVar[str]
    inputs: ClassVar[tuple[Input, ...]]
    #: Every score ``compute`` returns -> HIGHER or LOWER (which way is better).
    outputs: ClassVar[Mapping[str, str]]
    #: Names of two list inputs whose items must have equal lengths (tagging: one predicted tag per gold tag).
    aligned: ClassVar[tuple[str, str] | None] = None

    def compute(self, **inputs: Any) -> dict[str, float]:
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        names = [i.name for i in self.inputs]
        if len(args) > len(names):
            raise TypeError(f"{self.name}: takes {len(names)} inputs ({', '.join(names)}), got {len(args)}")
        values = dict(zip(names, args))
        options = {k: v for k, v in kwargs.items() if k not in names}
        values.update({k: v for k, v in kwargs.items() if k in names})
        missing = [n for n in names if n not in values]
        if missing:
            raise TypeError(f"{self.name}: missing input(s) {missing} (inputs: {', '.join(names)})")
        self.check(values)
        scores = self.compute(**values, **options)
        if set(scores) != set(self.outputs):
            raise RuntimeError(f"{self.name}: computed {sorted(scores)} but declares {sorted(self.outputs)}")
        return scores

    def check(self, values: Mapping[str, Any]) -> None:
        """Every input: a sequence, as long as the first, each item (and entry) of its declared type."""
        first = self.inputs[0].name
        for spec in self.inputs:
            value = values[spec.name]
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise ValueError(f"{self.name}: {spec.name} must be a sequence with one item per example, "
                                 f"got {type(value).__name__}")
            if len(value) != len(values[first]):
                raise ValueError(f"{self.name}: {len(values[first])} {first} but {len(value)} {spec.name}; "
                                 "give one of each per example")
            for i, item in enumerate(value):
                self._check_item(spec, i, item)
        if self.aligned is not None:
            a, b = self.aligned
            for i, (x, y) in enumerate(zip(values[a], values[b])):
                if len(x) != len(y):
                    raise ValueError(f"{self.name}: {a} and {b} must have the same lengths; example {i} has "
                                     f"{len(x)} and {len(y)}")

    def _check_item(self, spec: Input, i: int, item: Any) -> None:
        kinds = spec.item if isinstance(spec.item, tuple) else (spec.item,)
        if not any(_kind_ok(item, k) for k in kinds):
            raise ValueError(f"{self.name}: {spec.name}[{i}] is {type(item).__name__} {item!r:.40}, "
                             f"expected {_kind_name(spec.item)}")
        if spec.entries is not None and _kind_ok(item, list):
            bad = next((e for e in item if not _kind_ok(e, spec.entries)), _NONE)
            if bad is not _NONE:
                raise ValueError(f"{self.name}: {spec.name}[{i}] holds {type(bad).__name__} {bad!r:.40}, "
                                 f"expected {_kind_name(spec.entries)} entries")

    def better(self, score: str, a: float, b: float) -> bool:
        """Is ``a`` strictly better than ``b`` on ``score``?"""
        return a > b if self.outputs[score] == HIGHER else a < b
