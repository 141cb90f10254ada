"""fednlp_bench.leaderboard reads records and plans only: no import of the engine or the suite, anywhere in it.

Function-level imports count too (an AST walk over every module), so a table can
never start training or re-implement selection by reaching into the suite.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fednlp_bench.leaderboard as leaderboard

FORBIDDEN = ("fednlp_bench.engine", "fednlp_bench.suite", "torch")


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level:
            names.append("." * node.level + (node.module or ""))
    return names


def test_leaderboard_imports_nothing_from_the_engine_or_the_suite() -> None:
    package = Path(leaderboard.__file__).parent
    modules = sorted(package.glob("*.py"))
    assert len(modules) > 10
    offending = [f"{m.name}: {name}" for m in modules for name in imported_modules(m)
                 if name.startswith(".") or any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert offending == []


def test_the_check_sees_function_level_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from fednlp_bench.engine.run.runner import run_experiment\n    import torch\n")
    assert imported_modules(module) == ["fednlp_bench.engine.run.runner", "fednlp_bench.engine.run.runner.run_experiment",
                                        "torch"]
