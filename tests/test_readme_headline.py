"""The README opens with the cpu tier's headline table, and its numbers are the generated ones.

The main README is hand-edited, so its headline could silently drift from the
records; this test compares it with the "## Headline" table that
`fednlp-bench leaderboard --plan` writes into leaderboards/cpu/README.md
(which is itself built from the committed records only).
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIER_README = ROOT / "leaderboards" / "cpu" / "README.md"


def headline_rows(text: str) -> list[list[str]]:
    """Table rows under the first '## Headline...' heading, without the last (links) column."""
    match = re.search(r"^## Headline[^\n]*\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "no '## Headline' section"
    rows = [line for line in match.group(1).splitlines() if line.startswith("|")]
    assert len(rows) >= 3, "the headline table has no data rows"
    return [[c.strip() for c in row.strip("|").split("|")][:-1] for row in rows[2:]]


def test_readme_headline_matches_the_generated_tier_table() -> None:
    readme = (ROOT / "README.md").read_text()
    generated = headline_rows(TIER_README.read_text())
    assert headline_rows(readme) == generated
    # The README opens with it: the headline is the first section after the title's paragraphs.
    first_section = re.search(r"^## .*$", readme, re.M)
    assert first_section and first_section.group(0).startswith("## Headline")
