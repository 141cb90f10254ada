"""`suite --jobs`, `--list-runs` and a killed suite on the real engine (tiny model): records identical to sequential."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("offline_task_env")]

BASE = {"model": "tiny", "max_length": 32, "max_train_examples": 120, "max_eval_examples": 40,
        "partition": {"num_clients": 4, "min_size": 2}, "rounds": 2, "clients_per_round": 2,
        "local_epochs": 1, "batch_size": 8, "lr": 1e-3, "eval_every": 1}


def tier(lrs: list[float], seeds: list[int], **base: Any) -> dict[str, Any]:
    """One task, one partition, centralized and FedAvg over ``lrs``: 2 x len(lrs) tuning runs, then the finals."""
    return {"tier": "smoke", "base": {**BASE, **base},
            "tasks": [{"task": "classification", "data": "20news", "partitions": ["iid"]}],
            "algorithms": [{"algorithm": "centralized", "grid": {"lr": list(lrs)}},
                           {"algorithm": "fedavg", "grid": {"lr": list(lrs)}}],
            "convergence": {"window": 1.0, "tolerance": 0.5, "min_points": 2},
            "tuning": {"seed": 0, "partitions": "all"}, "final": {"seeds": list(seeds)}}


TIER = tier([1e-3, 3e-3], [0, 1])
#: What may differ between two makings of one run: when and how fast it ran.
VOLATILE = ("created", "wall_time_s")


def fednlp(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "fednlp_bench", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800)
    if check:
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def records(runs: Path) -> dict[str, dict[str, Any]]:
    """Every record under ``runs``, without the fields that say when/how fast (rounds keep all but wall time)."""
    out = {}
    for path in sorted(runs.glob("*/record.json")):
        data = json.loads(path.read_text())
        for key in VOLATILE:
            data.pop(key)
        for row in data["rounds"]:
            row.pop("wall_time_s")
        out[data["run_id"]] = data
    return out


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_jobs_2_records_are_identical_to_jobs_1(tmp_path: Path) -> None:
    suite = write(tmp_path / "suite.yaml", TIER)  # 4 tuning runs, then 2 final runs (seed 1)
    fednlp("suite", str(suite), "--runs-dir", "seq", "--threads", "1", "--no-leaderboard", cwd=tmp_path)
    par = fednlp("suite", str(suite), "--runs-dir", "par", "--jobs", "2", "--threads", "1", "--no-leaderboard",
                 cwd=tmp_path)
    assert "[4/4 done]" in par.stdout and "[2/2 done]" in par.stdout and "2 at a time" in par.stdout
    seq, parallel = records(tmp_path / "seq"), records(tmp_path / "par")
    assert len(seq) == 6 and seq == parallel  # metrics, losses, bytes, config, hashes, hardware: bit for bit
    assert {r["hardware"]["torch_threads"] for r in parallel.values()} == {1}
    assert sorted(p.name for p in (tmp_path / "par").iterdir() if not p.name.startswith(".")) == sorted(seq)
    assert not list((tmp_path / "par").glob("*/checkpoint"))  # the suite's keep_checkpoints: none


def test_list_runs_through_xargs_makes_the_records_suite_makes(tmp_path: Path) -> None:
    tier = write(tmp_path / "tier.yaml", {**TIER, "runs_dir": "listed", "out": "listed-out"})
    fednlp("suite", str(tier), "--runs-dir", "suite", "--out", "suite-out", "--threads", "1", "--no-leaderboard",
           cwd=tmp_path)
    for stage in ("tuning", "final"):
        listing = fednlp("suite", str(tier), "--list-runs", "--threads", "1", cwd=tmp_path)
        commands = [line for line in listing.stdout.splitlines() if line]
        assert len(commands) == (4 if stage == "tuning" else 2), listing.stderr
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        subprocess.run(["xargs", "-P", "2", "-I", "{}", "sh", "-c", "{}"], input=listing.stdout, cwd=tmp_path, env=env,
                       check=True, capture_output=True, text=True, timeout=1800)
    again = fednlp("suite", str(tier), "--no-leaderboard", cwd=tmp_path)
    assert "tuning: 0 run(s) to do now" in again.stdout and "final: 0 runs to do" in again.stdout
    assert records(tmp_path / "listed") == records(tmp_path / "suite")
    listed_plan = json.loads((tmp_path / "listed-out" / "plan.json").read_text())
    suite_plan = json.loads((tmp_path / "suite-out" / "plan.json").read_text())
    for plan in (listed_plan, suite_plan):
        plan.pop("runs_dir")
    assert listed_plan == suite_plan


def test_a_killed_suite_resumes_and_makes_the_same_records(tmp_path: Path) -> None:
    suite = write(tmp_path / "suite.yaml", tier([1e-3, 3e-3], [0, 1], rounds=6))
    fednlp("suite", str(suite), "--runs-dir", "ref", "--threads", "1", "--no-leaderboard", cwd=tmp_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "fednlp_bench", "suite", str(suite), "--runs-dir", "runs", "--jobs",
                             "2", "--threads", "1", "--no-leaderboard"], cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    try:
        while time.monotonic() < deadline and not _mid_run(tmp_path / "runs"):
            assert proc.poll() is None, "the suite finished before it could be killed; give its runs more rounds"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole session: suite and workers, as a lost machine would
        proc.wait()
    interrupted = [p.parent.parent.name for p in (tmp_path / "runs").glob("*/checkpoint/state.json")]
    assert interrupted and not list((tmp_path / "runs").glob("*/record.json"))
    resumed = fednlp("suite", str(suite), "--runs-dir", "runs", "--jobs", "2", "--threads", "1", "--no-leaderboard",
                     cwd=tmp_path)
    assert "4/4 run(s) finished" in resumed.stdout and "2/2 run(s) finished" in resumed.stdout
    made, ref = records(tmp_path / "runs"), records(tmp_path / "ref")
    # The interrupted runs say after which round they were resumed (the reference ran in one go); the rest is equal.
    assert {name for name, r in made.items() if r["resumed_after"]} == set(interrupted)
    assert max(made[name]["resumed_after"][0] for name in interrupted) >= 1  # one was killed after a round
    assert all(r["resumed_after"] == [] for r in ref.values())
    strip = lambda runs: {k: {f: v for f, v in r.items() if f != "resumed_after"} for k, r in runs.items()}  # noqa: E731
    assert strip(made) == strip(ref), resumed.stdout
    shutil.rmtree(tmp_path / "ref")


def _mid_run(runs: Path) -> bool:
    """True once some run has checkpointed round 1 or later and none has finished."""
    for state in runs.glob("*/checkpoint/state.json"):
        try:
            if json.loads(state.read_text())["round"] >= 1:
                return True
        except (ValueError, KeyError, OSError):
            continue
    return False
