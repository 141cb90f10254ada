"""Every example command in `--help`, docs/ and the configs' comments is one the CLI accepts as written.

Each ``fednlp-bench ...`` line is taken from the text itself (help epilogs and
option help, bash blocks of docs/*.md and leaderboards/README.md, the
``#   fednlp-bench`` comments of configs/*.yaml), parsed by the real argparse
parser and validated the way the command validates before any work: run and
compare build and validate every RunConfig, partition checks its request,
suite loads its file and task names, leaderboard loads its plan. Nothing is
trained (the README's own tour runs in tests/test_readme_tour.py). The numbers
the help texts give as examples (``--server-lr 1e-2``, ``doc_stride=128``)
must read as numbers.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from fednlp_bench import cli
from fednlp_bench.scalars import parse_scalar

ROOT = Path(__file__).resolve().parents[1]
DOC_FILES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "leaderboards" / "README.md"]
#: Placeholders in docs that stand for the reader's own value.
PLACEHOLDERS = {"RUN_ID": "some-run-id"}


def _command_lines(text: str, prefix: str = "") -> list[str]:
    """``fednlp-bench ...`` lines (continuations joined, comments and [optional] brackets dropped)."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if prefix:
            if not line.startswith(prefix):
                continue
            line = line[len(prefix):].strip()
        if not line.startswith("fednlp-bench "):
            continue
        line = re.sub(r"\s#\s.*$", "", line)
        line = re.split(r"\s[|>]\s", line)[0]  # the command itself, not its pipe or redirection
        line = re.sub(r"\[([^\]]*)\]", r"\1", line)
        out.append(" ".join(PLACEHOLDERS.get(w, w) for w in line.split()))
    return out


def help_texts() -> dict[str, str]:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return {name: p.format_help() for name, p in sub.choices.items()}


def doc_examples() -> list[tuple[str, str]]:
    found = []
    for name, text in help_texts().items():
        found += [(f"fednlp-bench {name} --help", c) for c in _command_lines(text)]
    for path in DOC_FILES:
        for block in re.findall(r"```bash\n(.*?)```", path.read_text(), flags=re.S):
            found += [(str(path.relative_to(ROOT)), c) for c in _command_lines(block)]
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        found += [(str(path.relative_to(ROOT)), c) for c in _command_lines(path.read_text(), prefix="#")]
    return found


EXAMPLES = doc_examples()


def test_the_examples_are_found() -> None:
    sources = {s for s, _ in EXAMPLES}
    assert {"fednlp-bench run --help", "fednlp-bench compare --help", "docs/engine.md", "docs/compute.md",
            "docs/leaderboard.md", "docs/partitioners.md", "configs/quickstart.yaml"} <= sources
    assert any("--server-lr 1e-3" in c for _, c in EXAMPLES)  # docs/engine.md's, once refused


@pytest.fixture
def user_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/custom_algorithm.md's module as the reader saves it (its examples name it)."""
    doc = (ROOT / "docs" / "custom_algorithm.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", doc, flags=re.S) if "class MomentumClient" in b)
    pkg = tmp_path / "user_code" / "my_lab"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "client_momentum.py").write_text(block)
    monkeypatch.syspath_prepend(str(tmp_path / "user_code"))


def validate(argv: list[str]) -> None:
    """What the command checks before any work, without doing the work."""
    from fednlp_bench.config import RunConfig

    args = cli.parse_args(argv)
    command = argv[0]
    if command == "run":
        from fednlp_bench.commands.run import backend_options, config_dict_from_args

        config = RunConfig.from_dict(config_dict_from_args(args)[0])
        backend_options(args, config.backend)
    elif command == "compare":
        from fednlp_bench.commands.compare import plan_tasks

        assert plan_tasks(args)
    elif command == "partition":
        from fednlp_bench.commands.partition import check_request

        check_request(args)
    elif command == "suite":
        from fednlp_bench.suite.spec import load_suite
        from fednlp_bench.suite.stages import task_indexes

        suite = load_suite(args.suite)
        if args.task:
            task_indexes(suite, args.task)
    elif command == "leaderboard":
        if args.plan and Path(args.plan).exists():
            from fednlp_bench.leaderboard.plan import load_plan

            load_plan(args.plan)
        elif args.plan:  # a plan the tier has not written yet: some tier suite must write it there
            from fednlp_bench.suite.spec import load_suite

            outs = {str(Path(load_suite(p).out) / "plan.json") for p in ROOT.glob("configs/suite*.yaml")}
            assert args.plan in outs, f"--plan {args.plan}: no tier suite writes it (suites write {sorted(outs)})"
    elif command == "algorithms":
        assert cli.main(argv) == 0
    else:
        assert command == "datasets", f"no check for command {command!r}: add one here"


@pytest.mark.parametrize("source, line", EXAMPLES, ids=[f"{s}: {c[13:60]}" for s, c in EXAMPLES])
def test_example_parses_and_validates(source: str, line: str, user_plugin: None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # the examples name configs/... relative to the checkout
    argv = shlex.split(line)[1:]
    try:
        validate(argv)
    except SystemExit as err:  # argparse refused it
        pytest.fail(f"{source}: `{line}` is refused by the parser (exit {err.code})")


def test_numbers_given_as_examples_in_help_read_as_numbers() -> None:
    fragments = []
    for text in help_texts().values():
        text = " ".join(text.split())
        fragments += re.findall(r"--[a-z][a-z-]+ ([-+]?\.?\d[\w.+-]*)", text)
        fragments += re.findall(r"\b[a-z_]+=([-+]?\.?\d[\w.+-]*)", text)
    fragments = [f.rstrip(".,;)") for f in fragments]
    assert "1e-2" in fragments and "128" in fragments
    bad = [f for f in fragments if isinstance(parse_scalar(f), str) and not re.fullmatch(r"\d+(-\d+|,\d+)+", f)]
    assert not bad, f"help examples that do not read as numbers: {bad}"


def _without_elisions(value: object) -> object:
    """An excerpt's ``...`` entries (``base: {model: minilm, ...}``) left out."""
    if isinstance(value, dict):
        return {k: _without_elisions(v) for k, v in value.items() if k != "..."}
    if isinstance(value, list):
        return [_without_elisions(v) for v in value]
    return value


YAML_BLOCKS = [(str(path.relative_to(ROOT)), block) for path in DOC_FILES
               for block in re.findall(r"```yaml\n(.*?)```", path.read_text(), flags=re.S)]


@pytest.mark.parametrize("source, block", YAML_BLOCKS, ids=[f"{s}:{i}" for i, (s, _) in enumerate(YAML_BLOCKS)])
def test_yaml_examples_validate(source: str, block: str) -> None:
    """A docs YAML block that is a run config or a suite validates as one (with 1.0e-5 and 1e-3 alike)."""
    from fednlp_bench.config import RunConfig
    from fednlp_bench.scalars import load_yaml
    from fednlp_bench.suite.spec import parse_suite
    from fednlp_bench.suite.tier_plan import build_tier_plan

    data = _without_elisions(load_yaml(block))
    assert isinstance(data, dict), f"{source}: a YAML example must be a mapping"
    if set(data) <= set(RunConfig.field_names()):
        RunConfig.from_dict(data)
    elif {"tasks", "algorithms"} <= set(data):
        suite = parse_suite(data, source)
        assert build_tier_plan(suite).units, f"{source}: the suite plans no tuning unit"
    elif set(data) == {"convergence"}:  # the protocol's criterion on its own
        from fednlp_bench.leaderboard.convergence import Criterion

        Criterion.from_dict(data["convergence"], source)
    else:  # an excerpt of a suite (one section), shown inside a list of steps
        assert set(data) == {"algorithms"}, f"{source}: YAML block {sorted(data)} is neither a run config nor a suite"
