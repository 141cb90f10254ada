"""The two audit sections of a run config, declared once: ``membership_audit`` and ``canary``.

Each key has one declaration (default, check, meaning) here; the config
validates a section by building its spec, and the engine reads the spec. The
cross-field rules (what the audit needs from the rest of the run) are in
:func:`check_audit_features`, so a bad combination fails before any data is
loaded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from fednlp_bench.hints import closest_hint
from fednlp_bench.scalars import integral

#: Reference models of the calibrated attack (built in fednlp_bench/engine/eval/audit.py).
REFERENCES = ("initial", "population")
#: Tasks whose rows a canary can be written as (fednlp_bench/audit/canary.py).
CANARY_TASKS = ("classification", "generation")


def _int(section: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{section}.{key}={value!r} must be an integer >= {minimum}")
    return int(value)


def _known_keys(section: str, data: Any, cls: type, example: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ValueError(f"{section} must be a mapping such as {example}, got {data!r}")
    names = [f.name for f in fields(cls)]
    for key in data:
        if key not in names:
            raise ValueError(f"unknown {section} key {key!r}.{closest_hint(str(key), names)} Valid keys: {', '.join(names)}")
    return {k: integral(v) for k, v in data.items()}  # 2e3 in YAML is the integer 2000, as for every int field


@dataclass(frozen=True)
class AuditSpec:
    """``membership_audit:`` the attacks on the final model (docs/trust.md, section 2)."""

    #: Members and non-members each (fewer when a pool is smaller): rows that were in a training batch
    #: against the participating clients' held-out local test rows.
    examples: int = 300
    #: The calibrated attack's reference model: ``initial`` (the model the run started from) or
    #: ``population`` (trained from it on the validation split for the target's epochs per row).
    reference: str = "initial"
    #: Bootstrap resamples of each AUC's 95% interval (0: no interval).
    bootstrap: int = 1000
    #: Rows per client (at most) behind the client-level score.
    client_rows: int = 64
    #: Clients left out of every round (seeded, uniform), so the client-level attack has non-participants.
    holdout_clients: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AuditSpec":
        values = _known_keys("membership_audit", data, cls, "{examples: 300, reference: population}")
        spec = cls(**values)
        _int("membership_audit", "examples", spec.examples, 1)
        _int("membership_audit", "bootstrap", spec.bootstrap, 0)
        _int("membership_audit", "client_rows", spec.client_rows, 1)
        _int("membership_audit", "holdout_clients", spec.holdout_clients, 0)
        if spec.reference not in REFERENCES:
            raise ValueError(f"membership_audit.reference={spec.reference!r} is not supported."
                             f"{closest_hint(str(spec.reference), REFERENCES)} Choose one of {list(REFERENCES)}")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CanarySpec:
    """``canary:`` secrets planted in one client's data, and how exposed they are after training."""

    #: Distinct canaries (each with its own random secret).
    count: int = 10
    #: Copies of each canary in the client's training rows.
    repeats: int = 1
    #: Each canary is ranked among this many sequences: itself and candidates - 1 random secrets.
    candidates: int = 1000
    #: The client that holds the canaries; ``auto``: the one that takes part in most rounds of the
    #: seeded schedule (computed before training, from the sizes without canaries).
    client: int | str = "auto"
    #: Secret length: random words (classification) or digits (generation).
    secret_length: int = 6
    #: Classification: the label every canary carries.
    label: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CanarySpec":
        spec = cls(**_known_keys("canary", data, cls, "{count: 10, candidates: 1000}"))
        _int("canary", "count", spec.count, 1)
        _int("canary", "repeats", spec.repeats, 1)
        _int("canary", "candidates", spec.candidates, 2)
        _int("canary", "secret_length", spec.secret_length, 1)
        _int("canary", "label", spec.label, 0)
        if spec.client != "auto":
            _int("canary", "client", spec.client, 0)
        return spec

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_audit_features(audit: Mapping[str, Any] | None, canary: Mapping[str, Any] | None, *, task: str,
                         client_eval: bool, continual: bool, backend: str, algorithm: str, num_clients: int | None,
                         clients_per_round: int) -> None:
    """Refuse audit settings the run cannot honour (one line naming the fix)."""
    if audit is not None:
        spec = AuditSpec.from_dict(audit)
        if not client_eval:
            raise ValueError(
                "membership_audit needs held-out rows of the same clients as its non-members (never the test split): "
                "set client_eval: true, which holds out 20% of every client"
            )
        if spec.holdout_clients:
            from fednlp_bench.algorithms.registry import is_centralized

            if is_centralized(algorithm):
                raise ValueError(f"membership_audit.holdout_clients: {algorithm!r} (the centralized baseline) trains on "
                                 f"every client's rows; set it to 0")
            if num_clients is not None and spec.holdout_clients > num_clients - clients_per_round:
                raise ValueError(
                    f"membership_audit.holdout_clients={spec.holdout_clients} leaves fewer than clients_per_round="
                    f"{clients_per_round} of the {num_clients} clients to train; lower it"
                )
    if canary is not None:
        spec_c = CanarySpec.from_dict(canary)
        if task not in CANARY_TASKS:
            raise ValueError(f"canary supports tasks {list(CANARY_TASKS)}, not {task!r}")
        if continual:
            raise ValueError("canary and continual: the canaries would arrive in one period only; run them separately")
        if backend != "inprocess":
            raise ValueError("canary inserts rows in this process's training data; use backend: inprocess")
        if isinstance(spec_c.client, int) and num_clients is not None and spec_c.client >= num_clients:
            raise ValueError(f"canary.client={spec_c.client} is not a client (0..{num_clients - 1}); or use client: auto")
