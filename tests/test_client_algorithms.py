"""Client-side algorithms (SCAFFOLD, FedDyn, FedNova, q-FedAvg) against hand-computed references on the toy model.

Each client test runs the real LocalTrainer with the algorithm's procedure on
a linear toy model with full-batch SGD, and recomputes the same local steps
by hand (autograd only for the plain cross-entropy gradient), so the hooks'
arithmetic is checked number for number. Server tests use two clients with
small hand-made deltas whose results are worked out in the comments.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fednlp_bench.algorithms import ClientResult, create_strategy
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.run import sources
from fednlp_bench.engine.run.checkpoint import load_checkpoint
from fednlp_bench.engine.client.state import ClientStateStore
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.engine.run.runner import run_experiment
from fednlp_bench.testing.toy import ToyTask, toy_partition

LR, STEPS = 0.1, 3


@pytest.fixture(autouse=True)
def toy_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "build_partition", toy_partition)


def toy_client() -> tuple[LocalTrainer, dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Trainer (full-batch SGD, 3 steps), start weights, and the client's X, y."""
    task = ToyTask(n_train=12, dim=3, classes=2)
    split = task.load()["train"]
    torch.manual_seed(0)
    model = task.build_model()
    trainer = LocalTrainer(task, model, task.preprocess(split, train=True), batch_size=64, lr=LR, optimizer="sgd",
                           local_epochs=None, local_steps=STEPS)
    x = torch.tensor(split["x"], dtype=torch.float32)
    y = torch.tensor(split["label"])
    return trainer, trainer.state.get(), x, y


def ce_grad(w: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradient of the mean cross-entropy of the linear model (net.weight, net.bias) at ``w``."""
    weight = w["net.weight"].clone().requires_grad_(True)
    bias = w["net.bias"].clone().requires_grad_(True)
    torch.nn.functional.cross_entropy(x @ weight.T + bias, y).backward()
    return {"net.weight": weight.grad, "net.bias": bias.grad}


def rand_like(w: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) * 0.1 for k, v in w.items()}


def close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    for k in b:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def result(delta: list[float], n: int, payload: dict | None = None, steps: int = 1) -> ClientResult:
    return ClientResult(0, {"w": torch.tensor(delta, dtype=torch.float64)}, num_examples=n, num_steps=steps, loss=0.0,
                        payload=payload or {})


W = {"w": torch.tensor([1.0, -2.0], dtype=torch.float64)}


# ------------------------------------------------------------------ SCAFFOLD
def test_scaffold_client_option_ii_matches_hand_computation() -> None:
    trainer, x0, x, y = toy_client()
    c, c_i = rand_like(x0, 1), rand_like(x0, 2)
    state = {k: v.clone() for k, v in c_i.items()}
    proc = create_strategy("scaffold").make_client()
    res = trainer.train(0, np.arange(12), x0, {"c": c}, seed=3, procedure=proc, state=state)
    w = {k: v.clone() for k, v in x0.items()}
    for _ in range(STEPS):  # y <- y - lr * (grad - c_i + c)
        g = ce_grad(w, x, y)
        w = {k: w[k] - LR * (g[k] - c_i[k] + c[k]) for k in w}
    close(res.delta, {k: w[k] - x0[k] for k in w})
    new_ci = {k: c_i[k] - c[k] + (x0[k] - w[k]) / (STEPS * LR) for k in w}  # option II
    close(state, new_ci)
    close(res.payload["delta_c"], {k: new_ci[k] - c_i[k] for k in w})
    assert res.num_steps == STEPS


def test_scaffold_server_update() -> None:
    s = create_strategy("scaffold", {"server_lr": 0.5})
    s.setup(num_clients=4, global_weights=W, trainable=["w"])
    a = result([0.2, 0.4], 1, {"delta_c": {"w": torch.tensor([1.0, 0.0], dtype=torch.float64)}})
    b = result([0.6, -0.8], 3, {"delta_c": {"w": torch.tensor([0.0, 2.0], dtype=torch.float64)}})
    new = s.aggregate(1, W, [a, b])
    # x + 0.5 * mean(dy) = [1, -2] + 0.5 * [0.4, -0.2];  c = 0 + (2/4) * mean(dc) = 0.5 * [0.5, 1.0]
    torch.testing.assert_close(new["w"], torch.tensor([1.2, -2.1], dtype=torch.float64))
    torch.testing.assert_close(s.c["w"], torch.tensor([0.25, 0.5], dtype=torch.float64))
    assert s.configure_round(2, [7])[7]["c"] is s.c


# ------------------------------------------------------------------ FedDyn
def test_feddyn_client_matches_hand_computation() -> None:
    trainer, x0, x, y = toy_client()
    alpha = 0.3
    g_k = rand_like(x0, 4)
    state = {k: v.clone() for k, v in g_k.items()}
    res = trainer.train(0, np.arange(12), x0, {"alpha": alpha}, seed=3,
                        procedure=create_strategy("feddyn").make_client(), state=state)
    w = {k: v.clone() for k, v in x0.items()}
    for _ in range(STEPS):  # gradient of L - <g_k, w> + alpha/2 ||w - x0||^2
        g = ce_grad(w, x, y)
        w = {k: w[k] - LR * (g[k] - g_k[k] + alpha * (w[k] - x0[k])) for k in w}
    close(res.delta, {k: w[k] - x0[k] for k in w})
    close(state, {k: g_k[k] - alpha * (w[k] - x0[k]) for k in w})


def test_feddyn_server_update() -> None:
    s = create_strategy("feddyn", {"alpha": 0.5})
    s.setup(num_clients=4, global_weights=W, trainable=["w"])
    new = s.aggregate(1, W, [result([0.2, 0.4], 1), result([0.6, -0.8], 3)])
    # h = 0 - 0.5 * (1/4) * [0.8, -0.4] = [-0.1, 0.05];  w = x + [0.4, -0.2] - h / 0.5 = x + [0.6, -0.3]
    torch.testing.assert_close(s.h["w"], torch.tensor([-0.1, 0.05], dtype=torch.float64))
    torch.testing.assert_close(new["w"], torch.tensor([1.6, -2.3], dtype=torch.float64))


# ------------------------------------------------------------------ FedNova
def test_fednova_client_counts_effective_steps_with_the_proximal_term() -> None:
    trainer, x0, _, _ = toy_client()
    res = trainer.train(0, np.arange(12), x0, {"mu": 0.5}, seed=3, procedure=create_strategy("fednova").make_client())
    # a <- (1 - lr*mu) a + 1 = 0.95 a + 1:  1, 1.95, 2.8525
    assert res.payload["a"] == pytest.approx(2.8525)
    plain = trainer.train(0, np.arange(12), x0, {"mu": 0.0}, seed=3, procedure=create_strategy("fednova").make_client())
    assert plain.payload["a"] == STEPS


def test_fednova_server_normalises_by_effective_steps() -> None:
    s = create_strategy("fednova")
    a = result([0.2, 0.4], 1, {"a": 1.0})
    b = result([0.6, -0.8], 3, {"a": 4.0})
    # p = [1/4, 3/4]; tau_eff = 0.25*1 + 0.75*4 = 3.25
    # sum p_i d_i / a_i = 0.25*[0.2, 0.4] + 0.75*[0.15, -0.2] = [0.1625, -0.05];  * 3.25 = [0.528125, -0.1625]
    torch.testing.assert_close(s.aggregate(1, W, [a, b])["w"], torch.tensor([1.528125, -2.1625], dtype=torch.float64))
    # Equal effective steps: plain example-weighted FedAvg.
    fedavg = create_strategy("fedavg").aggregate(1, W, [result([0.2, 0.4], 1), result([0.6, -0.8], 3)])
    same = s.aggregate(1, W, [result([0.2, 0.4], 1, {"a": 2.0}), result([0.6, -0.8], 3, {"a": 2.0})])
    torch.testing.assert_close(same["w"], fedavg["w"])


# ------------------------------------------------------------------ q-FedAvg
def test_qfedavg_client_reports_the_loss_at_the_global_model() -> None:
    trainer, x0, x, y = toy_client()
    res = trainer.train(0, np.arange(12), x0, {}, seed=3, procedure=create_strategy("qfedavg").make_client())
    expected = float(torch.nn.functional.cross_entropy(x @ x0["net.weight"].T + x0["net.bias"], y))
    assert res.payload["loss_start"] == pytest.approx(expected, rel=1e-6)


def test_qfedavg_server_weights_high_loss_clients_more() -> None:
    s = create_strategy("qfedavg", {"q_param": 1.0, "qffl_learning_rate": 0.5})
    a = result([0.2, 0.4], 1, {"loss_start": 1.0})
    b = result([0.6, -0.8], 3, {"loss_start": 4.0})
    # L = 2. coeff_k = F^q L: [2, 8]. ||dw||^2 = L^2 ||delta||^2: [4*0.2, 4*1.0] = [0.8, 4.0]
    # h = q F^(q-1) ||dw||^2 + L F^q = [0.8 + 2, 4.0 + 8] -> 14.8
    # w = x + (2*[0.2, 0.4] + 8*[0.6, -0.8]) / 14.8 = x + [5.2, -5.6] / 14.8
    expected = torch.tensor([1 + 5.2 / 14.8, -2 - 5.6 / 14.8], dtype=torch.float64)
    torch.testing.assert_close(s.aggregate(1, W, [a, b])["w"], expected, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ through the engine
def toy_config(**changes: object) -> RunConfig:
    base = dict(task="toy", model="toy", rounds=3, clients_per_round=3, lr=0.1, optimizer="sgd", batch_size=8,
                local_epochs=1, partition={"scheme": "iid", "num_clients": 6, "seed": 0, "min_size": 1, "params": {}})
    base.update(changes)
    return RunConfig.from_dict(base)


def test_scaffold_run_keeps_states_on_disk_and_counts_control_variate_bytes(tmp_path: Path) -> None:
    cfg = toy_config(algorithm="scaffold")
    rec = run_experiment(cfg, tmp_path, task=ToyTask(n_train=60), progress=False)
    fedavg = run_experiment(cfg.replace(algorithm="fedavg"), tmp_path, task=ToyTask(n_train=60), progress=False)
    model_bytes = fedavg.rounds[0].bytes_down // 3
    trainable_bytes = (6 * 3 + 3) * 4  # Linear(6 -> 3): every model tensor is trainable
    assert model_bytes == trainable_bytes
    for r, f in zip(rec.rounds, fedavg.rounds):
        assert r.bytes_down == f.bytes_down + 3 * trainable_bytes  # the model and c
        assert r.bytes_up == f.bytes_up + 3 * trainable_bytes  # the delta and delta_c
    store = ClientStateStore(tmp_path / rec.run_id)
    trained = sorted({c for r in rec.rounds for c in r.clients})
    files = sorted(p.name for p in store.current.iterdir())
    assert files == [f"client_{c:06d}.safetensors" for c in trained]
    assert not [p for p in store.root.iterdir() if p.name.startswith("pending")]
    assert set(store.load(trained[0])) == {"net.weight", "net.bias"}
    w_scaffold = load_checkpoint(tmp_path / rec.run_id).weights
    w_fedavg = load_checkpoint(tmp_path / fedavg.run_id).weights
    assert not torch.allclose(w_scaffold["net.weight"], w_fedavg["net.weight"])  # the correction acted


def test_state_store_follows_the_checkpoint_after_a_kill(tmp_path: Path) -> None:
    store = ClientStateStore(tmp_path)
    store.stage(1, 4, {"c": torch.ones(2)})
    store.commit(1)
    store.stage(2, 4, {"c": torch.full((2,), 2.0)})  # round 2 checkpointed, killed before the commit
    store.stage(3, 4, {"c": torch.full((2,), 3.0)})  # round 3 never checkpointed
    assert torch.equal(store.load(4)["c"], torch.ones(2))
    store.recover(checkpoint_round=2)
    assert torch.equal(store.load(4)["c"], torch.full((2,), 2.0))
    assert sorted(p.name for p in store.root.iterdir()) == ["current"]
    assert store.load(5) == {}


def test_composed_procedures_run_in_order_and_merge_instructions_and_payloads() -> None:
    from fednlp_bench.algorithms import ClientProcedure, Composed, FitContext
    from fednlp_bench.algorithms.fedprox import ProximalTerm

    class ClipGrad(ClientProcedure):
        """A wrapper-style procedure: runs after the algorithm's hook and sees its corrected gradient."""

        instructions = ("max_norm",)

        def after_backward(self, ctx: FitContext) -> None:
            torch.nn.utils.clip_grad_norm_(list(ctx.params.values()), float(ctx.instructions["max_norm"]))

        def on_fit_end(self, ctx: FitContext) -> dict:
            return {"steps_seen": ctx.steps}

    trainer, x0, x, y = toy_client()
    proc = Composed([ProximalTerm(), ClipGrad()])
    assert proc.instructions == ("mu", "max_norm") and not proc.stateful
    res = trainer.train(0, np.arange(12), x0, {"mu": 0.5, "max_norm": 0.01}, seed=3, procedure=proc)
    w = {k: v.clone() for k, v in x0.items()}
    for _ in range(STEPS):  # prox gradient first, then the whole gradient clipped to norm 0.01
        g = ce_grad(w, x, y)
        g = {k: g[k] + 0.5 * (w[k] - x0[k]) for k in w}
        norm = float(torch.sqrt(sum((v**2).sum() for v in g.values())))
        g = {k: v * min(1.0, 0.01 / (norm + 1e-6)) for k, v in g.items()}
        w = {k: w[k] - LR * g[k] for k in w}
    close(res.delta, {k: w[k] - x0[k] for k in w})
    assert res.payload == {"steps_seen": STEPS}
    with pytest.raises(ValueError, match=r"read by no client procedure"):
        trainer.train(0, np.arange(12), x0, {"mu": 0.5, "max_nrm": 1.0}, seed=3, procedure=proc)
