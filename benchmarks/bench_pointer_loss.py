"""The pointer-generator's loss from p at the label alone, against the full (batch, target, vocab) mixture.

The loss needs p at one word per target position. Building the whole mixture
first (a softmax over 30,522 words, a scatter of the copy attention, their
sum, clamp and log, and all their gradients) runs several memory-bound passes
over tensors as large as the LM head's output. This benchmark times the
AESLC tier's training step (batches of 16 real e-mails, forward and backward)
and validation loss pass (batches of 64, no gradient) with the reference loss
(the full mixture, as the model computed it before) and with
:meth:`label_log_probs`, interleaved (A B, then B A, ...) in one process, and
checks that both give the same loss. The model is the tier's: MiniLM
bert2bert with the copy head and a 2-layer decoder, and of the encoder only
the top layer, which is what runs over the frozen-layer cache in the tier.

    python benchmarks/bench_pointer_loss.py --threads 1 --repeats 6 [--json out.json]

Needs ``FEDNLP_DATA_DIR`` (AESLC) and the MiniLM wheel; ``--model tiny`` is the smoke test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.models.encoder_decoder.modeling_encoder_decoder import shift_tokens_right

from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.tasks import get_task
from fednlp_bench.tasks.generation import GenerationTask
from fednlp_bench.tasks.pointer_generator import IGNORE, PointerGeneratorEncoderDecoder
from interleave import interleaved, medians  # benchmarks/interleave.py


def reference_forward(self: PointerGeneratorEncoderDecoder, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      labels: torch.Tensor, token_type_ids: torch.Tensor | None = None,
                      **unused: Any) -> Seq2SeqLMOutput:
    """The loss as the model computed it before: NLL read off the full mixture."""
    memory, mask = self._memory(input_ids, attention_mask, token_type_ids)
    decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
    logits, states = self._decode(decoder_input_ids, memory, mask)
    log_p = self.log_probs(logits, states, memory, input_ids, mask)
    loss = F.nll_loss(log_p.flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    return Seq2SeqLMOutput(loss=loss, logits=log_p)


def tier_model(model_name: str) -> tuple[GenerationTask, PointerGeneratorEncoderDecoder]:
    """The tier's generation model with the encoder cut to its top layer (the layer that runs over the cache)."""
    task = get_task("generation", model=model_name, max_length=128, max_target_length=16, pointer=True,
                    decoder_layers=2)
    task.load()
    torch.manual_seed(0)
    model = task.build_model()
    del model.encoder.encoder.layer[1:]
    return task, model


def batches(task: GenerationTask, rows: int, size: int) -> list[dict[str, torch.Tensor]]:
    feats = task.preprocess(task.load()["train"].select(range(rows)), train=True)
    return [task.collate([feats[i] for i in range(j, min(j + size, rows))]) for j in range(0, rows, size)]


def run_phase(model: PointerGeneratorEncoderDecoder, data: list[dict[str, torch.Tensor]], loss: str,
              train: bool) -> tuple[float, float]:
    """(seconds, mean loss) of one pass over ``data`` with the ``full`` or the ``label`` loss."""
    forward = (lambda b: reference_forward(model, **b)) if loss == "full" else (lambda b: model(**b))
    model.train(train)
    start, total = time.perf_counter(), 0.0
    for batch in data:
        model.zero_grad()
        with torch.set_grad_enabled(train):
            out = forward(batch)
            if train:
                out.loss.backward()
        total += float(out.loss.detach())
    return time.perf_counter() - start, total / len(data)


def measure(model: PointerGeneratorEncoderDecoder, data: dict[str, list], repeats: int) -> dict[str, Any]:
    seconds: dict[str, dict[str, float]] = {}
    losses: dict[str, dict[str, float]] = {}
    for phase, rows in data.items():
        train = phase == "train_step"
        for loss in ("full", "label"):
            run_phase(model, rows[:1], loss, train)  # warm-up

        def arm(loss: str, rows: list = rows, train: bool = train) -> Callable[[int], tuple[float, float]]:
            def one_repeat(rep: int) -> tuple[float, float]:
                torch.manual_seed(rep)  # the same dropout masks for both losses
                return run_phase(model, rows, loss, train)
            return one_repeat

        runs = interleaved({loss: arm(loss) for loss in ("full", "label")}, repeats)
        seconds[phase] = medians({loss: [took for took, _ in r] for loss, r in runs.items()})
        losses[phase] = {loss: r[-1][1] for loss, r in runs.items()}
    return {"seconds": seconds, "speedup": {ph: m["full"] / m["label"] for ph, m in seconds.items()},
            "mean_loss": losses}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", type=int, default=64, help="AESLC train e-mails per pass")
    p.add_argument("--model", default="minilm", help="tiny: the smoke test")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    task, model = tier_model(args.model)
    data = {"train_step": batches(task, args.rows, 16), "validation_loss_pass": batches(task, args.rows, 64)}
    result = {"model": args.model, "threads": args.threads, "repeats": args.repeats, "rows": args.rows,
              **measure(model, data, args.repeats)}
    for phase, m in result["seconds"].items():
        print(f"{phase}: full mixture {m['full']:.2f} s, label only {m['label']:.2f} s -> "
              f"{result['speedup'][phase]:.2f}x (median of {args.repeats}); mean loss "
              f"{result['mean_loss'][phase]['full']:.6f} vs {result['mean_loss'][phase]['label']:.6f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
