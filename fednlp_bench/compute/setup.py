"""One place that turns (task, config, run options) into a model ready to train on a device.

The runner and the FedML client processes both call these functions, so a
run computes the same way whatever backend executes it: the model is built
under the run seed, the trainable mode is applied (possibly wrapping the
model with peft), the model moves to the device, and with ``top_layers`` +
``cache`` the frozen bottom is cached and patched out.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from fednlp_bench.compute.attention_dropout import set_attention_dropout
from fednlp_bench.compute.device import device_name, resolve_device
from fednlp_bench.compute.first_token import install_first_token_top
from fednlp_bench.compute.frozen_cache import FrozenBottomCache
from fednlp_bench.compute.precision import Precision
from fednlp_bench.compute.trainable import TrainableSetup, apply_trainable

log = logging.getLogger("fednlp_bench.compute")


@dataclass
class Compute:
    """Device, precision, trainable model and (optional) frozen-bottom cache of one run."""

    device: torch.device
    precision: Precision
    trainable: TrainableSetup
    cache: FrozenBottomCache | None = None
    first_token_top: bool = False  # the last encoder layer runs for position 0 only (compute/first_token.py)

    @property
    def model(self) -> torch.nn.Module:
        return self.trainable.model

    def describe(self) -> dict[str, Any]:
        """What the record's ``hardware`` says about how the run computed."""
        info: dict[str, Any] = {
            "device": str(self.device),
            "accelerator": device_name(self.device),
            "trainable_parameters": self.trainable.num_trainable,
            "total_parameters": self.trainable.num_total,
            "first_token_top_layer": self.first_token_top,
        }
        if self.cache is not None:
            info["frozen_cache_bytes"] = self.cache.size_bytes
            info["frozen_cache_files"] = [str(p) for p in self.cache.paths]
        return info


def check_run_options(precision: str, device: str | torch.device | None) -> tuple[torch.device, Precision]:
    """Resolve the device and check the precision runs there; ``ValueError`` before any work otherwise."""
    dev = resolve_device(device)
    return dev, Precision(precision, dev)


def build_compute(task: Any, config: Any, device: torch.device, precision: Precision) -> Compute:
    """Fresh model under ``config.seed`` with ``config.trainable`` applied, on ``device``.

    Model-dependent errors (``layers`` above the depth, a LoRA target the
    model lacks) come from here, so call it before the data is tokenized.
    """
    torch.manual_seed(config.seed)
    model = task.build_model()
    set_attention_dropout(model, getattr(config, "attention_dropout", None))
    setup = apply_trainable(model, config.trainable, config.trainable_params)
    setup.model.to(device)
    first_token = install_first_token_top(task, setup)
    log.info("trainable %s: %d of %d parameters train%s", setup.mode, setup.num_trainable, setup.num_total,
             "; the last layer runs for the first token only" if first_token else "")
    return Compute(device=device, precision=precision, trainable=setup, first_token_top=first_token)


def attach_frozen_cache(
    compute: Compute,
    task: Any,
    features: Sequence[Any],
    folder: str | os.PathLike[str] | None = None,
) -> FrozenBottomCache | None:
    """With ``top_layers`` + ``cache: true``: load or build the cache of ``features`` and patch the model."""
    setup = compute.trainable
    if not setup.wants_cache:
        return None
    pad_id = getattr(task.tokenizer, "pad_token_id", None) or 0
    cache = FrozenBottomCache.build(
        setup, features, pad_id=pad_id, max_length=int(task.max_length), precision=compute.precision, folder=folder
    )
    cache.attach()
    compute.cache = cache
    return cache
