"""The leakage table of the trust experiments: membership inference and canary exposure, without and with DP.

One row per privacy setting (no DP, client-level DP-FedAvg with fixed or
adaptive clipping, example-level DP-SGD) over records that differ only in
``privacy`` and in the lr each setting's own tuning chose. Every figure is a
``Summary`` over the seeds (mean ± std, Student-t interval): test metric;
example-level AUC of the calibrated attack (target loss against the
reference model's, the record's headline) and of Yeom's loss threshold; TPR
at 1% and 0.1% FPR of the calibrated attack; the client-level AUC
(participating against held-out clients); and the canaries' mean exposure
with its chance level. Each record also holds its own bootstrap interval of
each AUC; the table gives the seeds' spread, which is the one that decides
whether two rows differ.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from fednlp_bench.leaderboard.records import LoadedRecord
from fednlp_bench.leaderboard.summary import summarize

#: What rows differ in: the privacy section and the lr each setting's own tuning chose (the audited models are the
#: privacy-utility table's cells, each at its tuned lr).
VARIED = ("privacy", "lr")
LABELS = {None: "no DP", "dp_fixed_clip": "client-level DP-FedAvg (fixed clip)",
          "dp_adaptive_clip": "client-level DP-FedAvg (adaptive clip)", "dp_sgd": "example-level DP-SGD"}
HEADER = ["setting", "ε (unit)", "test {metric}", "example AUC, calibrated", "example AUC, loss threshold",
          "TPR @ 1% FPR", "TPR @ 0.1% FPR", "client-level AUC, calibrated", "client-level AUC, loss",
          "canary exposure (chance)", "runs"]


def _fixed(config: dict[str, Any]) -> dict[str, Any]:
    """What every row shares: the config without privacy, lr and the seed (and the partition's seed)."""
    out = {k: v for k, v in config.items() if k not in (*VARIED, "seed")}
    out["partition"] = {k: v for k, v in (config.get("partition") or {}).items() if k != "seed"}
    return out


def _check_comparable(records: Sequence[LoadedRecord]) -> None:
    if not records:
        raise ValueError("no records to tabulate")
    first = _fixed(records[0].record.config)
    for item in records:
        other = _fixed(item.record.config)
        if other != first:
            diff = sorted(k for k in set(first) | set(other) if first.get(k) != other.get(k))
            raise ValueError(f"{item.path}: differs from {records[0].path} in {diff}, which the audit table keeps "
                             f"fixed; tabulate those runs separately")
        if not item.record.membership_audit:
            raise ValueError(f"{item.path}: has no membership_audit section; the audit table needs one in every run")


def _over_seeds(items: Sequence[LoadedRecord], value: Callable[[Any], Any], digits: int = 3) -> str:
    values = [value(it.record) for it in items]
    return "—" if any(v is None for v in values) else summarize([float(v) for v in values]).text(digits)


def _epsilon(items: Sequence[LoadedRecord]) -> str:
    privacy = items[0].record.privacy
    if not privacy:
        return "∞"
    values = [float(it.record.privacy["epsilon_rdp"]) for it in items]
    unit = "one client" if privacy.get("level") == "client" else "one example"
    return f"{min(values):.2f}" + (f"–{max(values):.2f}" if max(values) - min(values) >= 0.005 else "") + f" ({unit})"


def _lr(items: Sequence[LoadedRecord]) -> str:
    values = sorted({float(it.record.config["lr"]) for it in items})
    if len(values) > 1:
        raise ValueError(f"{items[0].path}: the seeds of one setting use different lr {values}; one lr per setting")
    return f"{values[0]:g}"


def _exposure(items: Sequence[LoadedRecord]) -> str:
    if any(not it.record.canary for it in items):
        return "—"
    chance = items[0].record.canary["chance_exposure"]
    return f"{_over_seeds(items, lambda r: r.canary['exposure_mean'], 2)} ({chance:.2f})"


def audit_table(records: Sequence[LoadedRecord]) -> str:
    _check_comparable(records)
    metric = records[0].record.primary_metric
    groups: dict[Any, list[LoadedRecord]] = {}
    for item in records:
        groups.setdefault((item.record.config.get("privacy") or {}).get("mechanism"), []).append(item)
    order = list(LABELS)
    lines = ["| " + " | ".join(h.format(metric=metric) for h in HEADER) + " |", "|---|---|" + "---:|" * 8 + "---|"]
    for mech in sorted(groups, key=lambda m: order.index(m) if m in order else len(order)):
        items = sorted(groups[mech], key=lambda it: it.record.seed)
        example = lambda attack, key: (lambda r: r.membership_audit["example_level"][attack][key])  # noqa: E731
        tpr = lambda fpr: (lambda r: r.membership_audit["tpr_at_fpr"].get(fpr))  # noqa: E731
        lines.append("| " + " | ".join([
            f"{LABELS.get(mech, str(mech))}, lr {_lr(items)}", _epsilon(items),
            _over_seeds(items, lambda r: r.final_metrics[metric], 4),
            _over_seeds(items, example("calibrated", "auc")), _over_seeds(items, example("loss_threshold", "auc")),
            _over_seeds(items, tpr("0.01")), _over_seeds(items, tpr("0.001")),
            _over_seeds(items, lambda r: r.membership_audit.get("client_auc")),
            _over_seeds(items, lambda r: r.membership_audit["client_level"].get("loss_only_auc")), _exposure(items),
            ", ".join(it.record.run_id for it in items)]) + " |")
    audit = records[0].record.membership_audit
    return "\n".join([
        f"Leakage of the final global model: {len(records)} runs, seeds "
        f"{sorted({it.record.seed for it in records})}. Mean ± std over seeds, Student-t 95% interval.", "",
        *lines, "",
        f"Members: rows that were in a training batch of an aggregated update ({audit['members']['sampled']} sampled "
        f"per run); non-members: {audit['nonmembers']['source']} ({audit['nonmembers']['sampled']} sampled). "
        f"Calibrated attack: reference loss − target loss, reference `{audit['reference'].get('kind')}`. "
        "Client level: does client u take part? Its rows' mean calibrated score (and, beside it, their mean loss), "
        "participating against held-out clients (the guarantee client-level DP speaks about). Canary exposure: log2(candidates) − log2(rank) of "
        "each inserted canary among random candidates, mean over the canaries, chance level in brackets. "
        "0.5 AUC and chance exposure: no measurable leakage.",
    ]) + "\n"
