"""Test and benchmark helper: a small real-text extractive QA set derived from NER data (offline QA until a SQuAD copy ships).

Each W-NUT sentence with an entity of type T becomes one question about T
("Which location is mentioned?"); its answers are all T-mentions in the
sentence (SQuAD allows several gold answers). Contexts and answers are real
tweets and real annotated spans, so the full QA pipeline (stride, offsets,
post-processing, EM/F1) is exercised on real text. It is easier than SQuAD
(six question templates): use it to test the machinery, not to rank models.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

from fednlp_bench.atomic import atomic_write_text

#: Question template per W-NUT entity type (wh-words vary so question-type partitions are non-trivial).
QUESTIONS = {
    "person": "Who is mentioned?",
    "location": "Which location is mentioned?",
    "corporation": "Which company is mentioned?",
    "group": "Which group is mentioned?",
    "product": "What product is mentioned?",
    "creative-work": "What creative work is mentioned?",
}


def entity_qa_rows(sentences: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """``{"id", "tokens", "tags"}`` sentences -> flat SQuAD-style rows (one per sentence and entity type)."""
    rows: list[dict[str, Any]] = []
    for sent in sentences:
        tokens, tags = sent["tokens"], sent["tags"]
        starts, pos = [], 0
        for tok in tokens:
            starts.append(pos)
            pos += len(tok) + 1
        context = " ".join(tokens)
        spans: dict[str, list[tuple[int, int]]] = {}
        i = 0
        while i < len(tags):
            if tags[i].startswith("B-"):
                etype, j = tags[i][2:], i + 1
                while j < len(tags) and tags[j] == f"I-{etype}":
                    j += 1
                spans.setdefault(etype, []).append((starts[i], starts[j - 1] + len(tokens[j - 1])))
                i = j
            else:
                i += 1
        for etype in sorted(spans):
            if etype not in QUESTIONS:
                continue
            answers = {"text": [context[s:e] for s, e in spans[etype]], "answer_start": [s for s, _ in spans[etype]]}
            rows.append({"id": f"{sent['id']}-{etype}", "context": context, "question": QUESTIONS[etype], "answers": answers})
    return rows


def write_entity_qa(wnut_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> dict[str, int]:
    """Write ``train/validation/test.jsonl`` QA files built from a W-NUT JSONL folder; returns row counts.

    Files are written to a temporary name and renamed, so an interrupted run leaves nothing half-written.
    """
    src, dst = Path(wnut_dir), Path(out_dir)
    dst.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for split in ("train", "validation", "test"):
        path = src / f"{split}.jsonl"
        if not path.is_file():
            continue
        with open(path, encoding="utf-8") as fh:
            rows = entity_qa_rows(json.loads(line) for line in fh if line.strip())
        atomic_write_text(dst / f"{split}.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
        counts[split] = len(rows)
    if "train" not in counts:
        raise FileNotFoundError(f"no train.jsonl in {src}; expected a W-NUT JSONL folder ({{id, tokens, tags}} rows)")
    return counts
