"""Config files: reading a YAML config and picking one task's fields out of a multi-task config.

Kept apart from :mod:`fednlp_bench.config` (the fields and their validation),
which passes its field names in, so this module imports nothing of it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping, Sequence

from fednlp_bench.hints import closest_hint
from fednlp_bench.scalars import load_yaml

#: Top-level YAML section read only by ``fednlp-bench compare`` (ignored by ``run``).
COMPARE_SECTION = "compare"
#: Key of a multi-task config's list of per-task entries (see :func:`select_task`).
TASKS_SECTION = "tasks"


def load_yaml_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a YAML config; return (run fields, optional ``compare:`` section)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = load_yaml(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of field -> value, got {type(data).__name__}")
    compare = data.pop(COMPARE_SECTION, None) or {}
    if not isinstance(compare, dict):
        raise ValueError(f"config file {path}: '{COMPARE_SECTION}' must be a mapping (algorithms, params)")
    return data, compare


def config_tasks(data: Mapping[str, Any], field_names: Sequence[str], source: str = "config") -> list[str]:
    """The task names of a multi-task config (its ``tasks:`` list), in order; ``[]`` for a one-task config.

    A multi-task config holds the shared fields at the top and one entry per
    task that overrides them (``{task: qa, data: squad, lr: 1e-4}``): the
    quickstart benchmarks all four tasks from one file this way.
    """
    entries = data.get(TASKS_SECTION)
    if entries is None:
        return []
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: '{TASKS_SECTION}' must be a non-empty list of entries such as {{task: qa}}")
    names: list[str] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("task"), str):
            raise ValueError(f"{source}: {TASKS_SECTION}[{i}] must be a mapping with a 'task' name, got {entry!r}")
        unknown = sorted(set(entry) - set(field_names) - {COMPARE_SECTION})
        if unknown:
            raise ValueError(f"{source}: {TASKS_SECTION}[{i}] has unknown field(s) {unknown}."
                             f"{closest_hint(unknown[0], [*field_names, COMPARE_SECTION])}")
        if not isinstance(entry.get(COMPARE_SECTION, {}), Mapping):
            raise ValueError(f"{source}: {TASKS_SECTION}[{i}].{COMPARE_SECTION} must be a mapping (algorithms, params), "
                             f"got {entry[COMPARE_SECTION]!r}")
        names.append(entry["task"])
    if len(set(names)) != len(names):
        raise ValueError(f"{source}: '{TASKS_SECTION}' lists a task twice ({names}); one entry per task")
    if "task" in data:
        raise ValueError(f"{source}: give either 'task' or a '{TASKS_SECTION}' list, not both")
    return names


def select_task(data: Mapping[str, Any], task: str | None, field_names: Sequence[str],
                source: str = "config") -> dict[str, Any]:
    """The run fields of one task of a multi-task config (the entry over the shared fields).

    A one-task config comes back unchanged. An entry's ``partition`` updates the
    shared one key by key; naming another scheme without ``params`` drops the
    shared scheme's params (alpha means nothing to quantity_skew).
    """
    names = config_tasks(data, field_names, source)
    if not names:
        return dict(data)
    if task is None:
        # `run --config` on the four-task quickstart: the first entry, said out loud (compare runs them all).
        task = names[0]
        if len(names) > 1:
            import logging

            logging.getLogger("fednlp_bench.config").info(
                "%s lists %d tasks (%s); this run uses the first, %s (choose another with --task)",
                source, len(names), ", ".join(names), task)
    if task not in names:
        raise ValueError(f"{source} has no entry for task {task!r}.{closest_hint(task, names)} It lists {names}")
    entry = _task_entry(data, task)
    entry.pop(COMPARE_SECTION, None)  # read by compare (task_compare_section), never a run field
    merged = {k: copy.deepcopy(v) for k, v in data.items() if k != TASKS_SECTION}
    part_entry = entry.pop("partition", None)
    merged.update(copy.deepcopy(entry))
    if part_entry is not None:
        if not isinstance(part_entry, Mapping):
            raise ValueError(f"{source}: the partition of task {task!r} must be a mapping, got {part_entry!r}")
        part = dict(merged.get("partition") or {})
        if "scheme" in part_entry and part_entry["scheme"] != part.get("scheme") and "params" not in part_entry:
            part["params"] = {}
        part.update(copy.deepcopy(dict(part_entry)))
        merged["partition"] = part
    return merged


def task_compare_section(data: Mapping[str, Any], task: str | None, compare: Mapping[str, Any],
                         field_names: Sequence[str], source: str = "config") -> dict[str, Any]:
    """The ``compare:`` section for one task: the top-level one, updated by the task entry's own ``compare:``.

    Why: an algorithm's server-side settings may need to differ per task (FedAdam's server learning rate
    suits a 20-class head and a token tagger differently), and ``algorithm_params`` in a task entry would
    also reach ``run`` with an algorithm that lacks them. An entry's ``params`` update the top-level
    params algorithm by algorithm, key by key; its ``algorithms`` replace the list.
    """
    names = config_tasks(data, field_names, source)
    merged = copy.deepcopy(dict(compare))
    if not names:
        return merged
    chosen = names[0] if task is None else task
    own = copy.deepcopy(dict(_task_entry(data, chosen).get(COMPARE_SECTION) or {})) if chosen in names else {}
    if "params" in own:
        params, top = own.pop("params"), merged.get("params") or {}
        if not isinstance(params, Mapping) or not isinstance(top, Mapping):
            raise ValueError(f"{source}: compare.params of task {chosen!r} must map algorithm -> parameters, "
                             f"got {params!r}")
        merged["params"] = dict(top)
        for algo, values in params.items():
            if not isinstance(values, Mapping):
                raise ValueError(f"{source}: compare.params.{algo} of task {chosen!r} must be a mapping of "
                                 f"parameter -> value, got {values!r}")
            merged["params"][algo] = {**dict(top.get(algo) or {}), **values}
    merged.update(own)
    return merged


def _task_entry(data: Mapping[str, Any], task: str) -> dict[str, Any]:
    """A copy of the ``tasks:`` entry named ``task`` (the caller has checked that it is listed)."""
    return dict(next(e for e in data[TASKS_SECTION] if e["task"] == task))
