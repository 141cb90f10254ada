"""Fakes shared by the tier-suite tests: a smoke-tier suite builder and a runner that writes real records
with chosen validation and test values, so selection, extensions and stages are tested without training."""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path
from typing import Any, Callable


from fednlp_bench.engine.run.run_id import run_id_of
from fednlp_bench.results.record import RoundResult, RunRecord, config_hash
from fednlp_bench.suite.spec import parse_suite
from fednlp_bench.suite.stages import run_two_stage


REPO = Path(__file__).resolve().parents[1]

BASE = {"model": "tiny", "max_length": 32, "max_train_examples": 200, "max_eval_examples": 50,
        "partition": {"num_clients": 4, "min_size": 2}, "rounds": 4, "clients_per_round": 2,
        "local_epochs": 1, "batch_size": 8, "lr": 1e-4, "eval_every": 1}
LRS = [1e-3, 2e-3, 4e-3, 8e-3]


def tier(**changes: Any) -> dict[str, Any]:
    """A one-task smoke-tier suite: 2 partitions, centralized + fedavg + fedprox, 4 grid points each."""
    data = {
        "tier": "smoke",
        "base": copy.deepcopy(BASE),
        "tasks": [{"task": "classification", "data": "20news",
                   "partitions": ["iid", {"scheme": "dirichlet_label", "params": {"alpha": 0.1}}]}],
        "algorithms": [
            {"algorithm": "centralized", "grid": {"lr": list(LRS)}},
            {"algorithm": "fedavg", "grid": {"lr": list(LRS)}},
            {"algorithm": "fedprox", "grid": {"lr": [2e-3, 4e-3], "mu": [0.01, 0.1]}},
        ],
        "convergence": {"window": 0.5, "tolerance": 0.01, "min_points": 3},
        "tuning": {"seed": 0, "partitions": "all"},
        "final": {"seeds": [0, 1]},
    }
    data.update(changes)
    return data


def lr_prefers(best: float) -> Callable[[dict[str, Any]], float]:
    """A validation score that peaks at lr == best on a log scale (and prefers a larger mu a little)."""
    return lambda c: 0.9 - 0.05 * abs(math.log2(c["lr"] / best)) + 0.01 * c.get("algorithm_params", {}).get("mu", 0)


class TierRunner:
    """Writes a real RunRecord under the engine's run id, with chosen validation and test values.

    The validation curve is flat at its final value (``rising`` adds a slope per round), so cells converge.
    """

    def __init__(self, validation: Callable[[dict[str, Any]], float] = lr_prefers(4e-3),
                 test: Callable[[dict[str, Any]], float] = lambda c: 0.5, last_metric: bool = True,
                 rising: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        self.validation, self.test, self.last_metric, self.rising = validation, test, last_metric, rising

    def __call__(self, config: dict[str, Any], runs_dir: Path) -> RunRecord:
        self.calls.append(config)
        run_id = run_id_of(config)
        metric = "accuracy" if config["task"] == "classification" else "f1"
        final, rounds = self.validation(config), int(config["rounds"])

        def metrics(r: int) -> dict[str, float]:
            if r == rounds and not self.last_metric:
                return {}
            return {metric: final - self.rising * (rounds - r)}

        record = RunRecord(
            run_id=run_id, created="2026-11-26T04:00:00", task=config["task"], algorithm=config["algorithm"],
            seed=config["seed"], config=config, config_hash=config_hash(config),
            partition={**config["partition"], "content_hash": "c" * 64}, primary_metric=metric,
            final_metrics={metric: self.test(config)},
            rounds=[RoundResult(round=r, clients=[0], train_loss=1.0, metrics=metrics(r), bytes_up=1, bytes_down=1,
                                wall_time_s=0.1) for r in range(1, rounds + 1)],
            wall_time_s=0.1 * rounds, bytes_up=rounds, bytes_down=rounds, versions={}, git_commit=None, hardware={})
        record.save(Path(runs_dir) / run_id)
        return record

    @property
    def keys(self) -> list[tuple[str, int]]:
        return [(config_hash(c), c["seed"]) for c in self.calls]


def run(data: dict[str, Any], tmp: Path, runner: TierRunner, **kwargs: Any) -> tuple[Any, str]:
    log = io.StringIO()
    report = run_two_stage(parse_suite(data, source="t.yaml"), tmp / "runs", tmp / "out", runner=runner,
                           stream=log, **kwargs)
    return report, log.getvalue()


def plan_json(tmp: Path) -> dict[str, Any]:
    return json.loads((tmp / "out" / "plan.json").read_text())


def chosen(tmp: Path) -> dict[tuple[str, int], Any]:
    return {(t["algorithm"], t["partition"]["index"]): t["chosen"] for t in plan_json(tmp)["tuning"]}
