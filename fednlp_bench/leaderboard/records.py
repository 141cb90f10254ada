"""Find, validate and de-duplicate the result records a leaderboard is built from.

Records are the only input of a leaderboard, so this is where a bad one is
stopped: every ``record.json`` under the runs folder is loaded through
:meth:`RunRecord.load` (schema version, required fields, finite metrics,
config hash) plus the cross-field checks below, and the file is named in the
error. A duplicate run (same ``config_hash`` and ``seed``) would count one
setting twice in a mean, so it is refused by default with both paths named;
``skip_duplicates=True`` keeps the first copy (oldest ``created``, then path)
and warns instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from fednlp_bench.results.record import RECORD_FILENAME, RecordError, RunRecord


@dataclass(frozen=True)
class LoadedRecord:
    """A validated record and the file it came from (kept so every cell can link to it)."""

    record: RunRecord
    path: Path

    @property
    def key(self) -> tuple[str, int]:
        return (self.record.config_hash, self.record.seed)


class DuplicateRecordError(RecordError):
    """Two records describe the same run (same config hash and seed)."""


def find_record_files(runs_dir: str | Path) -> list[Path]:
    """Every ``record.json`` below ``runs_dir``, in a stable order."""
    root = Path(runs_dir)
    if not root.exists():
        raise FileNotFoundError(f"runs folder {str(root)!r} does not exist; pass --runs <folder with run records>")
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob(RECORD_FILENAME) if p.is_file())


def load_record(path: str | Path) -> RunRecord:
    """Load one record with the schema checks and the cross-field checks a leaderboard needs.

    ``RunRecord.load`` already checks layout, finiteness and the config hash; the
    top-level ``task``/``algorithm``/``seed`` are what a table groups on, so they
    must agree with the (hash-protected) config, or an edited record could land
    in another column while its hash still matches.
    """
    path = Path(path)
    record = RunRecord.load(path)
    source = str(path if path.name == RECORD_FILENAME else path / RECORD_FILENAME)
    config = record.config
    for name in ("task", "algorithm", "seed"):
        if name in config and config[name] != getattr(record, name):
            raise RecordError(
                f"{source}: field {name!r} = {getattr(record, name)!r} disagrees with config[{name!r}] = "
                f"{config[name]!r} (the record was edited)"
            )
    primary = record.primary_metric
    for i, r in enumerate(record.rounds):
        if not isinstance(r.round, int) or isinstance(r.round, bool):
            raise RecordError(f"{source}: rounds[{i}].round = {r.round!r} is not an integer")
    if not isinstance(record.seed, int) or isinstance(record.seed, bool):
        raise RecordError(f"{source}: seed = {record.seed!r} is not an integer")
    if not isinstance(primary, str):
        raise RecordError(f"{source}: primary_metric = {primary!r} is not a metric name")
    return record


def collect_records(
    runs_dir: str | Path,
    *,
    skip_invalid: bool = False,
    skip_duplicates: bool = False,
) -> list[LoadedRecord]:
    """Load every record under ``runs_dir``.

    Invalid records: all of them are reported in one :class:`RecordError` (each
    file named) unless ``skip_invalid``, which warns and leaves them out.
    Duplicates (same config hash and seed): :class:`DuplicateRecordError` naming
    both files unless ``skip_duplicates``, which warns and keeps the first.
    Two records with the same ``run_id`` are always refused: footnotes cite ids.
    """
    loaded = _load_all(runs_dir, skip_invalid)
    loaded.sort(key=lambda item: (item.record.created, str(item.path)))
    return _without_duplicates(loaded, skip_duplicates)


def _load_all(runs_dir: str | Path, skip_invalid: bool) -> list[LoadedRecord]:
    """Every readable record; the unreadable ones all named in one error (or warned about and left out)."""
    loaded: list[LoadedRecord] = []
    problems: list[str] = []
    for path in find_record_files(runs_dir):
        try:
            loaded.append(LoadedRecord(load_record(path), path))
        except RecordError as err:
            problems.append(str(err))
        except (OSError, UnicodeDecodeError, TypeError) as err:
            problems.append(f"{path}: cannot be read as a record ({err})")
    if problems and not skip_invalid:
        listing = "\n  ".join(problems)
        raise RecordError(
            f"{len(problems)} invalid record(s) refused (fix or remove them, or pass --skip-invalid):\n  {listing}"
        )
    for problem in problems:
        warnings.warn(f"skipping invalid record: {problem}", stacklevel=3)
    return loaded


def _without_duplicates(loaded: list[LoadedRecord], skip_duplicates: bool) -> list[LoadedRecord]:
    """The first record of each (config hash, seed); a run id used twice is always refused (footnotes cite ids)."""
    kept: list[LoadedRecord] = []
    by_key: dict[tuple[str, int], LoadedRecord] = {}
    by_id: dict[str, LoadedRecord] = {}
    for item in loaded:
        first = by_key.get(item.key)
        if first is not None:
            a = first.record.final_metrics[first.record.primary_metric]
            b = item.record.final_metrics[item.record.primary_metric]
            agreement = "identical" if a == b else f"differs: {a!r} vs {b!r}"
            message = (
                f"duplicate run (same config_hash {item.key[0][:12]}… and seed {item.key[1]}): "
                f"{first.path} and {item.path}; final {first.record.primary_metric} {agreement}"
            )
            if not skip_duplicates:
                raise DuplicateRecordError(
                    f"{message}. Delete one of them, or pass --skip-duplicates to keep the first ({first.path})"
                )
            warnings.warn(f"{message}; keeping {first.path}", stacklevel=3)
            continue
        other = by_id.get(item.record.run_id)
        if other is not None:
            raise DuplicateRecordError(
                f"run_id {item.record.run_id!r} is used by two different runs: {other.path} and {item.path}; "
                "table footnotes cite run ids, so rename one run folder and its record's run_id"
            )
        by_key[item.key] = item
        by_id[item.record.run_id] = item
        kept.append(item)
    return kept


def find_record(runs_dir: str | Path | None, run_id_or_path: str) -> LoadedRecord:
    """Resolve ``--verify`` input: a record file, a run folder, or a run id under ``runs_dir``."""
    candidate = Path(run_id_or_path)
    if candidate.exists():
        path = candidate / RECORD_FILENAME if candidate.is_dir() else candidate
        return LoadedRecord(load_record(path), path)
    if runs_dir is None:
        raise FileNotFoundError(f"{run_id_or_path!r} is not a record path; pass --runs to look it up as a run id")
    matches = [item for item in collect_records(runs_dir, skip_invalid=True, skip_duplicates=True)
               if item.record.run_id == run_id_or_path]
    if not matches:
        raise FileNotFoundError(
            f"no record with run_id {run_id_or_path!r} under {str(runs_dir)!r}; pass a run id listed in a table "
            "footnote or the path of a record.json"
        )
    return matches[0]
