"""Per-client persistent state on disk (SCAFFOLD's control variates, FedDyn's gradient memory).

A client's state is as large as the model, so 1,000 clients cannot keep it
in RAM; one safetensors file per client, loaded for its turn and written
back after, keeps memory at O(model). The files follow the round
checkpoints so that a resumed run sees exactly the states an uninterrupted
run would:

* during round r, clients write to ``client_state/pending_r{r}/``;
* after round r's checkpoint is written, :meth:`commit` moves those files
  into ``client_state/current/`` (one ``os.replace`` each);
* on resume from the round-R checkpoint, :meth:`recover` finishes a commit
  of ``pending_rR`` that a kill interrupted and drops any later pending round.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from fednlp_bench.atomic import atomic_write_bytes

DIRNAME = "client_state"
_PENDING = re.compile(r"^pending_r(\d+)$")


class ClientStateStore:
    """One file per client under ``<run_dir>/client_state``; safe to share between processes of one run."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.root = Path(run_dir) / DIRNAME
        self.current = self.root / "current"

    def _file(self, folder: Path, cid: int) -> Path:
        return folder / f"client_{int(cid):06d}.safetensors"

    def pending(self, rnd: int) -> Path:
        return self.root / f"pending_r{int(rnd)}"

    def load(self, cid: int) -> dict[str, torch.Tensor]:
        """The client's committed state, or ``{}`` before its first participation."""
        path = self._file(self.current, cid)
        return load_file(str(path)) if path.is_file() else {}

    def stage(self, rnd: int, cid: int, state: dict[str, torch.Tensor]) -> None:
        """Write the state a client ended round ``rnd`` with (visible to ``load`` only after ``commit(rnd)``)."""
        tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
        atomic_write_bytes(self._file(self.pending(rnd), cid), save(tensors))

    def commit(self, rnd: int) -> None:
        """Make round ``rnd``'s staged states current (called after that round's checkpoint is on disk)."""
        folder = self.pending(rnd)
        if not folder.is_dir():
            return
        self.current.mkdir(parents=True, exist_ok=True)
        for path in sorted(folder.iterdir()):
            os.replace(path, self.current / path.name)
        folder.rmdir()

    def recover(self, checkpoint_round: int) -> None:
        """Bring the states in line with the round-``checkpoint_round`` checkpoint a run resumes from."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            match = _PENDING.match(folder.name)
            if not match:
                continue
            rnd = int(match.group(1))
            if rnd <= checkpoint_round:
                self.commit(rnd)  # the checkpoint was written; the kill came before the commit finished
            else:
                shutil.rmtree(folder)  # a round that never reached its checkpoint
