"""The `fednlp-bench partition` command line: its own options and the line that makes a given partition spec.

Two places need it: the ``partition`` command's parser (commands/partition.py
builds its flags from these declarations and the schemes') and the hint a run
prints when a saved partition does not fit its data ("make the partition of
exactly these rows with: ..."). The hint must be a complete command, runnable
as printed, that writes a new file instead of the user's, so both read the
flag of every scheme parameter from its :class:`~fednlp_bench.registry.Param`.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Mapping

from fednlp_bench.checks import at_least
from fednlp_bench.registry import Param, declare

#: The command's own options (data in, partition out); the scheme's come from the partitioners' declarations.
DATA_OPTIONS = declare(
    Param("data", str, None, help="local folder/file or hub dataset name (default: $FEDNLP_DATA_DIR/20news)"),
    Param("task", str, None, help="load through a registered task and partition by its partition_key column"),
    Param("split", str, "train", help="split to partition (default: train)"),
    Param("max_train_examples", int, None, at_least(1), "with --task: the seeded subset (by --seed) that `run "
          "--max-train-examples N` trains on, so `run --partition FILE` accepts the file"),
    Param("label_column", str, None, help="label column (default: 'label'; with --task: 'partition_key')"),
    Param("text_column", str, "text", help="text column for feature_cluster (default: text)"),
)
OUTPUT_OPTIONS = declare(
    Param("out", str, None, help="partition file, .json or .npz (npz for large data)"),
    Param("plot", str, None, help="also write a PNG of the label mix per client"),
    Param("show_clients", int, 20, at_least(0), "clients listed in the table (default: 20)"),
)
#: Schemes whose number of clients comes from the data (never passed as --clients: new data, new count).
_DATA_DEFINED_CLIENTS = ("natural_id",)


def own_flags() -> set[str]:
    """Flags of the command itself, which a scheme parameter's flag must not take."""
    from fednlp_bench.partitioners.base import SPLIT_PARAMS

    return {"--scheme", *(p.cli_flag() for group in (DATA_OPTIONS, OUTPUT_OPTIONS, SPLIT_PARAMS)
                          for p in group.values())}


def scheme_flag(param: Param) -> str:
    """The ``partition`` flag of a scheme parameter (prefixed ``--partition-`` where the command's own takes it)."""
    flag = param.cli_flag()
    if flag not in own_flags():
        return flag
    stem = "partition-" + param.name.replace("_", "-")
    return f"--no-{stem}" if param.type is bool and param.default is True else f"--{stem}"


def scheme_flags(scheme: str, params: Mapping[str, Any]) -> list[str]:
    """``--alpha 0.5 --no-balance ...`` for a spec's parameters (a boolean at its default needs no flag)."""
    from fednlp_bench.partitioners import PARTITIONERS

    specs = PARTITIONERS.params(scheme)
    words: list[str] = []
    for key, value in sorted(params.items()):
        if key not in specs:
            raise KeyError(f"scheme {scheme!r} has no parameter {key!r}, so `fednlp-bench partition` has no flag for it")
        param = specs[key]
        if param.type is bool:
            words += [] if value == param.default else [scheme_flag(param)]
        else:
            words += [scheme_flag(param), str(value)]
    return words


def fresh_path(path: str | Path, tag: str = "fit") -> Path:
    """``part.json`` -> ``part-fit.json`` (or ``part-fit2.json`` ...): a name no file has yet."""
    path = Path(path)
    for n in range(1, 1000):
        candidate = path.with_name(f"{path.stem}-{tag}{n if n > 1 else ''}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(f"no free file name like {path.stem}-{tag}N{path.suffix} in {path.parent}")


def partition_command(spec: Mapping[str, Any], *, task: str, out: str | Path, data: str | None = None,
                      max_train_examples: int | None = None) -> str:
    """The complete ``fednlp-bench partition`` line that draws ``spec`` over a task's training rows."""
    words = ["fednlp-bench", "partition", "--task", task]
    if data:
        words += ["--data", data]
    if max_train_examples:
        words += ["--max-train-examples", str(max_train_examples)]
    words += ["--scheme", str(spec["scheme"])]
    if spec.get("num_clients") is not None and spec["scheme"] not in _DATA_DEFINED_CLIENTS:
        words += ["--clients", str(spec["num_clients"])]
    words += ["--seed", str(spec.get("seed", 0)), "--min-size", str(spec.get("min_size", 1))]
    words += scheme_flags(str(spec["scheme"]), spec.get("params") or {})
    words += ["--out", str(out)]
    return shlex.join(words)
