"""The run configuration: one flat, validated description of an experiment.

A run is reproducible only if *everything* that shapes it is in one place that
is stored with the result. ``RunConfig`` is that place: the CLI flags, a YAML
file and a leaderboard's ``--verify`` all become a ``RunConfig``; the record
stores ``config.to_dict()``. Validation is strict and happens at construction,
before any data is loaded, so a typo costs seconds, not a half-finished run.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from fednlp_bench import config_files
from fednlp_bench.config_files import COMPARE_SECTION, TASKS_SECTION  # noqa: F401 - re-exported
from fednlp_bench.hints import closest_hint
from fednlp_bench.scalars import integral

OPTIMIZERS = ("sgd", "adamw")
#: How a round's updates are weighted (engine/aggregation_weights.py); None in a config: the sampling policy's default.
AGGREGATION_WEIGHTS = ("size", "uniform", "inverse_probability")


def sampling_methods() -> tuple[str, ...]:
    """Client selection policies, from their registry (engine/sampling_policies.py): the one list of names."""
    from fednlp_bench.engine.sampling_policies import SAMPLING_POLICIES

    return tuple(SAMPLING_POLICIES.names())


def __getattr__(name: str) -> Any:
    # ``config.SAMPLING_METHODS`` stays importable; it is read from the registry on first use.
    if name == "SAMPLING_METHODS":
        return sampling_methods()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
#: "fedml": one server + P client processes on FedML (needs its own venv, see docs/fedml.md). How many
#: processes, MPI or gRPC and the round timeout change how a run executes, not its result, so they
#: are run options (``fednlp-bench run --processes/--comm/--round-timeout``), not config fields.
BACKENDS = ("inprocess", "fedml")
#: What a run keeps of its model weights (a run option, not a config field: it never changes a result).
#: last: the newest checkpoint (resume, inspect); none: drop the weights when the run finishes, the record
#: stays; all: one checkpoint per round.
KEEP_CHECKPOINTS = ("last", "none", "all")


def check_keep_checkpoints(value: object) -> str:
    if value not in KEEP_CHECKPOINTS:
        raise ValueError(f"keep_checkpoints={value!r} is not supported.{closest_hint(str(value), KEEP_CHECKPOINTS)} "
                         f"Choose one of {list(KEEP_CHECKPOINTS)}")
    return str(value)
PARTITION_KEYS = ("scheme", "num_clients", "seed", "min_size", "params")


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
INT_FIELDS = ("max_length", "max_train_examples", "max_eval_examples", "rounds", "clients_per_round", "local_epochs",
              "local_steps", "batch_size", "eval_every", "seed")
INT_PARTITION_KEYS = ("num_clients", "seed", "min_size")


def _default_partition() -> dict[str, Any]:
    return {"scheme": "dirichlet_label", "num_clients": 10, "seed": 0, "min_size": 10, "params": {"alpha": 0.5}}


@dataclass
class RunConfig:
    """Everything that determines one benchmark run (field meanings: docs/engine.md)."""

    task: str = "classification"
    data: str | None = None
    model: str = "minilm"
    max_length: int = 128
    max_train_examples: int | None = None
    max_eval_examples: int | None = None
    #: ``{task field: column in the user's files}``, e.g. ``{text: body, label: topic}``.
    columns: dict[str, str] = field(default_factory=dict)
    #: Extra keyword options of the task: text_format (auto|email|plain), skip_invalid_rows,
    #: validation_fraction, tag_scheme (tagging), doc_stride (qa), max_target_length (generation)...
    task_params: dict[str, Any] = field(default_factory=dict)
    partition: dict[str, Any] = field(default_factory=_default_partition)
    algorithm: str = "fedavg"
    algorithm_params: dict[str, Any] = field(default_factory=dict)
    rounds: int = 10
    clients_per_round: int = 5
    local_epochs: int | None = 1
    local_steps: int | None = None
    batch_size: int = 16
    lr: float = 5e-5
    optimizer: str = "adamw"
    sampling: str = "uniform"
    #: e.g. {gamma: 1.0} for activity_poisson (engine/sampling_policies.py).
    sampling_params: dict[str, Any] = field(default_factory=dict)
    #: size | uniform | inverse_probability (engine/aggregation_weights.py); None: the sampling policy's default.
    aggregation_weights: str | None = None
    dropout: float = 0.0
    eval_every: int = 1
    #: Also evaluate test on the round with the best validation score (the final round always is).
    test_best_round: bool = False
    seed: int = 0
    backend: str = "inprocess"
    #: DP: {mechanism, noise_multiplier | target_epsilon, clip_norm, delta, ...} (fednlp_bench/privacy).
    privacy: dict[str, Any] | None = None
    #: {periods, retention, rounds_per_period[, time_column]} (engine/populations.py).
    continual: dict[str, Any] | None = None
    #: Split each client into local train/test and report per-client metrics (engine/client_eval.py).
    client_eval: bool = False
    #: {source: holdout|test, rows, min_units}: where local test rows come from, and the size a client needs.
    client_eval_params: dict[str, Any] = field(default_factory=dict)
    #: Membership audit of the final model: {examples, reference, bootstrap, client_rows, holdout_clients}
    #: (fednlp_bench/audit/spec.py); None: off.
    membership_audit: dict[str, Any] | None = None
    #: Canary exposure: {count, repeats, candidates, client, secret_length, label} (fednlp_bench/audit/canary.py).
    canary: dict[str, Any] | None = None
    #: Counterfactual fairness of the final model, e.g. {counterfactual: gender} (fednlp_bench/fairness).
    fairness: dict[str, Any] | None = None
    #: fp32 | bf16 | fp16 autocast (fednlp_bench/compute/precision.py); master weights stay fp32.
    precision: str = "fp32"
    #: full | top_layers | lora | bitfit (fednlp_bench/compute/trainable.py), parameters in trainable_params.
    trainable: str = "full"
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
        self.algorithm_params = dict(self.algorithm_params or {})
        self.columns = dict(self.columns or {})
        self.task_params = dict(self.task_params or {})
        self.sampling_params = dict(self.sampling_params or {})
        self.trainable_params = dict(self.trainable_params or {})
        self.client_eval_params = dict(self.client_eval_params or {})
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
        _check_int("rounds", self.rounds, minimum=1)
        _check_int("clients_per_round", self.clients_per_round, minimum=1)
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("eval_every", self.eval_every, minimum=1)
        _check_int("max_length", self.max_length, minimum=8)
        _check_int("seed", self.seed, minimum=0)
        for name in ("max_train_examples", "max_eval_examples"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        if (self.local_epochs is None) == (self.local_steps is None):
            raise ValueError(
                f"set exactly one of local_epochs and local_steps (got local_epochs={self.local_epochs}, "
                f"local_steps={self.local_steps}); e.g. local_epochs: 1 and local_steps: null"
            )
        if self.local_epochs is not None:
            _check_int("local_epochs", self.local_epochs, minimum=1)
        if self.local_steps is not None:
            _check_int("local_steps", self.local_steps, minimum=1)
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr={self.lr!r} must be a positive finite number, e.g. 5e-5")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1): the probability a sampled client fails")
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("backend", self.backend, BACKENDS)
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"task={self.task!r} must be a task name such as 'classification'")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"model={self.model!r} must be 'minilm', 'tiny', a hub name or a local path")
        for name in ("columns", "task_params"):
            if not isinstance(getattr(self, name), Mapping):
                raise ValueError(f"{name}={getattr(self, name)!r} must be a mapping, e.g. {{text: body}}")
        bad = {k: v for k, v in self.columns.items() if not isinstance(v, str) or not v}
        if bad:
            raise ValueError(f"columns {bad}: each task field must map to a column name (a non-empty string)")
        if not isinstance(self.test_best_round, bool):
            raise ValueError(f"test_best_round={self.test_best_round!r} must be true or false")
        self._validate_partition()
        self._validate_algorithm()
        self._validate_populations()
        self._validate_compute()

    def _validate_populations(self) -> None:
        """Sampling parameters, DP, continual setting, per-client evaluation and the audit (optional features)."""
        from fednlp_bench.engine.client_eval import MIN_CLIENT_SIZE, ClientEvalParams
        from fednlp_bench.audit.spec import check_audit_features
        from fednlp_bench.fairness.spec import check_fairness
        from fednlp_bench.engine.populations import ContinualSpec, check_sampling
        from fednlp_bench.engine.sampling_policies import check_aggregation_weights
        from fednlp_bench.privacy.rules import check_privacy_setting
        from fednlp_bench.privacy.spec import PrivacySpec

        _check_choice("sampling", self.sampling, sampling_methods())
        check_sampling(self.sampling, self.sampling_params)
        if self.aggregation_weights is not None:
            _check_choice("aggregation_weights", self.aggregation_weights, AGGREGATION_WEIGHTS)
        check_aggregation_weights(self.effective_aggregation_weights(), sampling=self.sampling, algorithm=self.algorithm,
                                  privacy=self.privacy is not None, explicit=self.aggregation_weights is not None)
        if self.privacy is not None:
            check_privacy_setting(PrivacySpec.from_dict(self.privacy), self)  # mechanism x algorithm/sampling/...
        if self.continual is not None:
            spec = ContinualSpec.from_dict(self.continual)
            if self.algorithm == "centralized":
                raise ValueError("the continual setting is defined for federated algorithms, not 'centralized'")
            if self.rounds != spec.total_rounds:
                raise ValueError(
                    f"rounds={self.rounds} but continual runs periods x rounds_per_period = {spec.periods} x "
                    f"{spec.rounds_per_period} = {spec.total_rounds} rounds; set rounds: {spec.total_rounds}"
                )
        if not isinstance(self.client_eval, bool):
            raise ValueError(f"client_eval={self.client_eval!r} must be true or false")
        source = ClientEvalParams.from_dict(self.client_eval_params).source
        if self.client_eval_params and not self.client_eval:
            raise ValueError("client_eval_params is set but client_eval is off; set client_eval: true or drop them")
        if self.client_eval and source == "holdout" and int(self.partition["min_size"]) < MIN_CLIENT_SIZE:
            raise ValueError(
                f"client_eval splits every client into local train and test, so clients need at least "
                f"{MIN_CLIENT_SIZE} rows; partition.min_size={self.partition['min_size']} allows fewer: "
                f"set partition.min_size >= {MIN_CLIENT_SIZE}"
            )
        # The audits read the hold-out rows of the clients themselves (local sets drawn from test are not theirs).
        check_audit_features(self.membership_audit, self.canary, task=self.task,
                             client_eval=self.client_eval and source == "holdout",
                             continual=self.continual is not None, backend=self.backend, algorithm=self.algorithm,
                             num_clients=self.partition["num_clients"], clients_per_round=self.clients_per_round)
        check_fairness(self.fairness, task=self.task)
        if self.backend == "fedml" and (self.client_eval or self.continual is not None):
            # FedML's client processes read each client's full partition rows themselves.
            raise ValueError(
                "client_eval and continual change which rows a client trains on, which the fedml backend's "
                "client processes do not follow yet; use backend: inprocess for them (privacy works on both)"
            )

    def effective_aggregation_weights(self) -> str:
        """``aggregation_weights``, or the sampling policy's default when the config gives none."""
        from fednlp_bench.engine.sampling_policies import SAMPLING_POLICIES

        if self.aggregation_weights is not None:
            return self.aggregation_weights
        return SAMPLING_POLICIES.lookup(self.sampling).default_weights

    def _validate_partition(self) -> None:
        part = self.partition
        for key in part:
            if key not in PARTITION_KEYS:
                raise ValueError(f"unknown partition key {key!r}.{closest_hint(key, PARTITION_KEYS)}")
        if not isinstance(part.get("scheme"), str) or not part["scheme"]:
            raise ValueError(f"partition.scheme={part.get('scheme')!r} must be a scheme name such as 'dirichlet_label'")
        # None is allowed for schemes whose clients come from the data (natural_id: one per group).
        if part.get("num_clients") is not None:
            _check_int("partition.num_clients", part.get("num_clients"), minimum=1)
        _check_int("partition.seed", part.get("seed"), minimum=0)
        _check_int("partition.min_size", part.get("min_size"), minimum=0)
        if not isinstance(part.get("params", {}), Mapping):
            raise ValueError(f"partition.params must be a mapping such as {{alpha: 0.5}}, got {part['params']!r}")
        known = _partition_schemes()
        if part["scheme"] not in known:
            raise ValueError(
                f"unknown partition scheme {part['scheme']!r}.{closest_hint(part['scheme'], known)} "
                f"Choose one of {sorted(known)}"
            )
        self._validate_scheme_params()
        if part["num_clients"] is not None and self.clients_per_round > part["num_clients"]:
            raise ValueError(
                f"clients_per_round={self.clients_per_round} is larger than the number of clients "
                f"({part['num_clients']}); lower clients_per_round or raise partition.num_clients"
            )

    def _validate_scheme_params(self) -> None:
        """Build the partitioner (no data needed): a bad alpha or a misspelt parameter fails before loading."""
        from fednlp_bench.partitioners import make_partitioner

        part = self.partition
        make_partitioner(part["scheme"], part.get("num_clients"), seed=part["seed"], min_size=part["min_size"],
                         **dict(part.get("params") or {}))

    def _validate_algorithm(self) -> None:
        from fednlp_bench.algorithms.registry import get_algorithm_class

        cls = get_algorithm_class(self.algorithm)  # unknown name -> ValueError with suggestion
        cls(**self.algorithm_params)  # unknown / out-of-range parameter -> ValueError


    def _validate_compute(self) -> None:
        from fednlp_bench.compute.precision import PRECISIONS
        from fednlp_bench.compute.trainable import resolve_params

        _check_choice("precision", self.precision, tuple(PRECISIONS))
        if not isinstance(self.trainable_params, Mapping):
            raise ValueError(f"trainable_params must be a mapping such as {{layers: 2}}, got {self.trainable_params!r}")
        resolve_params(self.trainable, self.trainable_params)  # unknown mode / parameter -> ValueError


#: Fields added after records were first published, with the value every older record implicitly had.
#: ``config_hash`` leaves them out while they hold that value, so old records keep their hash.
FIELDS_ADDED_LATER: dict[str, Any] = {"precision": "fp32", "trainable": "full", "trainable_params": {},
                                      "columns": {}, "task_params": {}, "test_best_round": False}


def load_yaml_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a YAML config; return (run fields, optional ``compare:`` section) (fednlp_bench/config_files.py)."""
    return config_files.load_yaml_config(path)


def config_tasks(data: Mapping[str, Any], source: str = "config") -> list[str]:
    """The task names of a multi-task config (its ``tasks:`` list), in order; ``[]`` for a one-task config."""
    return config_files.config_tasks(data, RunConfig.field_names(), source)


def select_task(data: Mapping[str, Any], task: str | None, source: str = "config") -> dict[str, Any]:
    """The run fields of one task of a multi-task config (the entry over the shared fields)."""
    return config_files.select_task(data, task, RunConfig.field_names(), source)


def _partition_schemes() -> list[str]:
    from fednlp_bench.partitioners import PARTITIONERS

    return PARTITIONERS.names()


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    if value < minimum:
        raise ValueError(f"{name}={value} must be >= {minimum}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported.{closest_hint(str(value), choices)} Choose one of {list(choices)}")
