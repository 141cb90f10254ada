"""Two comparison tables the trust features publish, built from records only.

* ``privacy``: the same run without DP and at several noise multipliers:
  epsilon, the primary metric and the membership-inference AUC side by side
  (the theoretical and the practical privacy next to the cost in accuracy).
* ``population``: client selection (uniform vs activity-based) crossed with
  the setting (static vs continual), final metric and the metric after each
  continual period.

A table only compares records that agree on everything else (task, data,
model, partition, algorithm, budget, seed set); a mismatch is an error that
names the differing keys, so a row never mixes budgets. Every number over
seeds is a ``summary.Summary`` (mean ± std, t interval, n), the same type
and format as the tier tables.

    fednlp-bench leaderboard --trust audit --runs RUNS_DIR --out OUT.md        # audit_table.py
    fednlp-bench leaderboard --trust privacy --runs RUNS_DIR --out OUT.md
    fednlp-bench leaderboard --trust population --runs RUNS_DIR --out OUT.md
    fednlp-bench leaderboard --trust privacy-utility --runs RUNS_DIR --out OUT.md   # privacy_utility.py

(``python -m fednlp_bench.leaderboard.trust_tables KIND RUNS_DIR OUT.md`` is the same.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from fednlp_bench.atomic import atomic_write_text
from fednlp_bench.config import FIELDS_ADDED_LATER
from fednlp_bench.leaderboard.audit_table import audit_table
from fednlp_bench.leaderboard.client_tail import cell_clients
from fednlp_bench.leaderboard.records import LoadedRecord, collect_records
from fednlp_bench.leaderboard.summary import Summary, difference, difference_text, summarize

#: Config keys each table varies; everything else must be equal across its records.
VARIED = {
    "privacy": ("privacy", "sampling", "mia_examples"),
    "population": ("sampling", "sampling_params", "aggregation_weights", "continual", "rounds", "eval_every"),
}


def _fixed_part(config: dict[str, Any], ignore: set[str]) -> dict[str, Any]:
    """What a table keeps fixed: fields a record predates count as their default, and a partition seeded by the
    run seed (the tier's pairing: same seed, same partition) is part of the seed, not of the setting."""
    out = {k: v for k, v in config.items()
           if k not in ignore and not (k in FIELDS_ADDED_LATER and v == FIELDS_ADDED_LATER[k])}
    partition = out.get("partition")
    if isinstance(partition, dict) and partition.get("seed") == config.get("seed"):
        out["partition"] = {k: v for k, v in partition.items() if k != "seed"}
    return out


def _check_comparable(records: Sequence[LoadedRecord], kind: str) -> dict[str, Any]:
    if not records:
        raise ValueError("no records to tabulate")
    ignore = set(VARIED[kind]) | {"seed"}
    first = _fixed_part(records[0].record.config, ignore)
    for item in records[1:]:
        other = _fixed_part(item.record.config, ignore)
        if other != first:
            diff = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
            raise ValueError(
                f"{item.path}: differs from {records[0].path} in {diff}, which the {kind} table keeps fixed; "
                f"tabulate those runs separately"
            )
    return first


def _group(records: Sequence[LoadedRecord], key: Callable[[LoadedRecord], Any]) -> dict[Any, list[LoadedRecord]]:
    groups: dict[Any, list[LoadedRecord]] = {}
    for item in records:
        groups.setdefault(key(item), []).append(item)
    return groups


def _mean(values: list[float | None]) -> float | None:
    """The mean when every record has the value (a deterministic figure such as ε), else None."""
    clean = [v for v in values if v is not None]
    return summarize(clean).mean if clean and len(clean) == len(values) else None


def _summary(values: list[float | None], digits: int = 4) -> str:
    """``mean ± std 95% CI [..], n`` over seeds when every record has the value, else —."""
    clean = [float(v) for v in values if v is not None]
    return summarize(clean).text(digits) if clean and len(clean) == len(values) else "—"


def _worst_clients(records: Sequence[Any]) -> str:
    """The tier's per-client figure: worst 10% of the qualifying clients, bootstrap interval, how many qualified."""
    clients = cell_clients(records)
    if clients is None:
        return "—"
    interval = clients.interval
    shown = f" [{interval[0]:.4f}, {interval[1]:.4f}]" if interval is not None else ""
    return f"{clients.worst.mean:.4f}{shown} ({clients.qualified_text()})"


def _fmt(value: float | None, digits: int = 4) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _budget_line(fixed: dict[str, Any], records: Sequence[LoadedRecord]) -> str:
    part = fixed.get("partition", {})
    seeds = sorted({item.record.seed for item in records})
    return (
        f"task `{fixed.get('task')}`, data `{fixed.get('data')}`, model `{fixed.get('model')}`, "
        f"{fixed.get('max_train_examples')} train / {fixed.get('max_eval_examples')} eval examples, "
        f"max_length {fixed.get('max_length')}, partition {part.get('scheme')} {part.get('params')} over "
        f"{part.get('num_clients')} clients{'' if 'seed' in part else ' (partition seed = run seed)'}, "
        f"{fixed.get('clients_per_round')} clients/round, "
        f"algorithm {fixed.get('algorithm')} {fixed.get('algorithm_params') or ''}, local_epochs "
        f"{fixed.get('local_epochs')}, local_steps {fixed.get('local_steps')}, batch {fixed.get('batch_size')}, "
        f"lr {fixed.get('lr')}, seeds {seeds}"
    )


def privacy_table(records: Sequence[LoadedRecord]) -> str:
    fixed = _check_comparable(records, "privacy")
    metric = records[0].record.primary_metric

    def key(item: LoadedRecord) -> tuple[float, str]:
        p = item.record.config.get("privacy")
        if not p:
            return (0.0, "none")
        # A target_epsilon config leaves z to calibration: the record holds the multiplier the run used.
        z = (item.record.privacy or {}).get("noise_multiplier", p.get("noise_multiplier"))
        return (float(z), str(p["mechanism"]))

    lines = [
        "| DP | noise multiplier z | clip norm C | δ | ε | " + metric + " | MIA AUC | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (z, mech), items in sorted(_group(records, key).items()):
        p = items[0].record.config.get("privacy") or {}
        eps = _mean([(it.record.privacy or {}).get("epsilon") for it in items])
        acc = _summary([float(it.record.final_metrics[metric]) for it in items])
        auc = _summary([(it.record.membership_audit or {}).get("auc") for it in items], 3)
        lines.append(
            f"| {mech if p else 'off'} | {z:g} | {p.get('clip_norm', '—')} | {p.get('delta', '—')} | "
            f"{'∞ (no DP)' if not p else _fmt(eps, 2)} | {acc} | {auc} | "
            f"{', '.join(it.record.run_id for it in items)} |"
        )
    runs = sorted({it.record.config.get("rounds") for it in records})
    return "\n".join([
        f"Client-level DP vs no DP ({_budget_line(fixed, records)}, rounds {runs}).", "",
        *lines, "",
        "ε: dp-accounting RDP accountant, Poisson-sampled Gaussian per round (q = clients_per_round / clients). "
        "MIA AUC: Yeom et al. loss-threshold attack on the final global model, members = training rows of "
        "participating clients, non-members = held-out rows: the clients' own local test rows with client_eval, "
        "else the evaluation split (for 20News a by-date split, so part of the AUC can be that shift); "
        "0.5 = no measurable leakage.",
    ]) + "\n"


#: Short names of sampling parameters in a population row's label.
_PARAM_NAMES = {"power": "p", "gamma": "γ"}
REFERENCE_ROW = ("static", "uniform")


def _population_key(item: LoadedRecord) -> tuple[str, str]:
    cfg = item.record.config
    params = cfg.get("sampling_params") or {}
    shown = ", ".join(f"{_PARAM_NAMES.get(k, k)}={v:g}" for k, v in sorted(params.items()))
    sampling = cfg["sampling"] + (f" ({shown})" if shown else "")
    if cfg.get("aggregation_weights"):
        sampling += f" · {cfg['aggregation_weights']} weights"
    cont = cfg.get("continual")
    setting = "static" if not cont else (
        f"continual T={cont['periods']}, W={cont['retention']}, R={cont['rounds_per_period']}")
    return (setting, sampling)


def _seed_summary(items: Sequence[LoadedRecord], metric: str) -> Summary:
    return summarize([float(it.record.final_metrics[metric]) for it in items], [int(it.record.seed) for it in items])


def population_table(records: Sequence[LoadedRecord]) -> str:
    fixed = _check_comparable(records, "population")
    metric = records[0].record.primary_metric
    groups = _group(records, _population_key)
    reference = groups.get(REFERENCE_ROW)
    base = None if reference is None else _seed_summary(reference, metric)
    lines = [f"| setting | sampling | final {metric} | vs static uniform (paired over seeds) | worst-10% clients | "
             f"{metric} after each period | rounds | runs |", "|---|---|---:|---|---:|---|---:|---|"]
    for key, items in sorted(groups.items()):
        setting, sampling = key
        final = _seed_summary(items, metric)
        versus = "—" if base is None or key == REFERENCE_ROW else difference_text(difference(final, base))
        periods = "—"
        if items[0].record.continual:
            n = len(items[0].record.continual["rows"])
            per = [_mean([float(it.record.continual["rows"][i]["metrics"][metric]) for it in items]) for i in range(n)]
            periods = " → ".join(_fmt(v) for v in per)
        worst = _worst_clients([it.record for it in items])
        lines.append(f"| {setting} | {sampling} | {final.text()} | {versus} | {worst} | {periods} | "
                     f"{items[0].record.config['rounds']} | {', '.join(it.record.run_id for it in items)} |")
    return "\n".join([
        f"Client populations ({_budget_line(fixed, records)}).", "", *lines, "",
        "Continual: each client's rows arrive over T periods (in the order of the data column the record names, "
        "else a seeded order), only the last W periods are kept, R rounds run per period; the metric is measured "
        "on the same test split after every period. vs static uniform: the per-seed difference to the static "
        "uniform row (same seed: same partition), mean with its paired t interval, Welch's beside it. Worst-10% "
        "clients: as in the tier tables, the mean over seeds of the worst tenth of the clients whose local set "
        "meets client_eval's minimum, with a bootstrap 95% interval (clients resampled within each seed) and how "
        "many qualified (— without client_eval).",
    ]) + "\n"


TABLES = {"privacy": privacy_table, "population": population_table, "audit": audit_table}
KINDS = ("audit", "population", "privacy", "privacy-utility")
TITLES = {"privacy": "Client-level DP", "population": "Client populations",
          "audit": "Leakage: membership inference and canary exposure, without and with DP",
          "privacy-utility": "Privacy-utility: client-level and example-level DP"}


def write_trust_table(kind: str, runs_dir: Path, out: Path, title: str | None = None) -> Path:
    """Build one trust table from the records (and, for privacy-utility, selection.json) and write it whole."""
    if kind not in KINDS:
        raise ValueError(f"unknown trust table {kind!r}; choose one of {', '.join(KINDS)}")
    if out.suffix != ".md":
        raise ValueError(f"--out {str(out)!r}: a trust table is one Markdown file, e.g. leaderboards/trust/{kind}.md")
    if kind == "privacy-utility":  # reads the experiment's selection.json beside its records
        from fednlp_bench.leaderboard.privacy_utility import privacy_utility_table

        body = privacy_utility_table(runs_dir)
    else:
        body = TABLES[kind](collect_records(runs_dir))
    command = f"fednlp-bench leaderboard --trust {kind} --runs {runs_dir} --out {out}"
    atomic_write_text(out, f"# {title or TITLES[kind]}\n\nGenerated from records by `{command}`; do not edit by "
                           f"hand.\n\n{body}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fednlp_bench.leaderboard.trust_tables", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("runs_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--title", default=None)
    args = parser.parse_args(argv)
    print(f"wrote {write_trust_table(args.kind, args.runs_dir, args.out, args.title)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
