"""Task name -> Task class: the one list behind ``--task`` and its help.

The built-in task modules never import this registry (it imports them, lazily,
so ``import fednlp_bench.tasks`` stays cheap); a new task is one module plus
one line in :func:`_builtins`, or :func:`register_task` from outside.
"""

from __future__ import annotations

from typing import Iterable, TypeVar

from fednlp_bench.registry import Registry
from fednlp_bench.tasks.base import Task

T = TypeVar("T", bound=type[Task])


def _builtins() -> Iterable[type[Task]]:
    from fednlp_bench.tasks import classification, generation, qa, tagging

    return (
        classification.ClassificationTask,
        tagging.TaggingTask,
        qa.QATask,
        generation.GenerationTask,
    )


TASKS: Registry[type[Task]] = Registry("task", Task, builtins=_builtins)


def register_task(cls: T) -> T:
    return TASKS.register(cls)


def task_names() -> list[str]:
    return TASKS.names()


def get_task_class(name: str) -> type[Task]:
    return TASKS.lookup(name)


def get_task(name: str, **kwargs: object) -> Task:
    return get_task_class(name)(**kwargs)  # type: ignore[arg-type]
