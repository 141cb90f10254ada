"""The house rules a reader relies on: layers that never import upward, and rooms of a readable size.

Both are read from the source (AST), imports inside functions included: a
lazy import climbs a layer just as much as one at the top of the file.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Installed package -> folder (pyproject's package-dir).
PACKAGES = {"fednlp_bench": ROOT / "fednlp_bench", "fednlp_bench.partitioners": ROOT / "partitioners",
            "fednlp_bench.tasks": ROOT / "tasks"}
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            name = ".".join([prefix, *parts])
            if prefix == "fednlp_bench" and name.startswith(("fednlp_bench.partitioners", "fednlp_bench.tasks")):
                continue
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (absolute imports: the house style)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        targets = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                   [node.module or "", *(f"{node.module}.{a.name}" for a in node.names)]
                   if isinstance(node, ast.ImportFrom) else [])
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _closure(starts: list[str]) -> dict[str, list[str]]:
    """Every module reachable from ``starts`` -> one import chain that reaches it (for the failure message)."""
    chains = {s: [s] for s in starts}
    todo = list(starts)
    while todo:
        current = todo.pop()
        for target in sorted(_imports(current)):
            if target not in chains:
                chains[target] = [*chains[current], target]
                todo.append(target)
    return chains


def _upward(chains: dict[str, list[str]], above: tuple[str, ...]) -> list[str]:
    return [" -> ".join(chain) for mod, chain in sorted(chains.items()) if mod.startswith(above)]


ENGINE = sorted(m for m in MODULES if m.startswith("fednlp_bench.engine"))


def test_config_imports_nothing_above_it() -> None:
    """config.py validates with the registries' declarations; it never reaches into the engine or a command."""
    climbs = _upward(_closure(["fednlp_bench.config"]),
                     ("fednlp_bench.engine", "fednlp_bench.commands", "fednlp_bench.backends", "fednlp_bench.cli"))
    assert not climbs, "config.py reaches up:\n" + "\n".join(climbs)


def test_engine_imports_no_command_and_no_backend() -> None:
    """The engine runs rounds; which backend runs them is chosen above it (backends/launch.py)."""
    assert len(ENGINE) > 20
    climbs = _upward(_closure(ENGINE), ("fednlp_bench.commands", "fednlp_bench.backends", "fednlp_bench.cli"))
    assert not climbs, "the engine reaches up:\n" + "\n".join(climbs)


def test_the_check_sees_a_climb() -> None:
    """The commands do import the engine (so an engine module importing a command would be caught)."""
    chains = _closure(["fednlp_bench.commands.run"])
    assert _upward(chains, ("fednlp_bench.engine",)) and _upward(chains, ("fednlp_bench.backends",))


def _offenders() -> dict[str, int]:
    out: dict[str, int] = {}
    for path in sorted(MODULES.values()):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            out[rel] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if length > MAX_FUNCTION_LINES:
                    out[f"{rel}:{node.name}"] = length
    return out


def test_no_module_over_300_lines_and_no_function_over_60() -> None:
    found = _offenders()
    assert not found, (f"over {MAX_MODULE_LINES} lines (module) or {MAX_FUNCTION_LINES} (function); split by what "
                       f"each part holds: {found}")


@pytest.mark.parametrize("name", ["fednlp_bench.config", "fednlp_bench.engine.run.runner"])
def test_modules_are_found(name: str) -> None:
    assert name in MODULES and _imports(name)
