"""Where a task's raw rows come from: a local folder of files or a Hugging Face hub dataset.

Every reader returns ``(record, where)`` pairs, ``where`` being ``"path:line"``
(or ``"hub <name> <split> row <n>"``), so that a task can name the exact place
of a bad value in its error message instead of failing somewhere in tokenization.
Readers validate required fields themselves; they never half-load a file.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from fednlp_bench.paths import DATA_DIR_ENV, DataSourceError, data_root, resolve_local_dir

log = logging.getLogger(__name__)

Row = tuple[dict[str, Any], str]
#: File names (without extension) accepted for each canonical split.
SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("validation", "valid", "val", "dev"),
    "test": ("test",),
}


@dataclass
class RawSplits:
    """Rows per split plus where they came from (for messages and ``fednlp-bench datasets``)."""

    splits: dict[str, list[Row]]
    origin: str  # "local <dir>" or "hub <name>"
    files: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- resolution
def resolve_source(data: str | None, local_default: str, hub_default: str) -> tuple[str, str | Path, list[str]]:
    """Decide between a local folder and a hub name; also return what was looked for.

    ``data`` may be an existing directory, a sub-folder of ``$FEDNLP_DATA_DIR``
    or a hub dataset name; ``None`` means ``$FEDNLP_DATA_DIR/<local_default>``,
    else ``hub_default``.
    """
    root = data_root()
    looked: list[str] = []
    if data is not None:
        looked.append(f"directory {data!r}")
        if root is not None:
            looked.append(f"{root / data} (${DATA_DIR_ENV}/{data})")
    else:
        looked.append(f"${DATA_DIR_ENV}/{local_default}" + (f" = {root / local_default}" if root else f" (${DATA_DIR_ENV} is not set)"))
    local = resolve_local_dir(data, local_default)
    if local is not None:
        if not local.is_dir():
            raise DataSourceError(f"--data {data!r} is a file; give the directory holding train/test files")
        return "local", local, looked
    looks_like_path = data is not None and (data.startswith((".", "/", "~")) or data.endswith((".json", ".jsonl", ".csv")))
    if looks_like_path:
        raise DataSourceError(f"no such data directory: {data!r}; looked for " + ", ".join(looked))
    return "hub", data or hub_default, looked


def find_split_files(directory: Path, extensions: Sequence[str]) -> dict[str, Path]:
    """Map canonical split names to files in ``directory`` (``train.jsonl``, ``dev-v1.1.json`` ...)."""
    found: dict[str, Path] = {}
    for split, aliases in SPLIT_ALIASES.items():
        for alias in aliases:
            for ext in extensions:
                candidates = [directory / f"{alias}.{ext}", *sorted(directory.glob(f"{alias}-*.{ext}"))]
                hit = next((c for c in candidates if c.is_file()), None)
                if hit is not None:
                    found[split] = hit
                    break
            if split in found:
                break
    if "train" not in found:
        wanted = ", ".join(f"train.{ext}" for ext in extensions)
        raise DataSourceError(
            f"no training file in {directory}: looked for {wanted} (and train-*.<ext>); "
            f"evaluation files may be named test/validation/dev with the same extensions"
        )
    if len(found) == 1:
        raise DataSourceError(f"{directory} has {found['train'].name} but no test/validation/dev file to evaluate on")
    return found


def parse_hub_name(name: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME:CONFIG`` (e.g. ``glue:sst2``, ``conll2003``) -> (path, config name or None)."""
    path, sep, config = name.partition(":")
    if sep and (not path or not config):
        raise DataSourceError(f"hub dataset {name!r}: write NAME or NAME:CONFIG, e.g. 'ag_news' or 'glue:sst2'")
    return path, (config or None)


def load_hub(name: str, looked: list[str], columns: Mapping[str, str] | None = None) -> RawSplits:
    """Load a hub dataset (``NAME`` or ``NAME:CONFIG``); on failure list every place that was tried."""
    from datasets import load_dataset

    path, config = parse_hub_name(name)

    from fednlp_bench.hub import unreachable_reason

    why = unreachable_reason()
    if why:
        raise DataSourceError(
            f"could not load data: looked for {', '.join(looked)}; the Hugging Face hub dataset {name!r} was not "
            f"tried: {why}. "
            f"Pass --data DIR (or set ${DATA_DIR_ENV}) for offline files (docs/tasks.md lists the expected layout)."
        )
    try:
        dsd = load_dataset(path, config) if config else load_dataset(path)
    except Exception as err:  # network, offline mode, unknown name: all mean "not available"
        raise DataSourceError(
            f"could not load data: looked for {', '.join(looked)} and the Hugging Face hub dataset {name!r} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}). "
            f"Pass --data DIR (or set ${DATA_DIR_ENV}) for offline files, or check the hub name/connection."
        ) from err
    splits: dict[str, list[Row]] = {}
    for split, ds in dsd.items():
        canonical = next((c for c, aliases in SPLIT_ALIASES.items() if split in aliases), split)
        rows = ds.to_list()
        for column, feature in ds.features.items():  # ClassLabel ints -> names; tasks work with strings
            names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
            if names:
                for row in rows:
                    value = row[column]
                    row[column] = [names[v] for v in value] if isinstance(value, list) else names[value]
        rows = [rename_columns(row, columns, f"hub {name} {split}") for row in rows]
        splits[canonical] = [(row, f"hub {name} {split} row {i}") for i, row in enumerate(rows)]
    return RawSplits(splits=splits, origin=f"hub {name}")


# ----------------------------------------------------------------------------- readers
def check_columns(columns: Mapping[str, str] | None, fields: Sequence[str], task: str) -> dict[str, str]:
    """Validate a ``{task field: column in the file}`` mapping before any data is read."""
    columns = dict(columns or {})
    for key, value in columns.items():
        if key not in fields:
            raise ValueError(
                f"columns: {key!r} is not a field of task {task!r}; map one of {list(fields)} to your column "
                f"name, e.g. columns: {{{fields[0]}: my_column}}"
            )
        if not isinstance(value, str) or not value:
            raise ValueError(f"columns: {key!r} must map to a column name (a non-empty string), got {value!r}")
    if len(set(columns.values())) != len(columns):
        raise ValueError(f"columns: {columns} maps two fields to the same column")
    return columns


def rename_columns(record: dict[str, Any], columns: Mapping[str, str] | None, where: str) -> dict[str, Any]:
    """Expose the user's column names under the task's field names (``{text: body}``: ``body`` -> ``text``)."""
    if not columns:
        return record
    out = dict(record)
    for field_name, column in columns.items():
        if column in record:
            out[field_name] = record[column]
            if column != field_name:
                out.pop(column, None)
    return out


def check_fields(record: dict[str, Any], required: Sequence[str], where: str) -> None:
    missing = [f for f in required if f not in record or record[f] is None]
    if missing:
        raise ValueError(
            f"{where}: missing field(s) {', '.join(repr(m) for m in missing)}; each row needs {', '.join(required)} "
            f"(map other names with columns: {{field: column}})"
        )


def read_jsonl(path: Path, required: Sequence[str], columns: Mapping[str, str] | None = None) -> list[Row]:
    rows: list[Row] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: not valid JSON ({err.msg}); each line must be one JSON object") from err
            if not isinstance(record, dict):
                raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
            record = rename_columns(record, columns, where)
            check_fields(record, required, where)
            rows.append((record, where))
    return rows


def read_csv(path: Path, required: Sequence[str], columns: Mapping[str, str] | None = None) -> list[Row]:
    rows: list[Row] = []
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header = list(rename_columns({c: None for c in reader.fieldnames or []}, columns, str(path)))
        missing = [f for f in required if f not in header]
        if missing:
            raise ValueError(f"{path}:1: header lacks column(s) {missing}; it needs {list(required)}{_mapping_hint(columns)}")
        for record in reader:
            where = f"{path}:{reader.line_num}"
            if None in record or any(v is None for v in record.values()):
                raise ValueError(f"{where}: the row has {'more' if None in record else 'fewer'} fields than the header")
            rows.append((rename_columns(dict(record), columns, where), where))
    return rows


def read_parquet(path: Path, required: Sequence[str], columns: Mapping[str, str] | None = None) -> list[Row]:
    """A Parquet file; ``where`` is ``path:row N`` (1-based), Parquet having no lines."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for a damaged file
        raise ValueError(f"{path}: not a readable Parquet file ({type(err).__name__}: {err})") from err
    header = list(rename_columns({c: None for c in table.column_names}, columns, str(path)))
    missing = [f for f in required if f not in header]
    if missing:
        raise ValueError(f"{path}: lacks column(s) {missing}; it needs {list(required)}{_mapping_hint(columns)}")
    rows: list[Row] = []
    for n, record in enumerate(table.to_pylist(), start=1):
        where = f"{path}:row {n}"
        record = rename_columns(record, columns, where)
        check_fields(record, required, where)
        rows.append((record, where))
    return rows


def _mapping_hint(columns: Mapping[str, str] | None) -> str:
    return f" (after the column mapping {dict(columns)})" if columns else " (map other names with columns: {field: column})"


def read_local(directory: Path, readers: dict[str, Any]) -> RawSplits:
    """Read every split file in ``directory`` with the reader registered for its extension."""
    files = find_split_files(directory, list(readers))
    splits: dict[str, list[Row]] = {}
    for split, path in files.items():
        ext = next(e for e in readers if path.name.endswith(f".{e}"))
        splits[split] = readers[ext](path)
        if not splits[split]:
            raise ValueError(f"{path}: file has no rows")
    return RawSplits(splits=splits, origin=f"local {directory}", files={s: str(p) for s, p in files.items()})


def load_raw(
    data: str | None, local_default: str, hub_default: str, readers: dict[str, Any],
    columns: Mapping[str, str] | None = None,
) -> RawSplits:
    """Local folder if one resolves, else the hub (see :func:`resolve_source`).

    Local readers apply ``columns`` themselves (they check required fields per
    row); hub rows are renamed here.
    """
    kind, where, looked = resolve_source(data, local_default, hub_default)
    if kind == "local":
        return read_local(Path(where), readers)
    return load_hub(str(where), looked, columns)


_SKIP_REPORTED: set[str] = set()


def log_skipped(task: str, counts: dict[str, int], reason: str) -> None:
    """Warn about skipped rows once per process: a task loaded again (compare, suite) says it once."""
    for split, n in counts.items():
        message = f"{task}: skipped {n} {split} row(s) with {reason}"
        if n and message not in _SKIP_REPORTED:
            _SKIP_REPORTED.add(message)
            log.warning("%s", message)
