"""benchmarks/bench_dpsgd.py still runs and reports both ratios (tiny model: seconds; its numbers mean nothing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.usefixtures("offline_task_env")
def test_bench_dpsgd_reports_both_ratios_in_one_run(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_dpsgd.py"), "--model", "tiny", "--steps", "2",
         "--repeats", "1", "--threads", "1", "--train-examples", "32", "--max-length", "32", "--batch-size", "4",
         "--cache-dir", str(tmp_path / "frozen"), "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["mode"]: r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"full", "top"}
    for r in rows.values():
        assert set(r["step_s"]) == {"plain", "plain eager", "dp-sgd"} and all(t > 0 for t in r["step_s"].values())
        assert r["ratio_dpsgd_vs_plain"] == pytest.approx(r["step_s"]["dp-sgd"] / r["step_s"]["plain"])
    assert list((tmp_path / "frozen").glob("*.npy"))  # the top-layer arm ran on the cached path
    assert "dp/plain" in proc.stdout
