"""Name -> task class. A new task registers itself with :func:`register_task`."""

from __future__ import annotations

import difflib
from typing import TypeVar

from fednlp_bench.tasks.base import Task

_TASKS: dict[str, type[Task]] = {}
T = TypeVar("T", bound=type[Task])


def register_task(cls: T) -> T:
    if cls.name in _TASKS and _TASKS[cls.name] is not cls:
        raise ValueError(f"task name {cls.name!r} is already registered by {_TASKS[cls.name].__qualname__}")
    _TASKS[cls.name] = cls
    return cls


def task_names() -> list[str]:
    _import_builtins()
    return sorted(_TASKS)


def get_task_class(name: str) -> type[Task]:
    _import_builtins()
    if name not in _TASKS:
        close = difflib.get_close_matches(name, list(_TASKS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(_TASKS)}.{hint}")
    return _TASKS[name]


def get_task(name: str, **kwargs: object) -> Task:
    return get_task_class(name)(**kwargs)  # type: ignore[arg-type]


def _import_builtins() -> None:
    # Imported lazily so `import fednlp_bench.tasks` stays cheap.
    from fednlp_bench.tasks import builtin  # noqa: F401
