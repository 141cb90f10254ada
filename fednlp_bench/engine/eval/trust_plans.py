"""What the audit and fairness features set up before training: held-out clients, canaries, swapped texts.

Everything here is decided before the first round, from the config and the
seed, so a resumed run rebuilds exactly the same plan; inputs the final model
will be scored on (canary candidates, counterfactual texts) are preprocessed
here so that a frozen-bottom cache can hold them too.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from datasets import Dataset, concatenate_datasets

from fednlp_bench.algorithms.registry import is_centralized
from fednlp_bench.audit.canary import make_canaries
from fednlp_bench.audit.spec import CanarySpec
from fednlp_bench.audit.tracking import BatchTracker
from fednlp_bench.sampling.seeds import apply_dropout
from fednlp_bench.sampling.policies import make_policy
from fednlp_bench.fairness.counterfactual import CounterfactualSet, build_counterfactual_set, counterfactual_report
from fednlp_bench.fairness.wordlists import load_word_list

_HOLDOUT_STREAM = 11


def holdout_clients(num_clients: int, count: int, seed: int) -> np.ndarray:
    """``count`` client ids drawn uniformly with the seed: they never take part (the client-level audit's outsiders)."""
    if count <= 0:
        return np.array([], dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _HOLDOUT_STREAM]))
    return np.sort(rng.choice(num_clients, size=count, replace=False)).astype(np.int64)


def busiest_client(config: Any, sizes: np.ndarray) -> tuple[int, int]:
    """(client taking part in most rounds of the seeded schedule, its rounds); ties: the lower id."""
    policy = make_policy(config.sampling, config.sampling_params)
    counts: Counter[int] = Counter()
    for rnd in range(1, config.rounds + 1):
        chosen = policy.select(sizes.astype(np.float64), config.clients_per_round, rnd, config.seed)
        counts.update(apply_dropout(chosen, config.dropout, rnd, config.seed)[0])
    if not counts:
        return 0, 0
    best = min(counts, key=lambda c: (-counts[c], c))
    return int(best), int(counts[best])


class CanaryPlan:
    """The canaries of a run: their secrets, the client that holds them, their raw rows (after the split's)."""

    def __init__(self, config: Any, task: Any, train_raw: Any, rows: list[np.ndarray], held_out: np.ndarray) -> None:
        self.spec = CanarySpec.from_dict(config.canary)
        self.task_name = config.task
        labels = getattr(task, "label_names", None)
        self.canaries = make_canaries(self.spec, config.task, task.tokenizer, dict(train_raw.features), config.seed,
                                      num_labels=len(labels) if labels else None)
        sizes = np.array([len(r) for r in rows], dtype=np.int64)
        sizes[held_out] = 0
        if self.spec.client == "auto":
            self.client, self.planned_rounds = (0, config.rounds) if is_centralized(config.algorithm) else \
                busiest_client(config, sizes)
        else:
            self.client = int(self.spec.client)
            self.planned_rounds = -1
            if self.client in set(held_out.tolist()):
                raise ValueError(f"canary.client={self.client} is one of membership_audit's held-out clients; "
                                 f"choose another or client: auto")
        self.centralized = is_centralized(config.algorithm)
        self.copies = [row for row in self.canaries.canary_rows for _ in range(self.spec.repeats)]
        self.raw_rows = np.arange(len(train_raw), len(train_raw) + len(self.copies), dtype=np.int64)
        self._columns = train_raw.features
        self._features: Any = None
        self._candidates: Any = None

    def insert(self, rows: list[np.ndarray]) -> list[np.ndarray]:
        out = list(rows)
        out[self.client] = np.concatenate([np.asarray(out[self.client], dtype=np.int64), self.raw_rows])
        return out

    def _preprocess(self, task: Any) -> None:
        if self._features is None:
            feats = task.preprocess(Dataset.from_list(self.copies, features=self._columns), train=True)
            offset = [int(i) + int(self.raw_rows[0]) for i in feats["example_index"]]
            self._features = feats.remove_columns("example_index").add_column("example_index", offset)
            self._candidates = task.preprocess(
                Dataset.from_list(self.canaries.candidate_rows, features=self._columns), train=True)

    def extra_features(self, task: Any) -> list[Any]:
        self._preprocess(task)
        return [self._features, self._candidates]

    def append_features(self, task: Any, features: Any) -> Any:
        self._preprocess(task)
        return concatenate_datasets([features, self._features.cast(features.features)])

    def report(self, trainer: Any, tracker: BatchTracker, batch_size: int) -> dict[str, Any]:
        from fednlp_bench.engine.eval.audit import canary_exposure

        client = -1 if self.centralized else self.client
        out = canary_exposure(self.spec, trainer=trainer, canary_rows=trainer.rows_for(self.raw_rows),
                              candidate_features=self._candidates, tracker=tracker, client=client,
                              planned_rounds=self.planned_rounds, batch_size=batch_size)
        out["format"] = self.task_name
        return out


class FairnessPlan:
    """``fairness: {counterfactual: NAME}``: the swapped test rows (and local test rows) the final model is scored on."""

    def __init__(self, section: dict[str, Any]) -> None:
        self.swaps = load_word_list(section["counterfactual"])
        self.test_set: CounterfactualSet | None = None
        self.train_set: CounterfactualSet | None = None

    def prepare(self, task: Any, test_raw: Any, train_raw: Any | None) -> list[Any]:
        """Build the swapped sets (whole splits: one frozen cache serves every partition); return their features."""
        self.test_set = build_counterfactual_set(task, test_raw, self.swaps)
        out = [self.test_set.swapped]
        if train_raw is not None:
            self.train_set = build_counterfactual_set(task, train_raw, self.swaps)
            out.append(self.train_set.swapped)
        return out

    def report(self, task: Any, model: Any, batch_size: int, groups: tuple[str, Any] | None) -> dict[str, Any]:
        """``groups``: (``"train"`` or ``"test"``, each client's local test rows in that split), or None."""
        assert self.test_set is not None, "FairnessPlan.prepare runs before training"
        if groups is None:
            return {"counterfactual": counterfactual_report(task, model, self.swaps, self.test_set, batch_size)}
        split, rows = groups
        client_set = self.train_set if split == "train" else self.test_set
        source = ("client_eval hold-out rows (training split)" if split == "train"
                  else "client_eval local sets drawn from test with each client's mixture")
        body = counterfactual_report(task, model, self.swaps, self.test_set, batch_size, client_set, rows, source)
        return {"counterfactual": body}
