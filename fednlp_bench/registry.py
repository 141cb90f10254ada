"""One name -> class registry for every kind of plug-in: tasks, partition schemes, algorithms.

Each kind used to keep its own dict and its own "did you mean" code, and the
CLI help, the leaderboard labels and the family groupings were typed out again
by hand. A :class:`Registry` is the single list: it registers classes under
their ``name``, refuses an unknown name with the closest suggestion, can load
the built-ins lazily (so ``--help`` stays fast), optionally imports
``package.module:Class`` plug-ins, and answers ``labels``/``family``/``help``
from the classes themselves, so nothing is written twice.

It reads these optional class attributes: ``name`` (required), ``label`` (the
human name shown in tables) and ``family`` (a grouping such as ``"fedopt"``).
"""

from __future__ import annotations

import importlib
from typing import Callable, Generic, Iterable, Iterator, Mapping, TypeVar

from fednlp_bench.hints import closest_hint

C = TypeVar("C", bound=type)


class Registry(Mapping[str, C], Generic[C]):
    """Registered classes by name, in registration order (the order tables and help list them)."""

    def __init__(
        self,
        kind: str,
        base: type | None = None,
        *,
        builtins: Callable[[], Iterable[type]] | None = None,
        error: type[Exception] = ValueError,
        importable: bool = False,
    ) -> None:
        self.kind = kind
        self.base = base
        self._builtins = builtins
        self._loaded = builtins is None
        self._error = error
        self.importable = importable
        self._classes: dict[str, C] = {}

    # ------------------------------------------------------------- register
    def register(self, cls: C) -> C:
        """Make ``cls`` available as ``cls.name`` (usable as a decorator); a taken name fails."""
        if self.base is not None and not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{cls!r} is not a {self.base.__name__} subclass, so it cannot be a {self.kind}")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{getattr(cls, '__qualname__', cls)} needs a class attribute `name` (the {self.kind} name)")
        existing = self._classes.get(name)
        if existing is not None and existing is not cls and existing.__qualname__ != cls.__qualname__:
            raise ValueError(f"{self.kind} name {name!r} is already registered by {existing.__qualname__}")
        self._classes[name] = cls
        return cls

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            assert self._builtins is not None
            for cls in self._builtins():
                self.register(cls)  # type: ignore[arg-type]

    # ------------------------------------------------------------- look up
    def lookup(self, name: str) -> C:
        """The class for ``name`` (or ``module:Class`` when importable); unknown names name the closest."""
        self._load()
        if isinstance(name, str) and name in self._classes:
            return self._classes[name]
        if self.importable and isinstance(name, str) and ":" in name:
            return self._import(name)
        extra = " or give 'package.module:ClassName'" if self.importable else ""
        raise self._error(
            f"unknown {self.kind} {name!r}.{closest_hint(name, self._classes)} Choose one of {self.names()}{extra}"
        )

    def find(self, name: str) -> C | None:
        """Like :meth:`lookup` but ``None`` for anything that cannot be resolved (records of absent plug-ins)."""
        try:
            return self.lookup(name)
        except Exception:  # noqa: BLE001 - an uninstalled plug-in is simply unknown here
            return None

    def _import(self, path: str) -> C:
        module_name, _, attr = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise self._error(f"{self.kind} {path!r}: cannot import module {module_name!r} ({err})") from err
        cls = getattr(module, attr, None)
        if cls is None:
            raise self._error(f"{self.kind} {path!r}: module {module_name!r} has no attribute {attr!r}")
        return self.register(cls)

    def names(self) -> list[str]:
        self._load()
        return list(self._classes)

    def label(self, name: str) -> str:
        """Human label: the class's *own* ``label`` (a subclass does not inherit its parent's), or the name."""
        cls = self.find(name)
        return str((vars(cls).get("label") if cls is not None else None) or name)

    def family(self, name: str) -> str | None:
        cls = self.find(name)
        return getattr(cls, "family", None)

    def order(self, name: str) -> int:
        """Registration position (built-ins first, in their listed order); unknown names sort last."""
        names = self.names()
        return names.index(name) if name in names else len(names)

    def help(self, sep: str = " | ") -> str:
        """``a | b | c`` for CLI help strings."""
        return sep.join(self.names())

    # ------------------------------------------------------------- Mapping
    def __getitem__(self, name: str) -> C:
        self._load()
        return self._classes[name]

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._classes

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._classes))

    def __len__(self) -> int:
        self._load()
        return len(self._classes)
