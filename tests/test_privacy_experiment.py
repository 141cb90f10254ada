"""The privacy-utility experiment: its file, cells and run count, the dry run, and tune-then-report on a tiny slice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from fednlp_bench.engine import run_experiment
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
    data.update(epsilons=[8], delta=1e-3, grid={"lr": [1e-3, 1e-2]}, seeds=[0, 1], runs_dir=str(tmp_path / "runs"))
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
    assert exp.base["partition"]["num_clients"] == 500 and exp.base["trainable_params"] == {"layers": 1, "cache": True}


@pytest.mark.parametrize(("change", "message"), [
    ({"epsilonz": [1]}, "unknown key 'epsilonz'. Did you mean 'epsilons'"),
    ({"mechanisms": {"dp_sgdd": {"clip_norm": 1.0}}}, "not DP mechanisms. Did you mean 'dp_sgd'"),
    ({"grid": {"lr": []}}, "grid.lr must be a non-empty list"),
    ({"tuning_seed": 7}, "tuning_seed 7 must be one of seeds"),
])
def test_bad_experiment_files_fail_with_the_fix(tmp_path: Path, change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Experiment.load(tiny_experiment(tmp_path, **change))


def test_a_bad_cell_is_named_before_any_run(tmp_path: Path) -> None:
    path = tiny_experiment(tmp_path, mechanisms={"dp_adaptive_clip": {"clip_norm": 1.0, "clipped_count_stddev": 0.01}})
    with pytest.raises(ValueError, match=r"cell dp_adaptive_clip-eps8, lr0.001, seed 0: .*clipped_count_stddev=0.01"):
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
        assert final.seed == 1 and validation_score(records[best]) == cell["validation"][best]
        if name != NO_DP:
            assert final.privacy["epsilon_rdp"] <= 8.0 and "epsilon_pld" in final.privacy
            assert final.config["privacy"]["target_epsilon"] == 8.0 and final.privacy["noise_multiplier"] > 0
    path = write_selection(exp.runs_dir, selection)
    assert json.loads(path.read_text())[NO_DP]["chosen"]["lr"] in (1e-3, 1e-2)
