"""The compute layer: device, mixed precision, trainable parameters (full/top_layers/LoRA/BitFit), frozen-bottom cache."""

from fednlp_bench.compute.device import DEVICE_CHOICES, resolve_device
from fednlp_bench.compute.precision import PRECISIONS, Precision
from fednlp_bench.compute.trainable import MODES, apply_trainable, resolve_params

__all__ = ["DEVICE_CHOICES", "MODES", "PRECISIONS", "Precision", "apply_trainable", "resolve_device", "resolve_params"]
