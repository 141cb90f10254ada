"""One name -> class registry for every kind of plug-in, and the one way they declare their parameters.

Each kind used to keep its own dict and its own "did you mean" code, and the
CLI help, the leaderboard labels and the family groupings were typed out again
by hand. A :class:`Registry` is the single list: it registers classes under
their ``name``, refuses an unknown name with the closest suggestion, can load
the built-ins lazily (so ``--help`` stays fast), optionally imports
``package.module:Class`` plug-ins, and answers ``labels``/``family``/``help``
from the classes themselves, so nothing is written twice.

It reads these optional class attributes: ``name`` (required), ``label`` (the
human name shown in tables), ``family`` (a grouping such as ``"fedopt"``) and
``param_specs`` (the class's parameters, see below).

Every registered family (schemes, algorithms, trainable modes, tasks, sampling
policies, privacy mechanisms, backends) and the run config's own fields declare
their parameters as :class:`Param` objects, so type checks, range checks,
"did you mean" hints, CLI flags, ``--help`` text and the docs' parameter
tables are all read from one declaration (``commands/flags.py`` builds the
flags, :func:`param_table` the docs rows).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, Sequence, TypeVar

from fednlp_bench.hints import closest_hint
from fednlp_bench.scalars import typed_value

C = TypeVar("C", bound=type)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: ``Param.default`` of a parameter that must be given.
REQUIRED: Any = _Required()
#: A check: the value -> a problem phrase ("must be > 0") or None when the value is fine.
Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Param:
    """One declared parameter: what it is called, its type and default, its check and its help line.

    ``type`` is ``int``, ``float``, ``bool``, ``str`` or ``list`` (a list of
    strings; one string is read as a one-item list). A ``None`` default means
    the parameter may be null. ``choices`` is a tuple or a callable giving
    the names (a registry's). ``flag`` overrides the CLI spelling the flag
    builder derives from ``name``; ``cli=False`` keeps the parameter off the
    command line (YAML or API only). ``dict`` is a mapping (``KEY=VALUE``
    items on the command line), ``object`` any value.
    """

    name: str
    type: type
    default: Any = REQUIRED
    check: Check | None = None
    help: str = ""
    choices: tuple[Any, ...] | Callable[[], Sequence[Any]] | None = None
    flag: str | None = None
    cli: bool = True
    #: None is allowed although the default is not None (``local_epochs``: null when local_steps is set).
    null: bool = False
    #: Names shown in ``--help`` (``%(names)s``) but not enforced (a registry that also takes plug-ins).
    listed: Callable[[], Sequence[Any]] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def options(self) -> tuple[Any, ...] | None:
        return tuple(self.choices()) if callable(self.choices) else self.choices

    def problem(self, value: Any) -> tuple[Any, str | None]:
        """(the value as its type reads it, the problem phrase or None); 2e3 for an int reads as 2000."""
        if value is None and (self.default is None or self.null):
            return None, None
        value, problem = typed_value(self.type, value)
        if problem:
            return value, problem
        options = self.options()
        if options is not None and value not in options:
            shown = [o for o in options if o is not None]
            unset = " (or leave it unset)" if None in options else ""
            return value, f"is not supported.{closest_hint(str(value), [str(o) for o in shown])} Choose one of {shown}{unset}"
        if self.check is not None:
            found = self.check(value)
            if found:
                return value, found
        return value, None

    def cli_flag(self) -> str:
        """``--merge-below`` for ``merge_below``; a boolean that defaults to true is switched off: ``--no-balance``."""
        if self.flag is not None:
            return self.flag
        stem = self.name.replace("_", "-")
        return f"--no-{stem}" if self.type is bool and self.default is True else f"--{stem}"

    def default_text(self) -> str:
        return "required" if self.required else repr(self.default) if isinstance(self.default, str) else str(self.default)


def declare(*params: Param) -> dict[str, Param]:
    """The ``param_specs`` of a class: its parameters by name, in declaration order."""
    out: dict[str, Param] = {}
    for param in params:
        if param.name in out:
            raise ValueError(f"parameter {param.name!r} is declared twice")
        out[param.name] = param
    return out


def resolve_params(
    specs: Mapping[str, Param],
    given: Mapping[str, Any] | None,
    *,
    owner: str,
    prefix: str = "",
    bad: str = "{prefix}{name}={value!r} {problem}",
    error: type[Exception] = ValueError,
    normalize: bool = True,
) -> dict[str, Any]:
    """Every declared parameter's value (given or default), each checked; unknown names get the closest one.

    ``owner`` names whose parameters these are in the unknown-name message
    ("algorithm 'fedprox'"); ``bad`` formats a bad value (``prefix`` is e.g.
    ``"trainable_params."``). ``normalize=False`` keeps the given values as
    written (an int ``1`` stays ``1``) where they are stored as given.
    """
    given = dict(given or {})
    if not isinstance(given, dict):
        raise error(f"{owner}: parameters must be a mapping, got {given!r}")
    valid = list(specs)
    for key in given:
        if key not in specs:
            raise error(f"{owner} has no parameter {key!r}.{closest_hint(key, valid)} "
                        f"Its parameters: {', '.join(valid) if valid else 'none'}")
    missing = [name for name, p in specs.items() if p.required and name not in given]
    if missing:
        raise error(f"{owner} needs {prefix.rstrip('.') or 'parameters'} {missing}, e.g. {{{missing[0]}: ...}}")
    out: dict[str, Any] = {}
    for name, param in specs.items():
        raw = given.get(name, param.default)
        value, problem = param.problem(raw)
        if problem:
            raise error(bad.format(prefix=prefix, name=name, value=value if normalize else raw, problem=problem))
        out[name] = value if normalize else raw
    return out


def param_table(specs: Mapping[str, Param]) -> str:
    """``name (default): help`` lines of one class's parameters, for the docs and ``--help`` listings."""
    return "; ".join(f"{p.name}={p.default_text()}" + (f" ({p.help})" if p.help else "") for p in specs.values())


def param_specs_of(cls: Any) -> Mapping[str, Param]:
    """A class's declared parameters (``{}`` for a class that declares none)."""
    return getattr(cls, "param_specs", None) or {}


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

    def params(self, name: str) -> Mapping[str, Param]:
        """The declared parameters of entry ``name``."""
        return param_specs_of(self.lookup(name))

    def all_params(self) -> dict[str, list[tuple[str, Param]]]:
        """Parameter name -> [(entry, its Param)] over every entry (what flag builders and docs tables read)."""
        out: dict[str, list[tuple[str, Param]]] = {}
        for entry in self.names():
            for pname, param in param_specs_of(self._classes[entry]).items():
                out.setdefault(pname, []).append((entry, param))
        return out

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
