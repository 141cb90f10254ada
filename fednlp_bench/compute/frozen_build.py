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
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from fednlp_bench import progress
from fednlp_bench.compute.cache_threads import BorrowedThreads
from fednlp_bench.compute.precision import Precision
from fednlp_bench.compute.trainable import TrainableSetup
from fednlp_bench.progress import format_seconds

INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")
BUILD_BATCH = 32


class _Stop(Exception):
    """Raised by the boundary hook: the rest of the forward pass is not needed."""


def _padded_inputs(feats: Dataset, rows: range, width: int, pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    chunk = feats[rows.start : rows.stop]
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
    return _run_bottom(setup, _padded_inputs(feats, range(0, 1), width, pad_id, device), precision)[1]


def compute_states(setup: TrainableSetup, feats: Dataset, path: Path, pad_id: int, precision: Precision,
             threads: BorrowedThreads) -> None:
    """Write the boundary states of every row of ``feats`` to ``path`` (.npy via a temporary file)."""
    device = next(setup.model.parameters()).device
    lengths = [len(ids) for ids in feats["input_ids"]]
    if not lengths:
        raise ValueError("cannot cache an empty features split")
    width = max(lengths)
    hidden = int(_run_bottom(setup, _padded_inputs(feats, range(0, 1), width, pad_id, device), precision)[0].shape[-1])
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npy")
    os.close(fd)
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(feats), width, hidden))
        started = time.monotonic()
        for start in range(0, len(feats), BUILD_BATCH):
            rows = range(start, min(start + BUILD_BATCH, len(feats)))
            used = threads.update()
            states, _ = _run_bottom(setup, _padded_inputs(feats, rows, width, pad_id, device), precision)
            array[rows.start : rows.stop] = states.cpu().numpy()
            progress.activity(_build_status(rows.stop, len(feats), time.monotonic() - started, used))
        array.flush()
        del array
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        threads.restore()


def _build_status(done: int, total: int, elapsed_s: float, threads: int) -> str:
    """What the heartbeat says during a build: rows done of the split, ETA at the rate so far, threads."""
    eta = format_seconds(elapsed_s / done * (total - done)) if done else "?"
    return (f"caching the frozen layers' hidden states: {done:,} of {total:,} rows of this split "
            f"({100 * done / total:.0f}%), ETA {eta}, {threads} thread(s)")
