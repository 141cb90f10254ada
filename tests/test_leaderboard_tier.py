"""Tier tables from a hand-written plan.json and fabricated records: statistics, convergence, files, figure."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from fednlp_bench.leaderboard.tier_build import bytes_to_target
from fednlp_bench.leaderboard.tier_cells import hardware_label
from fednlp_bench.leaderboard.tier_plots import draw_gap_figure
from fednlp_bench.leaderboard.tier_tables import write_tier_leaderboard

from leaderboard_tier_fakes import DOWN, UP, build_tier_plan, edit_plan, only_task, plan_cell, run_config, write_record


@pytest.fixture
def tier(tmp_path: Path) -> Path:
    return build_tier_plan(tmp_path)


# ---------------------------------------------------------------- numbers
def test_bytes_to_target_on_a_curve(tier: Path) -> None:
    task = only_task(tier)
    assert task.target == pytest.approx(0.81) and task.target_role == "centralized_converged"
    record = next(i.record for i in task.cell(0, "fedavg").records if i.record.seed == 0)
    assert bytes_to_target(record, "accuracy", 0.81) == 2 * (UP + DOWN)  # round 2: 0.82
    assert bytes_to_target(record, "accuracy", 0.9) == 3 * (UP + DOWN)  # equality counts
    assert bytes_to_target(record, "accuracy", 0.95) is None
    cell = task.cell(0, "fedavg")
    assert cell.bytes_to_target == [300, 450, None]
    assert cell.mean_bytes_to_target == pytest.approx(375.0)
    assert task.cell(2, "fedadam").bytes_to_target == [None, None, None]


# ---------------------------------------------------------------- cells
def test_cells_centralized_roles_gap_and_details(tier: Path) -> None:
    task = only_task(tier)
    equal, converged = task.centralized("centralized_equal"), task.centralized("centralized_converged")
    assert equal.summary.mean == pytest.approx(0.82) and equal.summary.std == pytest.approx(0.02)
    # Converged reports the test metric of its best-validation round.
    assert converged.summary.mean == pytest.approx(0.89)
    fedavg = task.cell(0, "fedavg")
    assert fedavg.summary.mean == pytest.approx(0.6) and fedavg.summary.std == pytest.approx(0.1)
    # Paired by seed: 0.5-0.80, 0.6-0.82, 0.7-0.84 = -0.30, -0.22, -0.14 (sd 0.08); Welch beside it.
    gap = fedavg.gap
    assert gap.value == pytest.approx(0.6 - 0.82) and gap.paired.mean == pytest.approx(-0.22)
    assert gap.paired.values == pytest.approx((-0.30, -0.22, -0.14)) and gap.paired.seeds == (0, 1, 2)
    assert gap.paired_half_width == pytest.approx(4.302653 * 0.08 / math.sqrt(3), abs=1e-6)
    assert gap.welch_half_width > gap.paired_half_width
    assert task.cell(2, "fedavg").gap.value == pytest.approx(0.44 - 0.82)
    assert fedavg.mean_total_bytes == pytest.approx(450.0) and fedavg.mean_wall_time_s == pytest.approx(21.0)
    # Worst 10% of the 10 qualifying clients (the 2 below the minimum never count): 0.2, 0.3, 0.4 -> 0.3.
    clients = fedavg.clients
    assert clients.worst.mean == pytest.approx(0.3) and clients.qualified == (10, 10, 10) and clients.clients == (12,) * 3
    low, high = clients.interval
    assert low == pytest.approx(0.3) and 0.3 < high < 0.45 and equal.clients is None
    partial = task.cell(1, "fedavg")
    assert (partial.n_done, partial.n_planned, partial.summary, partial.gap, partial.convergence) == (2, 3, None, None, None)
    assert [p.index for p in task.partitions] == [0, 1, 2] and task.algorithms == ["fedavg", "fedadam"]
    assert task.converged_overrides == {"rounds": 5, "test_best_round": True}
    assert "lr" not in task.budget and task.budget["rounds"] == 3 and task.budget["partition.num_clients"] == 10
    assert task.hardware == ["CPU AMD EPYC, 1 torch thread(s) of 2 cores"]
    assert hardware_label({"gpu": "NVIDIA H100 80GB HBM3", "device": "cuda"}) == "GPU NVIDIA H100 80GB HBM3"


def test_convergence_and_best_go_by_validation(tier: Path) -> None:
    task = only_task(tier)
    rising = task.cell(0, "fedavg").convergence
    # Seed slopes over rounds 1-3: 0.20, 0.255, 0.10: the cell reports the largest
    assert rising.converged is False and rising.slope == pytest.approx(0.185) and rising.rising_seeds == 3  # the seed-mean curve
    assert rising.text() == "still rising (+0.1850 per round, 3/3 single seeds rising)"
    flat = task.cell(2, "fedavg").convergence
    assert flat.converged is True and flat.slope == pytest.approx(0.0)
    # alpha=0.1: FedAdam has the higher test mean (0.52 > 0.44), FedAvg the higher validation (0.45 > 0.36).
    assert task.best_federated(2) is task.cell(2, "fedavg")
    assert task.best_federated(0) is None  # IID: every FL cell is still rising, so none is marked
    assert task.best_federated(1) is None  # alpha=1: incomplete


def _publish(tier: Path, tmp_path: Path) -> tuple[Path, list[Path]]:
    out = tmp_path / "published"  # outside the plan's folder: links must still resolve
    files = write_tier_leaderboard(tier, out)
    return out, files


HALF_WIDTH = 4.302653 * 0.1 / math.sqrt(3)  # t(2) × sd 0.1 / √3: FedAvg IID's interval
PAIRED_HALF_WIDTH = 4.302653 * 0.08 / math.sqrt(3)  # the same for its paired gap (sd of differences 0.08)


def test_tier_writes_markdown_csv_readme_and_figure(tier: Path, tmp_path: Path) -> None:
    _, files = _publish(tier, tmp_path)
    assert sorted(p.name for p in files) == ["README.md", "classification.csv", "classification.md", "gap_vs_alpha.png"]


def test_markdown_cells_marks_and_tuning_table(tier: Path, tmp_path: Path) -> None:
    out, _ = _publish(tier, tmp_path)
    hw, paired = HALF_WIDTH, PAIRED_HALF_WIDTH
    md = (out / "classification.md").read_text()
    assert (f"0.6000 ± 0.1000<br>95% CI [{0.6 - hw:.4f}, {0.6 + hw:.4f}], n=3<br>gap -0.2200 (paired 95% CI "
            f"±{paired:.4f}, n=3; Welch ±") in md
    assert "<br>still rising (+0.1850 per round, 3/3 single seeds rising) |" in md
    assert "| **0.4400 ± 0.0400<br>95% CI [0.3406, 0.5394], n=3**<br>gap -0.3800" in md  # best by validation
    assert "| Dirichlet α=1 | 0.8900 ± 0.0100" in md and "2/3 runs done" in md
    assert "0.6500<br>n=1<br>gap -0.1500 (paired n=1, no interval)" in md  # FedAdam IID: one seed
    assert "tuning pending" in md  # FedAdam alpha=1: its grid is not finished
    assert "| Partition | Centralized (converged) † | Centralized (equal budget) † | FedAvg | FedAdam |" in md
    assert "- Tier: `cpu`" in md and "- Hardware: CPU AMD EPYC, 1 torch thread(s) of 2 cores" in md
    assert "- Convergence: OLS slope of the seed-mean validation metric per round below 0.02 over the last 100% of the rounds" in md
    assert "- Every cell: run ids in [classification.csv](classification.csv)" in md
    assert "rounds=5, test_best_round=True" in md and "3 rounds" in md and "10 clients" in md
    assert ("| IID | FedAvg | lr=0.003 (tuned on IID) | 0.4811 ± 0.2707 95% CI [-0.1913, 1.1535], n=3 | 450 B | "
            "375 B (2/3 reached) | 21.0 s | 0.3000 [0.3000, ") in md
    assert "(10/12 clients with ≥20 examples) |" in md
    assert "| Dirichlet α=0.1 | FedAdam | lr=0.001 (tuned on IID) | 0.3533 ± 0.0000" in md
    assert "| IID | FedAvg | 2 | step 1: lr ↑ 0.003 (1) | lr=0.003 ⚠ still on the edge of lr after the cap |" in md
    assert "| IID | FedAvg | lr=0.003 | 1 | 0 | **0.7400** | **chosen** |" in md
    assert "| IID | FedAvg | lr=0.001 | 0 | 0 | 0.6000 |  |" in md
    assert "| Dirichlet α=1 | FedAdam | lr=0.001 | 0 | 0 | pending | choice pending |" in md


def test_csv_rows_carry_runs_gaps_and_status(tier: Path, tmp_path: Path) -> None:
    out, _ = _publish(tier, tmp_path)
    hw, paired = HALF_WIDTH, PAIRED_HALF_WIDTH
    rows = list(csv.DictReader((out / "classification.csv").open()))
    avg = next(r for r in rows if r["algorithm"] == "fedavg" and r["partition_index"] == "0")
    assert float(avg["mean"]) == pytest.approx(0.6) and float(avg["ci_high"]) == pytest.approx(0.6 + hw, abs=1e-6)
    assert avg["run_ids"] == "avg-iid-s0 avg-iid-s1 avg-iid-s2" and avg["bytes_to_target_runs"] == "300 450 none"
    assert avg["bytes_to_target_reached"] == "2/3" and float(avg["bytes_to_target_mean"]) == 375.0
    assert (avg["converged"], avg["best"], avg["gap_paired_n"]) == ("False", "False", "3")
    assert float(avg["gap_paired_ci_half_width"]) == pytest.approx(paired, abs=1e-6)
    assert avg["clients_qualified"] == "10 10 10" and float(avg["worst_10pct"]) == pytest.approx(0.3)
    best = next(r for r in rows if r["algorithm"] == "fedavg" and r["partition_index"] == "2")
    assert (best["converged"], best["best"]) == ("True", "True") and float(best["validation_mean"]) == pytest.approx((0.45 + 0.46 + 0.45) / 3)  # window mean
    partial = next(r for r in rows if r["algorithm"] == "fedavg" and r["partition_index"] == "1")
    assert (partial["complete"], partial["mean"], partial["n_done"], partial["done_run_ids"]) == \
        ("False", "", "2", "avg-a1-s0 avg-a1-s1")
    assert {r["role"] for r in rows} == {"federated", "centralized_equal", "centralized_converged"}


def test_readme_headline_picks_by_validation_and_links_resolve(tier: Path, tmp_path: Path) -> None:
    out, _ = _publish(tier, tmp_path)
    readme = (out / "README.md").read_text()
    assert readme.index("## Headline") < readme.index("## Tables") < readme.index("gap_vs_alpha.png")
    assert "| classification | `20news` | `accuracy` | 0.8900 ± 0.0100 95% CI" in readme
    # Most skewed = alpha 0.1; best FL there by validation = FedAvg, though FedAdam's test mean is higher.
    assert ("FedAvg on Dirichlet α=0.1: 0.4400 ± 0.0400 95% CI [0.3406, 0.5394], n=3; gap -0.3800 (paired 95% CI "
            "±0.0497, n=3; Welch ±0.0831); converged (slope +0.0000/round)") in readme
    assert "— (IID: no converged FL cell; FedAvg still rising (+0.1850 per round, 3/3 single seeds rising)" in readme
    assert "| classification | 19 | 0.29 |" in readme  # records and CPU hours, tuning records included
    assert "[classification.md](classification.md)" in readme
    link = readme.split("[plan.json](")[1].split(")")[0]
    assert (out / link).resolve() == tier.resolve()


def test_figure_is_a_png_and_rebuilding_is_byte_identical(tier: Path, tmp_path: Path) -> None:
    out, files = _publish(tier, tmp_path)
    png = (out / "gap_vs_alpha.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(out / "gap_vs_alpha.png").shape[1] == 420  # one 4.2-inch panel at 100 dpi
    # Rebuilding from unchanged inputs gives identical files.
    before = {p.name: p.read_bytes() for p in files}
    write_tier_leaderboard(tier, out)
    assert {p.name: p.read_bytes() for p in files} == before


def test_fairness_section_lists_the_cells_whose_records_have_it(tier: Path, tmp_path: Path) -> None:
    write_tier_leaderboard(tier, tmp_path / "out")
    md = (tmp_path / "out" / "classification.md").read_text()
    section = md.split("## Counterfactual fairness (final models)")[1].split("## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| Dirichlet") or line.startswith("| IID")]
    assert len(rows) == 1 and rows[0].startswith("| Dirichlet α=0.1 | FedAvg |")  # only that cell has the section
    hw = 4.302653 * 0.02 / math.sqrt(3)
    assert f"| 0.1200 ± 0.0200 95% CI [{0.12 - hw:.4f}, {0.12 + hw:.4f}], n=3 |" in rows[0]  # flip rate over seeds
    assert "| -0.0200 ± 0.0100 " in rows[0] and "| 0.4000 ± 0.1000 " in rows[0]  # Δp and worst-10% clients
    assert f"| {(0.1 + 0.2 + 0.4) / 3:.4f} ± " in rows[0] and rows[0].endswith("| 3 of 4 |")
    assert "400 of 1,000 test rows" in section and "drawn from test" in section


def test_headline_copes_with_a_task_without_cells(tier: Path, tmp_path: Path) -> None:
    """A task whose tuning has just started (no cell yet) still gets its headline row."""
    def add_task(data: dict[str, Any]) -> None:
        entry = json.loads(json.dumps(data["tuning"][1]))
        entry.update(task="qa", data="squad", metric=None)
        data["tuning"].append(entry)

    edit_plan(tier, add_task)
    out = tmp_path / "out"
    write_tier_leaderboard(tier, out, figure=False)
    row = next(line for line in (out / "README.md").read_text().splitlines() if line.startswith("| qa |"))
    assert "| not run | not run | — (no such partition) | — (Dirichlet α=1: tuning pending) |" in row


def test_figure_has_one_panel_per_task_with_iid_at_the_right(tier: Path) -> None:
    task = only_task(tier)
    fig = draw_gap_figure([task, task])
    assert len(fig.axes) == 2
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.1", "1", "IID"]
    assert list(ax.get_xticks()) == pytest.approx([0.1, 1.0, 10.0])
    assert len(ax.get_legend().get_texts()) == 2  # FedAvg and FedAdam


def test_partition_without_alpha_is_left_out_of_the_figure_and_named(tier: Path, tmp_path: Path) -> None:
    runs = tier.parent.parent / "records"
    natural = {"scheme": "natural_id", "params": {"column": "author"}, "index": 3}
    cell = plan_cell("fedavg", natural, "federated", [
        write_record(runs, f"avg-nat-s{s}", run_config("fedavg", natural, s), 0.3 + s / 100, [0.1, 0.2, 0.3])
        for s in range(3)])
    edit_plan(tier, lambda d: d["cells"].append(cell))
    task = only_task(tier)
    assert [p.scheme for p in task.partitions][-1] == "natural_id"
    assert task.most_skewed().alpha == pytest.approx(0.1)  # an alpha partition wins over natural_id
    out = tmp_path / "out"
    write_tier_leaderboard(tier, out)
    readme = (out / "README.md").read_text()
    assert "Partitions without α are not in the figure (see their tables): classification: Natural (author)." in readme
    assert "| Natural (author) | 0.8900" in (out / "classification.md").read_text()
    # Without any alpha (AESLC: IID + mailboxes) the most skewed partition is the last non-IID one.
    task.partitions = [p for p in task.partitions if p.alpha is None]
    assert task.most_skewed().scheme == "natural_id"
