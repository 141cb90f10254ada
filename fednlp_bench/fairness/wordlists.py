"""Declared word lists for counterfactual swaps, shipped as package data (``fairness/word_lists/*.tsv``).

A counterfactual test is only as good as its list, so the list is a file in
the repository (its header documents its rules and sources) rather than
words typed into code, and the record stores its sha256.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

#: ``fairness.counterfactual`` name -> file under fednlp_bench/fairness/word_lists/.
WORD_LISTS = {"gender": "gender.tsv"}
_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class SwapList:
    """A word -> partner function (lower case) read from a pair file; ``first pair wins`` for repeated words."""

    name: str
    mapping: dict[str, str]
    sha256: str
    pairs: int

    def swap(self, text: str) -> tuple[str, int]:
        """(text with every listed whole word replaced by its partner in the original's case, words swapped)."""
        count = 0

        def replace(match: re.Match[str]) -> str:
            nonlocal count
            word = match.group(0)
            partner = self.mapping.get(word.lower())
            if partner is None:
                return word
            count += 1
            return _same_case(word, partner)

        return _WORD.sub(replace, text), count


def _same_case(original: str, partner: str) -> str:
    if original.isupper() and len(original) > 1:
        return partner.upper()
    if original[0].isupper():
        return partner[:1].upper() + partner[1:]
    return partner


@lru_cache(maxsize=None)
def load_word_list(name: str) -> SwapList:
    if name not in WORD_LISTS:
        raise ValueError(f"unknown word list {name!r}; choose one of {sorted(WORD_LISTS)}")
    raw = resources.files("fednlp_bench.fairness.word_lists").joinpath(WORD_LISTS[name]).read_bytes()
    mapping: dict[str, str] = {}
    pairs = 0
    for number, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not all(_WORD.fullmatch(p) for p in parts):
            raise ValueError(f"word list {WORD_LISTS[name]} line {number}: expected 'word<TAB>word', got {line!r}")
        a, b = parts[0].lower(), parts[1].lower()
        mapping.setdefault(a, b)
        mapping.setdefault(b, a)
        pairs += 1
    return SwapList(name, mapping, hashlib.sha256(raw).hexdigest(), pairs)
