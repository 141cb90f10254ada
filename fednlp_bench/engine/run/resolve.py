"""Which run a call means: a new run folder, a checkpoint to resume, or a finished record to return.

Everything here reads only the run folder and the config, so a wrong
``--resume`` or a changed config fails before any data is loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from fednlp_bench.config import FIELDS_ADDED_LATER, RunConfig
from fednlp_bench.engine.run import checkpoint as ckpt
from fednlp_bench.engine.run import sources
from fednlp_bench.engine.run.resume_help import changed_config_message, no_run_message, saved_config
from fednlp_bench.engine.run.run_id import check_run_id, default_run_id
from fednlp_bench.results.record import RECORD_FILENAME, RunRecord


def resolve_run(
    config: RunConfig, runs_dir: str | Path, run_id: str | None, resume: bool, partition_file: str | Path | None
) -> tuple[RunConfig, str, Path, ckpt.Checkpoint | RunRecord | None]:
    """(config with a saved partition's spec, run id, run folder, checkpoint / finished record / None)."""
    if partition_file is not None:
        part_from_file = sources.load_partition_file(partition_file)  # spec only; the data check comes later
        config = config.replace(partition=sources.partition_spec_for_config(part_from_file))
    explicit_id = run_id is not None
    run_id = check_run_id(run_id or default_run_id(config))
    run_dir = Path(runs_dir) / run_id
    if resume:
        if saved_config(run_dir) is None:
            raise FileNotFoundError(no_run_message(Path(runs_dir), run_id, config.to_dict(), explicit_id))
        if (run_dir / RECORD_FILENAME).is_file():
            # A finished run (its checkpoint may have been deleted to save space): nothing to train.
            finished = RunRecord.load(run_dir)
            check_same_config(finished.config, config, run_dir)
            return config, run_id, run_dir, finished
        checkpoint = ckpt.load_checkpoint(run_dir)
        check_same_config(checkpoint.meta.get("config", {}), config, run_dir)
        return config, run_id, run_dir, checkpoint
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ValueError(
            f"run directory {run_dir} already exists; pass --resume to continue it, "
            f"or choose another --run-id / --runs-dir"
        )
    return config, run_id, run_dir, None


def check_same_config(saved: Mapping[str, Any], config: RunConfig, run_dir: Path) -> None:
    now = json.loads(json.dumps(config.to_dict()))
    # A checkpoint or record from before a field existed implicitly had its default value.
    saved = {**{k: v for k, v in FIELDS_ADDED_LATER.items() if k not in saved}, **saved}
    if saved == now:
        return
    raise ValueError(changed_config_message(run_dir, saved, now))
