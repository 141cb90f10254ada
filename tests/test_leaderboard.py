"""Leaderboard tables from synthetic records: numbers, gaps, marks, footnotes, refusals, files."""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import statistics
from pathlib import Path
from typing import Any

import pytest

from fednlp_bench.suite import verify as verify_mod
from fednlp_bench.leaderboard.collect import DuplicateRecordError, collect_records, find_record
from fednlp_bench.leaderboard.render import write_leaderboard
from fednlp_bench.leaderboard.tables import build_tables, format_cell, partition_label
from fednlp_bench.results.record import RecordError, RoundResult, RunRecord, config_hash

_counter = iter(range(10_000))


def make_config(task: str = "classification", algorithm: str = "fedavg", scheme: str = "iid",
                params: dict[str, Any] | None = None, seed: int = 0, **changes: Any) -> dict[str, Any]:
    config = {
        "task": task, "data": "20news" if task == "classification" else "wnut17", "model": "minilm",
        "max_length": 64, "max_train_examples": 100, "max_eval_examples": 50,
        "partition": {"scheme": scheme, "num_clients": 10, "seed": seed, "min_size": 1, "params": params or {}},
        "algorithm": algorithm, "algorithm_params": {}, "rounds": 3, "clients_per_round": 5, "local_epochs": 1,
        "local_steps": None, "batch_size": 8, "lr": 1e-4, "optimizer": "adamw", "sampling": "uniform",
        "dropout": 0.0, "eval_every": 1, "seed": seed, "backend": "inprocess",
    }
    config.update(changes)
    return config


def record_from_config(config: dict[str, Any], final: float, run_id: str | None = None,
                       curve: list[float] | None = None) -> RunRecord:
    metric = "accuracy" if config["task"] == "classification" else "f1"
    curve = curve if curve is not None else [final / 2, final * 0.8, final]
    rounds = [RoundResult(round=r, clients=[0, 1], train_loss=1.0 / r, metrics={metric: v}, bytes_up=100,
                          bytes_down=100, wall_time_s=0.5) for r, v in enumerate(curve, start=1)]
    n = next(_counter)
    return RunRecord(
        run_id=run_id or f"{config['task'][:4]}-{config['algorithm']}-{n:04d}",
        created=f"2026-11-25T10:{n // 60 % 60:02d}:{n % 60:02d}", task=config["task"],
        algorithm=config["algorithm"], seed=config["seed"], config=config, config_hash=config_hash(config),
        partition={**config["partition"], "fingerprint": "f" * 64, "content_hash": "c" * 64},
        primary_metric=metric, final_metrics={metric: final, "loss": 1.0 - final}, rounds=rounds,
        wall_time_s=12.0, bytes_up=300, bytes_down=300, versions={"torch": "2.13.0"}, git_commit="abc123",
        hardware={"cpu_count": 2, "processor": "x86_64"},
    )


def write(runs: Path, final: float, run_id: str | None = None, **config_kw: Any) -> Path:
    record = record_from_config(make_config(**config_kw), final, run_id=run_id)
    return record.save(runs / record.run_id)


#: (algorithm, scheme, params, seed, final accuracy) of the synthetic classification table.
GRID = [
    ("centralized", "iid", {}, 0, 0.80), ("centralized", "iid", {}, 1, 0.84),
    ("fedavg", "iid", {}, 0, 0.70), ("fedavg", "iid", {}, 1, 0.74),
    ("fedprox", "iid", {}, 0, 0.71),
    ("fedadam", "iid", {}, 0, 0.75), ("fedadam", "iid", {}, 1, 0.77),
    ("fedyogi", "iid", {}, 0, 0.76), ("fedyogi", "iid", {}, 1, 0.80),
    ("fedavg", "dirichlet_label", {"alpha": 0.1}, 0, 0.50), ("fedavg", "dirichlet_label", {"alpha": 0.1}, 1, 0.60),
    ("fedadam", "dirichlet_label", {"alpha": 0.1}, 0, 0.62),
    ("fedyogi", "dirichlet_label", {"alpha": 0.1}, 0, 0.58),
    # alpha given as int in one record and float in the other: must be one row.
    ("fedavg", "dirichlet_label", {"alpha": 1}, 0, 0.65), ("fedavg", "dirichlet_label", {"alpha": 1.0}, 1, 0.67),
]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for algorithm, scheme, params, seed, final in GRID:
        write(root, final, run_id=f"{algorithm}-{scheme}-{params.get('alpha', 'x')}-s{seed}",
              algorithm=algorithm, scheme=scheme, params=params, seed=seed)
    write(root, 0.40, run_id="tag-fedavg-s0", task="tagging", algorithm="fedavg", seed=0)
    return root


def _table(runs: Path, task: str = "classification"):
    tables = [t for t in build_tables(collect_records(runs)) if t.task == task]
    assert len(tables) == 1
    return tables[0]


def _row(table, label: str):
    return next(r for r in table.rows if r.label == label)


def _col(table, algorithm: str):
    return next(c for c in table.columns if c.algorithm == algorithm)


def test_rows_columns_and_order(runs: Path) -> None:
    table = _table(runs)
    assert [r.label for r in table.rows] == ["IID", "Dirichlet α=1", "Dirichlet α=0.1"]
    assert [c.algorithm for c in table.columns] == ["centralized", "fedavg", "fedprox", "fedadam", "fedyogi"]
    assert table.metric == "accuracy"


def test_means_stds_and_gaps(runs: Path) -> None:
    table = _table(runs)
    iid, a01, a1 = _row(table, "IID"), _row(table, "Dirichlet α=0.1"), _row(table, "Dirichlet α=1")
    central = table.cell(iid, _col(table, "centralized"))
    assert central.mean == pytest.approx(0.82)
    assert central.std == pytest.approx(math.sqrt(((0.80 - 0.82) ** 2 + (0.84 - 0.82) ** 2) / 1))
    assert central.seeds == [0, 1] and not central.shared
    fedavg = table.cell(iid, _col(table, "fedavg"))
    assert (fedavg.mean, fedavg.n) == (pytest.approx(0.72), 2)
    assert table.gap(iid, _col(table, "fedavg")) == pytest.approx(0.72 - 0.82)
    prox = table.cell(iid, _col(table, "fedprox"))
    assert prox.n == 1 and prox.std is None
    assert format_cell(prox) == "0.7100 ± n/a (n=1)"
    assert format_cell(fedavg) == f"0.7200 ± {statistics.stdev([0.70, 0.74]):.4f} (n=2)"
    # Rows without their own centralized run borrow the IID one (centralized ignores the partition).
    shared = table.cell(a01, _col(table, "centralized"))
    assert shared.shared and shared.mean == pytest.approx(0.82)
    assert table.gap(a01, _col(table, "fedavg")) == pytest.approx(0.55 - 0.82)
    assert table.cell(a1, _col(table, "fedavg")).values == pytest.approx([0.65, 0.67])
    assert table.cell(a1, _col(table, "fedprox")) is None and table.gap(a1, _col(table, "fedprox")) is None


def test_best_of_fedopt_is_marked_per_row(runs: Path) -> None:
    table = _table(runs)
    assert [c.algorithm for c in table.best_fedopt(_row(table, "IID"))] == ["fedyogi"]  # 0.78 > 0.76
    assert [c.algorithm for c in table.best_fedopt(_row(table, "Dirichlet α=0.1"))] == ["fedadam"]  # 0.62 > 0.58
    assert table.best_fedopt(_row(table, "Dirichlet α=1")) == []  # no FedOpt member there


def test_markdown_csv_png_and_readme_written(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "lb"
    result = write_leaderboard(runs, out)
    assert {p.name for p in out.iterdir()} == {"classification.md", "classification.csv", "tagging.md",
                                              "tagging.csv", "README.md", "plots"}
    pngs = sorted(p.name for p in (out / "plots").iterdir())
    assert pngs == ["classification-dirichlet-alpha-0.1.png", "classification-dirichlet-alpha-1.png",
                    "classification-iid.png", "tagging-iid.png"]
    for name in pngs:
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result.records) == len(GRID) + 1

    md = (out / "classification.md").read_text()
    iid_line = next(line for line in md.splitlines() if line.startswith("| IID |"))
    cells = [c.strip() for c in iid_line.strip("|").split("|")]
    assert cells[0] == "IID"
    assert cells[1] == f"0.8200 ± {statistics.stdev([0.80, 0.84]):.4f} (n=2)"
    assert cells[5] == f"**0.7800 ± {statistics.stdev([0.76, 0.80]):.4f} (n=2)**"  # FedYogi, best FedOpt
    assert cells[4].startswith("0.7600") and "**" not in cells[4]
    assert cells[6:] == ["-0.1000", "-0.1100", "-0.0600", "-0.0400"]  # gaps FedAvg/FedProx/FedAdam/FedYogi
    a01_line = next(line for line in md.splitlines() if line.startswith("| Dirichlet α=0.1 |"))
    assert "0.8200" in a01_line and "†" in a01_line and "**0.6200 ± n/a (n=1)**" in a01_line
    # Footnote: budget and every record id behind the table, linked to its file.
    assert "10 clients, 5 clients per round, 3 rounds, 1 local epoch(s)" in md
    assert "max examples: 100 train / 50 eval" in md
    for algorithm, scheme, params, seed, _ in GRID:
        run_id = f"{algorithm}-{scheme}-{params.get('alpha', 'x')}-s{seed}"
        assert f"[{run_id}](../runs/{run_id}/record.json)" in md
    assert "tag-fedavg-s0" not in md
    assert "![classification · IID](plots/classification-iid.png)" in md

    rows = list(csv.DictReader((out / "classification.csv").open()))
    assert len(rows) == 11  # IID 5 + alpha=1 2 + alpha=0.1 4 cells (2 of them shared centralized)
    yogi = next(r for r in rows if r["algorithm"] == "fedyogi" and r["partition"] == "IID")
    assert float(yogi["mean"]) == pytest.approx(0.78)
    assert float(yogi["gap_to_centralized"]) == pytest.approx(-0.04)
    assert yogi["best_fedopt"] == "True" and yogi["record_ids"] == "fedyogi-iid-x-s0 fedyogi-iid-x-s1"
    prox = next(r for r in rows if r["algorithm"] == "fedprox")
    assert prox["std"] == "" and prox["n"] == "1"
    readme = (out / "README.md").read_text()
    assert "[classification.md](classification.md)" in readme and "[tagging.csv](tagging.csv)" in readme
    assert "traced to records" in readme and "fednlp-bench suite configs/suite.yaml" in readme


def test_regeneration_is_byte_identical(runs: Path, tmp_path: Path) -> None:
    write_leaderboard(runs, tmp_path / "a", plots=False)
    first = (tmp_path / "a" / "classification.md").read_bytes()
    write_leaderboard(runs, tmp_path / "a", plots=False)
    assert (tmp_path / "a" / "classification.md").read_bytes() == first


def test_budgets_are_never_mixed(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write(runs, 0.5, algorithm="fedavg", rounds=3)
    write(runs, 0.6, algorithm="fedavg", rounds=10)
    tables = build_tables(collect_records(runs))
    assert sorted(t.budget["rounds"] for t in tables) == [3, 10]
    write_leaderboard(runs, tmp_path / "out")
    md = (tmp_path / "out" / "classification.md").read_text()
    assert md.count("## classification") == 2 and "budget `" in md


def test_algorithm_with_two_param_sets_gets_two_columns(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write(runs, 0.5, algorithm="fedprox", algorithm_params={"mu": 0.01})
    write(runs, 0.6, algorithm="fedprox", algorithm_params={"mu": 0.1})
    table = build_tables(collect_records(runs))[0]
    assert [table.column_label(c) for c in table.columns] == ["FedProx (mu=0.01)", "FedProx (mu=0.1)"]


def test_partition_labels() -> None:
    assert partition_label("iid", {}) == "IID"
    assert partition_label("dirichlet_label", {"alpha": 10.0}) == "Dirichlet α=10"
    assert partition_label("quantity_skew", {"beta": 0.5}) == "Quantity skew (β=0.5)"
    assert partition_label("feature_cluster", {"alpha": 0.5, "num_clusters": 10}) == \
        "Feature clusters (α=0.5, num_clusters=10)"


# ---------------------------------------------------------------- refusals
def _corrupt(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("case, fragment", [
    ("missing", "missing field(s) ['hardware']"),
    ("schema", "schema_version 2 is not supported"),
    ("nan", "is not a finite number"),
    ("hash", "config_hash does not match"),
    ("json", "not valid JSON"),
    ("algorithm", "disagrees with config['algorithm']"),
])
def test_bad_records_are_refused_naming_the_file(tmp_path: Path, case: str, fragment: str) -> None:
    runs = tmp_path / "runs"
    write(runs, 0.7, run_id="good", algorithm="fedavg")
    bad = write(runs, 0.6, run_id="bad", algorithm="fedprox")
    if case == "missing":
        _corrupt(bad, lambda d: d.pop("hardware"))
    elif case == "schema":
        _corrupt(bad, lambda d: d.update(schema_version=2))
    elif case == "nan":
        _corrupt(bad, lambda d: d["final_metrics"].update(accuracy=float("nan")))
    elif case == "hash":
        _corrupt(bad, lambda d: d["config"].update(lr=0.5))
    elif case == "json":
        bad.write_text(bad.read_text()[:-20])
    elif case == "algorithm":
        _corrupt(bad, lambda d: d.update(algorithm="fedavg"))
    out = tmp_path / "out"
    with pytest.raises(RecordError) as err:
        write_leaderboard(runs, out)
    assert str(bad) in str(err.value) and fragment in str(err.value)
    assert not out.exists()  # nothing written before every record validated
    with pytest.warns(UserWarning, match="skipping invalid record"):
        kept = collect_records(runs, skip_invalid=True)
    assert [item.record.run_id for item in kept] == ["good"]


def test_duplicates_are_detected_with_both_paths(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = write(runs, 0.7, run_id="a", algorithm="fedavg", seed=0)
    copy = runs / "b" / "record.json"
    copy.parent.mkdir()
    data = json.loads(first.read_text())
    data["run_id"], data["created"] = "b", "2099-01-01T00:00:00"
    copy.write_text(json.dumps(data))
    write(runs, 0.7, run_id="c", algorithm="fedavg", seed=1)  # other seed: not a duplicate
    with pytest.raises(DuplicateRecordError) as err:
        collect_records(runs)
    assert str(first) in str(err.value) and str(copy) in str(err.value) and "identical" in str(err.value)
    with pytest.warns(UserWarning, match="duplicate run"):
        kept = collect_records(runs, skip_duplicates=True)
    assert sorted(item.record.run_id for item in kept) == ["a", "c"]


def test_reused_run_id_is_refused(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    record = record_from_config(make_config(algorithm="fedavg"), 0.5, run_id="same")
    record.save(runs / "x")
    record_from_config(make_config(algorithm="fedprox"), 0.5, run_id="same").save(runs / "y")
    with pytest.raises(DuplicateRecordError, match="run_id 'same' is used by two different runs"):
        collect_records(runs)


def test_empty_or_missing_runs_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        collect_records(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no result records"):
        write_leaderboard(tmp_path / "empty", tmp_path / "out")


# ---------------------------------------------------------------- CLI + verify
def _cli(argv: list[str]) -> int:
    from fednlp_bench.commands import leaderboard

    parser = argparse.ArgumentParser()
    leaderboard.register(parser.add_subparsers())
    args = parser.parse_args(["leaderboard", *argv])
    return args.func(args)


def _fake_runner(shift: float):
    calls: list[dict[str, Any]] = []

    def runner(config: dict[str, Any], runs_dir: Path) -> RunRecord:
        calls.append(config)
        original = next(item.record for item in collect_records(_fake_runner.source)
                        if item.record.config == config)
        curve = [r.metrics[original.primary_metric] + shift for r in original.rounds]
        record = record_from_config(config, original.final_metrics[original.primary_metric] + shift,
                                    run_id="rerun", curve=curve)
        record.save(Path(runs_dir) / "rerun")
        return record

    runner.calls = calls  # type: ignore[attr-defined]
    return runner


@pytest.mark.parametrize("shift, tolerance, code", [(0.0, None, 0), (1e-3, None, 1), (1e-3, "1e-2", 0)])
def test_cli_verify(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, shift: float,
                    tolerance: str | None, code: int) -> None:
    _fake_runner.source = runs  # type: ignore[attr-defined]
    runner = _fake_runner(shift)
    monkeypatch.setattr(verify_mod, "_load_runner", lambda: runner)
    out = tmp_path / "lb"
    argv = ["--runs", str(runs), "--out", str(out), "--verify", "fedavg-iid-x-s1"]
    argv += ["--tolerance", tolerance] if tolerance else ["--no-plots"] if shift else []
    assert _cli(argv) == code
    assert len(runner.calls) == 1 and runner.calls[0]["seed"] == 1 and runner.calls[0]["algorithm"] == "fedavg"
    printed = capsys.readouterr().out
    assert ("REPRODUCED" in printed) and (("NOT REPRODUCED" in printed) == (code == 1))
    assert "final accuracy" in printed and "round 3 accuracy" in printed
    saved = json.loads((out / "verification.json").read_text())["fedavg-iid-x-s1"]
    assert saved["passed"] is (code == 0) and saved["max_abs_diff"] == pytest.approx(shift, abs=1e-12)
    assert saved["n_compared"] == 5  # 2 final metrics + 3 rounds
    assert ("| fedavg-iid-x-s1 | reproduced |" in (out / "README.md").read_text()) == (code == 0)
    # The README rewrite after verifying keeps the curves of the build (when it drew them).
    assert ("![classification · IID](plots/classification-iid.png)" in (out / "classification.md").read_text()) \
        == ("--no-plots" not in argv)


def test_verify_by_path_and_bad_input(runs: Path, tmp_path: Path) -> None:
    item = find_record(None, str(runs / "fedavg-iid-x-s0"))
    assert item.record.run_id == "fedavg-iid-x-s0"
    with pytest.raises(FileNotFoundError, match="no record with run_id 'nope'"):
        find_record(runs, "nope")
    with pytest.raises(ValueError, match="--tolerance only applies to --verify"):
        _cli(["--runs", str(runs), "--out", str(tmp_path / "o"), "--tolerance", "1e-3"])


def test_verify_flags_a_different_partition(runs: Path) -> None:
    item = find_record(runs, "fedavg-iid-x-s0")

    def runner(config: dict[str, Any], runs_dir: Path) -> RunRecord:
        record = record_from_config(config, item.record.final_metrics["accuracy"],
                                    curve=[r.metrics["accuracy"] for r in item.record.rounds])
        record.partition["content_hash"] = "d" * 64
        return record

    result = verify_mod.verify_record(item, runner=runner)
    assert all(c.ok for c in result.comparisons) and not result.passed
    assert "partition content hash differs" in result.problems[0]


def test_cli_build_and_duplicate_refusal(runs: Path, tmp_path: Path, capsys) -> None:
    assert _cli(["--runs", str(runs), "--out", str(tmp_path / "lb"), "--no-plots"]) == 0
    assert "16 records -> 2 table(s)" in capsys.readouterr().out
    shutil.copytree(runs / "fedavg-iid-x-s0", runs / "copy")
    with pytest.raises(DuplicateRecordError):
        _cli(["--runs", str(runs), "--out", str(tmp_path / "lb")])
    assert _cli(["--runs", str(runs), "--out", str(tmp_path / "lb"), "--skip-duplicates", "--no-plots"]) == 0


def test_plugin_fedopt_subclass_joins_the_family(tmp_path: Path) -> None:
    from fednlp_bench.algorithms.fedopt import FedAdam
    from fednlp_bench.algorithms.registry import register_algorithm

    class LbTestAdamPlugin(FedAdam):
        name = "lbtest_adam_plugin"

    register_algorithm(LbTestAdamPlugin)
    runs = tmp_path / "runs"
    write(runs, 0.61, algorithm="fedadam")
    write(runs, 0.66, algorithm="lbtest_adam_plugin")
    write(runs, 0.70, algorithm="fednova")  # registered, not FedOpt: its own column, never marked
    table = build_tables(collect_records(runs))[0]
    assert [c.algorithm for c in table.columns] == ["fedadam", "lbtest_adam_plugin", "fednova"]
    assert [c.algorithm for c in table.best_fedopt(table.rows[0])] == ["lbtest_adam_plugin"]


def test_links_work_when_out_is_outside_the_runs_tree(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every relative link of every Markdown file resolves, with --out in an unrelated folder."""
    import re

    out = tmp_path / "elsewhere" / "deep" / "board"
    monkeypatch.chdir(runs)  # the working directory is neither out nor its parent
    write_leaderboard(runs, out, plots=False)
    checked = 0
    for md in out.glob("*.md"):
        for link in re.findall(r"\]\(([^)\s]+)\)", md.read_text()):
            if "://" in link:
                continue
            assert (md.parent / link).resolve().exists(), f"{md.name}: broken link {link}"
            checked += 1
    assert checked > 0
    readme = (out / "README.md").read_text()
    assert f"--out {out.resolve()}" in readme  # outside the working directory: an absolute, copyable path


def test_identical_curves_stay_distinguishable(runs: Path, tmp_path: Path) -> None:
    """Lines get distinct markers and dash patterns, so an identical curve drawn on top is still seen."""
    from matplotlib.figure import Figure

    drawn: list[dict[str, Any]] = []
    original = Figure.add_subplot

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        ax = original(self, *args, **kwargs)
        plot = ax.plot

        def record(*a: Any, **k: Any) -> Any:
            drawn.append(k)
            return plot(*a, **k)

        ax.plot = record
        return ax

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "add_subplot", spy)
        write_leaderboard(runs, tmp_path / "out")
    per_figure = [d for d in drawn]
    assert len(per_figure) >= 2
    first = per_figure[:3]
    assert len({d["marker"] for d in first}) == len(first)
    assert len({(d["linestyle"], d["markersize"]) for d in first}) == len(first)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} \
        if folder.exists() else {}


def test_failing_verify_leaves_out_untouched(runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown run id, or an engine that cannot re-run, fails before any table is written."""
    out = tmp_path / "lb"
    with pytest.raises(FileNotFoundError, match="no record with run_id 'nope'"):
        _cli(["--runs", str(runs), "--out", str(out), "--verify", "nope"])
    assert not out.exists()
    assert _cli(["--runs", str(runs), "--out", str(out), "--no-plots"]) == 0
    before = _tree(out)

    def no_engine() -> None:
        raise ValueError("--verify needs the FL engine (fednlp_bench.engine.runner): absent")

    monkeypatch.setattr(verify_mod, "_load_runner", no_engine)
    with pytest.raises(ValueError, match="needs the FL engine"):
        _cli(["--runs", str(runs), "--out", str(out), "--verify", "fedavg-iid-x-s1"])
    with pytest.raises(FileNotFoundError, match="no record with run_id 'nope'"):
        _cli(["--runs", str(runs), "--out", str(out), "--verify", "nope"])
    assert _tree(out) == before
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file; give a folder"):
        _cli(["--runs", str(runs), "--out", str(tmp_path / "afile")])
