"""Run ids: the folder name of a run under ``runs/``, derived from its config when not given.

Kept apart from the runner so the FedML launcher, ``compare`` and the suite
can name a run without importing the engine loop.
"""

from __future__ import annotations

import re

from fednlp_bench.config import RunConfig
from fednlp_bench.results.record import config_hash

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_run_id(config: RunConfig) -> str:
    """``<task>-<algorithm>-<config hash>-s<seed>``: the same config always lands in the same folder."""
    algo = re.sub(r"[^A-Za-z0-9_.-]", "_", config.algorithm)
    return f"{config.task}-{algo}-{config_hash(config.to_dict())[:8]}-s{config.seed}"


def check_run_id(run_id: str) -> str:
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} may only contain letters, digits, '.', '_' and '-'")
    return run_id
