"""The privacy-utility experiment: its file, cells and run count, the dry run, and tune-then-report on a tiny slice."""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from fednlp_bench.cli import main as cli_main
from fednlp_bench.commands import leaderboard as leaderboard_command
from fednlp_bench.engine import run_experiment
from fednlp_bench.leaderboard.privacy_utility import privacy_utility_table
from fednlp_bench.leaderboard.summary import summarize
from fednlp_bench.privacy.experiment import NO_DP, Experiment, run_experiment_grid, validation_score, write_selection
from fednlp_bench.privacy.preview import preview

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "configs" / "trust" / "privacy_utility_20news.yaml"


def tiny_experiment(tmp_path: Path, **changes: object) -> Path:
    data = yaml.safe_load(PUBLISHED.read_text())
    data["base"].update(model="tiny", max_length=32, max_train_examples=96, max_eval_examples=24, rounds=2,
                        clients_per_round=3, partition={"scheme": "iid", "num_clients": 12, "seed": 0, "min_size": 2,
                                                        "params": {}}, trainable="full", trainable_params={},
                        eval_every=1)
    data["mechanisms"]["dp_adaptive_clip"]["clipped_count_stddev"] = 1.0  # K/20 = 0.15 would leave no budget at K=3
    data.update(epsilons=[8], delta=1e-3, grid={"lr": [1e-3, 1e-2]}, extensions=0, seeds=[0, 1],
                runs_dir=str(tmp_path / "runs"))
    data.update(changes)
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_published_experiment_has_4_epsilons_x_3_mechanisms_x_3_seeds() -> None:
    exp = Experiment.load(PUBLISHED)
    cells = exp.cells()
    assert [c.name for c in cells][0] == NO_DP and len(cells) == 1 + 3 * 3
    assert {c.mechanism for c in cells[1:]} == {"dp_fixed_clip", "dp_adaptive_clip", "dp_sgd"}
    assert sorted({c.target_epsilon for c in cells[1:]}) == [1.0, 4.0, 8.0] and exp.seeds == [0, 1, 2]
    assert exp.run_count() == 10 * 3 + 10 * 2
    assert all(c.privacy["target_epsilon"] == c.target_epsilon and c.privacy["delta"] == 1e-5 for c in cells[1:])
    assert exp.base["partition"]["num_clients"] == 500 and exp.base["trainable_params"] == {"layers": 0, "cache": True}
    assert exp.extensions == 2 and exp.max_run_count() == 50 + 10 * 2


def fake_record(score: float) -> SimpleNamespace:
    rounds = [SimpleNamespace(round=r, metrics={"accuracy": score}) for r in (1, 2)]
    return SimpleNamespace(primary_metric="accuracy", rounds=rounds, config={"rounds": 2},
                           final_metrics={"accuracy": score}, privacy=None, run_id="fake")


@pytest.mark.parametrize(("optimum", "cap", "chosen", "extended", "on_edge"), [
    (1e-2, 2, 1e-2, [], []),                               # interior: no extension
    (0.16, 2, 0.16, [0.16, 0.64], []),                     # 0.16 is an edge until 0.64 shows it is the top
    (10.0, 2, 0.64, [0.16, 0.64], ["lr"]),                 # the cap stops it, and the edge is reported
    (1e-5, 1, 6.25e-4, [6.25e-4], ["lr"]),                 # downwards, cap 1
])
def test_a_choice_on_an_edge_extends_the_axis_up_to_the_cap(tmp_path: Path, optimum: float, cap: int,
                                                            chosen: float, extended: list, on_edge: list) -> None:
    exp = Experiment.load(tiny_experiment(tmp_path, grid={"lr": [2.5e-3, 1e-2, 4e-2]}, extensions=cap,
                                          mechanisms={"dp_fixed_clip": {"clip_norm": 1.0}}))
    seen: list[tuple[str, float]] = []

    def run(rid: str, cfg: object) -> SimpleNamespace:
        seen.append((rid, cfg.lr))  # type: ignore[attr-defined]
        return fake_record(-abs(math.log(cfg.lr / optimum)))  # type: ignore[attr-defined]

    selection = run_experiment_grid(exp, run, log=lambda line: None)
    for cell in selection.values():
        assert cell["chosen"] == {"lr": chosen} and cell["on_edge"] == on_edge
        assert [e["value"] for e in cell["extensions"]] == extended
        assert len(cell["validation"]) == 3 + len(extended)
        assert all(rid.endswith("-s0") for rid in cell["validation"]) and cell["final_runs"][0] in cell["validation"]
    # distinct runs: the tuning seed's final run is its tuning run (it is asked for again and resumes as finished)
    assert len(set(seen)) == len(exp.cells()) * (3 + len(extended) + 1) <= exp.max_run_count()


@pytest.mark.parametrize(("change", "message"), [
    ({"epsilonz": [1]}, "unknown key 'epsilonz'. Did you mean 'epsilons'"),
    ({"mechanisms": {"dp_sgdd": {"clip_norm": 1.0}}}, "not DP mechanisms. Did you mean 'dp_sgd'"),
    ({"grid": {"lr": []}}, "grid.lr must be a non-empty list"),
    ({"tuning_seed": 7}, "tuning_seed 7 must be one of seeds"),
    ({"grid": {"lr": [1e-3, 2e-3, 1e-2]}}, r"grid.lr = \[0.001, 0.002, 0.01\] is not log-spaced"),
    ({"extensions": -1}, "extensions must be a whole number >= 0"),
])
def test_bad_experiment_files_fail_with_the_fix(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Experiment.load(tiny_experiment(tmp_path, **change))


def test_a_bad_cell_is_named_before_any_run(tmp_path: Path) -> None:
    path = tiny_experiment(tmp_path, mechanisms={"dp_adaptive_clip": {"clip_norm": 1.0, "clipped_count_stddev": 0.01}})
    with pytest.raises(ValueError, match=r"cell dp_adaptive_clip-eps8, lr[0-9.e-]+, seed 0: .*clipped_count_stddev=0.01"):
        Experiment.load(path).all_runs()


def test_dry_run_calibrates_every_dp_cell(offline_task_env: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    rows = preview(Experiment.load(tiny_experiment(tmp_path)), log=lines.append)
    assert {r["cell"] for r in rows} == {"dp_fixed_clip-eps8", "dp_adaptive_clip-eps8", "dp_sgd-eps8"}
    assert all(r["epsilon_rdp"] <= 8.0 and 0 < r["epsilon_pld"] < r["epsilon_rdp"] for r in rows)
    assert "4 cells x 2 grid points" in lines[0] and not (tmp_path / "runs").exists()  # nothing ran


@pytest.mark.slow
def test_tune_then_report_on_a_tiny_slice(offline_task_env: Path, tmp_path: Path) -> None:
    exp = Experiment.load(tiny_experiment(tmp_path))
    records = {}

    def run(rid: str, cfg: object) -> object:
        records[rid] = run_experiment(cfg, exp.runs_dir, run_id=rid, resume=(exp.runs_dir / rid).exists(),  # type: ignore[arg-type]
                                      progress=False)
        return records[rid]

    selection = run_experiment_grid(exp, run, log=lambda line: None)
    assert len(records) == exp.run_count() == 4 * 2 + 4 * 1
    for name, cell in selection.items():
        best = max(cell["validation"], key=cell["validation"].get)
        assert cell["final_runs"][0] == best  # the tuning seed's final run is the best tuning run
        final = records[cell["final_runs"][1]]
        assert final.seed == 1 and validation_score(records[best], exp.convergence) == cell["validation"][best]
        if name != NO_DP:
            assert final.privacy["epsilon_rdp"] <= 8.0 and "epsilon_pld" in final.privacy
            assert final.config["privacy"]["target_epsilon"] == 8.0 and final.privacy["noise_multiplier"] > 0
    path = write_selection(exp.runs_dir, selection)
    assert json.loads(path.read_text())[NO_DP]["chosen"]["lr"] in (1e-3, 1e-2)

    table = privacy_utility_table(exp.runs_dir)  # from the records and selection.json alone
    for name, cell in selection.items():
        values = [records[rid].final_metrics["accuracy"] for rid in cell["final_runs"]]
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert summarize(values, [0, 1]).text() in row and ", ".join(cell["final_runs"]) in row
        if name != NO_DP:  # the paired gap: per-seed differences to the no-DP cell's final runs
            ref = [records[rid].final_metrics["accuracy"] for rid in selection[NO_DP]["final_runs"]]
            assert f"{statistics.fmean(v - r for v, r in zip(values, ref)):+.4f} (paired" in row
            assert f"| {records[cell['final_runs'][0]].privacy['epsilon_pld']:.2f} |" in row
    assert table.count("| one client |") == 2 and table.count("| one example |") == 1
    out = tmp_path / "privacy_utility.md"  # the one leaderboard command writes the same table
    assert cli_main(["leaderboard", "--trust", "privacy-utility", "--runs", str(exp.runs_dir), "--out", str(out)]) == 0
    assert out.read_text().endswith(table) and "fednlp-bench leaderboard --trust privacy-utility" in out.read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["--trust", "privacy-utility"], "--trust privacy-utility needs --runs"),
    (["--trust", "population", "--runs", "{tmp}", "--out", "{tmp}/t.md", "--verify-per-task"], "apply to a tier"),
    (["--trust", "population", "--runs", "{tmp}/nope", "--out", "{tmp}/t.md"], "is not a folder of records"),
    (["--trust", "population", "--runs", "{tmp}", "--out", "{tmp}/t.txt"], "one Markdown file"),
])
def test_trust_table_command_refuses_bad_flags(tmp_path: Path, argv: list[str], message: str) -> None:
    parser = argparse.ArgumentParser()
    leaderboard_command.register(parser.add_subparsers())
    args = parser.parse_args(["leaderboard", *(a.replace("{tmp}", str(tmp_path)) for a in argv)])
    with pytest.raises(ValueError, match=message):
        leaderboard_command.run(args)
    assert not (tmp_path / "t.md").exists() and not (tmp_path / "t.txt").exists()


def test_one_extension_step_may_grow_two_axes_and_counts_once_against_the_cap(tmp_path: Path) -> None:
    exp = Experiment.load(tiny_experiment(tmp_path, grid={"lr": [1e-3, 2e-3], "batch_size": [4, 8]}, extensions=1,
                                          mechanisms={"dp_fixed_clip": {"clip_norm": 1.0}}))

    def run(rid: str, cfg: object) -> SimpleNamespace:  # best at the largest lr and batch: both axes on an edge
        return fake_record(math.log(cfg.lr) + math.log(cfg.batch_size))  # type: ignore[attr-defined]

    cell = run_experiment_grid(exp, run, log=lambda line: None)[NO_DP]
    assert sorted(cell["extensions"], key=lambda e: e["axis"]) == [
        {"step": 1, "axis": "batch_size", "side": "high", "value": 16},
        {"step": 1, "axis": "lr", "side": "high", "value": 4e-3}]
    assert cell["chosen"] == {"lr": 4e-3, "batch_size": 16} and cell["on_edge"] == ["batch_size", "lr"]
    assert len(cell["validation"]) == 9 and set(cell["step_of"].values()) == {0, 1}
