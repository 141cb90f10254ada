"""Example-level DP-SGD: per-example gradients against single-example backward passes, clipping, noise, accounting."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import dp_accounting
import numpy as np
import pytest
import torch

from fednlp_bench.algorithms.client import FitContext
from fednlp_bench.compute.precision import Precision
from fednlp_bench.compute.setup import attach_frozen_cache, build_compute
from fednlp_bench.config import RunConfig
from fednlp_bench.engine.client.trainer import LocalTrainer
from fednlp_bench.engine.run.runner import run_experiment
from fednlp_bench.privacy.dpsgd import ExampleDP
from fednlp_bench.privacy.example_accountant import ExampleLevelAccountant, frontier, local_schedule
from fednlp_bench.privacy.per_example import PerExampleGradients, clipped_sum
from fednlp_bench.privacy.secret import DPSGD_STREAM, PrivateSeed

SLICE = dict(
    task="classification", data="20news", model="tiny", max_length=32, max_train_examples=48, max_eval_examples=16,
    partition={"scheme": "iid", "num_clients": 2, "seed": 0, "min_size": 1, "params": {}},
    rounds=1, clients_per_round=2, local_epochs=None, local_steps=2, batch_size=8, lr=1e-3,
)
DPSGD = {"mechanism": "dp_sgd", "noise_multiplier": 1.0, "clip_norm": 0.5, "delta": 1e-3}


@pytest.fixture(scope="module")
def env(offline_task_env: Path) -> Path:
    return offline_task_env


def prepared(tmp_path: Path, **changes: Any) -> tuple[Any, Any, Any]:
    from fednlp_bench.engine.run.sources import build_task

    config = RunConfig.from_dict({**SLICE, **changes})
    task = build_task(config)
    compute = build_compute(task, config, torch.device("cpu"), Precision("fp32"))
    feats = task.preprocess(task.load()["train"], train=True)
    attach_frozen_cache(compute, task, [feats], tmp_path / "frozen")
    return task, compute, feats


def loop_of_single_examples(task: Any, model: torch.nn.Module, feats: Any, rows: list[int]) -> list[dict[str, torch.Tensor]]:
    out = []
    for row in rows:
        model.zero_grad(set_to_none=True)
        model(**task.collate([feats[row]])).loss.backward()
        out.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
    return out


@pytest.mark.parametrize("trainable", [
    {"trainable": "full"},
    {"trainable": "top_layers", "trainable_params": {"layers": 1, "cache": True}},
], ids=["full", "top_layers_cached"])
def test_per_example_gradients_equal_single_example_backward_passes(env: Path, tmp_path: Path, trainable: dict) -> None:
    task, compute, feats = prepared(tmp_path, max_length=256, **trainable)  # long enough that some rows are padded
    model = compute.model
    model.eval()  # no dropout: both ways compute the same function
    by_length = np.argsort([len(ids) for ids in feats["input_ids"]], kind="stable")
    rows = [int(r) for r in (*by_length[:3], *by_length[-3:])]  # the shortest and longest: the batch is padded
    batch = task.collate([feats[r] for r in rows])
    assert bool((batch["attention_mask"] == 0).any())
    per_example = PerExampleGradients(model, compute.cache)
    grads, losses = per_example(batch)
    reference = loop_of_single_examples(task, model, feats, rows)
    assert set(grads) == set(reference[0]) and all(g.shape[0] == len(rows) for g in grads.values())
    for i, ref in enumerate(reference):
        for name, g in ref.items():
            torch.testing.assert_close(grads[name][i], g, rtol=1e-4, atol=1e-6, msg=f"example {i}, {name}")
    with torch.no_grad():
        single = [float(model(**task.collate([feats[r]])).loss) for r in rows]
    assert losses.tolist() == pytest.approx(single, rel=1e-5)
    if compute.cache is not None:
        assert all(not n.startswith("bert.embeddings") for n in grads)  # only the top trains (and is differentiated)


def test_clipping_bounds_every_examples_contribution() -> None:
    torch.manual_seed(0)
    grads = {"a": torch.randn(5, 3, 4) * torch.tensor([0.01, 1, 10, 100, 0.5])[:, None, None], "b": torch.randn(5, 7)}
    clip = 1.0
    summed, norms = clipped_sum(grads, clip)
    joint = torch.sqrt(grads["a"].flatten(1).pow(2).sum(1) + grads["b"].pow(2).sum(1))
    torch.testing.assert_close(norms.float(), joint)
    for drop in range(5):  # removing any one example moves the clipped sum by at most C
        keep = [i for i in range(5) if i != drop]
        rest, _ = clipped_sum({k: v[keep] for k, v in grads.items()}, clip)
        change = math.sqrt(sum(float((summed[k] - rest[k]).pow(2).sum()) for k in summed))
        assert change <= clip * (1 + 1e-6)
        if joint[drop] > clip:
            assert change == pytest.approx(clip, rel=1e-5)  # a clipped example contributes exactly C
        else:
            assert change == pytest.approx(float(joint[drop]), rel=1e-5)  # an unclipped one is untouched


def test_private_step_is_clipped_sum_plus_noise_over_the_expected_batch(env: Path, tmp_path: Path) -> None:
    task, compute, feats = prepared(tmp_path, trainable="top_layers", trainable_params={"layers": 1, "cache": True})
    model = compute.model
    model.eval()
    trainer = LocalTrainer(task, model, feats, batch_size=8, lr=1.0, optimizer="sgd", local_epochs=None, local_steps=1)
    seed = PrivateSeed(42)
    dp = ExampleDP(PerExampleGradients(model, compute.cache), noise_multiplier=0.7, clip_norm=0.5, batch_size=8,
                   local_epochs=None, local_steps=1, noise_seed=seed)
    rows = np.arange(20)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    ctx = FitContext(client_id=3, rnd=2, model=model, params=params, global_weights=before, instructions={}, state={},
                     lr=1.0, num_examples=20, evaluate_loss=lambda: 0.0)
    opt = torch.optim.SGD(list(params.values()), lr=1.0)
    dp.train_client(ctx, opt, rows, trainer._collate)
    assert ctx.steps == 1
    step = {n: before[n] - p.detach() for n, p in params.items()}  # SGD, lr 1: the private gradient
    # By hand: the same Poisson draw (q = 8/20) and noise from the same secret streams, at the old weights.
    picked = rows[seed.numpy_generator(DPSGD_STREAM, 2, 3, 0).random(20) < 0.4]
    assert 0 < len(picked) < 20
    noise = seed.torch_generator(DPSGD_STREAM, 2, 3, 1)
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(before[n])
    grads, _ = PerExampleGradients(model, compute.cache)(trainer._collate(picked))
    summed, _ = clipped_sum(grads, 0.5)
    for n, p in params.items():
        expected = (summed[n] + 0.7 * 0.5 * torch.randn(p.shape, generator=noise)) / 8.0  # / expected batch q n
        torch.testing.assert_close(step[n], expected, rtol=1e-4, atol=1e-6, msg=n)


def test_poisson_batches_have_the_accounted_rate() -> None:
    assert local_schedule(20, 8, None, 3) == (0.4, 3)
    assert local_schedule(5, 8, None, 3) == (1.0, 3)  # smaller than a batch: every row, every step
    assert local_schedule(20, 8, 2, None) == (pytest.approx(1 / 3), 6)  # 2 epochs of ceil(20/8) = 3 batches
    seed = PrivateSeed(1)
    gen = seed.numpy_generator(DPSGD_STREAM, 1, 0, 0)
    sizes = [int((gen.random(20) < 0.4).sum()) for _ in range(4000)]
    assert np.mean(sizes) == pytest.approx(8.0, rel=0.02) and min(sizes) < 4 and max(sizes) > 12  # not fixed-size


def test_worst_client_epsilon_matches_dp_accounting() -> None:
    schedules = [local_schedule(n, 8, 1, None) for n in (8, 20, 40, 100)]  # q = 1, 1/3, 1/5, 1/13
    participants = [[0, 1, 3], [1, 2, 3], [1, 3]]
    acc = ExampleLevelAccountant(schedules, participants, 1.2, 1e-5)
    direct = {}
    for c, times in {0: 1, 1: 3, 2: 1, 3: 3}.items():
        q, steps = schedules[c]
        rdp = dp_accounting.rdp.RdpAccountant()
        rdp.compose(dp_accounting.SelfComposedDpEvent(
            dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(1.2)), times * steps))
        direct[c] = rdp.get_epsilon(1e-5)
    eps, q, steps = acc.worst(3)
    worst = max(direct, key=direct.get)
    assert eps == pytest.approx(direct[worst], rel=1e-9)
    assert (q, steps) == (schedules[worst][0], {0: 1, 1: 3, 2: 1, 3: 3}[worst] * schedules[worst][1])
    assert acc.worst(0) == (0.0, 0.0, 0)
    assert acc.worst(1)[0] < eps  # fewer participations, less epsilon
    assert frontier([(0.5, 3), (0.5, 2), (0.2, 3), (0.2, 9), (1.0, 1)]) == [(1.0, 1), (0.5, 3), (0.2, 9)]
    z = acc.calibrate(4.0)
    assert acc.worst(3, z=z)[0] <= 4.0 < acc.worst(3, z=z * (1 - 1e-3))[0]


def test_dp_sgd_run_on_the_cached_fast_path(env: Path, tmp_path: Path) -> None:
    cfg = RunConfig.from_dict({**SLICE, "trainable": "top_layers", "trainable_params": {"layers": 1, "cache": True},
                               "privacy": DPSGD, "rounds": 2})
    rec = run_experiment(cfg, tmp_path / "runs", progress=False, frozen_cache_dir=tmp_path / "frozen")
    p = rec.privacy
    assert p["level"] == "example" and 0 < p["epsilon_pld"] < p["epsilon_rdp"]
    # Both clients take part in both rounds (2 of 2): 2 participations x 2 steps at q = 8 / 24.
    assert p["worst_client_steps"] == 4 and p["worst_client_sampling_rate"] == pytest.approx(8 / 24)
    assert all(math.isfinite(v) for v in rec.final_metrics.values())
    with pytest.raises(ValueError, match="dp_sgd clips each feature row's gradient"):
        run_experiment(RunConfig.from_dict({**SLICE, "task": "qa", "data": "squad", "max_length": 64,
                                            "task_params": {"doc_stride": 16}, "privacy": DPSGD}),
                       tmp_path / "qa", progress=False)
