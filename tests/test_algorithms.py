"""Server strategies against hand-computed updates, their parameters, state and the registry."""

from __future__ import annotations

import math

import pytest
import torch

from fednlp_bench.algorithms import ClientResult, Strategy, algorithm_names, create_strategy, get_algorithm_class
from fednlp_bench.algorithms.fednova import FedNova
from fednlp_bench.algorithms.registry import register_algorithm

# Two clients of a two-parameter toy model: w = [1, -2];
# client A: 1 example,  delta [0.1, 0.2]; client B: 3 examples, delta [0.3, -0.4].
W = {"w": torch.tensor([1.0, -2.0], dtype=torch.float64)}
A = ClientResult(0, {"w": torch.tensor([0.1, 0.2], dtype=torch.float64)}, num_examples=1, num_steps=1, loss=1.0)
B = ClientResult(1, {"w": torch.tensor([0.3, -0.4], dtype=torch.float64)}, num_examples=3, num_steps=3, loss=2.0)
# Example-weighted mean delta: (0.1 + 3*0.3)/4 = 0.25 and (0.2 - 3*0.4)/4 = -0.25.
MEAN = [0.25, -0.25]


def close(t: torch.Tensor, values: list[float]) -> None:
    assert t.tolist() == pytest.approx(values, rel=1e-12, abs=1e-12)


def test_fedavg_is_example_weighted_mean() -> None:
    new = create_strategy("fedavg").aggregate(1, W, [A, B])
    close(new["w"], [1.25, -2.25])
    close(W["w"], [1.0, -2.0])  # global weights untouched


def test_fedadam_matches_hand_computed_two_rounds() -> None:
    eta, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    s = create_strategy("fedadam", {"server_lr": eta, "beta1": b1, "beta2": b2, "tau": tau})
    w1 = s.aggregate(1, W, [A, B])
    # Round 1 by hand: m = (1 - b1) * d; v = b2 * tau^2 + (1 - b2) * d^2 (v starts at tau^2, Reddi et al. Alg. 2).
    expected1 = []
    for w, d in zip([1.0, -2.0], MEAN):
        m = (1 - b1) * d
        v = b2 * tau**2 + (1 - b2) * d * d
        expected1.append(w + eta * m / (math.sqrt(v) + tau))
    close(w1["w"], expected1)
    # Round 2 with the same deltas: moments carry over.
    w2 = s.aggregate(2, w1, [A, B])
    expected2 = []
    for w, d in zip(expected1, MEAN):
        m = b1 * ((1 - b1) * d) + (1 - b1) * d
        v = b2 * (b2 * tau**2 + (1 - b2) * d * d) + (1 - b2) * d * d
        expected2.append(w + eta * m / (math.sqrt(v) + tau))
    close(w2["w"], expected2)
    assert expected1[0] - 1.0 == pytest.approx(0.1 * 0.025 / (math.sqrt(0.99e-6 + 0.000625) + 1e-3))


def test_fedyogi_and_fedadagrad_second_moments() -> None:
    eta, b1, b2, tau = 0.1, 0.9, 0.99, 1e-3
    yogi = create_strategy("fedyogi", {"server_lr": eta, "beta1": b1, "beta2": b2, "tau": tau})
    ada = create_strategy("fedadagrad", {"server_lr": eta, "beta1": b1, "tau": tau})
    wy, wa = yogi.aggregate(1, W, [A, B]), ada.aggregate(1, W, [A, B])
    ey, ea = [], []
    for w, d in zip([1.0, -2.0], MEAN):
        m = (1 - b1) * d
        v0 = tau**2
        v_yogi = v0 - (1 - b2) * d * d * math.copysign(1.0, v0 - d * d)  # sign(v - d^2) = -1 here
        v_ada = v0 + d * d
        ey.append(w + eta * m / (math.sqrt(v_yogi) + tau))
        ea.append(w + eta * m / (math.sqrt(v_ada) + tau))
    close(wy["w"], ey)
    close(wa["w"], ea)
    assert ey != ea


def test_fedavgm_momentum_accumulates() -> None:
    s = create_strategy("fedavgm", {"server_lr": 0.5, "momentum": 0.9})
    w1 = s.aggregate(1, W, [A, B])
    close(w1["w"], [1.0 + 0.5 * 0.25, -2.0 - 0.5 * 0.25])
    w2 = s.aggregate(2, w1, [A, B])  # velocity = 0.9 * d + d
    close(w2["w"], [1.125 + 0.5 * 1.9 * 0.25, -2.125 - 0.5 * 1.9 * 0.25])


def test_fedprox_sends_mu_and_aggregates_like_fedavg() -> None:
    prox = create_strategy("fedprox", {"mu": 0.3})
    assert prox.configure_round(4, [2, 7]) == {2: {"mu": 0.3}, 7: {"mu": 0.3}}
    assert create_strategy("fedavg").configure_round(1, [0]) == {0: {}}
    assert torch.equal(prox.aggregate(1, W, [A, B])["w"], create_strategy("fedavg").aggregate(1, W, [A, B])["w"])


def test_fednova_normalises_by_local_steps() -> None:
    nova = FedNova()
    # Plain local SGD: each client's effective steps a_i = its local steps tau_i = [1, 3].
    a, b = (ClientResult(r.client_id, r.delta, r.num_examples, r.num_steps, r.loss, payload={"a": float(r.num_steps)})
            for r in (A, B))
    # p = [1/4, 3/4], tau = [1, 3]: tau_eff = 1/4 + 9/4 = 2.5; per-step mean = 1/4*d_A/1 + 3/4*d_B/3
    new = nova.aggregate(1, W, [a, b])
    expected = [w + 2.5 * (0.25 * da + 0.25 * db) for w, da, db in zip([1.0, -2.0], [0.1, 0.2], [0.3, -0.4])]
    close(new["w"], expected)
    # With equal step counts FedNova is FedAvg.
    a1 = ClientResult(0, A.delta, num_examples=1, num_steps=2, loss=0.0, payload={"a": 2.0})
    b1 = ClientResult(1, B.delta, num_examples=3, num_steps=2, loss=0.0, payload={"a": 2.0})
    torch.testing.assert_close(nova.aggregate(1, W, [a1, b1])["w"], create_strategy("fedavg").aggregate(1, W, [a1, b1])["w"])
    assert get_algorithm_class("fednova") is FedNova


def test_state_dict_round_trip_restores_moments() -> None:
    s = create_strategy("fedadam", {"server_lr": 0.1})
    s.aggregate(1, W, [A, B])
    state = s.state_dict()
    fresh = create_strategy("fedadam", {"server_lr": 0.1})
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh.aggregate(2, W, [A, B])["w"], s.aggregate(2, W, [A, B])["w"])
    m = create_strategy("fedavgm")
    m.aggregate(1, W, [A])
    assert set(m.state_dict()) == {"velocity/w"}
    with pytest.raises(ValueError, match="keeps no server state"):
        create_strategy("fedavg").load_state_dict({"m/w": torch.zeros(1)})


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("fedprox", {"mu": -0.1}, "mu=-0.1 must be >= 0"),
        ("fedprox", {"mus": 0.1}, "no parameter 'mus'. Did you mean 'mu'?"),
        ("fedadam", {"beta1": 1.0}, r"beta1=1.0 must be in \[0.0, 1.0\)"),
        ("fedadam", {"tau": 0.0}, "tau=0.0 must be > 0"),
        ("fedadam", {"server_lr": float("nan")}, "must be a finite number"),
        ("fedadagrad", {"beta2": 0.9}, "no parameter 'beta2'"),
        ("fedavgm", {"momentum": 1.5}, "momentum=1.5"),
        ("fedavg", {"mu": 0.1}, "Its parameters: none"),
    ],
)
def test_bad_parameters_are_rejected(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        create_strategy(name, params)


def test_registry_names_suggestions_and_plugins() -> None:
    assert algorithm_names()[:14] == ["centralized", "fedavg", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedavgm",
                                 "scaffold", "feddyn", "fednova", "fedmedian", "fedtrimmedavg", "krum", "qfedavg"]
    with pytest.raises(ValueError, match="unknown algorithm 'fedadma'. Did you mean 'fedadam'?"):
        get_algorithm_class("fedadma")
    cls = get_algorithm_class("fednlp_bench.algorithms.fednova:FedNova")
    assert cls is FedNova
    with pytest.raises(ValueError, match="cannot import module"):
        get_algorithm_class("no_such_module_xyz:Thing")

    class Clash(Strategy):
        name = "fedavg"

        def aggregate(self, rnd, global_weights, results):  # type: ignore[no-untyped-def]
            return global_weights

    with pytest.raises(ValueError, match="already registered"):
        register_algorithm(Clash)


def test_unknown_client_instruction_fails_before_training() -> None:
    class Scaffoldish(Strategy):
        name = "scaffoldish-test"

        def client_config(self, rnd):  # type: ignore[no-untyped-def]
            return {"control_variate": 1}

        def aggregate(self, rnd, global_weights, results):  # type: ignore[no-untyped-def]
            return global_weights

    with pytest.raises(ValueError, match="'control_variate', which its client procedure \\(none\\) does not read"):
        Scaffoldish().configure_round(1, [0])


# ------------------------------------------------------------------ docs/custom_algorithm.md stays true
def _doc_blocks() -> list[str]:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "custom_algorithm.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_doc_fedavgm_block_runs_and_matches_the_builtin() -> None:
    from fednlp_bench.algorithms import add_scaled, weighted_mean_delta

    block = next(b for b in _doc_blocks() if "class FedAvgM" in b)
    namespace = {"Strategy": Strategy, "torch": torch, "weighted_mean_delta": weighted_mean_delta, "add_scaled": add_scaled}
    exec(block, namespace)  # noqa: S102 - our own documentation
    doc_cls = namespace["FedAvgM"]
    doc, builtin = doc_cls(server_lr=0.5, momentum=0.9), create_strategy("fedavgm", {"server_lr": 0.5, "momentum": 0.9})
    w_doc, w_builtin = W, W
    for rnd in (1, 2, 3):
        w_doc, w_builtin = doc.aggregate(rnd, w_doc, [A, B]), builtin.aggregate(rnd, w_builtin, [A, B])
        torch.testing.assert_close(w_doc["w"], w_builtin["w"])
    fresh = doc_cls(server_lr=0.5, momentum=0.9)
    fresh.load_state_dict(doc.state_dict())
    torch.testing.assert_close(fresh.aggregate(4, W, [A])["w"], doc.aggregate(4, W, [A])["w"])
    with pytest.raises(ValueError, match="momentum=1.2"):
        doc_cls(momentum=1.2)
