"""Run options: what changes where and how a run executes, never its result (so never a config field).

Declared as :class:`~fednlp_bench.registry.Param` for ``fednlp-bench run``
and ``compare`` (flags and ``--help``) and checked by the engine's entry point;
a backend's own options (FedML's processes, ...) are declared by the backend
(``fednlp_bench/execution.py``).
"""

from __future__ import annotations

from typing import Any

from fednlp_bench.checks import at_least
from fednlp_bench.registry import Param, declare

#: last: the newest checkpoint (resume, inspect); none: drop the weights when the run finishes, the record
#: stays; all: one checkpoint per round.
KEEP_CHECKPOINTS = ("last", "none", "all")
DEVICE_HELP = "auto | cpu | cuda | cuda:N | mps"

RUN_OPTIONS: dict[str, Param] = declare(
    Param("config", str, None, help="YAML file of RunConfig fields (flags override it)"),
    Param("partition_file", str, None, help="saved partition (.json/.npz from `fednlp-bench partition`)",
          flag="--partition"),
    Param("run_id", str, None, help="folder name under --runs-dir (default: <task>-<algorithm>-<config hash>-s<seed>)"),
    Param("resume", bool, False, help="continue the run in --runs-dir/--run-id from its last checkpoint"),
    Param("device", str, None, help=f"where to compute: {DEVICE_HELP} (default: auto)"),
    Param("frozen_cache_dir", str, None, help="folder of the frozen-bottom cache (top_layers with cache=true; "
          "default: $FEDNLP_CACHE_DIR/frozen_bottom)"),
    Param("runs_dir", str, "runs", help="where run folders go (default: runs/)"),
    Param("keep_checkpoints", str, None, help="model weights kept: last checkpoint (run's default; ~90-260 MB with "
          "MiniLM), none (drop them when the run finishes; compare's default; the record stays), all (one per "
          "round)", choices=(*KEEP_CHECKPOINTS, None)),
    Param("no_progress", bool, False, help="no progress bars: one line per phase and round instead (the default "
          "when not on a terminal)"),
    Param("threads", int, None, at_least(1), "torch CPU threads (default: torch's choice; 1 is faster on an "
          "oversubscribed machine)"),
)


def check_keep_checkpoints(value: Any) -> str:
    """``keep_checkpoints`` of ``run_experiment`` (None: its default, ``last``)."""
    value = "last" if value is None else value
    _, problem = RUN_OPTIONS["keep_checkpoints"].problem(value)
    if problem:
        raise ValueError(f"keep_checkpoints={value!r} {problem}")
    return str(value)
