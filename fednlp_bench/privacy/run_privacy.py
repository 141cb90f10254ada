"""The privacy pieces of one DP run, built after the partition and before any other work.

``RunPrivacy`` draws the secret seed, calibrates ``target_epsilon`` into a
noise multiplier, builds the accountant of the mechanism's level, wraps the
strategy (client level) or gives the trainer its DP-SGD loop (example level),
and says what each round row and the record hold (``records.py`` keeps the
non-private rest out of them).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from fednlp_bench.privacy.accountant import ClientLevelAccountant, client_noise_for_target
from fednlp_bench.privacy.aggregation import PrivateAggregation
from fednlp_bench.privacy.example_accountant import ExampleLevelAccountant, local_schedule
from fednlp_bench.privacy.secret import SAMPLE_STREAM, PrivateSeed
from fednlp_bench.privacy.spec import COUNT_SENSITIVITY, PrivacySpec
from fednlp_bench.privacy.wrapper import PrivateStrategy


class RunPrivacy:
    """Secret seed, resolved spec and accountant of a DP run; ``select(rnd, seed)`` is the run's client selection."""

    def __init__(self, config: Any, sizes: np.ndarray, select: Callable[[int, int], list[int]]) -> None:
        self.config = config
        requested = PrivacySpec.from_dict(config.privacy)
        self.requested = requested
        self.seed = PrivateSeed()  # a resumed run replaces it by the checkpoint's (PrivateStrategy.load_state_dict)
        self.num_clients = len(sizes)
        self.accountant: ClientLevelAccountant | ExampleLevelAccountant
        if requested.level == "client":
            q = config.clients_per_round / self.num_clients
            z = requested.noise_multiplier
            if z is None:
                z = client_noise_for_target(requested.target_epsilon, q, config.rounds, requested.delta)
            self.spec = requested.with_noise_multiplier(z)
            self.spec.update_noise_multiplier(config.clients_per_round)  # adaptive: the split must leave budget
            self.accountant = ClientLevelAccountant(q, z, requested.delta)
        else:
            # Example level: who takes part is public (run seed) and known now, so is each client's T_i.
            schedules = [local_schedule(int(n), config.batch_size, config.local_epochs, config.local_steps) if n > 0
                         else (1.0, 0) for n in sizes]
            participants = [select(rnd, config.seed) for rnd in range(1, config.rounds + 1)]
            self.accountant = ExampleLevelAccountant(schedules, participants, requested.noise_multiplier, requested.delta)
            z = requested.noise_multiplier
            if z is None:
                z = self.accountant.calibrate(requested.target_epsilon)  # type: ignore[arg-type]
            self.accountant.noise_multiplier = z
            self.spec = requested.with_noise_multiplier(z)

    @property
    def level(self) -> str:
        return self.spec.level

    def selection_seed(self) -> int:
        """Seed of the client selection: secret for client-level DP (amplification needs who was sampled hidden)."""
        return self.seed.derive(SAMPLE_STREAM) if self.level == "client" else int(self.config.seed)

    def wrap(self, strategy: Any) -> PrivateStrategy:
        if self.level == "client":
            return PrivateAggregation(strategy, self.spec, self.config.clients_per_round, self.seed)
        return PrivateStrategy(strategy, self.seed)

    def attach_trainer(self, trainer: Any, cache: Any | None, train_rows: int) -> None:
        """DP-SGD: give the trainer its private local loop (one feature row per example, or the bound would not hold)."""
        if self.level != "example":
            return
        from fednlp_bench.privacy.dpsgd import ExampleDP
        from fednlp_bench.privacy.per_example import PerExampleGradients

        examples = np.asarray(trainer.features["example_index"])
        if len(np.unique(examples)) != len(examples) or len(examples) != train_rows:
            raise ValueError(
                f"privacy: dp_sgd clips each feature row's gradient, but task {self.config.task!r} made "
                f"{len(examples)} feature rows from {train_rows} training examples (e.g. QA windows): one example "
                f"would count several times. Use client-level DP for this task"
            )
        trainer.example_dp = ExampleDP(
            PerExampleGradients(trainer.model, cache), noise_multiplier=self.spec.resolved_noise_multiplier(),
            clip_norm=self.spec.clip_norm, batch_size=self.config.batch_size, local_epochs=self.config.local_epochs,
            local_steps=self.config.local_steps, noise_seed=self.seed,
        )

    # ------------------------------------------------------------ rows and record
    def round_row(self, rnd: int, strategy: Any) -> dict[str, Any]:
        """epsilon so far (RDP) and what the round released; exact counts under "nonprivate" (kept out of records)."""
        return {"epsilon": self.accountant.epsilon(rnd), **dict(getattr(strategy, "last_round", {}) or {})}

    def record_section(self, rounds: int) -> dict[str, Any]:
        """``record.privacy``: mechanism, calibrated z, both accountants' epsilon, what the guarantee covers."""
        section: dict[str, Any] = {**self.spec.to_dict(), "level": self.level, "rounds": rounds,
                                   "expected_clients_per_round": self.config.clients_per_round}
        if isinstance(self.accountant, ClientLevelAccountant):
            section.update(self.accountant.describe())
            section["epsilon"] = section["epsilon_rdp"] = self.accountant.epsilon(rounds)
            section["epsilon_pld"] = self.accountant.epsilon_pld(rounds)
            if self.spec.adaptive:
                m = self.config.clients_per_round
                section["update_noise_multiplier"] = self.spec.update_noise_multiplier(m)
                section["count_noise_multiplier"] = self.spec.count_noise_multiplier(m)
                section["count_sensitivity"] = COUNT_SENSITIVITY
        else:
            section.update(self.accountant.describe(rounds))
        section["noise_seed"] = "secret: drawn from OS entropy, kept only in the run's checkpoint"
        section["not_covered"] = NOT_COVERED
        return section


#: What a DP record still holds that the guarantee does not cover (docs/trust.md, "What a DP record holds").
NOT_COVERED = (
    "membership_audit and client_eval (when on) evaluate the released model on the clients' own rows; "
    "the run's total wall time is a timing side channel"
)

