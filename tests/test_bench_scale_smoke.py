"""bench_engine.py, diag_engine_steps.py and bench_suite.py still run (tiny model, seconds); no timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("offline_task_env")


def _run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_bench_engine_reports_every_ratio(tmp_path: Path) -> None:
    result = _run("bench_engine.py", "--model", "tiny", "--max-train", "200", "--max-length", "32", "--repeats", "1",
                  "--threads", "1", "--skip-rss", tmp_path=tmp_path)
    for key in ("overhead_ratio_median", "overhead_in_round_median", "step_time_ratio_total",
                "overhead_ratio_from_bookkeeping", "checkpoint_write_s"):
        assert result[key] > 0
    assert len(result["overhead_ratios"]) == len(result["step_time_ratios"]) == 1  # the warm-up round is dropped


def test_diag_engine_steps_counts_per_step(tmp_path: Path) -> None:
    result = _run("diag_engine_steps.py", "--model", "tiny", "--max-train", "200", "--max-length", "32", "--rounds",
                  "2", "--threads", "1", "--census", "--mode", "engine", tmp_path=tmp_path)
    assert result["setting"] == "glibc, freed memory kept (mallopt)"
    assert len(result["per_step"]["fed"]) == len(result["per_step"]["central"]) == 5 * 4
    step = result["per_step"]["fed"][0]
    assert set(step) >= {"wall_s", "user_s", "sys_s", "minor_faults", "subnormal_grads", "subnormal_moments"}


@pytest.mark.slow
def test_bench_suite_times_both_arms_on_the_same_slice(tmp_path: Path) -> None:
    result = _run("bench_suite.py", "--runs", "2", "--max-train", "200", "--max-eval", "40", "--rounds", "4",
                  "--eval-every", "1", "--client-eval-rows", "5", "--set", "model=tiny", "--set", "max_length=32",
                  "--set", "partition.num_clients=6", "--set", "clients_per_round=2", tmp_path=tmp_path)
    assert set(result["arms"]) == {"jobs1x2", "jobs2x1"}
    assert {arm["runs"] for arm in result["arms"].values()} == {2}
    assert result["ratio_jobs2_over_jobs1"] == pytest.approx(
        result["arms"]["jobs2x1"]["runs_per_hour"] / result["arms"]["jobs1x2"]["runs_per_hour"])
