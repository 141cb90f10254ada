"""Canary exposure (Carlini et al. 2019, "The Secret Sharer"): how much a trained model memorised planted secrets.

k canaries, each a fixed format holding a random secret, are added to one
client's training rows (``repeats`` copies each). After training, each
canary's loss is compared with that of ``candidates - 1`` sequences of the same
format holding other random secrets; its rank r among the ``candidates``
sequences (1 = lowest loss) gives the exposure log2(candidates) - log2(r).
A model that never saw the canary ranks it uniformly at random, for an
expected exposure of about 1/ln 2 = 1.44 bits (``chance_exposure``, exact for
the declared number of candidates); a model that memorised it ranks it first,
log2(candidates) bits. The measurement reads only the final model and these
synthetic rows, so it works the same under any privacy mechanism.

Formats (``CANARY_TASKS``):
* classification: the text is ``secret_length`` random vocabulary words and the
  label is the declared ``label``; candidates carry the same label;
* generation: a fixed e-mail body asking to keep a code private, and the
  subject "my secret code is d d d d d d" (the secret: random digits).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from fednlp_bench.audit.spec import CanarySpec

#: The generation canary's e-mail body (the secret is in the subject the model learns to write).
EMAIL_BODY = ("Hi all, the new access code for the server room is in the subject line. "
              "Please keep it private and do not forward this e-mail. Thanks.")
SUBJECT_PREFIX = "my secret code is"
_CANARY_STREAM = 9
_WORD = re.compile(r"^[a-z]{3,}$")


@dataclass
class CanarySet:
    """The canaries' secrets, the candidates' secrets and their raw rows (canaries first)."""

    secrets: list[str]
    candidate_secrets: list[str]
    canary_rows: list[dict[str, Any]]  # each canary once (the inserted copies repeat these)
    candidate_rows: list[dict[str, Any]]


def word_pool(tokenizer: Any) -> list[str]:
    """Whole-word, alphabetic vocabulary entries of at least 3 letters, sorted: the classification secret alphabet."""
    vocab = tokenizer.get_vocab() if tokenizer is not None else {}
    pool = sorted(w for w in vocab if _WORD.match(w))
    if len(pool) < 10:
        raise ValueError(f"canary: the tokenizer has only {len(pool)} whole words to draw secrets from")
    return pool


def draw_secrets(spec: CanarySpec, task_name: str, tokenizer: Any, seed: int) -> tuple[list[str], list[str]]:
    """``spec.count`` canary secrets and ``spec.candidates - 1`` distinct other secrets, seeded."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _CANARY_STREAM]))
    alphabet = word_pool(tokenizer) if task_name == "classification" else [str(d) for d in range(10)]
    space = len(alphabet) ** spec.secret_length
    need = spec.count + spec.candidates - 1
    if need > space / 2:
        raise ValueError(f"canary: {need} distinct secrets of length {spec.secret_length} need a larger secret "
                         f"space than {space}; raise canary.secret_length")
    seen: dict[str, None] = {}
    while len(seen) < need:
        seen.setdefault(" ".join(rng.choice(alphabet, size=spec.secret_length).tolist()), None)
    secrets = list(seen)
    return secrets[: spec.count], secrets[spec.count :]


def canary_row(task_name: str, secret: str, label: int, columns: dict[str, Any], row_id: str) -> dict[str, Any]:
    """One raw row in the task's column layout; columns the format does not set get a neutral value."""
    if task_name == "classification":
        values: dict[str, Any] = {"text": secret, "label": int(label), "partition_key": int(label)}
    elif task_name == "generation":
        subject = f"{SUBJECT_PREFIX} {secret}"
        values = {"text": EMAIL_BODY, "document": EMAIL_BODY, "summary": subject, "references": [subject]}
    else:
        raise ValueError(f"canary supports classification and generation, not {task_name!r}")
    row = {name: _neutral(kind) for name, kind in columns.items()}
    row.update({k: v for k, v in values.items() if k in columns})
    row["id"] = row_id
    return row


def _neutral(kind: Any) -> Any:
    dtype = getattr(kind, "dtype", None)
    if dtype in ("string", "large_string"):
        return ""
    if isinstance(dtype, str) and dtype.startswith(("int", "uint")):
        return -1
    if isinstance(dtype, str) and dtype.startswith("float"):
        return 0.0
    if dtype == "bool":
        return False
    return []  # sequences


def make_canaries(spec: CanarySpec, task_name: str, tokenizer: Any, columns: dict[str, Any], seed: int,
                  num_labels: int | None = None) -> CanarySet:
    if task_name == "classification" and num_labels is not None and spec.label >= num_labels:
        raise ValueError(f"canary.label={spec.label} is not a label of this task (0..{num_labels - 1})")
    secrets, others = draw_secrets(spec, task_name, tokenizer, seed)
    return CanarySet(
        secrets=secrets, candidate_secrets=others,
        canary_rows=[canary_row(task_name, s, spec.label, columns, f"canary-{i}") for i, s in enumerate(secrets)],
        candidate_rows=[canary_row(task_name, s, spec.label, columns, f"canary-candidate-{i}") for i, s in enumerate(others)],
    )


def exposures(canary_losses: Sequence[float], candidate_losses: Sequence[float]) -> tuple[list[int], list[float]]:
    """(rank of each canary among itself and every candidate, its exposure in bits)."""
    cand = np.sort(np.asarray(candidate_losses, dtype=np.float64))
    total = len(cand) + 1
    ranks = [int(np.searchsorted(cand, float(loss), side="left")) + 1 for loss in canary_losses]
    return ranks, [math.log2(total) - math.log2(r) for r in ranks]


def chance_exposure(candidates: int) -> float:
    """Expected exposure of a canary ranked uniformly at random among ``candidates`` sequences."""
    return math.log2(candidates) - sum(math.log2(r) for r in range(1, candidates + 1)) / candidates


def exposure_report(spec: CanarySpec, canary_losses: Sequence[float], candidate_losses: Sequence[float]) -> dict[str, Any]:
    ranks, bits = exposures(canary_losses, candidate_losses)
    return {
        "candidates": spec.candidates,
        "max_exposure": math.log2(spec.candidates),
        "chance_exposure": chance_exposure(spec.candidates),
        "exposure_mean": float(np.mean(bits)),
        "exposure_std": float(np.std(bits, ddof=1)) if len(bits) > 1 else None,
        "exposure_max": float(max(bits)),
        "exposures": [float(b) for b in bits],
        "ranks": ranks,
        "canary_loss_mean": float(np.mean(canary_losses)),
        "candidate_loss_mean": float(np.mean(candidate_losses)),
    }
