"""The README's commands run as written: parsed from README.md, run in order with smaller budgets.

The commands come from the README itself (the install line's `fednlp-bench`
part and every line of the "CLI tour" block), so a README edit that breaks
one fails here. Only budget flags are appended (later flags override earlier
ones in argparse): the tiny random model, one round, a few dozen examples. A
budget the command itself sets is kept, because it is part of what must fit
(`run --partition part.json --max-train-examples 2000` has to match the
partition made with that budget). `suite` gets `--dry-run` (the full grid is
~1 h; the dry run still validates every config of it).
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
from pathlib import Path

import pytest

from fednlp_bench import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Appended to every training command (unless the command sets the flag itself).
TRAIN_BUDGET = {
    "--model": "tiny", "--rounds": "1", "--max-train-examples": "80", "--max-eval-examples": "16",
    "--clients-per-round": "2", "--threads": "1",  # max_length stays: QA needs room for question + context
}
#: Only for commands that partition from a config/scheme (a --partition FILE fixes these).
PARTITION_BUDGET = {"--clients": "4", "--min-size": "1"}


def readme_commands(text: str) -> list[str]:
    """``fednlp-bench ...`` command lines of the install block and the CLI tour, continuations joined."""
    commands: list[str] = []
    install = re.search(r"## Set up.*?```bash\n(.*?)```", text, re.S)
    assert install, "README has no '## Set up' bash block"
    for line in install.group(1).splitlines():
        if "fednlp-bench" in line:
            commands.append("fednlp-bench" + line.split("fednlp-bench", 1)[1])
    tour = re.search(r"## CLI tour.*?```bash\n(.*?)```", text, re.S)
    assert tour, "README has no '## CLI tour' bash block"
    joined = tour.group(1).replace("\\\n", " ")
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            commands.append(line)
    return commands


def with_budget(argv: list[str], runs_dir: Path) -> list[str]:
    command = argv[0]
    given = set(argv)
    extra: list[str] = []
    if command in ("run", "compare"):
        for flag, value in TRAIN_BUDGET.items():
            if flag not in given:
                extra += [flag, value]
        if "--partition" not in given:
            for flag, value in PARTITION_BUDGET.items():
                extra += [flag, value]
        extra += ["--runs-dir", str(runs_dir)]
    if command == "suite":
        extra += ["--dry-run", "--runs-dir", str(runs_dir)]
    return argv + extra


def test_readme_lists_the_tour() -> None:
    commands = readme_commands(README.read_text())
    names = [shlex.split(c)[1] for c in commands if c.startswith("fednlp-bench")]
    assert names[0] == "compare" and "--config configs/quickstart.yaml" in commands[0]  # the main job comes first
    assert {"datasets", "partition", "run", "compare", "suite", "leaderboard"} <= set(names)


def test_readme_tour_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """Each command in order, in a scratch copy of the checkout's configs and leaderboards (as a user's cwd)."""
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "configs").symlink_to(ROOT / "configs")
    shutil.copytree(ROOT / "leaderboards", work / "leaderboards")  # `leaderboard --out leaderboards` rewrites it
    monkeypatch.chdir(work)
    monkeypatch.setenv("FEDNLP_CACHE_DIR", str(tmp_path / "cache"))
    runs = tmp_path / "runs"
    failures: list[str] = []
    commands = readme_commands(README.read_text())
    from fednlp_bench.partitioners import natural_id

    natural_id._WARNED.clear()  # the tour's natural_id command must say its warning, even if another test did
    caplog.set_level(logging.WARNING, logger="fednlp_bench")
    for line in commands:
        words = shlex.split(line)
        if words[0] == "export":
            continue  # FEDNLP_DATA_DIR: conftest already points it at the offline data, absolute
        assert words[0] == "fednlp-bench", f"not a fednlp-bench command: {line}"
        argv = with_budget(words[1:], runs)
        rc = cli.main(argv)
        out = capsys.readouterr()
        if rc != 0:
            failures.append(f"{line}\n  -> exit {rc}: {out.err.strip()[-800:]}")
    assert not failures, "README commands failed:\n" + "\n".join(failures)
    # What the tour promises it leaves behind.
    assert (work / "part.json").is_file() and (work / "part.png").is_file() and (work / "authors.json").is_file()
    assert (work / "leaderboards" / "README.md").is_file()
    assert (work / "qa-gaps.md").read_text().startswith("Gap table: qa")  # compare --out
    assert list(runs.glob("compare-qa-*.png")) and list(runs.glob("*/curve.png"))  # the learning curves
    # The natural_id command without merge_below warns, in one line, and names the value the next command uses.
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("natural_id:")]
    assert len(warned) == 1 and "of column 'author' have fewer than 10 rows" in warned[0]
    fix = re.search(r"merge_below=(\d+)", warned[0])
    assert fix and f"--merge-below {fix.group(1)}" in README.read_text()
