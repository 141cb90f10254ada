"""Progress is visible where output is not a terminal: phase and round lines, a heartbeat, no ANSI codes."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import pytest

from fednlp_bench import progress
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import sources
from fednlp_bench.engine.run.runner import run_experiment
from fednlp_bench.testing.toy import ToyTask, toy_partition


def test_run_log_has_phase_and_round_lines_without_ansi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "build_partition", toy_partition)
    config = RunConfig.from_dict(dict(
        task="toy", model="toy", rounds=3, clients_per_round=2, lr=0.1, optimizer="sgd", batch_size=8,
        partition={"scheme": "iid", "num_clients": 4, "seed": 0, "min_size": 1, "params": {}}))
    log = io.StringIO()  # not a terminal: isatty() is False
    with progress.reporting(stream=log) as reporter:
        assert reporter.bars is False
        run_experiment(config, tmp_path, task=ToyTask(n_train=40))
    text = log.getvalue()
    for phase in ("loading toy data", "partitioning", "tokenizing", "building model", "training 3 round(s)",
                  "evaluating round 3"):
        assert phase in text, text
    rounds = re.findall(r"round (\d)/3: 2 client\(s\), train loss [\d.]+, accuracy [\d.]+, elapsed \d+s", text)
    assert rounds == ["1", "2", "3"], text
    assert "ETA" in text.splitlines()[-3] or "ETA" in text  # rounds before the last give an ETA
    assert "\x1b" not in text and "\r" not in text


def test_heartbeat_repeats_the_activity_when_quiet() -> None:
    log = io.StringIO()
    with progress.reporting(stream=log, heartbeat_s=0.2) as reporter:
        reporter.phase("caching things")
        progress.activity("caching things: part 2")
        time.sleep(2.7)  # the beat checks every heartbeat_s / 2
    lines = log.getvalue().splitlines()
    assert lines[0].endswith("caching things")
    assert any("... still caching things: part 2" in line for line in lines[1:]), lines


def test_format_seconds() -> None:
    assert [progress.format_seconds(s) for s in (0.4, 59, 75.3, 3700)] == ["0s", "59s", "1m15s", "1h01m"]
