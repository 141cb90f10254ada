"""Every file or folder the docs name in backticks exists, so a reader who follows a reference finds it.

A path resolves from the repository root, from ``fednlp_bench/`` (the docs
write ``engine/run/prepare.py`` for ``fednlp_bench/engine/run/prepare.py``) or
from the doc's own folder. The few that name something outside this tree are
listed below with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: `dir/`, `dir/file.ext`, optionally followed by ``::name`` or ``:name`` (a test or a function in it).
PATH = re.compile(r"`((?:[A-Za-z0-9_.-]+/)+(?:[A-Za-z0-9_.-]+\.(?:py|md|yaml|sh|json|toml|tsv))?)(?:::?\w+)?`")
#: Not in this tree, on purpose.
ELSEWHERE = {
    "fedml/": "FedML 0.9.6's own source (docs/fedml.md cites where its behaviour comes from)",
    "my_lab/": "the reader's own plug-in package in the custom-algorithm walk-through",
    "runs/": "written by `fednlp-bench run`",
    "leaderboards/cpu/records/": "written by the cpu tier's runs",
    "leaderboards/gpu/": "written by the gpu tier",
    "gpu-check/": "written by scripts/gpu_check.sh under the device's $OUT",
    ".carry/": "built by scripts/make_gpu_carry.sh (ignored by git)",
    "wheels/": "inside .carry/, built by scripts/make_gpu_carry.sh",
}


def named_paths() -> list[tuple[str, str]]:
    return [(doc.relative_to(ROOT).as_posix(), m.group(1)) for doc in DOCS for m in PATH.finditer(doc.read_text())]


def test_every_path_the_docs_name_exists() -> None:
    found = named_paths()
    assert len(found) > 50, "the pattern should find the docs' many references"
    missing = [(doc, path) for doc, path in found
               if not path.startswith(tuple(ELSEWHERE))
               and not any(p.exists() for p in (ROOT / path, ROOT / "fednlp_bench" / path, (ROOT / doc).parent / path))]
    assert not missing, f"docs name paths that do not exist (fix the reference or the tree): {missing}"


def test_the_check_reads_references_as_written() -> None:
    assert PATH.findall("see `engine/run/prepare.py::prepare_run` and `tasks/builtin.py`") == [
        "engine/run/prepare.py", "tasks/builtin.py"]
