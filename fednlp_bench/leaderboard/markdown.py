"""Small text helpers every generated leaderboard file shares: links, paths as commands name them, budgets.

Links are relative to the file's folder so a published folder keeps working
wherever it is copied; a path in a command is relative to the working
directory when inside it (copyable from the repository root), else absolute.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fednlp_bench.leaderboard.labels import fmt_param

README = "README.md"


def link(path: Path, out_dir: Path) -> str:
    """A link from a file in ``out_dir`` to ``path``: relative, so it also works where ``out_dir`` is published."""
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()


def cwd_label(path: Path) -> str:
    """A folder as a README's commands name it: relative to the working directory when inside it, else absolute."""
    resolved = path.resolve()
    relative = os.path.relpath(resolved)
    return Path(relative if not relative.startswith("..") else str(resolved)).as_posix()


def budget_sentence(budget: dict[str, Any], model: str, data: str | None) -> str:
    """A budget (``labels.budget_of``) in words, the shared settings first and any other setting after."""
    b = dict(budget)
    parts = [f"model `{model}`", f"data `{data if data is not None else 'task default'}`"]
    if "partition.num_clients" in b:
        parts.append(f"{b.pop('partition.num_clients')} clients")
    if "clients_per_round" in b:
        parts.append(f"{b.pop('clients_per_round')} clients per round")
    if "rounds" in b:
        parts.append(f"{b.pop('rounds')} rounds")
    epochs, steps = b.pop("local_epochs", None), b.pop("local_steps", None)
    if epochs is not None:
        parts.append(f"{epochs} local epoch(s)")
    if steps is not None:
        parts.append(f"{steps} local step(s)")
    train, evals = b.pop("max_train_examples", None), b.pop("max_eval_examples", None)
    validation = b.pop("max_validation_examples", None)
    parts.append(f"max examples: {train if train is not None else 'all'} train / "
                 f"{evals if evals is not None else 'all'} eval"
                 + (f" / {validation} validation" if validation is not None else ""))
    if "max_length" in b:
        parts.append(f"max_length {b.pop('max_length')}")
    if "batch_size" in b:
        parts.append(f"batch {b.pop('batch_size')}")
    if "lr" in b:
        opt = b.pop("optimizer", None)
        parts.append(f"lr {fmt_param(b.pop('lr'))}" + (f" ({opt})" if opt else ""))
    text = ", ".join(parts)
    if b:
        text += "; other settings: " + ", ".join(f"{k}={fmt_param(v)}" for k, v in sorted(b.items()))
    return text
