"""Model and tokenizer construction shared by the tasks.

``"minilm"`` is the offline MiniLM folder (found through the installed
package), ``"tiny"`` a 2-layer, 32-wide random BERT that uses the MiniLM
tokenizer (unit tests only: its numbers mean nothing), anything else an HF
hub name or local folder. All builders are deterministic under
``torch.manual_seed`` because the only randomness is torch's initialisation.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from transformers import AutoTokenizer, BertConfig, PreTrainedTokenizerBase

from fednlp_bench.hf_quiet import quiet_transformers
from fednlp_bench.paths import TINY_MODEL, default_model_path, resolve_model_name

log = logging.getLogger("fednlp_bench.tasks")
_ANNOUNCED: set[tuple[str, str, tuple[str, ...]]] = set()


def announce_new_weights(model_name: str, what: str, keys: Iterable[str]) -> None:
    """One line, once per process and model/head: which weights start from random initialisation."""
    names = tuple(sorted(keys))
    if not names:
        return
    key = (model_name, what, names)
    if key in _ANNOUNCED:
        return
    _ANNOUNCED.add(key)
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    log.info("%s: %s is new (randomly initialised, trained by the run): %s", model_name, what, shown)


def _source(name: str) -> str:
    """The folder/hub name holding the tokenizer (and weights) for ``name``; a hub name fails at once offline."""
    source = str(default_model_path()) if name == TINY_MODEL else resolve_model_name(name)
    if not Path(source).expanduser().exists():
        from fednlp_bench.hub import unreachable_reason

        why = unreachable_reason()
        if why:
            raise ValueError(f"unknown model {name!r}: not 'minilm' (offline default), 'tiny' (tests) or an existing "
                             f"model folder, and {why}")
    return source


def _unknown(name: str, err: Exception) -> ValueError:
    return ValueError(
        f"unknown model {name!r}: not 'minilm' (offline default), 'tiny' (tests), an existing model folder, "
        f"or a reachable Hugging Face hub model ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    )


@lru_cache(maxsize=8)
def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    """Fast tokenizer for ``name`` (cached: tokenizers are immutable and slow to build)."""
    try:
        tok = AutoTokenizer.from_pretrained(_source(name), use_fast=True)
    except (OSError, ValueError, EnvironmentError) as err:
        raise _unknown(name, err) from err
    if not getattr(tok, "is_fast", False):
        raise ValueError(f"model {name!r} has no fast tokenizer; offsets/word ids need one (tokenizer.json)")
    return tok


def tiny_bert_config(vocab_size: int, **overrides: Any) -> BertConfig:
    """A 2-layer, hidden-32 BERT: enough to exercise every code path in seconds."""
    cfg = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    cfg.update(overrides)
    return BertConfig(**cfg)


def build_auto_model(auto_cls: Any, name: str, **config_kwargs: Any) -> Any:
    """``auto_cls`` model for ``name``: tiny random BERT, offline MiniLM, or any HF model."""
    if name == TINY_MODEL:
        vocab = len(load_tokenizer(name))
        return auto_cls.from_config(tiny_bert_config(vocab, **config_kwargs))
    try:
        with quiet_transformers():
            model, info = auto_cls.from_pretrained(_source(name), output_loading_info=True, **config_kwargs)
    except (OSError, EnvironmentError) as err:
        raise _unknown(name, err) from err
    if info.get("unexpected_keys") or info.get("mismatched_keys"):
        log.debug("%s: unused checkpoint weights %s", name, sorted(info.get("unexpected_keys") or []))
    announce_new_weights(name, "the task head", info.get("missing_keys") or ())
    return model
