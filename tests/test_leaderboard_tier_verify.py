"""Tier tables: every cell traces to its records (errors name the run), and the CLI builds, verifies and writes
nothing when verification fails."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from fednlp_bench.leaderboard.plan import PlanError, load_plan
from fednlp_bench.leaderboard.tier_build import TraceError
from fednlp_bench.leaderboard.tier_tables import build_tier
from fednlp_bench.results.record import RunRecord
from fednlp_bench.suite import verify as verify_mod

from leaderboard_tier_fakes import build_tier_plan, edit_plan


@pytest.fixture
def tier(tmp_path: Path) -> Path:
    return build_tier_plan(tmp_path)


# ---------------------------------------------------------------- trace errors


def test_missing_record_names_the_run_id(tier: Path) -> None:
    import shutil

    shutil.rmtree(tier.parent.parent / "records" / "avg-iid-s1")
    with pytest.raises(TraceError, match="run 'avg-iid-s1'.*does not exist"):
        build_tier(tier)


def test_mismatched_seed_or_hash_names_the_run_id(tier: Path) -> None:
    edit_plan(tier, lambda d: d["cells"][2]["runs"][1].update(seed=7))
    with pytest.raises(TraceError, match="run 'avg-iid-s1'.*seed 1, plan.json says .* seed 7"):
        build_tier(tier)
    edit_plan(tier, lambda d: d["cells"][2]["runs"][1].update(seed=1, config_hash="0" * 64))
    with pytest.raises(TraceError, match="run 'avg-iid-s1'.*not the planned run"):
        build_tier(tier)


def test_tuning_value_must_match_the_record(tier: Path) -> None:
    edit_plan(tier, lambda d: d["tuning"][0]["grid"][0].update(validation=0.71))
    with pytest.raises(TraceError, match="run 'tune-avg-lr0.001'.*0.71.*0.6"):
        build_tier(tier)


def test_bad_plan_is_named(tmp_path: Path, tier: Path) -> None:
    edit_plan(tier, lambda d: d["cells"][0].update(role="upper"))
    with pytest.raises(PlanError, match=r"cells\[0\]: role 'upper' is not one of federated"):
        load_plan(tier)
    with pytest.raises(PlanError, match="no such plan file"):
        load_plan(tmp_path / "nowhere.json")
    edit_plan(tier, lambda d: d["cells"][0].update(role="centralized_equal"))
    edit_plan(tier, lambda d: d.update(schema=1))
    with pytest.raises(PlanError, match="schema 1 is not supported"):
        load_plan(tier)
    edit_plan(tier, lambda d: (d.update(schema=2), d["convergence"].update(window=2)))
    with pytest.raises(PlanError, match="convergence.window=2 must be a share"):
        load_plan(tier)


def test_runs_dir_not_found(tier: Path) -> None:
    edit_plan(tier, lambda d: d.update(runs_dir="elsewhere/records"))
    with pytest.raises(FileNotFoundError, match="runs_dir 'elsewhere/records' was not found.*--runs"):
        build_tier(tier)
    assert build_tier(tier, runs_dir=tier.parent.parent / "records")[1][0].task == "classification"


# ---------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> int:
    from fednlp_bench.commands import leaderboard

    parser = argparse.ArgumentParser()
    leaderboard.register(parser.add_subparsers())
    args = parser.parse_args(["leaderboard", *argv])
    return args.func(args)


@pytest.mark.parametrize("shift, code", [(0.0, 0), (1e-3, 1)])
def test_cli_verify_per_task_picks_the_fastest_run(tier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys, shift: float, code: int) -> None:
    calls: list[dict[str, Any]] = []

    def runner(config: dict[str, Any], runs_dir: Path) -> RunRecord:
        calls.append(config)
        original = RunRecord.load(tier.parent.parent / "records" / "avg-iid-s0")
        rerun = RunRecord.from_dict(json.loads(json.dumps(original.to_dict())))
        rerun.final_metrics = {k: v + shift for k, v in rerun.final_metrics.items()}
        return rerun

    monkeypatch.setattr(verify_mod, "_load_runner", lambda: runner)
    out = tmp_path / "out"
    assert _cli(["--plan", str(tier), "--out", str(out), "--verify-per-task"]) == code
    # Fastest finished run: avg-iid-s0 (20 s); the 0.5 s cells are absent, tuning-only runs are not candidates.
    assert len(calls) == 1 and calls[0]["algorithm"] == "fedavg" and calls[0]["seed"] == 0
    printed = capsys.readouterr().out
    verdict = "REPRODUCED" if code == 0 else "NOT REPRODUCED"
    assert "classification: verifying avg-iid-s0 (fastest finished run, 20.0 s)" in printed
    assert f"classification: avg-iid-s0 -> {verdict}" in printed
    saved = json.loads((out / "verification.json").read_text())["avg-iid-s0"]
    assert saved["passed"] is (code == 0)
    assert ("| avg-iid-s0 | reproduced |" in (out / "README.md").read_text()) == (code == 0)


def test_cli_flags(tier: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert _cli(["--plan", str(tier), "--out", str(out), "--no-plots"]) == 0
    assert not (out / "gap_vs_alpha.png").exists() and (out / "classification.md").exists()
    assert "classification: 3 partitions x 2 FL algorithms, 6/7 cells complete" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # a tier plan or a trust table: one leaderboard command builds every table
        _cli(["--runs", str(tmp_path), "--out", str(out)])
    assert "one of the arguments --plan --trust is required" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--tolerance only applies to --verify"):
        _cli(["--plan", str(tier), "--out", str(out), "--tolerance", "1e-3"])


def test_cli_verify_one_run_id_with_plan(tier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def runner(config: dict[str, Any], runs_dir: Path) -> RunRecord:
        return RunRecord.load(tier.parent.parent / "records" / "adam-a01-s1")

    monkeypatch.setattr(verify_mod, "_load_runner", lambda: runner)
    out = tmp_path / "out"
    assert _cli(["--plan", str(tier), "--out", str(out), "--verify", "adam-a01-s1", "--tolerance", "0"]) == 0
    assert "REPRODUCED" in capsys.readouterr().out
    assert "| adam-a01-s1 | reproduced |" in (out / "README.md").read_text()


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} \
        if folder.exists() else {}


def test_failing_plan_verify_writes_nothing(tier: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--plan with an unknown --verify id (once 13 files were written first), or a task with nothing to verify."""
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="no record with run_id 'nope'"):
        _cli(["--plan", str(tier), "--out", str(out), "--verify", "nope"])
    assert not out.exists()
    assert _cli(["--plan", str(tier), "--out", str(out), "--no-plots"]) == 0
    before = _tree(out)
    from fednlp_bench.suite import tier_verify

    monkeypatch.setattr(tier_verify, "fastest_record", lambda task: None)
    with pytest.raises(ValueError, match=r"--verify-per-task: task\(s\) classification .* no finished run"):
        _cli(["--plan", str(tier), "--out", str(out), "--verify-per-task"])
    assert _tree(out) == before
