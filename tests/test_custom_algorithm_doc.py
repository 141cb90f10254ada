"""docs/custom_algorithm.md stays true: its client-side example runs from a user file to a gap-table row."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp_bench import cli
from fednlp_bench.engine.run import sources
from fednlp_bench.engine.client.state import ClientStateStore
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.results.record import RunRecord
from fednlp_bench.testing.toy import ToyTask, toy_partition

DOC = Path(__file__).resolve().parents[1] / "docs" / "custom_algorithm.md"
PLUGIN = "my_lab.client_momentum:FedAvgClientMomentum"
TOY = ["--task", "toy", "--model", "toy", "--scheme", "iid", "--clients", "4", "--clients-per-round", "2",
       "--rounds", "2", "--lr", "0.1", "--optimizer", "sgd", "--batch-size", "8", "--no-progress"]


@pytest.fixture()
def user_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The doc's code block saved as the user's own module ``my_lab/client_momentum.py``."""
    block = next(b for b in re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S) if "class MomentumClient" in b)
    assert 30 <= len(block.strip().splitlines()) <= 50  # "about 40 lines"
    pkg = tmp_path / "user_code" / "my_lab"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "client_momentum.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path / "user_code"))
    monkeypatch.setattr(sources, "build_partition", toy_partition)
    monkeypatch.setattr(sources, "build_task", lambda config: ToyTask(n_train=60, seed=config.partition["seed"]))
    return tmp_path


def test_doc_procedure_keeps_momentum_across_rounds_by_hand(user_package: Path) -> None:
    from fednlp_bench.algorithms import create_strategy

    task = ToyTask(n_train=12, dim=3, classes=2)
    split = task.load()["train"]
    torch.manual_seed(0)
    trainer = LocalTrainer(task, task.build_model(), task.preprocess(split, train=True), batch_size=64, lr=0.1,
                           optimizer="sgd", local_epochs=None, local_steps=2)
    x, y = torch.tensor(split["x"]), torch.tensor(split["label"])
    w0 = trainer.state.get()
    m0 = {k: torch.full_like(v, 0.05) for k, v in w0.items()}  # momentum left from an earlier round
    state = {k: v.clone() for k, v in m0.items()}
    res = trainer.train(0, np.arange(12), w0, {"beta": 0.5}, seed=1,
                        procedure=create_strategy(PLUGIN, {"beta": 0.5}).make_client(), state=state)
    w, m = {k: v.clone() for k, v in w0.items()}, m0
    for _ in range(2):  # m <- 0.5 m + g;  w <- w - lr m
        weight, bias = w["net.weight"].clone().requires_grad_(True), w["net.bias"].clone().requires_grad_(True)
        torch.nn.functional.cross_entropy(x @ weight.T + bias, y).backward()
        g = {"net.weight": weight.grad, "net.bias": bias.grad}
        m = {k: 0.5 * m[k] + g[k] for k in m}
        w = {k: w[k] - 0.1 * m[k] for k in w}
    for k in w:
        torch.testing.assert_close(res.delta[k], w[k] - w0[k])
        torch.testing.assert_close(state[k], m[k])


def test_doc_plugin_runs_from_the_cli_to_a_gap_table_row(user_package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs, out = user_package / "runs", user_package / "gap.md"
    assert cli.main(["algorithms", "--plugin", PLUGIN]) == 0
    assert re.search(r"^fedavg_client_momentum\s+FedAvg \+ client momentum\s+-\s+MomentumClient\s+beta=0.9$",
                     capsys.readouterr().out, flags=re.M)
    assert cli.main(["run", *TOY, "--algorithm", PLUGIN, "--betta", "0.5", "--runs-dir", str(runs)]) == 2
    assert "Did you mean '--beta'?" in capsys.readouterr().err
    for algo in (["--algorithm", PLUGIN, "--beta", "0.5"], ["--algorithm", "fedavg"], ["--algorithm", "centralized"]):
        assert cli.main(["run", *TOY, *algo, "--runs-dir", str(runs)]) == 0
    capsys.readouterr()
    record = next(RunRecord.load(p.parent) for p in runs.glob("*/record.json") if "client_momentum" in p.parent.name)
    assert record.algorithm == PLUGIN and record.config["algorithm_params"] == {"beta": 0.5}
    states = ClientStateStore(runs / record.run_id)
    assert sorted(p.name for p in states.current.iterdir()) == [
        f"client_{c:06d}.safetensors" for c in sorted({c for r in record.rounds for c in r.clients})]
    n_runs = len(list(runs.glob("*/record.json")))
    assert cli.main(["compare", *TOY, "--algorithms", f"centralized,fedavg,{PLUGIN}", "--beta", "0.5",
                     "--runs-dir", str(runs), "--out", str(out)]) == 0
    assert len(list(runs.glob("*/record.json"))) == n_runs  # the runs above are reused
    row = next(line for line in out.read_text().splitlines() if line.startswith(f"| {PLUGIN} |"))
    assert "still rising" in row or "converged" in row or "undecided" in row
