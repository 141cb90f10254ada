"""Why a ``--resume`` cannot continue, in terms a user can act on.

The default run id embeds the config hash, so resuming with one changed
setting (``--rounds 4`` on a 3-round run) looks in another folder. Instead of
"no checkpoint", these helpers name the changed fields (old -> new) and the
existing run that differs only in them, with the command that continues it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from fednlp_bench.engine.run.checkpoint import STATE_FILENAME, checkpoint_dir
from fednlp_bench.results.record import RECORD_FILENAME


def config_changes(saved: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """``["rounds: 3 -> 4", "partition.params.alpha: 0.5 -> 0.1"]`` (nested mappings flattened)."""
    out: list[str] = []
    for key in sorted(set(saved) | set(now)):
        old, new = saved.get(key), now.get(key)
        if old == new:
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            out += [f"{key}.{change}" for change in config_changes(old, new)]
        else:
            out.append(f"{key}: {json.dumps(old)} -> {json.dumps(new)}")
    return out


def saved_config(run_dir: Path) -> tuple[dict[str, Any], str] | None:
    """(config, "finished" | "partial after round k") of a run folder, or None if it holds no run."""
    record = run_dir / RECORD_FILENAME
    state = checkpoint_dir(run_dir) / STATE_FILENAME
    try:
        if record.is_file():
            return dict(json.loads(record.read_text())["config"]), "finished"
        if state.is_file():
            meta = json.loads(state.read_text())
            return dict(meta["config"]), f"partial, after round {meta.get('round', '?')}"
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return None


def nearest_runs(runs_dir: Path, config: Mapping[str, Any], limit: int = 3) -> list[tuple[str, str, list[str]]]:
    """Runs in ``runs_dir`` of the same task and algorithm, fewest changed fields first: (id, state, changes)."""
    if not runs_dir.is_dir():
        return []
    found: list[tuple[str, str, list[str]]] = []
    for run_dir in sorted(p for p in runs_dir.iterdir() if p.is_dir()):
        got = saved_config(run_dir)
        if got is None:
            continue
        saved, state = got
        if saved.get("task") != config.get("task") or saved.get("algorithm") != config.get("algorithm"):
            continue
        changes = config_changes(saved, config)
        if changes:
            found.append((run_dir.name, state, changes))
    found.sort(key=lambda item: (len(item[2]), item[0]))
    return found[:limit]


def no_run_message(runs_dir: Path, run_id: str, config: Mapping[str, Any], explicit_id: bool) -> str:
    """The error of a ``--resume`` whose run folder holds no run."""
    message = f"cannot resume: no run named {run_id!r} in {runs_dir}"
    if not explicit_id:
        message += " (the default run id follows the settings, so a changed setting names another run)"
    near = nearest_runs(runs_dir, config)
    if not near:
        return message + "; drop --resume to start it"
    lines = [message + ". Runs that differ only in these settings:"]
    for other, state, changes in near:
        lines.append(f"  {other} ({state}): {'; '.join(changes)}")
    best = near[0][0]
    lines.append(
        f"To continue {best}, resume it with its own settings: --run-id {best} --resume (and its values above); "
        f"to train with the new settings, drop --resume"
    )
    return "\n".join(lines)


def changed_config_message(run_dir: Path, saved: Mapping[str, Any], now: Mapping[str, Any]) -> str:
    """The error of a ``--resume`` of an existing run with other settings."""
    changes = config_changes(saved, now)
    return (
        f"cannot resume {run_dir}: it was made with other settings ({'; '.join(changes)}, as saved -> as given). "
        f"Resume it with its own settings (--run-id {run_dir.name} --resume and the saved values), "
        f"or drop --resume and pick another --run-id to train with the new ones"
    )
