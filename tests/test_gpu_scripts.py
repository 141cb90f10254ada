"""scripts/gpu_check.sh, run_gpu_tier.sh and gpu_pilots.sh: their --dry-run and CPU fallbacks run on a machine without a GPU."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("offline_task_env")


def bash(script: str, *args: str, env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(["bash", str(ROOT / "scripts" / script), *args], env={**os.environ, "PATH": path, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def git_status() -> str:
    return subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout


def test_gpu_check_dry_run_lists_its_steps_and_the_tier_estimate(tmp_path: Path) -> None:
    out = bash("gpu_check.sh", "--dry-run", "--out", str(tmp_path / "gc")).stdout
    for step in ("1. device", "2. round", "3. throughput", "4. tuning: fednlp-bench suite configs/suite-gpu.yaml"):
        assert step in out
    assert "--jobs 4" in out and re.search(r"classification: \d+ runs, [\d.]+ PFLOP -> [\d.]+ device minutes", out)


def test_run_gpu_tier_dry_run_prints_the_estimate_and_the_command() -> None:
    out = bash("run_gpu_tier.sh", "--dry-run", "--budget-minutes", "8").stdout
    assert re.search(r"total: \d+ runs to do \(20 tuning \+ \d+ final\)", out) and "device estimate" in out
    assert "would run: fednlp-bench suite configs/suite-gpu.yaml --task classification --jobs 4 --budget-minutes 8" in out


@pytest.mark.slow
def test_gpu_check_cpu_fallback_runs_every_step_within_its_minutes(tmp_path: Path) -> None:
    before = git_status()
    start = time.monotonic()
    bash("gpu_check.sh", "--cpu", "--minutes", "4", "--out", str(tmp_path / "gc"), timeout=600)
    assert time.monotonic() - start < 4 * 60 + 30
    summary = json.loads((tmp_path / "gc" / "summary.json").read_text())
    assert summary["round"]["passed"] and summary["round"]["relative_difference"] <= 0.02
    assert summary["rate"]["tflops"] > 0 and {r["arm"] for r in summary["throughput"]["rows"]} >= {"bf16 full"}
    records = list((tmp_path / "gc" / "tiny-tier" / "records").glob("*/record.json"))
    assert records and any("run(s) finished" in line for line in summary["tuning_log_tail"])
    assert git_status() == before  # commits and changes nothing in the checkout


@pytest.mark.slow
def test_run_gpu_tier_budget_stops_in_time_and_leaves_a_summary(tmp_path: Path) -> None:
    suite = tmp_path / "tier.yaml"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "tiny-suite",
                    str(ROOT / "configs" / "suite-gpu.yaml"), str(suite), "--out-dir", str(tmp_path / "gpu")], check=True,
                   capture_output=True)
    before = git_status()
    start = time.monotonic()
    out = bash("run_gpu_tier.sh", "--cpu", "--budget-minutes", "1.5", "--jobs", "2", env={"SUITE": str(suite)}).stdout
    assert time.monotonic() - start < 1.5 * 60 + 120  # the budget plus start-up, tables and the summary
    records = list((tmp_path / "gpu" / "records").glob("*/record.json"))
    data = yaml.safe_load(suite.read_text())
    tuning = {r.parent.name for r in records}
    assert records and all("-s0" in name for name in tuning)  # tuning (seed 0) before any final seed
    summary = (tmp_path / "gpu" / "window-summary.txt").read_text()
    assert "runs to do" in summary and "continue with: bash scripts/run_gpu_tier.sh" in summary
    assert "time budget reached" in out or "0 runs to do" in summary
    assert data["tier"] == "gpu" and git_status() == before


def test_gpu_pilots_rejects_an_unknown_pilot_and_bad_numbers() -> None:
    for args, message in ((["--only", "sq-bogus"], "--only names 'sq-bogus', not a pilot"),
                          (["--rounds", "0"], "--rounds '0' must be a whole number >= 1"),
                          (["--minutes", "soon"], "--minutes 'soon' must be a number")):
        done = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_pilots.sh"), *args], capture_output=True, text=True)
        assert done.returncode == 2 and message in done.stderr


@pytest.mark.slow
def test_gpu_pilots_cpu_fallback_packs_finished_and_stopped_pilots_into_one_file(tmp_path: Path) -> None:
    import tarfile

    before = git_status()
    env = {"OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work")}
    out = bash("gpu_pilots.sh", "--cpu", "--minutes", "2", "--only", "ae-fedavg-iid,sq-central-iid", "--rounds", "3",
               env=env).stdout
    assert "ae-fedavg-iid-r3: finished" in out and "sq-central-iid-r3: finished" in out and "3 round(s) logged" in out
    with tarfile.open(tmp_path / "out" / "gpu-pilots.tar.gz") as tar:
        names = set(tar.getnames())
    for pilot in ("ae-fedavg-iid-r3", "sq-central-iid-r3"):
        assert {f"pilots/{pilot}/record.json", f"pilots/{pilot}/metrics.csv", f"logs/{pilot}.log"} <= names
    assert not any("checkpoint" in name for name in names)
    record = json.loads((tmp_path / "work" / "pilots" / "ae-fedavg-iid-r3" / "record.json").read_text())
    assert record["config"]["rounds"] == 3 and record["hardware"]["device"] == "cpu"
    stopped = bash("gpu_pilots.sh", "--cpu", "--minutes", "0.05", "--only", "ae-central-iid", env=env).stdout
    assert "ae-central-iid: stopped (exit 124; its log holds the curve so far)" in stopped
    assert git_status() == before
