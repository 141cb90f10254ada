"""Counterfactual fairness: the declared word list, the swap, the flip statistics, and a run that reports them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datasets import Dataset

from fednlp_bench.config import RunConfig
from fednlp_bench.fairness.counterfactual import build_counterfactual_set, flip_statistics, wilson_interval
from fednlp_bench.fairness.wordlists import load_word_list

ROOT = Path(__file__).resolve().parents[1]


def test_word_list_is_package_data_and_a_function() -> None:
    swaps = load_word_list("gender")
    assert swaps.pairs >= 80 and len(swaps.sha256) == 64
    assert swaps.mapping["she"] == "he" and swaps.mapping["he"] == "she"
    # Repeated words take their first pair's partner: her -> his, his -> her, him -> her.
    assert (swaps.mapping["her"], swaps.mapping["his"], swaps.mapping["him"]) == ("his", "her", "her")
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "fednlp_bench.fairness" in data["packages"]
    assert "*.tsv" in data["package-data"]["fednlp_bench.fairness.word_lists"]  # so the wheel ships the list


def test_swap_keeps_case_and_whole_words() -> None:
    swaps = load_word_list("gender")
    text, n = swaps.swap("She said HE met his Mother; the shelf and Heather stay.")
    assert text == "He said SHE met her Father; the shelf and Heather stay." and n == 4
    assert swaps.swap("no listed words here") == ("no listed words here", 0)


def test_flip_statistics_by_hand() -> None:
    p0 = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]])
    p1 = np.array([[0.7, 0.3], [0.4, 0.6], [0.1, 0.9]])
    s = flip_statistics(p0, p1, np.array([0, 0, 1]))
    assert s["flips"] == 1 and s["flip_rate"] == pytest.approx(1 / 3)
    assert s["delta_true_prob_mean"] == pytest.approx((-0.2 - 0.2 + 0.1) / 3)
    assert s["abs_delta_true_prob_mean"] == pytest.approx(0.5 / 3)
    lo, hi = wilson_interval(1, 3)
    assert lo < 1 / 3 < hi and wilson_interval(0, 10)[0] == 0.0


def test_fairness_section_is_checked() -> None:
    RunConfig(task="classification", fairness={"counterfactual": "gender"})
    with pytest.raises(ValueError, match="Did you mean 'gender'"):
        RunConfig(task="classification", fairness={"counterfactual": "gendr"})
    with pytest.raises(ValueError, match="task 'tagging' has none"):
        RunConfig(task="tagging", fairness={"counterfactual": "gender"})


def test_counterfactual_set_keeps_only_changed_rows(offline_task_env: object) -> None:
    from fednlp_bench.tasks.classification import ClassificationTask

    task = ClassificationTask(model="tiny", data="20news", max_length=32, max_train_examples=20, max_eval_examples=5)
    task.load()
    raw = Dataset.from_dict({"id": ["a", "b", "c"], "text": ["she ran", "a cat", "his mother"], "label": [0, 1, 2],
                             "partition_key": [0, 1, 2]})
    cset = build_counterfactual_set(task, raw, load_word_list("gender"))
    assert cset.rows.tolist() == [0, 2] and cset.words_swapped == 3 and cset.source_rows == 3
    tok = task.tokenizer
    assert tok.decode(cset.swapped[1]["input_ids"], skip_special_tokens=True) == "her father"
    assert cset.positions([2, 1]).tolist() == [1]


@pytest.mark.slow
@pytest.mark.parametrize(("client_eval_params", "source"), [
    (None, "hold-out rows (training split)"),
    ({"source": "test", "rows": 30, "min_units": 5}, "drawn from test"),  # the cpu tier's setting
])
def test_run_reports_counterfactual_flips_overall_and_per_client(tmp_path: Path, offline_task_env: object,
                                                                 client_eval_params: dict | None, source: str) -> None:
    from fednlp_bench.engine.run.runner import run_experiment

    cfg = RunConfig(task="classification", model="tiny", data="20news", max_length=48, max_train_examples=150,
                    max_eval_examples=60, partition={"scheme": "iid", "num_clients": 5, "seed": 0, "min_size": 2},
                    rounds=2, clients_per_round=5, local_epochs=1, batch_size=8, lr=3e-3, client_eval=True,
                    client_eval_params=client_eval_params or {}, fairness={"counterfactual": "gender"})
    rec = run_experiment(cfg, tmp_path, progress=False)
    cf = rec.fairness["counterfactual"]
    assert cf["split"] == "test" and 0 < cf["changed_rows"] <= cf["split_rows"] == rec.test["rows"]
    assert 0.0 <= cf["flip_rate"] <= 1.0 and cf["flips"] == round(cf["flip_rate"] * cf["changed_rows"])
    assert cf["flip_rate_all_rows"] == pytest.approx(cf["flips"] / cf["split_rows"])
    clients = cf["clients"]
    assert len(clients["per_client"]) == 5 and clients["summary"]["clients"] <= 5 and source in clients["source"]
    assert all(c["changed_rows"] <= c["test_rows"] for c in clients["per_client"])
    assert sum(c["changed_rows"] for c in clients["per_client"]) > 0
