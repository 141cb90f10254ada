"""``verification.json`` of a leaderboard folder, and the README section that quotes it.

``fednlp-bench leaderboard --verify`` (fednlp_bench/suite/verify.py) re-runs
records and saves each result here; the tables only read the file, so a
README says which records were re-run and whether they reproduced, with the
tolerance used, without the leaderboard ever running the engine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VERIFICATION_FILE = "verification.json"


def load_verification(out_dir: Path) -> list[dict[str, Any]]:
    """The saved results, by run id; empty when nothing was verified."""
    path = out_dir / VERIFICATION_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}); delete it and re-run --verify") from err
    return sorted(data.values(), key=lambda e: e["run_id"])


def verification_lines(verification: list[dict[str, Any]]) -> list[str]:
    """The README's "## Verification" section: one row per re-run record (none when nothing was verified)."""
    if not verification:
        return []
    lines = ["", "## Verification", "",
             "| Run | Result | Max abs difference | Tolerance | Metrics compared |", "|---|---|---|---|---|"]
    for entry in verification:
        lines.append(f"| {entry['run_id']} | {'reproduced' if entry['passed'] else 'NOT reproduced'} | "
                     f"{entry['max_abs_diff']:.3g} | {entry['tolerance']:g} | {entry['n_compared']} |")
    return lines
