"""`suite --jobs N`: worker processes, locks, failures, budget, memory refusal; fast (a fake engine in workers)."""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from fednlp_bench.engine.run.run_id import run_id_of
from fednlp_bench.locks import exclusive
from fednlp_bench.suite.execution import Execution, parse_gpus, using
from fednlp_bench.suite.memory import GiB, check_jobs_fit, estimate_run
from fednlp_bench.suite.run_one import lock_path
from fednlp_bench.suite.dispatch import execute_runs
from fednlp_bench.suite.spec import parse_suite
from fednlp_bench.suite.stages import run_two_stage
from fednlp_bench.suite.tier_plan import build_tier_plan
from fednlp_bench.testing.fake_runs import FakeEngine, calls

BASE = {"model": "tiny", "max_length": 32, "max_train_examples": 200, "max_eval_examples": 50,
        "partition": {"num_clients": 4, "min_size": 2}, "rounds": 3, "clients_per_round": 2,
        "local_epochs": 1, "batch_size": 8, "lr": 1e-4, "eval_every": 1}


def tier(lrs: list[float], seeds: list[int] | None = None, **base: Any) -> dict[str, Any]:
    """A one-task, one-partition tier: centralized and FedAvg over the same lr grid."""
    return {"tier": "smoke", "base": {**BASE, **base},
            "tasks": [{"task": "classification", "data": "20news", "partitions": ["iid"]}],
            "algorithms": [{"algorithm": "centralized", "grid": {"lr": list(lrs)}},
                           {"algorithm": "fedavg", "grid": {"lr": list(lrs)}}],
            "convergence": {"window": 0.5, "tolerance": 0.01, "min_points": 2},
            "tuning": {"seed": 0, "partitions": "all"}, "final": {"seeds": seeds or [0, 1]}}


def tuning_runs(data: dict[str, Any]) -> list[Any]:
    return build_tier_plan(parse_suite(data, source="t.yaml")).tuning_runs()


def records(runs: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in runs.glob("*/record.json"):
        data = json.loads(path.read_text())
        out[data["run_id"]] = {k: v for k, v in data.items() if k not in ("created", "wall_time_s")}
    return out


def test_jobs_2_runs_in_parallel_workers_with_their_thread_share(tmp_path: Path) -> None:
    planned = tuning_runs(tier([1e-3, 2e-3]))
    log = io.StringIO()
    with using(Execution(jobs=2, threads=1)):
        ran = execute_runs(planned, tmp_path / "par", runner=FakeEngine(seconds=2.0), keep_checkpoints="none",
                           stream=log)
    assert ran == planned
    made = calls(tmp_path / "par")
    assert sorted(c["run_id"] for c in made) == sorted(run_id_of(r.config) for r in planned)
    assert len({c["pid"] for c in made}) == 4  # a fresh process per run
    assert {c["threads_env"] for c in made} == {"1"}
    first, second = sorted(made, key=lambda c: c["start"])[:2]
    assert second["start"] < first["end"]  # two runs at once
    text = log.getvalue()
    assert "running 4 run(s), 2 at a time (1 thread(s) each)" in text
    assert "[4/4 done]" in text and "ETA" in text
    assert not any((tmp_path / "par" / ".suite" / "logs").iterdir())  # logs of finished runs are removed
    execute_runs(planned, tmp_path / "seq", runner=FakeEngine(), keep_checkpoints="none", stream=io.StringIO())
    assert records(tmp_path / "par") == records(tmp_path / "seq")


def test_a_failing_run_stops_new_starts_and_keeps_its_log(tmp_path: Path) -> None:
    planned = tuning_runs(tier([1e-4, 2e-4]))  # centralized x 2, then fedavg x 2
    log = io.StringIO()
    with pytest.raises(RuntimeError, match=r"suite stopped: 1 run\(s\) failed .*centralized .*NaN loss.*log: .*\.log"):
        execute_runs(planned, tmp_path, runner=FakeEngine(seconds=10.0, fail_lr=1e-4), keep_checkpoints="none",
                     stream=log, execution=Execution(jobs=2))
    assert "FAILED" in log.getvalue() and "Traceback" in log.getvalue()  # the log's tail is printed
    # The run next to the failing one finished; nothing was started after the failure.
    assert len(list(tmp_path.glob("*/record.json"))) == 1
    assert len(list((tmp_path / ".suite" / "logs").glob("*.log"))) == 1


def test_a_run_held_by_another_process_is_skipped_not_run_twice(tmp_path: Path) -> None:
    planned = tuning_runs(tier([1e-3, 2e-3]))
    log = io.StringIO()
    with exclusive(lock_path(tmp_path, planned[0].config), wait=False):
        for execution in (Execution(jobs=2), Execution()):
            ran = execute_runs(planned, tmp_path, runner=FakeEngine(), keep_checkpoints="none", stream=log,
                               execution=execution)
            assert planned[0] not in ran
    assert "being run by another process" in log.getvalue()
    assert run_id_of(planned[0].config) not in {c["run_id"] for c in calls(tmp_path)}
    assert len(calls(tmp_path)) == 3  # the other three, once each (the second batch found their records)


def test_the_budget_stops_running_runs_and_starts_no_more(tmp_path: Path) -> None:
    planned = tuning_runs(tier([1e-3, 2e-3]))
    log = io.StringIO()
    started = time.monotonic()
    ran = execute_runs(planned, tmp_path, runner=FakeEngine(seconds=30.0), keep_checkpoints="none", stream=log,
                       execution=Execution(jobs=2, deadline=time.monotonic() + 3.0))
    assert ran == [] and time.monotonic() - started < 25
    text = log.getvalue()
    assert text.count("stopped classification") == 2 and "resumes from its last checkpoint" in text
    assert "time budget reached: 4 run(s) of this batch left" in text


def test_two_stage_selection_is_the_same_with_jobs(tmp_path: Path) -> None:
    data = tier([1e-3, 3e-3])
    plans = {}
    for name, execution in (("seq", Execution()), ("par", Execution(jobs=3))):
        with using(execution):
            report = run_two_stage(parse_suite(data, source="t.yaml"), tmp_path / name / "runs",
                                   tmp_path / name / "out", runner=FakeEngine(), stream=io.StringIO())
        assert report.complete
        plans[name] = json.loads((tmp_path / name / "out" / "plan.json").read_text())
        plans[name].pop("runs_dir", None)
    assert plans["seq"] == plans["par"]
    assert records(tmp_path / "seq" / "runs") == records(tmp_path / "par" / "runs")


def test_slots_spread_gpus_and_share_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from fednlp_bench.suite import execution as module

    monkeypatch.setattr(module, "available_cores", lambda: 16)
    slots = Execution(jobs=3, gpus=parse_gpus("0,1")).slots()
    assert [(s.number, s.threads, s.gpu) for s in slots] == [(1, 5, 0), (2, 5, 1), (3, 5, 0)]
    assert [s.threads for s in Execution(jobs=4, threads=2).slots()] == [2, 2, 2, 2]
    with pytest.raises(ValueError, match="'x' is not a GPU index"):
        parse_gpus("0,x")
    with pytest.raises(ValueError, match="--jobs 0 must be a positive integer"):
        Execution(jobs=0)


def test_memory_estimate_refuses_jobs_that_do_not_fit_naming_the_largest_that_does() -> None:
    config = dict(tuning_runs(tier([1e-3, 2e-3], model="minilm", max_length=128, batch_size=16))[0].config)
    one = estimate_run(config, on_gpu=False)
    assert one is not None and 1.0 * GiB < one.host < 3.0 * GiB  # 768 MiB + 22.7M params x 4 B x (1 + 9) + activations
    check_jobs_fit([config], Execution(jobs=4), host_available=int(4.5 * one.host), gpu_free={})
    with pytest.raises(ValueError, match=r"^--jobs 8: estimated peak memory: 8 x .* GiB per run .* exceeds the .* GiB "
                                         r"of available memory; the largest --jobs that fits is 4 "):
        check_jobs_fit([config], Execution(jobs=8), host_available=int(4.5 * one.host), gpu_free={})
    gpu = estimate_run(config, on_gpu=True)
    assert gpu is not None and gpu.device > 0
    with pytest.raises(ValueError, match="the largest --jobs that fits is 2"):
        check_jobs_fit([config], Execution(jobs=4, gpus=(0,)), host_available=100 * GiB,
                       gpu_free={0: int(2.5 * gpu.device)})


def test_command_flags_are_checked_before_anything_runs(tmp_path: Path) -> None:
    from fednlp_bench.commands import suite as command

    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump({**tier([1e-3, 2e-3]), "runs_dir": str(tmp_path / "runs")}))
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers())
    for flags, message in ((["--jobs", "0"], "--jobs 0 must be a positive integer"),
                           (["--gpus", "a"], "'a' is not a GPU index"),
                           (["--budget-minutes", "0"], "--budget-minutes 0.0 must be a positive number"),
                           (["--list-runs", "--jobs", "2"], "--list-runs only lists commands")):
        args = parser.parse_args(["suite", str(path), *flags])
        with pytest.raises(ValueError, match=message):
            args.func(args)
    assert not (tmp_path / "runs").exists()


def test_device_estimate_counts_flops_from_the_config() -> None:
    from fednlp_bench.suite.compute_estimate import estimate_lines, example_flops, run_flops
    from fednlp_bench.suite.sizes import model_shape

    shape = model_shape("minilm")
    assert shape is not None and (shape.layers, shape.hidden, shape.heads) == (6, 384, 12)
    assert shape.per_layer == 1_774_464  # 4 h^2 + 2 h * 1536 + biases and two LayerNorms
    full = {"task": "classification", "model": "minilm", "max_length": 128, "trainable": "full"}
    forward = 128 * (2 * 6 * shape.per_layer + 2 * 6 * 128 * 384)
    assert example_flops(full) == (3 * forward, forward)
    top = {**full, "trainable": "top_layers", "trainable_params": {"layers": 1, "cache": True}}
    assert example_flops(top) == (3 * forward / 6, forward / 6)  # only the top layer runs, and trains
    run = {**full, "data": "20news", "max_train_examples": 1000, "max_eval_examples": 100, "rounds": 2,
           "eval_every": 1, "partition": {"num_clients": 10}, "clients_per_round": 2, "local_epochs": 1,
           "local_steps": None, "batch_size": 16}
    # 2 rounds x (1 epoch x 2 clients x 100 rows) training + (2 validations + 1 test) x 100 rows forward
    assert run_flops(run) == 2 * 200 * 3 * forward + 300 * forward
    lines = estimate_lines([run, run], tflops=None, jobs=2)
    assert "declared 100 TFLOP/s" in lines[0] and "classification: 2 runs" in lines[1]
    assert lines[-1].startswith("  total: 2 runs -> ")
