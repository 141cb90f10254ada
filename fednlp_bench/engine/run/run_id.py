"""Run ids: the folder name of a run under ``runs/``, derived from its config when not given.

Kept apart from the runner so the FedML launcher, ``compare`` and the suite
can name a run without importing the engine loop.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from fednlp_bench.config import RunConfig
from fednlp_bench.results.record import config_hash

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def default_run_id(config: RunConfig) -> str:
    """``<task>-<algorithm>-<config hash>-s<seed>``: the same config always lands in the same folder."""
    return run_id_of(config.to_dict())


def run_id_of(canonical: Mapping[str, Any]) -> str:
    """:func:`default_run_id` of a canonical config dict (``RunConfig.to_dict()``), without rebuilding it.

    The suite plans hundreds of runs from validated dicts; rebuilding each as a
    RunConfig only to name it would re-run every validation.
    """
    algo = re.sub(r"[^A-Za-z0-9_.-]", "_", canonical["algorithm"])
    return f"{canonical['task']}-{algo}-{config_hash(dict(canonical))[:8]}-s{canonical['seed']}"


def check_run_id(run_id: str) -> str:
    if not _RUN_ID_RE.match(run_id):
        raise ValueError(f"run id {run_id!r} may only contain letters, digits, '.', '_' and '-'")
    return run_id
