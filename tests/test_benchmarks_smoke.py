"""The benchmark scripts still run against the current engine (with the tiny model, so in seconds).

Benchmarks are not tests of speed (their numbers come from idle machines, see
benchmarks/README.md), but a script that no longer runs cannot reproduce a
published ratio; this keeps them in step with refactors of the engine and tasks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.usefixtures("offline_task_env")
def test_bench_throughput_runs_every_arm(tmp_path: Path) -> None:
    result = _run("bench_throughput.py", "--model", "tiny", "--steps", "2", "--batch-size", "4",
                  "--train-examples", "32", "--eval-examples", "8", "--repeats", "1", "--threads", "1",
                  "--max-length", "32", tmp_path=tmp_path)
    rows = {row["arm"]: row for row in result["rows"]}
    assert set(rows) == {"plain", "fp32 full", "bf16 full", "top2 cache", "lora r=8"}
    assert all(row["train_ex_s"] > 0 and row["eval_ex_s"] > 0 for row in rows.values())
    full = rows["fp32 full"]["bytes_per_round"]
    # Same weights on the wire for the plain loop and full training; fewer for the partial modes.
    assert rows["plain"]["bytes_per_round"] == full == rows["bf16 full"]["bytes_per_round"]
    assert rows["lora r=8"]["bytes_per_round"] < rows["top2 cache"]["bytes_per_round"] < full


@pytest.mark.usefixtures("offline_task_env")
def test_bench_length_batching_pads_fewer_tokens_on_real_squad_windows(tmp_path: Path) -> None:
    result = _run("bench_length_batching.py", "--task", "qa", "--model", "tiny", "--train-examples", "700",
                  "--rounds", "1", "--repeats", "1", "--threads", "1", tmp_path=tmp_path)
    padded = result["padded_token_ratio"]
    assert padded["random"] > 1.4 and padded["length"] < 1.15, padded
    assert result["rounds_s"]["random"] > 0 and result["rounds_s"]["length"] > 0


@pytest.mark.usefixtures("offline_task_env")
def test_bench_pointer_loss_times_both_losses_and_they_agree(tmp_path: Path) -> None:
    result = _run("bench_pointer_loss.py", "--model", "tiny", "--rows", "32", "--repeats", "2", "--threads", "1",
                  tmp_path=tmp_path)
    for phase in ("train_step", "validation_loss_pass"):
        assert result["seconds"][phase]["full"] > 0 and result["seconds"][phase]["label"] > 0
        losses = result["mean_loss"][phase]
        assert losses["label"] == pytest.approx(losses["full"], rel=1e-5), losses


@pytest.mark.usefixtures("offline_task_env")
def test_bench_attention_dropout_times_both_settings_on_real_squad_windows(tmp_path: Path) -> None:
    result = _run("bench_attention_dropout.py", "--model", "tiny", "--rows", "32", "--repeats", "2", "--threads", "1",
                  tmp_path=tmp_path)
    assert set(result["seconds"]) == {"dropout 0.1", "dropout 0"} and min(result["seconds"].values()) > 0
    assert result["windows"] >= 32 and result["real_tokens"] > 32 * 20
