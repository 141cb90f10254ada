"""Building a frozen-bottom cache file: the boundary hidden states of every row of one features split.

The forward pass stops at the frozen/trainable boundary (a hook raises once the
last frozen layer has run), rows are padded to the split's longest row, and the
array is written through a temporary ``.npy`` that replaces the target only
when complete, so a killed build leaves no partial cache behind. A build takes
minutes to tens of minutes on a CPU, so it reports rows done and an ETA to the
run's progress heartbeat.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from datasets import Dataset

from fednlp_bench import progress
from fednlp_bench.compute.cache_reuse import known_rows, row_digests, write_digests
from fednlp_bench.compute.cache_threads import BorrowedThreads
from fednlp_bench.compute.precision import Precision
from fednlp_bench.compute.trainable import TrainableSetup
from fednlp_bench.progress import format_seconds

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
BUILD_BATCH = 32


class _Stop(Exception):
    """Raised by the boundary hook: the rest of the forward pass is not needed."""


def _padded_inputs(feats: Dataset, rows: Sequence[int], width: int, pad_id: int,
                   device: torch.device) -> dict[str, torch.Tensor]:
    chunk = feats[list(rows)]
    out = {}
    for key in INPUT_KEYS:
        if key not in chunk:
            continue
        fill = pad_id if key == "input_ids" else 0
        out[key] = torch.tensor([list(v) + [fill] * (width - len(v)) for v in chunk[key]], dtype=torch.long, device=device)
    return out


def _boundary_module(setup: TrainableSetup) -> torch.nn.Module:
    stack = setup.stack
    assert stack is not None
    return stack.layers[setup.frozen_layers - 1] if setup.frozen_layers > 0 else stack.embeddings


def _run_bottom(setup: TrainableSetup, inputs: dict[str, torch.Tensor], precision: Precision) -> tuple[torch.Tensor, bool]:
    """Boundary hidden states of one padded batch (and whether a layer returns a tuple)."""
    stack = setup.stack
    assert stack is not None
    captured: dict[str, Any] = {}

    def first_layer_hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        captured["tuple"] = isinstance(output, tuple)

    def boundary_hook(module: torch.nn.Module, args: Any, output: Any) -> None:
        captured["out"] = output[0] if isinstance(output, tuple) else output
        raise _Stop

    handles = [_boundary_module(setup).register_forward_hook(boundary_hook)]
    if setup.frozen_layers > 0:
        handles.append(stack.layers[0].register_forward_hook(first_layer_hook))
    was_training = stack.encoder.training
    stack.encoder.eval()
    try:
        with torch.no_grad(), precision.autocast():
            stack.encoder(**inputs)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
        stack.encoder.train(was_training)
    if "out" not in captured:
        raise RuntimeError("the encoder's forward pass never reached the frozen/trainable boundary")
    return captured["out"].float(), bool(captured.get("tuple", False))


def probe_returns_tuple(setup: TrainableSetup, feats: Dataset, pad_id: int, precision: Precision) -> bool:
    if setup.frozen_layers == 0 or len(feats) == 0:
        return False
    device = next(setup.model.parameters()).device
    width = len(feats[0]["input_ids"])
    return _run_bottom(setup, _padded_inputs(feats, [0], width, pad_id, device), precision)[1]


def compute_states(setup: TrainableSetup, feats: Dataset, path: Path, pad_id: int, precision: Precision,
                   threads: BorrowedThreads, spec: Mapping[str, Any]) -> tuple[int, int]:
    """Write the boundary states of every row of ``feats`` to ``path`` (.npy via a temporary file) and its keys
    sidecar; rows a compatible file already holds are copied (compute/cache_reuse.py). Returns (computed, copied)."""
    device = next(setup.model.parameters()).device
    lengths = [len(ids) for ids in feats["input_ids"]]
    if not lengths:
        raise ValueError("cannot cache an empty features split")
    width = max(lengths)
    digests = row_digests(feats, pad_id)
    known = known_rows(path.parent, spec, digests, width)
    missing = [r for r in range(len(feats)) if r not in known]
    hidden = int(_run_bottom(setup, _padded_inputs(feats, [0], width, pad_id, device), precision)[0].shape[-1])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
    os.close(fd)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(feats), width, hidden))
        _copy_known(array, known)
        started = time.monotonic()
        for start in range(0, len(missing), BUILD_BATCH):
            rows = missing[start : start + BUILD_BATCH]
            used = threads.update()
            states, _ = _run_bottom(setup, _padded_inputs(feats, rows, width, pad_id, device), precision)
            array[rows] = states.cpu().numpy()
            done = start + len(rows)
            progress.activity(_build_status(done, len(missing), time.monotonic() - started, used, len(known)))
        array.flush()
        del array
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        threads.restore()
    write_digests(path, digests)
    return len(missing), len(known)


def _copy_known(array: np.ndarray, known: Mapping[int, tuple[Path, int]]) -> None:
    """States of rows another file holds, row by row (the source is at least as wide: compute/cache_reuse.py)."""
    width = array.shape[1]
    sources: dict[Path, np.ndarray] = {}
    for row, (other, src_row) in sorted(known.items()):
        src = sources.get(other)
        if src is None:
            src = sources[other] = np.load(other, mmap_mode="r")
        array[row] = src[src_row, :width]


def _build_status(done: int, total: int, elapsed_s: float, threads: int, copied: int = 0) -> str:
    """What the heartbeat says during a build: rows done of the split, ETA at the rate so far, threads."""
    eta = format_seconds(elapsed_s / done * (total - done)) if done else "?"
    reused = f" ({copied:,} more copied from other cache files)" if copied else ""
    return (f"caching the frozen layers' hidden states: {done:,} of {total:,} rows of this split{reused} "
            f"({100 * done / total:.0f}%), ETA {eta}, {threads} thread(s)")
