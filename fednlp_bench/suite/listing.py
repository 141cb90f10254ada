"""``fednlp-bench suite CONFIG --list-runs``: the current stage's pending runs as ``fednlp-bench run`` commands.

Any scheduler (Slurm arrays, Ray, GNU parallel, ``xargs -P``) can execute a
suite this way; the records the commands write are the only interface, and
the next ``fednlp-bench suite`` call skips them, selects and lists (or runs)
the next stage. Each command points to its run's canonical config, written as
YAML to ``<runs_dir>/.suite/pending/<run id>.yaml``, so the command makes the
record ``suite`` would make: the same config, config hash and run id (the
engine names the folder from the config). A run a killed job left with a
checkpoint is listed with ``--resume``.

The listing is taken where a stage would start executing (``execute_runs``),
so it is exactly the batch the stage logic chose, whatever that logic is.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.engine.run.run_id import run_id_of
from fednlp_bench.suite.run_one import housekeeping_dir


class RunsListed(Exception):
    """Raised by :meth:`RunLister.take` to stop the stage once its batch is listed (not an error)."""

    def __init__(self, commands: list[str], labels: list[str]) -> None:
        super().__init__(f"{len(commands)} run(s) listed")
        self.commands = commands
        self.labels = labels


@dataclass
class RunLister:
    """Turns a batch of planned runs into one self-contained command each; options go into every command."""

    threads: int | None = None
    device: str | None = None
    executable: str = "fednlp-bench"
    written: list[Path] = field(default_factory=list)

    def take(self, todo: Sequence[Any], runs_dir: str | Path, keep_checkpoints: str) -> None:
        commands = [self.command(run.config, runs_dir, keep_checkpoints) for run in todo]
        raise RunsListed(commands, [run.label for run in todo])

    def command(self, config: dict[str, Any], runs_dir: str | Path, keep_checkpoints: str) -> str:
        import yaml

        from fednlp_bench.engine.run.checkpoint import has_checkpoint

        runs_dir = Path(runs_dir).resolve()
        run_id = run_id_of(config)
        path = housekeeping_dir(runs_dir, "pending") / f"{run_id}.yaml"
        atomic_write_text(path, f"# {run_id}: written by fednlp-bench suite --list-runs\n"
                          + yaml.safe_dump(config, sort_keys=True))
        self.written.append(path)
        words = [self.executable, "run", "--config", str(path), "--runs-dir", str(runs_dir),
                 "--keep-checkpoints", "none" if keep_checkpoints == "none" else "last", "--no-progress"]
        if has_checkpoint(runs_dir / run_id):
            words.append("--resume")
        if self.threads is not None:
            words += ["--threads", str(self.threads)]
        if self.device is not None:
            words += ["--device", self.device]
        return shlex.join(words)
