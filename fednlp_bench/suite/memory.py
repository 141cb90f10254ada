"""Will ``--jobs N`` fit in memory? An estimate of one run's peak, declared term by term.

Per run (one worker process), in bytes:

* ``PROCESS_BYTES``: Python, torch, transformers, datasets and a run's raw
  data and tokenizer: 733 MiB peak RSS measured for a whole tiny-model run
  (``/usr/bin/time -f %M``, torch 2.13 CPU, 2026-11-27), rounded up to 768 MiB;
* weights: every parameter in float32 (4 bytes), twice for generation's bert2bert;
* training state of the trainable parameters, float32: gradient, two AdamW
  moments, the global copy, one delta per client of the round, the server's
  two FedOpt moments and the new global model (7 + K copies);
* activations kept for backward: per trained layer ``b * s * h * (34 + 5 a s / h)``
  bytes at 16 bits (Korthikanti et al. 2022, eq. 2), doubled for float32,
  with the batch ``b``, ``max_length`` ``s``, width ``h`` and ``a`` heads.

Shared by all workers, counted once: the frozen-bottom cache of ``top_layers``
+ ``cache`` runs (rows x ``max_length`` x ``h`` x 4 bytes, memory-mapped, so
every worker reads the same pages). On a GPU the weights, state and
activations live in GPU memory, checked against each GPU's free memory with
``CUDA_CONTEXT_BYTES`` per process. The machine's *available* memory
(``psutil``) is the limit; the estimate is an upper bound's guide, not a promise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from fednlp_bench.suite.execution import Execution
from fednlp_bench.suite.sizes import ModelShape, model_shape, split_rows, trainable_params, trained_layers

MiB = 2**20
GiB = 2**30
PROCESS_BYTES = 768 * MiB
CUDA_CONTEXT_BYTES = 512 * MiB
FLOAT_BYTES = 4


@dataclass(frozen=True)
class RunMemory:
    """One run's estimated peak: host bytes, device bytes (0 on a CPU), shared cache bytes."""

    host: int
    device: int
    shared_cache: int
    cache_key: tuple[Any, ...] | None


def _activation_bytes(config: Mapping[str, Any], shape: ModelShape) -> int:
    b, s, h, a = int(config.get("batch_size", 16)), int(config.get("max_length", 128)), shape.hidden, shape.heads
    per_layer = b * s * h * (34 + 5 * a * s / h) * 2
    return int(per_layer * trained_layers(config, shape))


def estimate_run(config: Mapping[str, Any], on_gpu: bool) -> RunMemory | None:
    """The terms above for one run config (None when the model's shape cannot be known offline)."""
    shape = model_shape(str(config.get("model", "minilm")))
    if shape is None:
        return None
    factor = 2 if config.get("task") == "generation" else 1
    weights = shape.total * FLOAT_BYTES * factor
    copies = 7 + int(config.get("clients_per_round", 1))
    state = trainable_params(config, shape) * FLOAT_BYTES * factor * copies
    model_bytes = weights + state + _activation_bytes(config, shape)
    cache, key = 0, None
    params = config.get("trainable_params") or {}
    if config.get("trainable") == "top_layers" and params.get("cache"):
        rows = split_rows(config)
        if rows is not None:
            cache = (rows.train + rows.validation + rows.test) * int(config.get("max_length", 128)) * shape.hidden * 4
            key = (config.get("task"), config.get("data"), config.get("model"), config.get("max_length"),
                   config.get("max_train_examples"), config.get("max_eval_examples"), params.get("layers"))
    if on_gpu:
        return RunMemory(PROCESS_BYTES + weights, CUDA_CONTEXT_BYTES + model_bytes, cache, key)
    return RunMemory(PROCESS_BYTES + model_bytes, 0, cache, key)


def _gpu_free(execution: Execution) -> dict[int, int]:
    """Free bytes per GPU the workers use ({} on a machine without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    gpus = execution.gpus or (0,)
    return {g: int(torch.cuda.mem_get_info(g)[0]) for g in gpus}


def check_jobs_fit(configs: Sequence[Mapping[str, Any]], execution: Execution,
                   host_available: int | None = None, gpu_free: dict[int, int] | None = None) -> None:
    """Refuse a ``--jobs`` whose estimated peak exceeds free memory, naming the largest ``--jobs`` that fits."""
    if execution.jobs <= 1 or not configs:
        return
    if host_available is None:
        import psutil

        host_available = int(psutil.virtual_memory().available)
    gpu_free = _gpu_free(execution) if gpu_free is None else gpu_free
    estimates = [e for e in (estimate_run(c, bool(gpu_free)) for c in configs) if e is not None]
    if not estimates:
        return
    worst = max(estimates, key=lambda e: (e.host, e.device))
    shared = sum({e.cache_key: e.shared_cache for e in estimates if e.cache_key is not None}.values())
    fits_host = max(0, (host_available - shared) // worst.host)
    problems = []
    if fits_host < execution.jobs:
        problems.append(f"{execution.jobs} x {worst.host / GiB:.1f} GiB per run + {shared / GiB:.1f} GiB shared "
                        f"frozen-bottom cache exceeds the {host_available / GiB:.1f} GiB of available memory")
    fits = fits_host
    if gpu_free and worst.device:
        per_gpu = min(gpu_free.values()) // worst.device
        fits_gpu = per_gpu * len(gpu_free)
        if fits_gpu < execution.jobs:
            problems.append(f"{math.ceil(execution.jobs / len(gpu_free))} x {worst.device / GiB:.1f} GiB per run "
                            f"exceeds the {min(gpu_free.values()) / GiB:.1f} GiB free on a GPU")
        fits = min(fits, fits_gpu)
    if problems:
        raise ValueError(f"--jobs {execution.jobs}: estimated peak memory: {'; '.join(problems)}; the largest --jobs "
                         f"that fits is {max(1, fits)} (estimate: fednlp_bench/suite/memory.py, docs/leaderboard.md)")
