"""``RunConfig.validate``: every field checked with its declaration, every section with its registry's.

Scalar fields are checked by their :class:`~fednlp_bench.registry.Param`
(config_fields.py); a section (``partition.params``, ``algorithm_params``,
``trainable_params``, ``sampling_params``, ``privacy``, ``continual``, ...) by
the declarations of the registry entry it configures. Cross-field rules
(exactly one of local_epochs/local_steps, K <= N, what a baseline or a
backend cannot do) are the only code here. The imports reach only below the
config: registries, specs and their rules, never the engine, a backend or
a command (tests/test_layers.py).
"""

from __future__ import annotations

from typing import Any

from fednlp_bench.config_fields import FIELDS, PARTITION_FIELDS, PARTITION_KEYS
from fednlp_bench.hints import closest_hint


def validate_config(cfg: Any) -> None:
    """Raise ``ValueError`` naming the bad value and the fix."""
    for name, param in FIELDS.items():
        value = getattr(cfg, name)
        _, problem = param.problem(value)
        if problem:
            raise ValueError(f"{name}={value!r} {problem}")
    if (cfg.local_epochs is None) == (cfg.local_steps is None):
        raise ValueError(
            f"set exactly one of local_epochs and local_steps (got local_epochs={cfg.local_epochs}, "
            f"local_steps={cfg.local_steps}); e.g. local_epochs: 1 and local_steps: null"
        )
    bad = {k: v for k, v in cfg.columns.items() if not isinstance(v, str) or not v}
    if bad:
        raise ValueError(f"columns {bad}: each task field must map to a column name (a non-empty string)")
    _check_partition(cfg)
    _check_algorithm(cfg)
    _check_populations(cfg)
    _check_features(cfg)
    _check_compute(cfg)


def _check_partition(cfg: Any) -> None:
    part = cfg.partition
    for key in part:
        if key not in PARTITION_KEYS:
            raise ValueError(f"unknown partition key {key!r}.{closest_hint(key, PARTITION_KEYS)}")
    for name, param in PARTITION_FIELDS.items():
        value = part.get(name)
        if name == "num_clients" and value is None:
            continue  # clients come from the data (natural_id: one per group)
        _, problem = param.problem(value)
        if problem:
            raise ValueError(f"partition.{name}={value!r} {problem}" if name != "params" else
                             f"partition.params must be a mapping such as {{alpha: 0.5}}, got {value!r}")
    from fednlp_bench.partitioners import PARTITIONERS, make_partitioner

    if part["scheme"] not in PARTITIONERS:
        known = PARTITIONERS.names()
        raise ValueError(f"unknown partition scheme {part['scheme']!r}.{closest_hint(part['scheme'], known)} "
                         f"Choose one of {sorted(known)}")
    # Build the partitioner (no data needed): a bad alpha or a misspelt parameter fails before loading.
    make_partitioner(part["scheme"], part.get("num_clients"), seed=part["seed"], min_size=part["min_size"],
                     **dict(part.get("params") or {}))
    if part["num_clients"] is not None and cfg.clients_per_round > part["num_clients"]:
        raise ValueError(
            f"clients_per_round={cfg.clients_per_round} is larger than the number of clients "
            f"({part['num_clients']}); lower clients_per_round or raise partition.num_clients"
        )


def _check_algorithm(cfg: Any) -> None:
    from fednlp_bench.algorithms.registry import get_algorithm_class

    cls = get_algorithm_class(cfg.algorithm)  # unknown name -> ValueError with suggestion
    cls(**cfg.algorithm_params)  # unknown / out-of-range parameter -> ValueError


def _check_populations(cfg: Any) -> None:
    """Sampling policy and its parameters, aggregation weights, the continual setting."""
    from fednlp_bench.config_sections import ContinualSpec
    from fednlp_bench.sampling.policies import make_policy
    from fednlp_bench.sampling.weights import check_aggregation_weights

    make_policy(cfg.sampling, cfg.sampling_params)
    check_aggregation_weights(cfg.effective_aggregation_weights(), sampling=cfg.sampling, algorithm=cfg.algorithm,
                              privacy=cfg.privacy is not None, explicit=cfg.aggregation_weights is not None)
    if cfg.continual is not None:
        spec = ContinualSpec.from_dict(cfg.continual)
        from fednlp_bench.algorithms.registry import is_centralized

        if is_centralized(cfg.algorithm):
            raise ValueError(f"the continual setting is defined for federated algorithms, not {cfg.algorithm!r} "
                             f"(the centralized baseline)")
        if cfg.rounds != spec.total_rounds:
            raise ValueError(
                f"rounds={cfg.rounds} but continual runs periods x rounds_per_period = {spec.periods} x "
                f"{spec.rounds_per_period} = {spec.total_rounds} rounds; set rounds: {spec.total_rounds}"
            )


def _check_features(cfg: Any) -> None:
    """DP, per-client evaluation, the audits and fairness (optional features)."""
    from fednlp_bench.audit.spec import check_audit_features
    from fednlp_bench.config_sections import MIN_CLIENT_SIZE, ClientEvalParams
    from fednlp_bench.fairness.spec import check_fairness
    from fednlp_bench.privacy.rules import check_privacy_setting
    from fednlp_bench.privacy.spec import PrivacySpec

    if cfg.privacy is not None:
        check_privacy_setting(PrivacySpec.from_dict(cfg.privacy), cfg)  # mechanism x algorithm/sampling/...
    source = ClientEvalParams.from_dict(cfg.client_eval_params).source
    if cfg.client_eval_params and not cfg.client_eval:
        raise ValueError("client_eval_params is set but client_eval is off; set client_eval: true or drop them")
    if cfg.client_eval and source == "holdout" and int(cfg.partition["min_size"]) < MIN_CLIENT_SIZE:
        raise ValueError(
            f"client_eval splits every client into local train and test, so clients need at least "
            f"{MIN_CLIENT_SIZE} rows; partition.min_size={cfg.partition['min_size']} allows fewer: "
            f"set partition.min_size >= {MIN_CLIENT_SIZE}"
        )
    # The audits read the hold-out rows of the clients themselves (local sets drawn from test are not theirs).
    check_audit_features(cfg.membership_audit, cfg.canary, task=cfg.task,
                         client_eval=cfg.client_eval and source == "holdout",
                         continual=cfg.continual is not None, backend=cfg.backend, algorithm=cfg.algorithm,
                         num_clients=cfg.partition["num_clients"], clients_per_round=cfg.clients_per_round)
    check_fairness(cfg.fairness, task=cfg.task)
    # client_eval and continual run on every backend: FedML's client processes build their rows with the
    # engine's own prepare_client/ClientData (backends/fedml/client.py), as the simulator does.


def _check_compute(cfg: Any) -> None:
    from fednlp_bench.compute.trainable import resolve_params

    resolve_params(cfg.trainable, cfg.trainable_params)  # unknown parameter / bad value -> ValueError
