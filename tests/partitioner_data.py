"""The real 20 Newsgroups rows the partitioner tests share (tests/test_partitioners.py, test_partitioner_errors.py)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from datasets import Dataset

DATA_DIR = Path(os.environ.get("FEDNLP_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def load_news() -> Dataset:
    """20News train split: id, string label, author (the From: header) -- 11,314 real rows."""
    rows = read_jsonl(DATA_DIR / "20news" / "train.jsonl")
    authors = []
    for r in rows:
        m = re.search(r"^From:\s*(.+)$", r["text"], re.M)
        authors.append(m.group(1).strip() if m else "unknown")
    return Dataset.from_dict({"id": [r["id"] for r in rows], "label": [r["label"] for r in rows], "author": authors})
