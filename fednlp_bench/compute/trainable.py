"""Which weights train: ``trainable: full | top_layers | lora | bitfit`` with ``trainable_params``.

Federated NLP research increasingly trains only part of a model (FedNLP's
layer-freezing study, FedPETuning's LoRA/BitFit, Flower's LoRA leaderboard),
and the point of doing so in FL is to *send* less. So the mode decides
``requires_grad``, and everything downstream (the engine's ``ModelState``,
deltas, bytes on the wire, aggregation, server-optimizer moments,
checkpoints) sees only tensors with ``requires_grad``. Frozen tensors are
never touched and stay bit-identical to the pretrained ones.

``MODES`` (a :class:`~fednlp_bench.registry.Registry` of mode classes) is the
one list of mode names, and each mode declares its parameters as
:class:`~fednlp_bench.registry.Param`; config validation, CLI flags and help,
the docs' table and errors derive from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch

from fednlp_bench.checks import at_least, in_range, positive
from fednlp_bench.registry import REQUIRED, Param, Registry, declare
from fednlp_bench.registry import resolve_params as check_declared


class TrainableMode:
    """One trainable mode: ``name``, its ``param_specs`` (``REQUIRED`` default: must be given), ``help``.

    Subclasses freeze a model (:meth:`apply`, which raises for what this model
    lacks) and say whether they want the frozen-bottom cache (:meth:`wants_cache`).
    """

    name: ClassVar[str]
    help: ClassVar[str]
    param_specs: ClassVar[Mapping[str, Param]] = {}

    @classmethod
    def wants_cache(cls, params: Mapping[str, Any]) -> bool:
        """Whether the frozen bottom is computed once and cached (compute/frozen_cache.py); only top_layers can."""
        return False

    @classmethod
    def apply(cls, model: torch.nn.Module, params: dict[str, Any]) -> "TrainableSetup":
        raise NotImplementedError


#: The one list of modes (config validation, ``--trainable`` choices and help derive from it).
MODES: Registry[type[TrainableMode]] = Registry("trainable mode", TrainableMode)


def mode_help() -> str:
    """One line per mode for ``--help``."""
    out = []
    for name, mode in MODES.items():
        params = ", ".join(f"{p.name}" + ("" if p.required else f"={p.default}") for p in mode.param_specs.values())
        out.append(f"{name}" + (f" {{{params}}}" if params else "") + f": {mode.help}")
    return "; ".join(out)



def resolve_params(mode: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validated parameters of ``mode`` with defaults filled in; ``ValueError`` naming the bad value otherwise.

    Checks what can be checked without a model (names, types, ranges); the
    model-dependent checks (depth, module names) are in :func:`apply_trainable`.
    """
    spec = MODES.lookup(mode)  # unknown mode -> ValueError with the closest name
    return check_declared(spec.param_specs, params, owner=f"trainable mode {mode!r}", prefix="trainable_params.")


# ------------------------------------------------------------------ model structure
@dataclass
class EncoderStack:
    """The part of a model that ``top_layers`` freezes from: embeddings then a list of layers."""

    encoder: torch.nn.Module  # the module whose forward runs embeddings -> layers (e.g. BertModel)
    embeddings: torch.nn.Module
    layers: torch.nn.ModuleList


def encoder_stack(model: torch.nn.Module) -> EncoderStack:
    """Embeddings and layer list of the (first) encoder; for encoder-decoders (bert2bert) the encoder's.

    A task head consumes the top encoder output in different ways (pooled CLS
    for classification, every token for tagging and QA, cross-attention for
    generation), but all of them sit *above* the encoder's last layer, so
    freezing or caching below a layer boundary is valid for all four tasks.
    """
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        base = model.get_encoder()
    else:
        base = getattr(model, "base_model", None)
    embeddings = getattr(base, "embeddings", None)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if base is None or embeddings is None or not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(
            f"trainable: top_layers needs a transformer encoder with `embeddings` and `encoder.layer` "
            f"(BERT family); {type(model).__name__} has none. Use trainable: full, lora or bitfit"
        )
    return EncoderStack(encoder=base, embeddings=embeddings, layers=layers)


def head_parameter_names(model: torch.nn.Module) -> list[str]:
    """Parameters of the task head, which every partial mode trains.

    Encoder-only models: everything outside the pretrained base (``classifier``,
    ``qa_outputs``, ...). Encoder-decoders (bert2bert): the decoder's LM head and
    the cross-attention blocks, which a bert2bert model initialises randomly,
    so leaving them frozen would leave the decoder deaf to the encoder; and the
    pointer-generator's copy head (``copy_query``, ``copy_gate``), also new.
    """
    names = [n for n, _ in model.named_parameters()]
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return [n for n in names if ".crossattention." in n
                or n.startswith(("decoder.cls.", "enc_to_dec_proj.", "copy_query.", "copy_gate."))]
    prefix = getattr(model, "base_model_prefix", "")
    if not prefix or not hasattr(model, prefix):
        return names
    return [n for n in names if not n.startswith(prefix + ".")]


def lora_target_names(model: torch.nn.Module) -> list[str]:
    """Module names LoRA can target in ``model`` (last name component of its Linear/Embedding layers)."""
    kinds = (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d, torch.nn.Conv2d)
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if name and isinstance(m, kinds)})


# ------------------------------------------------------------------ applying a mode
@dataclass
class TrainableSetup:
    """A model with its mode applied; ``model`` may be a new (peft) wrapper object."""

    model: torch.nn.Module
    mode: str
    params: dict[str, Any]
    stack: EncoderStack | None = None  # top_layers: where the frozen bottom ends
    frozen_layers: int = 0

    @property
    def wants_cache(self) -> bool:
        """Whether this mode computes the frozen bottom once (``top_layers`` with ``cache: true``)."""
        return MODES.lookup(self.mode).wants_cache(self.params)

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    @property
    def num_total(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def bottom_modules(self) -> list[torch.nn.Module]:
        """The frozen bottom of ``top_layers``: embeddings plus the bottom layers (empty otherwise)."""
        if self.stack is None:
            return []
        return [self.stack.embeddings, *list(self.stack.layers)[: self.frozen_layers]]


def apply_trainable(model: torch.nn.Module, mode: str, params: Mapping[str, Any] | None) -> TrainableSetup:
    """Freeze what ``mode`` freezes; raise ``ValueError`` for a depth or module name this model lacks."""
    resolved = resolve_params(mode, params)
    return MODES.lookup(mode).apply(model, resolved)


@MODES.register
class Full(TrainableMode):
    name = "full"
    help = "every weight trains (default)"

    @classmethod
    def apply(cls, model: torch.nn.Module, params: dict[str, Any]) -> TrainableSetup:
        for p in model.parameters():
            p.requires_grad_(True)
        return TrainableSetup(model, cls.name, params)


@MODES.register
class TopLayers(TrainableMode):
    name = "top_layers"
    help = ("embeddings (an encoder-decoder's decoder embeddings too) and all but the top `layers` encoder "
            "layers frozen (run in eval mode: no dropout); `cache: true` computes the frozen bottom once and "
            "trains only the top")
    param_specs = declare(
        Param("layers", int, REQUIRED, at_least(0), "encoder layers that train, counted from the top"),
        Param("cache", bool, False, help="compute the frozen bottom once and train only the top"),
    )

    @classmethod
    def wants_cache(cls, params: Mapping[str, Any]) -> bool:
        return bool(params.get("cache"))

    @classmethod
    def apply(cls, model: torch.nn.Module, params: dict[str, Any]) -> TrainableSetup:
        stack = encoder_stack(model)
        depth = len(stack.layers)
        top = int(params["layers"])
        if top > depth:
            raise ValueError(
                f"trainable_params.layers={top} is above the depth of model {type(model).__name__} "
                f"({depth} encoder layers); choose 0..{depth}"
            )
        setup = TrainableSetup(model, cls.name, params, stack=stack, frozen_layers=depth - top)
        for p in model.parameters():
            p.requires_grad_(True)
        for module in setup.bottom_modules():
            for p in module.parameters():
                p.requires_grad_(False)
            # Frozen layers are a fixed feature extractor: no dropout, so a cached bottom equals a live one.
            module.register_forward_pre_hook(_force_eval)
        for p in decoder_embeddings(model):
            p.requires_grad_(False)
        return setup


def decoder_embeddings(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """An encoder-decoder's decoder embeddings, which ``top_layers`` freezes like the encoder's.

    In a bert2bert they are pretrained, and the word embeddings are tied to the
    LM head's output projection (30,522 x 384 for MiniLM): 63% of what would
    otherwise train, and of every client's upload, for a table that is
    already a good vocabulary projection. The LM head's transform and bias,
    the decoder layers and the cross-attention still train. Empty for
    encoder-only models.
    """
    if not getattr(getattr(model, "config", None), "is_encoder_decoder", False) or not hasattr(model, "get_decoder"):
        return []
    decoder = model.get_decoder()
    module = getattr(getattr(decoder, "base_model", decoder), "embeddings", None)
    if module is None:
        module = decoder.get_input_embeddings()
    return list(module.parameters()) if module is not None else []


def _force_eval(module: torch.nn.Module, args: Any) -> None:
    if module.training:
        module.eval()


@MODES.register
class Lora(TrainableMode):
    name = "lora"
    help = "LoRA adapters (peft) on `target_modules` plus the task head; the rest frozen"
    param_specs = declare(
        Param("r", int, 8, at_least(1), "adapter rank"),
        Param("alpha", float, 16, positive, "LoRA scale alpha/r"),
        Param("dropout", float, 0.0, in_range(0.0, 1.0), "dropout on the adapter input"),
        Param("target_modules", list, ["query", "value"], help="module names the adapters wrap"),
    )

    @classmethod
    def apply(cls, model: torch.nn.Module, params: dict[str, Any]) -> TrainableSetup:
        from peft import LoraConfig, get_peft_model

        valid = lora_target_names(model)
        unknown = [t for t in params["target_modules"] if t not in valid]
        if unknown:
            raise ValueError(
                f"trainable_params.target_modules: {unknown} not found in model {type(model).__name__}; "
                f"valid module names: {valid}"
            )
        head = set(head_parameter_names(model))
        config = LoraConfig(
            r=int(params["r"]),
            lora_alpha=float(params["alpha"]),
            lora_dropout=float(params["dropout"]),
            target_modules=list(params["target_modules"]),
            bias="none",
        )
        wrapped = get_peft_model(model, config)
        # peft froze everything but the adapters; the task head must train too (it starts random).
        inner = "base_model.model."
        for name, p in wrapped.named_parameters():
            if name.startswith(inner) and name[len(inner):] in head:
                p.requires_grad_(True)
        return TrainableSetup(wrapped, cls.name, params)


@MODES.register
class BitFit(TrainableMode):
    name = "bitfit"
    help = "only biases and the task head train (BitFit)"

    @classmethod
    def apply(cls, model: torch.nn.Module, params: dict[str, Any]) -> TrainableSetup:
        head = set(head_parameter_names(model))
        for name, p in model.named_parameters():
            p.requires_grad_(name in head or name.endswith(".bias") or name == "bias")
        return TrainableSetup(model, cls.name, params)
