"""Two task-specific file layouts: CoNLL columns (tagging) and the official SQuAD JSON (QA).

The generic readers (JSONL, CSV, Parquet) are in sources.py; these two read
a layout that only one task uses, with the same ``(record, "path:line")``
rows and the same rule: a bad line is an error naming it, never half a file.
"""

from __future__ import annotations

import json
from pathlib import Path

from fednlp_bench.tasks.sources import Row, check_fields


def read_conll(path: Path) -> list[Row]:
    """CoNLL columns (token first, tag last; tab or space separated), blank line between sentences."""
    rows: list[Row] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0

    def flush() -> None:
        if tokens:
            rows.append(({"id": f"{path.stem}-{len(rows)}", "tokens": list(tokens), "tags": list(tags)}, f"{path}:{start}"))
        tokens.clear()
        tags.clear()

    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("-DOCSTART-"):
                flush()
                continue
            parts = line.split("\t") if "\t" in line else line.split()
            if len(parts) < 2:
                raise ValueError(f"{path}:{lineno}: expected '<token> ... <tag>' columns, got {line!r}")
            if not tokens:
                start = lineno
            tokens.append(parts[0])
            tags.append(parts[-1].strip())
    flush()
    return rows


def read_squad_json(path: Path) -> list[Row]:
    """Official SQuAD layout: ``{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        raise ValueError(f"{path}: expected the SQuAD layout {{'data': [{{'paragraphs': [...]}}]}}")
    rows: list[Row] = []
    for a, article in enumerate(doc["data"]):
        for p, para in enumerate(article.get("paragraphs", [])):
            where_p = f"{path} (data[{a}].paragraphs[{p}])"
            check_fields(para, ("context", "qas"), where_p)
            for q, qa in enumerate(para["qas"]):
                where = f"{path} (question id {qa.get('id', f'data[{a}].paragraphs[{p}].qas[{q}]')})"
                check_fields(qa, ("id", "question", "answers"), where)
                answers = {"text": [x.get("text") for x in qa["answers"]], "answer_start": [x.get("answer_start") for x in qa["answers"]]}
                record = {"id": str(qa["id"]), "title": article.get("title", ""), "context": para["context"],
                          "question": qa["question"], "answers": answers}
                rows.append((record, where))
    return rows
