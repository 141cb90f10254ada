"""NLP tasks (classification, sequence tagging, extractive QA, generation) behind one interface."""

from fednlp_bench.tasks.base import Task
from fednlp_bench.tasks.registry import get_task, get_task_class, register_task, task_names

__all__ = ["Task", "get_task", "get_task_class", "register_task", "task_names"]
