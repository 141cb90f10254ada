"""How big a run is, read from its config and the local data files alone (no model, no tokenizer).

``--jobs`` needs a memory estimate and the gpu tier's ``--dry-run`` a compute
estimate before anything is loaded, so this module counts rows of the local
JSON Lines files (``$FEDNLP_DATA_DIR/<data>/<split>.jsonl``) and builds the
model's *shape* on torch's meta device (no weights are read or allocated).
Anything it cannot know (a hub dataset, a hub model offline) is ``None``, and
the callers say so instead of guessing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from fednlp_bench.paths import TINY_MODEL, resolve_local_dir

DEFAULT_VALIDATION_FRACTION = 0.1  # tasks hold this share of train out when the data has no validation split


@dataclass(frozen=True)
class Rows:
    train: int
    validation: int
    test: int


@dataclass(frozen=True)
class ModelShape:
    """Parameter counts (total, in the encoder's layers) and the encoder's layer count, width and heads."""

    total: int
    per_layer: int
    layers: int
    hidden: int
    heads: int


@lru_cache(maxsize=64)
def _line_count(path: Path) -> int:
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def _data_dir(config: Mapping[str, Any]) -> Path | None:
    return resolve_local_dir(config.get("data"), str(config.get("data") or config["task"]))


def split_rows(config: Mapping[str, Any]) -> Rows | None:
    """Rows per split after the config's subsets, or None when the data is not a local JSONL folder."""
    folder = _data_dir(config)
    if folder is None or not (folder / "train.jsonl").is_file():
        return None
    train = _line_count(folder / "train.jsonl")
    if (folder / "validation.jsonl").is_file():
        validation = _line_count(folder / "validation.jsonl")
    else:
        fraction = float((config.get("task_params") or {}).get("validation_fraction", DEFAULT_VALIDATION_FRACTION))
        validation = round(train * fraction)
        train -= validation
    test = _line_count(folder / "test.jsonl") if (folder / "test.jsonl").is_file() else validation
    cap_train, cap_eval = config.get("max_train_examples"), config.get("max_eval_examples")
    cap_validation = config.get("max_validation_examples") or cap_eval
    if cap_train:
        train = min(train, int(cap_train))
    if cap_validation:
        validation = min(validation, int(cap_validation))
    if cap_eval:
        test = min(test, int(cap_eval))
    return Rows(train, validation, test)


@lru_cache(maxsize=64)
def _distinct(path: Path, column: str) -> int:
    with path.open() as fh:
        return len({json.loads(line).get(column) for line in fh if line.strip()})


def client_count(config: Mapping[str, Any]) -> int | None:
    """Clients of the run's partition: ``num_clients``, or the distinct groups of a natural partition."""
    part = config.get("partition") or {}
    if part.get("num_clients"):
        return int(part["num_clients"])
    column = (part.get("params") or {}).get("group_column")
    folder = _data_dir(config)
    if column is None or folder is None or not (folder / "train.jsonl").is_file():
        return None
    return _distinct(folder / "train.jsonl", str(column))


@lru_cache(maxsize=16)
def model_shape(model: str) -> ModelShape | None:
    """The encoder's shape, built on the meta device from its config (None: the config is not reachable)."""
    import torch
    from transformers import AutoConfig, AutoModel

    from fednlp_bench.paths import default_model_path, resolve_model_name

    try:
        if model == TINY_MODEL:
            from fednlp_bench.tasks.models import load_tokenizer, tiny_bert_config

            config = tiny_bert_config(len(load_tokenizer(model)))
        else:
            source = resolve_model_name(model) if model != "minilm" else str(default_model_path())
            config = AutoConfig.from_pretrained(source)
        with torch.device("meta"):
            encoder = AutoModel.from_config(config)
    except (OSError, ValueError, KeyError):
        return None
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    layer_params = 0
    for name, param in encoder.named_parameters():
        if ".layer." in name:
            layer_params += param.numel()
    total = sum(p.numel() for p in encoder.parameters())
    return ModelShape(total=total, per_layer=layer_params // max(layers, 1), layers=layers,
                      hidden=int(config.hidden_size), heads=int(config.num_attention_heads))


def trained_layers(config: Mapping[str, Any], shape: ModelShape) -> int:
    """Encoder layers whose activations backward must keep (all of them unless only the top layers train)."""
    if config.get("trainable") == "top_layers":
        return min(shape.layers, int((config.get("trainable_params") or {}).get("layers", shape.layers)))
    return shape.layers


def trainable_params(config: Mapping[str, Any], shape: ModelShape) -> int:
    """Parameters that train and travel: all (full), the top layers (top_layers), ~none (lora, bitfit)."""
    mode = config.get("trainable", "full")
    if mode == "full":
        return shape.total
    if mode == "top_layers":
        return trained_layers(config, shape) * shape.per_layer
    return 0  # LoRA adapters and biases: well under 1% of the model
