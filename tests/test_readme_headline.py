"""The README opens with the cpu tier's v2 headline table, and its numbers are the generated ones.

The main README is hand-edited, so its headline could silently drift from the
records; this test compares it with the "## Headline" table that
`fednlp-bench leaderboard --plan` writes into leaderboards/cpu/README.md
(which is itself built from the committed records only), and checks the sync
script on tier READMEs with and without finished cells.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIER_README = ROOT / "leaderboards" / "cpu" / "README.md"


def _script():
    spec = importlib.util.spec_from_file_location("sync_readme_headline", ROOT / "scripts" / "sync_readme_headline.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


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
    # One row per task of the tier's plan, every task of the cpu tier.
    plan = json.loads((ROOT / "leaderboards" / "cpu" / "plan.json").read_text())
    assert [row[0] for row in generated] == [t["task"] for t in plan["tasks"]] == \
        ["classification", "tagging", "qa", "generation"]
    # The README opens with it: the headline is the first section after the title's paragraphs.
    first_section = re.search(r"^## .*$", readme, re.M)
    assert first_section and first_section.group(0).startswith("## Headline")


def test_sync_replaces_an_older_headline_and_rewrites_links() -> None:
    script = _script()
    tier = ("# t\n\n## Headline\n\n| Task | Metric | Best FL | Tables |\n|---|---|---|---|\n"
            "| qa | `f1` | — (IID: tuning pending) | [qa.md](qa.md) |\n"
            "| classification | `accuracy` | FedAvg on IID: 0.6000 ± 0.0100 95% CI [0.5876, 0.6124], n=5; gap -0.0500 "
            "(paired 95% CI ±0.0100, n=5; Welch ±0.0300); converged (slope +0.0001/round) | [c.md](c.md) |\n\n## Tables\n")
    table = script.generated_table(tier)
    assert "[qa.md](leaderboards/cpu/qa.md)" in table and "tuning pending" in table
    old = ("# fednlp-bench\n\nIntro.\n\n## Headline results (cpu tier)\n\nold text\n\n| old |\n"
           f"{script.END}\n\n- **Partitioners** ...\n")
    new = script.replace_section(old, script.section(table))
    assert "## Headline results (cpu tier, protocol v2)" in new and "| old |" not in new
    assert new.index(script.HEADING) < new.index("- **Partitioners**")
    assert headline_rows(new)[1][2].startswith("FedAvg on IID: 0.6000")
    fresh = script.replace_section("# x\n\nIntro.\n\n- **Partitioners** ...\n", script.section(table))
    assert fresh.index(script.HEADING) < fresh.index("- **Partitioners**")
