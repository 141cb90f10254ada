"""Starting this machine's ranks and waiting for them (bounded), then saying why a run failed.

The ranks run ``python -m fednlp_bench.backends.fedml.rank SPEC.json`` in the
FedML virtualenv: under ``mpirun`` (MPI) or as one process per rank (gRPC),
where the first rank to fail ends the others, so no half-dead run lingers.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from fednlp_bench.backends.fedml.environment import REPO_ROOT

#: The module every rank runs.
RANK_MODULE = "fednlp_bench.backends.fedml.rank"


def launch(plan: Any, spec: dict[str, Any], comm: str, overall: float) -> tuple[Path, int, float, Path]:
    """Write the spec, start this machine's ranks, wait (bounded); returns (work dir, exit code, seconds, log)."""
    work = Path(spec["work_dir"])
    if plan.hosts is not None:
        plan.hosts.write_ipconfig(spec["grpc_ipconfig"])
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    log_path = work / "fedml.log"
    threads = str(spec["torch_threads"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": threads, "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        if comm == "MPI":
            rc = _run_mpi(plan.py, spec_path, plan.processes, env, log, overall)
        else:
            rc = _run_grpc(plan.py, spec_path, plan.ranks, env, log, overall)
    return work, rc, time.perf_counter() - t0, log_path


def _run_mpi(py: Path, spec_path: Path, p: int, env: dict[str, str], log: Any, overall: float) -> int:
    cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(p + 1)]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(1, "--allow-run-as-root")
    cmd += [str(py), "-m", RANK_MODULE, str(spec_path)]
    log.write((" ".join(cmd) + "\n").encode())
    log.flush()
    try:
        return subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, timeout=overall).returncode
    except subprocess.TimeoutExpired:
        return 124


def _run_grpc(py: Path, spec_path: Path, ranks: list[int], env: dict[str, str], log: Any, overall: float) -> int:
    """This machine's ranks as separate processes; the first to fail ends the others (no half-dead run)."""
    procs = []
    for rank in ranks:
        cmd = [str(py), "-m", RANK_MODULE, str(spec_path), "--rank", str(rank)]
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env))
    deadline = time.monotonic() + overall
    rc = 0
    try:
        while any(proc.poll() is None for proc in procs):
            failed = [proc.returncode for proc in procs if proc.returncode not in (None, 0)]
            if failed or time.monotonic() > deadline:
                rc = failed[0] if failed else 124
                break
            time.sleep(0.5)
        else:
            rc = next((proc.returncode for proc in procs if proc.returncode), 0)
    finally:
        for proc in procs:  # our own children only
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return rc


def checkpoint_round(run_dir: Path) -> int:
    import fednlp_bench.engine.run.checkpoint as ckpt

    state = ckpt.checkpoint_dir(run_dir) / ckpt.STATE_FILENAME
    if not state.is_file():
        raise FileNotFoundError(f"no checkpoint to resume in {state.parent}")
    return int(json.loads(state.read_text())["round"])


def failure_message(rc: int, work: Path, log_path: Path, run_dir: Path | None) -> str:
    error = work / "error.txt"
    reason = error.read_text().strip().splitlines()[0] if error.is_file() else ""
    if not reason:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:] if log_path.is_file() else []
        reason = "\n    ".join(tail) or "no output"
    what = "timed out" if rc == 124 else f"failed (a process was killed by signal {-rc})" if rc < 0 else f"failed (exit {rc})"
    resume = ""
    try:
        if run_dir is not None:
            resume = f"; the last finished round ({checkpoint_round(run_dir)}) is checkpointed, rerun with --resume"
    except (FileNotFoundError, ValueError, KeyError):
        pass
    return f"FedML run {what}: {reason}\n(full log: {log_path}{resume})"
