"""Per-round checkpoints: safetensors for tensors, JSON for everything else.

Layout in ``<run_dir>/checkpoint/``: ``round_NNNN.safetensors`` (global model
under ``model/``, strategy tensors such as FedAdam moments under ``server/``,
optimizer and RNG tensors under ``extra/``) and ``state.json`` (round, config,
per-round results, JSON part of the server state) naming that file.

Writes are crash-safe: the tensor file and ``state.json`` are each written to
a temporary file and renamed into place, ``state.json`` last, and the previous
round's tensor file is deleted only after that. A kill at any moment leaves a
consistent checkpoint: the new one or the previous one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save

from fednlp_bench.atomic import atomic_write_bytes, atomic_write_text

CHECKPOINT_DIRNAME = "checkpoint"
STATE_FILENAME = "state.json"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    round: int
    weights: dict[str, torch.Tensor]
    server_state: dict[str, Any]
    extra_tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIRNAME


def has_checkpoint(run_dir: Path) -> bool:
    return (checkpoint_dir(run_dir) / STATE_FILENAME).is_file()


def split_state(state: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Separate tensors (-> safetensors) from JSON values of a flat state dict."""
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    plain = {k: v for k, v in state.items() if not isinstance(v, torch.Tensor)}
    try:
        json.dumps(plain)
    except TypeError as err:
        raise TypeError(f"strategy state must hold tensors or JSON values: {err}") from err
    return tensors, plain


def save_checkpoint(
    run_dir: Path,
    rnd: int,
    weights: Mapping[str, torch.Tensor],
    server_state: Mapping[str, Any],
    meta: Mapping[str, Any],
    extra_tensors: Mapping[str, torch.Tensor] | None = None,
    keep_all: bool = False,
) -> Path:
    directory = checkpoint_dir(run_dir)
    directory.mkdir(parents=True, exist_ok=True)
    server_tensors, server_plain = split_state(server_state)
    tensors = {f"model/{k}": v for k, v in weights.items()}
    tensors.update({f"server/{k}": v for k, v in server_tensors.items()})
    tensors.update({f"extra/{k}": v for k, v in (extra_tensors or {}).items()})
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    name = f"round_{rnd:04d}.safetensors"
    atomic_write_bytes(directory / name, save(tensors))
    state = {"format": FORMAT_VERSION, "round": rnd, "tensors_file": name, "server_state": server_plain, **meta}
    atomic_write_text(directory / STATE_FILENAME, json.dumps(state, indent=1, sort_keys=True))
    if not keep_all:
        for old in directory.glob("round_*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)
    return directory / name


def drop_weights(run_dir: Path) -> None:
    """Delete a finished run's checkpoint, per-client states and best-validation weights; the record stays."""
    import shutil

    from fednlp_bench.engine.client.state import DIRNAME as CLIENT_STATE_DIRNAME
    from fednlp_bench.engine.eval.test_split import BEST_WEIGHTS_FILE

    for folder in (checkpoint_dir(run_dir), Path(run_dir) / CLIENT_STATE_DIRNAME):
        if folder.is_dir():
            shutil.rmtree(folder)
    (Path(run_dir) / BEST_WEIGHTS_FILE).unlink(missing_ok=True)


def load_checkpoint(run_dir: Path) -> Checkpoint:
    directory = checkpoint_dir(run_dir)
    state_path = directory / STATE_FILENAME
    if not state_path.is_file():
        raise FileNotFoundError(f"no checkpoint to resume in {directory} (missing {STATE_FILENAME})")
    try:
        state = json.loads(state_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{state_path} is not valid JSON ({err.msg}); the checkpoint is damaged") from err
    if state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{state_path}: checkpoint format {state.get('format')!r} is not {FORMAT_VERSION}")
    tensors_path = directory / state["tensors_file"]
    if not tensors_path.is_file():
        raise FileNotFoundError(f"{state_path} names {tensors_path.name}, which is missing; the checkpoint is damaged")
    tensors = load_file(str(tensors_path))
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}
    server = {k[7:]: v for k, v in tensors.items() if k.startswith("server/")}
    extra = {k[6:]: v for k, v in tensors.items() if k.startswith("extra/")}
    server.update(state.pop("server_state"))
    rnd = int(state.pop("round"))
    for key in ("format", "tensors_file"):
        state.pop(key)
    return Checkpoint(round=rnd, weights=weights, server_state=server, extra_tensors=extra, meta=state)


def optimizer_state_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Optimizer state as (tensors, JSON) so it can ride in the safetensors checkpoint."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, Any] = {"param_groups": sd["param_groups"], "scalars": {}}
    for idx, per_param in sd["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{idx}/{key}"] = value
            else:
                plain["scalars"][f"{idx}/{key}"] = value
    return tensors, plain


def optimizer_state_from_flat(
    optimizer: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor], plain: Mapping[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            idx, name = key[6:].split("/", 1)
            state.setdefault(int(idx), {})[name] = value
    for key, value in plain.get("scalars", {}).items():
        idx, name = key.split("/", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": plain["param_groups"]})
