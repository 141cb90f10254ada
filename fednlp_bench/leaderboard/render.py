"""Write the leaderboard: per-task Markdown + CSV, curves, and the combined README.

Output is a pure function of the records (no timestamps, sorted everywhere),
so regenerating from unchanged records gives byte-identical files and a diff
of ``leaderboards/`` shows only real changes. Every cell's footnote links the
record files behind it, relative to the output folder.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.leaderboard.collect import LoadedRecord, collect_records
from fednlp_bench.leaderboard.plots import plot_filename, write_plot
from fednlp_bench.leaderboard.tables import (
    Cell,
    ColumnKey,
    Table,
    _fmt_param,
    algorithm_label,
    build_tables,
    format_cell,
    format_gap,
)

PLOTS_DIR = "plots"
README = "README.md"
VERIFICATION_FILE = "verification.json"
CSV_FIELDS = [
    "task", "data", "model", "group_id", "metric", "partition", "partition_scheme", "partition_params",
    "algorithm", "algorithm_label", "algorithm_params", "n", "seeds", "mean", "std", "gap_to_centralized",
    "best_fedopt", "centralized_shared", "mean_wall_time_s", "record_ids", "rounds", "num_clients",
    "clients_per_round", "local_epochs", "local_steps", "max_train_examples", "max_eval_examples",
    "max_length", "budget", "epsilon", "worst_10pct", "mia_auc",
]


@dataclass
class LeaderboardOutput:
    """What :func:`write_leaderboard` produced (for the CLI summary and tests)."""

    tables: list[Table]
    records: list[LoadedRecord]
    files: list[Path] = field(default_factory=list)


def _link(path: Path, out_dir: Path) -> str:
    """A link from a file in ``out_dir`` to ``path``: relative, so it also works where ``out_dir`` is published."""
    return Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()


def _cwd_label(path: Path) -> str:
    """A folder as the README's commands name it: relative to the working directory when inside it, else absolute."""
    resolved = path.resolve()
    relative = os.path.relpath(resolved)
    return relative if not relative.startswith("..") else str(resolved)


# ---------------------------------------------------------------- budget text
def budget_text(table: Table) -> str:
    return budget_sentence(table.budget, table.model, table.data)


def budget_sentence(budget: dict[str, Any], model: str, data: str | None) -> str:
    """A budget (``tables.budget_of``) in words; shared by the record tables and the tier tables."""
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
    parts.append(f"max examples: {train if train is not None else 'all'} train / "
                 f"{evals if evals is not None else 'all'} eval")
    if "max_length" in b:
        parts.append(f"max_length {b.pop('max_length')}")
    if "batch_size" in b:
        parts.append(f"batch {b.pop('batch_size')}")
    if "lr" in b:
        opt = b.pop("optimizer", None)
        parts.append(f"lr {_fmt_param(b.pop('lr'))}" + (f" ({opt})" if opt else ""))
    text = ", ".join(parts)
    if b:
        text += "; other settings: " + ", ".join(f"{k}={_fmt_param(v)}" for k, v in sorted(b.items()))
    return text


def _provenance(table: Table) -> list[str]:
    lines = []
    commits = sorted({item.record.git_commit or "unknown" for item in table.records})
    lines.append("code: git " + ", ".join(c[:12] for c in commits))
    versions: set[str] = set()
    for item in table.records:
        for name in ("fednlp-bench", "fednlp_bench", "torch", "transformers"):
            if name in item.record.versions:
                versions.add(f"{name} {item.record.versions[name]}")
    if versions:
        lines.append("versions: " + ", ".join(sorted(versions)))
    hardware = sorted({_hardware_text(item.record.hardware) for item in table.records} - {""})
    if hardware:
        lines.append("hardware: " + " | ".join(hardware))
    splits = sorted({_reported_split(item.record) for item in table.records} - {""})
    if splits:
        lines.append("evaluated on split(s): " + ", ".join(splits))
    fingerprints = sorted({str(item.record.partition.get("fingerprint"))[:12]
                           for item in table.records if item.record.partition.get("fingerprint")})
    if fingerprints:
        lines.append("training-data fingerprint(s): " + ", ".join(fingerprints))
    return lines


def _reported_split(record: Any) -> str:
    """The split ``final_metrics`` were measured on: ``record.test`` (validation per round, test at the end)."""
    if record.test is not None:
        return f"{record.test['split']} (final model; rounds on validation)"
    return str(record.hardware.get("eval_split", "test (records before validation splits: rounds also on test)"))


_HARDWARE_KEYS = ("cpu", "cpu_cores", "torch_threads", "ram_gb", "gpu", "device")


def _hardware_text(hardware: dict[str, Any]) -> str:
    """The machine in a few words: the engine's usual keys if present, else every scalar field."""
    keys = [k for k in _HARDWARE_KEYS if hardware.get(k) is not None] or sorted(
        k for k, v in hardware.items() if k != "eval_split")
    return ", ".join(f"{k}={hardware[k]}" for k in keys
                     if isinstance(hardware[k], (str, int, float)) and not isinstance(hardware[k], bool))


# ---------------------------------------------------------------- markdown
def table_markdown(table: Table, out_dir: Path, heading: str, plots: dict[str, str]) -> str:
    fl_columns = [c for c in table.columns if not c.is_centralized]
    header = ["Partition"] + [table.column_label(c) for c in table.columns]
    header += [f"Gap {table.column_label(c)}" for c in fl_columns]
    trust = trust_columns(table)
    header += [f"{title} {table.column_label(c)}" for title, _, c in trust]
    lines = [f"## {heading}", ""]
    lines.append(
        f"Metric: `{table.metric}` of the final model on the test split (higher is better). Cell: mean ± sample std over seeds "
        "(n = number of seeds; `± n/a` when n=1). Gap: FL mean − centralized mean of the same row."
    )
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    any_shared = any_best = False
    for row in table.rows:
        best = table.best_fedopt(row)
        cells = [row.label]
        for column in table.columns:
            cell = table.cell(row, column)
            text = format_cell(cell)
            if cell is not None and cell.shared:
                text += " †"
                any_shared = True
            if column in best:
                text = f"**{text}**"
                any_best = True
            cells.append(text)
        cells += [format_gap(table.gap(row, c)) for c in fl_columns]
        cells += [_trust_value(table.cell(row, c), attr) for _, attr, c in trust]
        lines.append("| " + " | ".join(cells) + " |")

    notes = [f"Budget (stated as run): {budget_text(table)}."]
    params = [f"{table.column_label(c)}: " + ", ".join(f"{k}={_fmt_param(v)}" for k, v in sorted(c.params.items()))
              for c in table.columns if c.params]
    if params:
        notes.append("Algorithm parameters: " + "; ".join(params) + ".")
    if trust:
        notes.append("ε: client-level DP epsilon after the last round (dp-accounting RDP, the δ in the budget); "
                     "worst 10%: mean per-client metric of the worst-served 10% of clients (client_eval); "
                     "MIA AUC: loss-threshold membership inference on the final model (0.5 = no leakage).")
    if any_best:
        notes.append("**Bold**: best mean of the FedOpt family (FedAdam, FedYogi, FedAdagrad, FedAvgM, plugins "
                     "registered as members) in its row.")
    if any_shared:
        sources = sorted({table.cells[(r, c)].records[0].record.config.get("partition", {}).get("scheme", "?")
                          for r in table.rows for c in table.columns
                          if c.is_centralized and (r, c) in table.cells and table.cells[(r, c)].shared})
        notes.append("† Centralized training pools every client's data, so it does not depend on the partition; "
                     f"this cell reuses the centralized run(s) made with the `{', '.join(sources)}` partition.")
    walls = []
    for column in table.columns:
        cells = [table.cell(r, column) for r in table.rows]
        runs = {item.record.run_id: item.record.wall_time_s for c in cells if c for item in c.records}
        if runs:
            walls.append(f"{table.column_label(column)} {sum(runs.values()) / len(runs):.1f} s")
    notes.append("Mean wall time per run: " + ", ".join(walls) + "; " + "; ".join(_provenance(table)) + ".")
    record_lines = ["Records behind each cell (run id, seed):"]
    for row in table.rows:
        for column in table.columns:
            cell = table.cell(row, column)
            if cell is None:
                continue
            refs = ", ".join(f"[{item.record.run_id}]({_link(item.path, out_dir)}) (seed {item.record.seed})"
                             for item in cell.records)
            record_lines.append(f"   - {row.label} · {table.column_label(column)}: {refs}")
    notes.append("\n".join(record_lines))

    lines += ["", "Notes:", ""]
    lines += [f"{i}. {note}" for i, note in enumerate(notes, start=1)]
    if plots:
        lines += ["", "Curves (mean over seeds per round; band = min..max):", ""]
        lines += [f"![{table.task} · {label}]({link})" for label, link in plots.items()]
    return "\n".join(lines) + "\n"


def task_markdown(task: str, tables: list[Table], out_dir: Path, plots: dict[str, dict[str, str]]) -> str:
    lines = [f"# Leaderboard: {task}", "",
             "Generated from result records by `fednlp-bench leaderboard`; do not edit by hand. "
             f"Machine-readable copy: [{task}.csv]({task}.csv).", ""]
    for table in tables:
        heading = f"{table.task} · data `{table.data if table.data is not None else 'task default'}` · " \
                  f"model `{table.model}`"
        if len(tables) > 1:
            heading += f" · budget `{table.group_id}`"
        lines.append(table_markdown(table, out_dir, heading, plots.get(table.group_id, {})))
    return "\n".join(lines)


#: (header, Cell attribute, digits) of the trust columns a table shows when any of its cells has them.
TRUST_COLUMNS = (("ε", "epsilon", 2), ("Worst 10%", "worst_10pct", 4), ("MIA AUC", "mia_auc", 3))
_DIGITS = {attr: digits for _, attr, digits in TRUST_COLUMNS}


def trust_columns(table: Table) -> list[tuple[str, str, ColumnKey]]:
    """(title, attribute, algorithm column) for every trust figure some cell of that column has."""
    out = []
    for title, attr, _ in TRUST_COLUMNS:
        for column in table.columns:
            if any(getattr(c, attr) is not None for c in (table.cell(r, column) for r in table.rows) if c):
                out.append((title, attr, column))
    return out


def _trust_value(cell: Cell | None, attr: str) -> str:
    value = None if cell is None else getattr(cell, attr)
    return "—" if value is None else f"{value:.{_DIGITS[attr]}f}"


# ---------------------------------------------------------------- csv
def _num(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def task_csv(tables: list[Table]) -> str:
    """Long format: one line per (table, partition, algorithm) cell."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for table in tables:
        b = table.budget
        for row in table.rows:
            best = table.best_fedopt(row)
            for column in table.columns:
                cell = table.cell(row, column)
                if cell is None:
                    continue
                writer.writerow({
                    "task": table.task, "data": "" if table.data is None else table.data, "model": table.model,
                    "group_id": table.group_id, "metric": table.metric, "partition": row.label,
                    "partition_scheme": row.scheme, "partition_params": row.params_json,
                    "algorithm": column.algorithm, "algorithm_label": table.column_label(column),
                    "algorithm_params": column.params_json, "n": cell.n,
                    "seeds": " ".join(str(s) for s in cell.seeds), "mean": _num(cell.mean), "std": _num(cell.std),
                    "gap_to_centralized": _num(table.gap(row, column)), "best_fedopt": column in best,
                    "centralized_shared": cell.shared, "mean_wall_time_s": _num(cell.mean_wall_time_s),
                    "record_ids": " ".join(cell.run_ids), "rounds": b.get("rounds", ""),
                    "num_clients": b.get("partition.num_clients", ""),
                    "clients_per_round": b.get("clients_per_round", ""),
                    "local_epochs": "" if b.get("local_epochs") is None else b["local_epochs"],
                    "local_steps": "" if b.get("local_steps") is None else b["local_steps"],
                    "max_train_examples": "" if b.get("max_train_examples") is None else b["max_train_examples"],
                    "max_eval_examples": "" if b.get("max_eval_examples") is None else b["max_eval_examples"],
                    "max_length": b.get("max_length", ""), "budget": json.dumps(b, sort_keys=True),
                    "epsilon": _num(cell.epsilon), "worst_10pct": _num(cell.worst_10pct), "mia_auc": _num(cell.mia_auc),
                })
    return buf.getvalue()


# ---------------------------------------------------------------- readme
def readme_markdown(by_task: dict[str, list[Table]], n_records: int, runs_label: str, out_label: str,
                    plots: dict[str, dict[str, dict[str, str]]], verification: list[dict[str, Any]],
                    suite_label: str) -> str:
    lines = ["# Leaderboards", "",
             f"Generated by `fednlp-bench leaderboard --runs {runs_label} --out {out_label}` from "
             f"{n_records} result record(s); do not edit these files by hand.", "",
             "Every cell is traced to records: it is the mean ± sample std over seeds of the final primary "
             "metric of the records listed (and linked) in its table's notes. Each record is a JSON file with "
             "the full run config, seed, partition spec and content hash, package versions, git commit, "
             "hardware and per-round metrics. Building the tables never re-runs anything; budgets are small "
             "CPU budgets, stated in each table's notes.", "",
             "| Task | Dataset | Model | Metric | Partitions | Algorithms | Records | Table | CSV |",
             "|---|---|---|---|---|---|---|---|---|"]
    for task, tables in by_task.items():
        for table in tables:
            algos = ", ".join(table.column_label(c) for c in table.columns)
            lines.append(
                f"| {task} | {table.data if table.data is not None else 'task default'} | {table.model} | "
                f"{table.metric} | {', '.join(r.label for r in table.rows)} | {algos} | {len(table.records)} | "
                f"[{task}.md]({task}.md) | [{task}.csv]({task}.csv) |")
    lines += ["", "## Curves (metric vs round)", ""]
    for task, per_group in plots.items():
        for group_plots in per_group.values():
            links = ", ".join(f"[{label}]({link})" for label, link in group_plots.items())
            lines.append(f"- {task}: {links}")
    lines += ["", "## Regenerate", "",
              "From the committed records (no training, seconds):", "", "```bash",
              f"fednlp-bench leaderboard --runs {runs_label} --out {out_label}", "```", "",
              "From scratch (re-runs every experiment of the suite on this machine's CPU; runs whose record "
              "already exists are skipped, so delete the records folder first for a full re-run):", "", "```bash",
              f"fednlp-bench suite {suite_label}", "```", "",
              "Check that one record reproduces (re-runs its config, compares the metrics):", "", "```bash",
              f"fednlp-bench leaderboard --runs {runs_label} --out {out_label} --verify RUN_ID", "```"]
    return "\n".join(lines + verification_lines(verification)) + "\n"


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


def load_verification(out_dir: Path) -> list[dict[str, Any]]:
    path = out_dir / VERIFICATION_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}); delete it and re-run --verify") from err
    return sorted(data.values(), key=lambda e: e["run_id"])


# ---------------------------------------------------------------- orchestration
def write_leaderboard(
    runs_dir: str | Path,
    out_dir: str | Path,
    *,
    skip_invalid: bool = False,
    skip_duplicates: bool = False,
    plots: bool = True,
    suite_label: str = "configs/suite.yaml",
    records: Iterable[LoadedRecord] | None = None,
) -> LeaderboardOutput:
    """Validate every record, then write ``<task>.md``, ``<task>.csv``, ``plots/*.png`` and ``README.md``.

    All records are validated before the first file is written, so a bad
    record leaves the previous leaderboard untouched.
    """
    out = Path(out_dir)
    loaded = list(records) if records is not None else collect_records(
        runs_dir, skip_invalid=skip_invalid, skip_duplicates=skip_duplicates)
    if not loaded:
        raise ValueError(f"no result records (record.json) under {str(runs_dir)!r}; run experiments first "
                         "(fednlp-bench run / fednlp-bench suite) or point --runs at their folder")
    tables = build_tables(loaded)
    by_task: dict[str, list[Table]] = {}
    for table in tables:
        by_task.setdefault(table.task, []).append(table)

    result = LeaderboardOutput(tables, loaded)
    plot_links: dict[str, dict[str, dict[str, str]]] = {}
    written_plots: set[Path] = set()
    for task, task_tables in by_task.items():
        for table in task_tables:
            group_links: dict[str, str] = {}
            for row in table.rows:
                name = plot_filename(table, row, with_group=len(task_tables) > 1)
                path = out / PLOTS_DIR / name
                if plots:
                    written_plots.add(write_plot(table, row, path))
                    result.files.append(path)
                if path.exists():  # plots=False keeps linking curves drawn by an earlier build
                    group_links[row.label] = f"{PLOTS_DIR}/{name}"
            if group_links:
                plot_links.setdefault(task, {})[table.group_id] = group_links
    if plots:
        # plots/ holds generated curves only: drop those of tables that no longer exist.
        for stale in (out / PLOTS_DIR).glob("*.png"):
            if stale not in written_plots:
                stale.unlink()

    for task, task_tables in by_task.items():
        result.files.append(atomic_write_text(out / f"{task}.md", task_markdown(task, task_tables, out,
                                                                          plot_links.get(task, {}))))
        result.files.append(atomic_write_text(out / f"{task}.csv", task_csv(task_tables)))
    runs_label = _cwd_label(Path(runs_dir)) if Path(runs_dir).exists() else str(runs_dir)
    out_label = _cwd_label(out)
    result.files.append(atomic_write_text(out / README, readme_markdown(
        by_task, len(loaded), Path(runs_label).as_posix(), Path(out_label).as_posix(), plot_links,
        load_verification(out), suite_label)))
    return result


__all__ = ["write_leaderboard", "LeaderboardOutput", "algorithm_label", "task_csv",
           "task_markdown", "readme_markdown", "budget_text", "budget_sentence"]
