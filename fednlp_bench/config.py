"""The run configuration: one flat, validated description of an experiment.

A run is reproducible only if *everything* that shapes it is in one place that
is stored with the result. ``RunConfig`` is that place: the CLI flags, a YAML
file and a leaderboard's ``--verify`` all become a ``RunConfig``; the record
stores ``config.to_dict()``. Validation is strict and happens at construction,
before any data is loaded, so a typo costs seconds, not a half-finished run.

The fields are declared in ``config_fields.py`` (defaults, checks, help) and
the sections are checked with the declarations of the registries they
configure (``config_checks.py``); nothing here imports the engine, a backend
or a command.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from fednlp_bench import config_files
from fednlp_bench.config_checks import validate_config
from fednlp_bench.config_fields import FIELDS, PARTITION_FIELDS, PARTITION_KEYS
from fednlp_bench.hints import closest_hint
from fednlp_bench.scalars import integral

#: Optional features and their "off" value. ``to_dict`` leaves a field out while it is off, so the
#: configs (and config hashes, run ids, leaderboard groups) of runs that do not use it stay as they were.
OPTIONAL_OFF: dict[str, Any] = {
    "sampling_params": {},
    "privacy": None,
    "continual": None,
    "client_eval": False,
    "client_eval_params": {},
    "membership_audit": None,
    "canary": None,
    "fairness": None,
    "aggregation_weights": None,
}
#: Integer fields: an integral float written ``2e3`` in YAML is read as the int 2000 (fednlp_bench/scalars.py).
INT_FIELDS = tuple(name for name, p in FIELDS.items() if p.type is int)
INT_PARTITION_KEYS = tuple(name for name, p in PARTITION_FIELDS.items() if p.type is int)
#: Fields added after records were first published, with the value every older record implicitly had.
#: ``config_hash`` leaves them out while they hold that value, so old records keep their hash.
FIELDS_ADDED_LATER: dict[str, Any] = {"precision": "fp32", "trainable": "full", "trainable_params": {},
                                      "columns": {}, "task_params": {}, "test_best_round": False,
                                      "batching": "random", "max_validation_examples": None,
                                      "attention_dropout": None}


def _default(name: str) -> Any:
    return FIELDS[name].default


def _default_partition() -> dict[str, Any]:
    return {name: copy.deepcopy(p.default) for name, p in PARTITION_FIELDS.items()}


@dataclass
class RunConfig:
    """Everything that determines one benchmark run (field meanings: config_fields.py, docs/engine.md)."""

    task: str = _default("task")
    data: str | None = _default("data")
    model: str = _default("model")
    max_length: int = _default("max_length")
    max_train_examples: int | None = _default("max_train_examples")
    max_eval_examples: int | None = _default("max_eval_examples")
    max_validation_examples: int | None = _default("max_validation_examples")
    #: ``{task field: column in the user's files}``, e.g. ``{text: body, label: topic}``.
    columns: dict[str, str] = field(default_factory=dict)
    #: The task's own options (declared by the task class: text_format, tag_scheme, doc_stride, ...).
    task_params: dict[str, Any] = field(default_factory=dict)
    partition: dict[str, Any] = field(default_factory=_default_partition)
    algorithm: str = _default("algorithm")
    algorithm_params: dict[str, Any] = field(default_factory=dict)
    rounds: int = _default("rounds")
    clients_per_round: int = _default("clients_per_round")
    local_epochs: int | None = _default("local_epochs")
    local_steps: int | None = _default("local_steps")
    batch_size: int = _default("batch_size")
    lr: float = _default("lr")
    optimizer: str = _default("optimizer")
    #: How local rows form batches: random | length (engine/client/batching.py).
    batching: str = _default("batching")
    #: Attention-probability dropout of the model; None: the model's own (compute/attention_dropout.py).
    attention_dropout: float | None = _default("attention_dropout")
    sampling: str = _default("sampling")
    #: The sampling policy's parameters, e.g. {gamma: 1.0} for activity_poisson (sampling/policies.py).
    sampling_params: dict[str, Any] = field(default_factory=dict)
    aggregation_weights: str | None = _default("aggregation_weights")
    dropout: float = _default("dropout")
    eval_every: int = _default("eval_every")
    test_best_round: bool = _default("test_best_round")
    seed: int = _default("seed")
    backend: str = _default("backend")
    #: DP: {mechanism, noise_multiplier | target_epsilon, clip_norm, delta, ...} (fednlp_bench/privacy).
    privacy: dict[str, Any] | None = None
    #: {periods, retention, rounds_per_period[, order_by, order_within]} (config_sections.py).
    continual: dict[str, Any] | None = None
    client_eval: bool = _default("client_eval")
    #: {source: holdout|test, rows, min_units}: where local test rows come from, and the size a client needs.
    client_eval_params: dict[str, Any] = field(default_factory=dict)
    #: Membership audit of the final model: {examples, reference, bootstrap, client_rows, holdout_clients}
    #: (fednlp_bench/audit/spec.py); None: off.
    membership_audit: dict[str, Any] | None = None
    #: Canary exposure: {count, repeats, candidates, client, secret_length, label} (fednlp_bench/audit/canary.py).
    canary: dict[str, Any] | None = None
    #: Counterfactual fairness of the final model, e.g. {counterfactual: gender} (fednlp_bench/fairness).
    fairness: dict[str, Any] | None = None
    precision: str = _default("precision")
    trainable: str = _default("trainable")
    #: The trainable mode's parameters (compute/trainable.py), e.g. {layers: 2, cache: true}.
    trainable_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        given = dict(self.partition or {})
        defaults = _default_partition()
        if given.get("scheme", defaults["scheme"]) != defaults["scheme"] and "params" not in given:
            # The default params (alpha) belong to the default scheme; another scheme starts empty.
            defaults["params"] = {}
        self.partition = {**defaults, **given}
        for name in INT_FIELDS:
            setattr(self, name, integral(getattr(self, name)))
        for key in INT_PARTITION_KEYS:
            if key in self.partition:
                self.partition[key] = integral(self.partition[key])
        if "params" in self.partition and self.partition["params"] is None:
            self.partition["params"] = {}
        for name in ("algorithm_params", "columns", "task_params", "sampling_params", "trainable_params",
                     "client_eval_params"):
            setattr(self, name, dict(getattr(self, name) or {}))
        self.validate()

    # ------------------------------------------------------------------ io
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Build from a plain dict (YAML, JSON, record); unknown keys are errors with a suggestion."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a run config must be a mapping of field -> value, got {type(data).__name__}")
        if "mia_examples" in data:
            raise ValueError("mia_examples is now membership_audit: {examples: N} (the v2 audit, docs/trust.md)")
        names = cls.field_names()
        for key in data:
            if key not in names:
                raise ValueError(
                    f"unknown config key {key!r}.{closest_hint(key, names)} Valid keys: {', '.join(names)}"
                )
        values = copy.deepcopy(dict(data))
        # Giving only `local_steps` means "steps instead of epochs", not "both".
        if values.get("local_steps") is not None and "local_epochs" not in values:
            values["local_epochs"] = None
        if "partition" in values:
            part = values["partition"]
            if not isinstance(part, Mapping):
                raise ValueError(f"config 'partition' must be a mapping with keys {list(PARTITION_KEYS)}, got {part!r}")
            for key in part:
                if key not in PARTITION_KEYS:
                    raise ValueError(
                        f"unknown partition key {key!r}.{closest_hint(key, PARTITION_KEYS)} "
                        f"Valid keys: {', '.join(PARTITION_KEYS)} (scheme parameters such as alpha go in 'params')"
                    )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = copy.deepcopy(asdict(self))
        for name, off in OPTIONAL_OFF.items():
            if data.get(name) == off:
                del data[name]
        return data

    @classmethod
    def from_yaml(cls, path: str | Path) -> "RunConfig":
        run_dict, _ = load_yaml_config(path)
        return cls.from_dict(select_task(run_dict, None, str(path)))

    def replace(self, **changes: Any) -> "RunConfig":
        """A validated copy with some fields changed (``compare`` builds one per algorithm)."""
        data = self.to_dict()
        data.update(copy.deepcopy(changes))
        return RunConfig.from_dict(data)

    # ------------------------------------------------------------ validation
    def validate(self) -> None:
        """Raise ``ValueError`` naming the bad value and the fix; called on every construction."""
        validate_config(self)

    def effective_aggregation_weights(self) -> str:
        """``aggregation_weights``, or the sampling policy's default when the config gives none."""
        from fednlp_bench.sampling.weights import default_weights

        return self.aggregation_weights if self.aggregation_weights is not None else default_weights(self.sampling)


def load_yaml_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a YAML config; return (run fields, optional ``compare:`` section) (fednlp_bench/config_files.py)."""
    return config_files.load_yaml_config(path)


def config_tasks(data: Mapping[str, Any], source: str = "config") -> list[str]:
    """The task names of a multi-task config (its ``tasks:`` list), in order; ``[]`` for a one-task config."""
    return config_files.config_tasks(data, RunConfig.field_names(), source)


def select_task(data: Mapping[str, Any], task: str | None, source: str = "config") -> dict[str, Any]:
    """The run fields of one task of a multi-task config (the entry over the shared fields)."""
    return config_files.select_task(data, task, RunConfig.field_names(), source)


def task_compare_section(data: Mapping[str, Any], task: str | None, compare: Mapping[str, Any],
                         source: str = "config") -> dict[str, Any]:
    """The ``compare:`` section for one task of a multi-task config (the entry's own over the top-level one)."""
    return config_files.task_compare_section(data, task, compare, RunConfig.field_names(), source)
