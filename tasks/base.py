"""The contract between a task and everything else.

A task knows its data, tokenizer, model head and metric; it knows nothing of
federated learning. The engine only ever calls the methods below, so a fifth
task is one new module that subclasses :class:`Task` and registers itself.

Column contract of ``Task.load()`` (every split):
  ``id`` (str, stable per example; partitions fingerprint these),
  ``text`` (str, what a sentence embedder sees for feature clustering),
  ``partition_key`` (int; -1 where the task has none) plus task columns.
Column contract of ``Task.preprocess()``: model inputs plus ``example_index``
(int row of the raw split each feature came from; QA contexts may overflow
into several features, every other task is 1:1).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Iterator, Mapping

import torch
from datasets import Dataset, DatasetDict

from fednlp_bench.paths import DEFAULT_MODEL
from fednlp_bench.registry import Param, declare, resolve_params
from fednlp_bench.tasks.messages import TEXT_FORMATS


class Task(ABC):
    """One NLP task family: data source, preprocessing, model head and metric."""

    #: Registry name (``--task``).
    name: ClassVar[str]
    #: Key of the headline metric in :meth:`evaluate`'s result; its metric declares it higher-is-better
    #: (``tasks/metrics.py``: ``direction(primary_metric)``; tests/test_metrics.py checks every task).
    primary_metric: ClassVar[str]
    #: Hub dataset used when no local source is given and the hub is reachable.
    hub_default: ClassVar[str]
    #: Sub-folder of ``FEDNLP_DATA_DIR`` holding the offline copy.
    local_default: ClassVar[str]
    #: What a per-client evaluation set's minimum size counts (engine/eval/client_eval.py).
    evaluation_unit: ClassVar[str] = "examples"
    #: The task's options (``task_params`` in a config, ``--NAME`` flags), declared once; a subclass adds its own
    #: as ``{**Parent.param_specs, **declare(...)}``. Each becomes an attribute of the task object.
    param_specs: ClassVar[Mapping[str, Param]] = declare(
        Param("text_format", str, "auto", help="strip e-mail/netnews headers: auto (only real headers such as "
              "From:/Subject:), email (always), plain (never)", choices=TEXT_FORMATS),
        Param("skip_invalid_rows", bool, False, help="skip rows that cannot be used (counted in the record) instead "
              "of stopping at file:line"),
        Param("validation_fraction", float, 0.1, lambda v: None if 0 < v <= 0.5 else
              "must be in (0, 0.5]; 0.1 holds out 10% of train", "share of train held out as validation when the "
              "data has none (default: 0.1)"),
    )

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        data: str | None = None,
        max_length: int = 128,
        max_train_examples: int | None = None,
        max_eval_examples: int | None = None,
        seed: int = 0,
        columns: Mapping[str, str] | None = None,
        max_validation_examples: int | None = None,
        **options: Any,
    ) -> None:
        if max_length < 8:
            raise ValueError(f"max_length={max_length} is too short; use at least 8 tokens")
        for name, value in (("max_train_examples", max_train_examples), ("max_eval_examples", max_eval_examples),
                            ("max_validation_examples", max_validation_examples)):
            if value is not None and value < 1:
                raise ValueError(f"{name}={value} must be >= 1 (or omitted for the whole split)")
        self.model_name = model
        self.data = data
        self.max_length = max_length
        self.max_train_examples = max_train_examples
        self.max_eval_examples = max_eval_examples
        #: Validation alone may take a smaller subset than test (it is read every evaluated round, test once).
        self.max_validation_examples = max_validation_examples if max_validation_examples is not None \
            else max_eval_examples
        self.seed = seed
        #: ``{task field: column name in the user's files}`` (``{text: body, label: topic}``).
        self.columns = dict(columns or {})
        # text_format, skip_invalid_rows, validation_fraction and each task's own options, checked by declaration.
        for name, value in resolve_params(self.param_specs, options, owner=f"task {self.name!r}",
                                          prefix="task_params.").items():
            setattr(self, name, value)
        self.check_options()

    def check_options(self) -> None:
        """Checks between options (or of an option against ``max_length``); none by default."""

    # ----- data -------------------------------------------------------------
    @abstractmethod
    def load(self) -> DatasetDict:
        """Raw splits ``train``, ``validation`` and ``test`` following the column contract.

        Per-round evaluation and any tuning read ``validation``; ``test`` is
        evaluated once at the end of a run (see the engine's runner).
        """

    @property
    @abstractmethod
    def tokenizer(self) -> Any:
        """The tokenizer that matches :meth:`build_model` (loaded once, then reused)."""

    @abstractmethod
    def preprocess(self, split: Dataset, train: bool) -> Dataset:
        """Tokenize one raw split (cached ``Dataset.map``); keeps ``example_index``."""

    @abstractmethod
    def collate(self, features: list[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Batch preprocessed rows into model inputs (drops bookkeeping columns)."""

    def evaluation_units(self, raw: Dataset) -> list[int]:
        """Per raw row, how many ``evaluation_unit`` it holds (one example each unless the task says otherwise).

        A per-client metric over too few units is noise; the engine counts a
        client only when its local set holds at least the declared minimum.
        """
        return [1] * len(raw)

    # ----- model ------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> torch.nn.Module:
        """A fresh model whose ``forward(**batch)`` returns an object with ``.loss``.

        Deterministic under ``torch.manual_seed``; requires :meth:`load` first
        when the head size depends on the data (e.g. number of labels).
        """

    # ----- evaluation -------------------------------------------------------
    def evaluate(
        self, model: torch.nn.Module, raw: Dataset, features: Dataset, batch_size: int = 32
    ) -> dict[str, float]:
        """Standard metric(s) of the field on one split; includes :attr:`primary_metric`.

        The loop (eval mode, no grad, ordered batches, mean loss) is the same
        for every task, so it lives here; a task only says what to keep from
        each batch (:meth:`eval_accumulate`) and how to score it (:meth:`eval_finish`).
        """
        acc = self.eval_start(raw, features)
        loss_sum, with_loss = self.run_eval_loop(model, features, batch_size, acc)
        result = self.eval_finish(acc, model, raw, features, batch_size)
        if with_loss:
            result.setdefault("loss", loss_sum / max(len(features), 1))
        return result

    def run_eval_loop(
        self, model: torch.nn.Module, features: Dataset, batch_size: int, acc: dict[str, Any]
    ) -> tuple[float, bool]:
        """One pass over ``features``; returns (sum of per-row losses, whether the model gave a loss)."""
        device = model_device(model)
        loss_sum, with_loss = 0.0, False
        with evaluating(model):
            for rows, batch in self.iter_batches(features, batch_size):
                out = model(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
                if getattr(out, "loss", None) is not None:
                    loss_sum += float(out.loss) * len(rows)
                    with_loss = True
                self.eval_accumulate(acc, rows, out)
        return loss_sum, with_loss

    def eval_start(self, raw: Dataset, features: Dataset) -> dict[str, Any]:
        """Fresh accumulator for one evaluation (e.g. a prediction array sized to ``features``)."""
        return {}

    def eval_accumulate(self, acc: dict[str, Any], rows: range, out: Any) -> None:
        """Keep what scoring needs from one batch's model output (``rows``: its feature rows)."""

    @abstractmethod
    def eval_finish(
        self, acc: dict[str, Any], model: torch.nn.Module, raw: Dataset, features: Dataset, batch_size: int
    ) -> dict[str, float]:
        """Metrics from the accumulator; must include :attr:`primary_metric`."""

    def iter_batches(self, features: Dataset, batch_size: int) -> Iterator[tuple[range, dict[str, torch.Tensor]]]:
        """Ordered batches (row range, collated tensors) for evaluation."""
        for start in range(0, len(features), batch_size):
            rows = features[start : start + batch_size]
            cols = list(rows)
            items = [dict(zip(cols, vals)) for vals in zip(*(rows[c] for c in cols))]
            yield range(start, start + len(items)), self.collate(items)


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no grad for the block; the caller's train/eval mode comes back after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def model_device(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover - parameterless model
        return torch.device("cpu")
