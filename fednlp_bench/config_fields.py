"""The run config's fields, declared once as :class:`~fednlp_bench.registry.Param`.

``RunConfig`` takes its defaults from here, ``RunConfig.validate`` checks
every scalar field with its declaration, and ``fednlp-bench run``/``compare``
build their flags and ``--help`` from the same objects (``commands/flags.py``).
Mapping fields (``partition``, ``algorithm_params``, ``privacy``, ...) are
sections: their keys are declared by the registry entry they configure.
Choices that name registry entries (sampling policies, backends, trainable
modes) are read from those registries, which sit below the config.
"""

from __future__ import annotations

import math
from typing import Any

from fednlp_bench.checks import at_least, in_range
from fednlp_bench.registry import Param, declare

OPTIMIZERS = ("sgd", "adamw")
#: How a client's local rows form batches (fednlp_bench/engine/client/batching.py).
BATCHINGS = ("random", "length")


def _names(module: str, registry: str) -> Any:
    def names() -> list[str]:
        import importlib

        return list(getattr(importlib.import_module(module), registry).names())

    return names


def _lr(value: Any) -> str | None:
    return None if value > 0 and math.isfinite(value) else "must be a positive finite number, e.g. 5e-5"


def _precisions() -> list[str]:
    from fednlp_bench.compute.precision import PRECISIONS

    return list(PRECISIONS)


def _aggregation_weights() -> tuple[Any, ...]:
    from fednlp_bench.sampling.weights import AGGREGATION_WEIGHTS

    return (*AGGREGATION_WEIGHTS, None)


#: Scalar fields of ``RunConfig``, in the order ``--help`` lists them.
FIELDS: dict[str, Param] = declare(
    # Not a choice: a task object given to the engine (custom tasks, tests) need not be registered.
    Param("task", str, "classification", help="%(names)s (default: classification)",
          listed=_names("fednlp_bench.tasks.registry", "TASKS")),
    Param("data", str, None, help="local folder/file or hub dataset (default: the task's offline copy)"),
    Param("model", str, "minilm", help="minilm (offline default) | tiny (tests) | HF name or folder"),
    Param("max_length", int, 128, at_least(8), "max tokens per example (default: 128)"),
    Param("max_train_examples", int, None, at_least(1), "seeded random subset of the train split"),
    Param("max_eval_examples", int, None, at_least(1), "seeded random subset of the validation and of the test split"),
    Param("max_validation_examples", int, None, at_least(1), "seeded random subset of the validation split alone "
          "(default: max_eval_examples); the test split keeps max_eval_examples"),
    Param("algorithm", str, "fedavg", help="%(names)s | package.module:Class (default: fedavg)",
          listed=_names("fednlp_bench.algorithms.registry", "ALGORITHMS")),
    Param("rounds", int, 10, at_least(1), "communication rounds (default: 10)"),
    Param("clients_per_round", int, 5, at_least(1), "clients sampled per round, K (default: 5)"),
    Param("local_epochs", int, 1, at_least(1), "local epochs per round (default: 1)", null=True),
    Param("local_steps", int, None, at_least(1), "local optimizer steps per round instead of epochs"),
    Param("batch_size", int, 16, at_least(1), "batch size (default: 16)"),
    Param("lr", float, 5e-5, _lr, "client learning rate (default: 5e-5)"),
    Param("optimizer", str, "adamw", help="client optimizer (default: adamw)", choices=OPTIMIZERS),
    Param("attention_dropout", float, None, in_range(0, 1), "dropout on attention probabilities of a BERT-family "
          "model (default: the model's own, 0.1 for MiniLM; 0 lets CPU attention run fused: "
          "compute/attention_dropout.py)"),
    Param("batching", str, "random", help="how local batches form (default: random; length: rows of similar "
          "length share a batch, fewer padded tokens: engine/client/batching.py)", choices=BATCHINGS),
    Param("sampling", str, "uniform", help="client sampling policy (inclusion probabilities and default aggregation "
          "weights: docs/trust.md, section 6)", choices=_names("fednlp_bench.sampling.policies", "SAMPLING_POLICIES")),
    Param("aggregation_weights", str, None, help="size | uniform | inverse_probability (default: the sampling "
          "policy's)", choices=_aggregation_weights),
    Param("dropout", float, 0.0, in_range(0, 1, note="the probability a sampled client fails"),
          "probability a sampled client fails mid-round (default: 0)"),
    Param("eval_every", int, 1, at_least(1), "evaluate on validation every N rounds and at the end (default: 1)"),
    Param("test_best_round", bool, False, help="also evaluate test on the best-validation round (test is always "
          "evaluated on the final model)"),
    Param("seed", int, 0, at_least(0), "run seed: model init, sampling, shuffling (default: 0)"),
    Param("backend", str, "inprocess", help="execution backend: inprocess (default) | fedml (multi-process, own "
          "venv: docs/fedml.md)", choices=_names("fednlp_bench.execution", "BACKENDS")),
    Param("client_eval", bool, False, help="evaluate the final model on every client's local test set "
          "(docs/trust.md)"),
    Param("precision", str, "fp32", help="autocast precision (default: fp32; fp16 needs a GPU)", choices=_precisions),
    Param("trainable", str, "full", help="which weights train and travel (compute/trainable.py)",
          choices=_names("fednlp_bench.compute.trainable", "MODES")),
    # Sections: mappings whose keys the registry entry they configure declares (its ``--NAME`` flags and
    # ``--FAMILY-param KEY=VALUE`` fill them on the command line: commands/flags.py).
    Param("columns", dict, {}, help="read task field FIELD from your column NAME, e.g. --column text=body "
          "--column label=topic (repeatable; config: columns: {text: body})", flag="--column"),
    Param("task_params", dict, {}, help="the task's options (Task.param_specs)", cli=False),
    Param("partition", dict, {}, help="the partition spec (PARTITION_FIELDS)", cli=False),
    Param("algorithm_params", dict, {}, help="any parameter of the algorithm as KEY=VALUE (repeatable; also "
          "--NAME VALUE, e.g. --mu 0.01, --server-lr 1e-2; `fednlp-bench algorithms` lists them)", flag="--algo-param"),
    Param("sampling_params", dict, {}, help="the sampling policy's parameters", cli=False),
    Param("client_eval_params", dict, {}, help="per-client evaluation (config_sections.py)", cli=False),
    Param("trainable_params", dict, {}, help="the trainable mode's parameters", cli=False),
    Param("privacy", dict, None, help="client- or example-level DP (privacy/spec.py)", cli=False),
    Param("continual", dict, None, help="the continual setting (config_sections.py)", cli=False),
    Param("membership_audit", dict, None, help="membership audit of the final model (audit/spec.py)", cli=False),
    Param("canary", dict, None, help="canary exposure (audit/canary.py)", cli=False),
    Param("fairness", dict, None, help="counterfactual fairness (fairness/spec.py)", cli=False),
)

#: Keys of the ``partition`` section, with the default partition of a config that gives none.
PARTITION_FIELDS: dict[str, Param] = declare(
    Param("scheme", str, "dirichlet_label", help="%(names)s", listed=_names("fednlp_bench.partitioners",
                                                                            "PARTITIONERS")),
    Param("num_clients", int, 10, at_least(1), "number of clients", flag="--clients"),
    Param("seed", int, 0, at_least(0), "seed of the partition draw (default: 0)", flag="--partition-seed"),
    Param("min_size", int, 10, at_least(0), "minimum examples per client"),
    Param("params", dict, {"alpha": 0.5}, help="the scheme's parameters", cli=False),
)
PARTITION_KEYS = tuple(PARTITION_FIELDS)
