"""Copy the cpu tier's headline table (leaderboards/cpu/README.md) into the top of README.md.

The README opens with the headline results, but it is hand-written text; the
numbers must come from the generated tier README (built from the records), so
this script replaces README.md's "## Headline results" section with that
table, links rewritten to work from the repository root. Run it after
`fednlp-bench leaderboard --plan leaderboards/cpu/plan.json --out leaderboards/cpu`;
tests/test_readme_headline.py fails when the two differ.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIER = Path("leaderboards/cpu")
HEADING = "## Headline results (cpu tier)"
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
            "Test metric of each task's most skewed partition, mean ± std over 3 seeds with the 95% interval, "
            "from [leaderboards/cpu/](leaderboards/cpu/README.md) (protocol: [docs/protocol.md](docs/protocol.md); "
            "a cell still running shows how many of its seeds are done). Tasks not listed are not in the cpu tier "
            "yet (see the protocol's status section).\n\n"
            f"{table}\n{END}\n\n")


def main() -> int:
    readme_path = ROOT / "README.md"
    readme = readme_path.read_text()
    new = section(generated_table((ROOT / TIER / "README.md").read_text()))
    if HEADING in readme:
        if END not in readme:
            raise SystemExit(f"README.md has {HEADING!r} but not its end marker {END!r}; restore the marker")
        readme = re.sub(rf"^{re.escape(HEADING)}\n.*?{re.escape(END)}\n\n", lambda _: new, readme, count=1,
                        flags=re.S | re.M)
    else:
        # Right after the opening paragraph: the README opens with the results.
        first = re.search(r"^- \*\*", readme, re.M)
        if not first:
            raise SystemExit("README.md has no feature list to put the headline before")
        readme = readme[: first.start()] + new + readme[first.start():]
    readme_path.write_text(readme)
    print(f"README.md: headline section synced from {TIER / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
