"""Copy the cpu tier's headline table (leaderboards/cpu/README.md) into the top of README.md.

The README opens with the headline results, but it is hand-written text; the
numbers must come from the generated tier README (built from the records), so
this script replaces README.md's "## Headline results" section with that
table, links rewritten to work from the repository root. The table is
protocol v2's: one row per task, the best FL cell chosen by validation among
converged cells, each with its paired gap and convergence status; a task
without a complete or converged cell says so in its row. Run it after
`fednlp-bench leaderboard --plan leaderboards/cpu/plan.json --out leaderboards/cpu`;
tests/test_readme_headline.py fails when the two differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIER = Path("leaderboards/cpu")
HEADING = "## Headline results (cpu tier, protocol v2)"
#: Headings of earlier versions, replaced on the next sync.
OLD_HEADINGS = ("## Headline results (cpu tier)",)
END = "<!-- end of the generated headline -->"


def generated_table(tier_readme: str) -> str:
    match = re.search(r"^## Headline[^\n]*\n(.*?)(?=^## |\Z)", tier_readme, re.S | re.M)
    if not match:
        raise SystemExit(f"{TIER / 'README.md'} has no '## Headline' section; build the tier leaderboard first")
    rows = [line for line in match.group(1).splitlines() if line.startswith("|")]
    # Links in the tier README are relative to its folder.
    return "\n".join(re.sub(r"\]\((?!https?://)([^)]+)\)", lambda m: f"]({(TIER / m.group(1)).as_posix()})", row)
                     for row in rows)


def section(table: str) -> str:
    return (f"{HEADING}\n\n"
            "Test metric per task, mean ± std over seeds (5; QA and generation 3) with the 95% interval, from "
            "[leaderboards/cpu/](leaderboards/cpu/README.md) (protocol: [docs/protocol.md](docs/protocol.md)). "
            "Best FL: chosen by validation among the cells that converged (test never selects); its gap to "
            "centralized is paired by seed. A cell still rising at the end of its budget never heads a row; a task "
            "whose tuning or seeds are still running says so.\n\n"
            f"{table}\n{END}\n\n")


def replace_section(readme: str, new: str) -> str:
    """README.md with its headline section (any version's heading) replaced by ``new``, or inserted first."""
    for heading in (HEADING, *OLD_HEADINGS):
        if heading in readme:
            if END not in readme:
                raise SystemExit(f"README.md has {heading!r} but not its end marker {END!r}; restore the marker")
            return re.sub(rf"^{re.escape(heading)}\n.*?{re.escape(END)}\n\n", lambda _: new, readme, count=1,
                          flags=re.S | re.M)
    # Right after the opening paragraph: the README opens with the results.
    first = re.search(r"^- \*\*", readme, re.M)
    if not first:
        raise SystemExit("README.md has no feature list to put the headline before")
    return readme[: first.start()] + new + readme[first.start():]


def main() -> int:
    readme_path = ROOT / "README.md"
    new = section(generated_table((ROOT / TIER / "README.md").read_text()))
    readme_path.write_text(replace_section(readme_path.read_text(), new))
    print(f"README.md: headline section synced from {TIER / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
