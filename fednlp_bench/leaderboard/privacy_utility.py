"""The privacy-utility table of the experiment in ``configs/trust/privacy_utility_20news.yaml``, from its records.

The runs folder holds the records and ``selection.json``, which the
experiment writes after tuning: each cell's axes, edge extensions, the
validation score of every tuning run and the ids of the final runs. The
table reads nothing else: a cell's test figure is the ``Summary`` of its
final runs (one per seed), its gap to the no-DP cell is the paired
difference over the seeds both share (same seed: same partition and initial
model; the same client sequence only for DP-SGD, as client-level DP samples
from its secret seed), with Welch's interval beside it, and its convergence verdict is the cpu tier's
criterion over the final runs' validation curves. A cell whose final runs
are not all recorded says how many are, and gets no figure.

    fednlp-bench leaderboard --trust privacy-utility --runs leaderboards/trust/privacy_utility \
        --out leaderboards/trust/privacy_utility_20news.md
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from fednlp_bench.leaderboard.convergence import Criterion, records_status
from fednlp_bench.leaderboard.records import LoadedRecord, collect_records
from fednlp_bench.leaderboard.summary import Summary, difference, difference_text, summarize

SELECTION_FILE = "selection.json"
NO_DP = "nodp"
MECHANISMS = {  # mechanism -> (row label, what one unit of privacy is)
    "dp_fixed_clip": ("DP-FedAvg, fixed clip", "client"),
    "dp_adaptive_clip": ("DP-FedAvg, adaptive clip", "client"),
    "dp_sgd": ("DP-SGD on the clients", "example"),
}


def load_selection(runs_dir: Path) -> dict[str, Any]:
    path = runs_dir / SELECTION_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: the experiment writes it when its tuning is done "
                                f"(python scripts/privacy_utility.py configs/trust/privacy_utility_20news.yaml)")
    selection = json.loads(path.read_text())
    if NO_DP not in selection:
        raise ValueError(f"{path}: has no {NO_DP!r} cell, the reference every DP cell is compared with")
    order = list(MECHANISMS)

    def rank(item: tuple[str, Any]) -> tuple[int, float]:  # no DP, then each mechanism from the weakest privacy
        cell = item[1]
        if cell["mechanism"] is None:
            return (-1, 0.0)
        mech = cell["mechanism"]
        return (order.index(mech) if mech in order else len(order), -float(cell["target_epsilon"]))

    return dict(sorted(selection.items(), key=rank))


def _finals(cell: Mapping[str, Any], by_id: Mapping[str, LoadedRecord]) -> list[LoadedRecord]:
    return [by_id[rid] for rid in cell["final_runs"] if rid in by_id]


def _test(records: Sequence[LoadedRecord]) -> Summary:
    metric = records[0].record.primary_metric
    return summarize([float(r.record.final_metrics[metric]) for r in records], [r.record.seed for r in records])


def _eps(records: Sequence[LoadedRecord], key: str) -> str:
    values = [float(r.record.privacy[key]) for r in records]
    low, high = min(values), max(values)
    return f"{low:.2f}" if high - low < 0.005 else f"{low:.2f}–{high:.2f}"


def _z(records: Sequence[LoadedRecord]) -> str:
    values = sorted({round(float(r.record.privacy["noise_multiplier"]), 4) for r in records})
    return " / ".join(f"{v:g}" for v in values)


def _chosen(cell: Mapping[str, Any]) -> str:
    chosen = ", ".join(f"{k}={v:g}" for k, v in cell["chosen"].items())
    added = ", ".join(f"{e['axis']} {e['side']} {e['value']:g}" for e in cell.get("extensions", []))
    edge = f"; still on the {', '.join(cell['on_edge'])} edge at the cap" if cell.get("on_edge") else ""
    return chosen + (f" (extended: {added}{edge})" if added or edge else "")


def _cell_row(name: str, cell: Mapping[str, Any], finals: list[LoadedRecord], reference: Summary | None) -> str:
    want = len(cell["final_runs"])
    if len(finals) < want:
        return f"| {name} | {_chosen(cell)} | {len(finals)}/{want} final runs recorded | | | | | | |"
    test = _test(finals)
    criterion = Criterion.from_dict(cell["convergence"], f"{SELECTION_FILE}: {name}.convergence")
    status = records_status([r.record for r in finals], criterion)
    dp = finals[0].record.privacy
    gap = "—" if reference is None or not dp else difference_text(difference(test, reference))
    z, rdp, pld = (_z(finals), _eps(finals, "epsilon_rdp"), _eps(finals, "epsilon_pld")) if dp else ("—", "∞", "∞")
    runs = ", ".join(r.record.run_id for r in finals)
    return f"| {name} | {_chosen(cell)} | {z} | {rdp} | {pld} | {test.text()} | {gap} | {status.text()} | {runs} |"


def _grid_table(selection: Mapping[str, Any]) -> list[str]:
    keys = sorted({k for cell in selection.values() for k in cell["chosen"]})
    if keys != ["lr"]:
        raise ValueError(f"{SELECTION_FILE}: the tuning table shows an lr axis, got axes {keys}")
    lrs = sorted({lr for cell in selection.values() for lr in cell["axes"]["lr"]})
    lines = ["| cell | " + " | ".join(f"lr={lr:g}" for lr in lrs) + " |", "|---|" + "---:|" * len(lrs)]
    for name, cell in selection.items():
        by_lr = {}
        for rid, value in cell["validation"].items():
            lr = cell["points"][rid]["lr"]
            mark = "**" if lr == cell["chosen"]["lr"] else ""
            step = cell.get("step_of", {}).get(rid, 0)
            by_lr[lr] = f"{mark}{value:.4f}{mark}" + (f" (ext {step})" if step else "")
        lines.append(f"| {name} | " + " | ".join(by_lr.get(lr, "—") for lr in lrs) + " |")
    return lines


def _headline(selection: Mapping[str, Any], by_id: Mapping[str, LoadedRecord]) -> list[str]:
    epsilons = sorted({c["target_epsilon"] for c in selection.values() if c["target_epsilon"]}, reverse=True)
    nodp = _finals(selection[NO_DP], by_id)
    ref = _test(nodp).text() if len(nodp) == len(selection[NO_DP]["final_runs"]) else "pending"
    lines = ["| mechanism | one unit of privacy | ε = ∞ (no DP) | " + " | ".join(f"ε = {e:g}" for e in epsilons) + " |",
             "|---|---|---:|" + "---:|" * len(epsilons)]
    for mech, (label, unit) in MECHANISMS.items():
        cells = {c["target_epsilon"]: c for c in selection.values() if c["mechanism"] == mech}
        if not cells:
            continue
        row = []
        for eps in epsilons:
            finals = _finals(cells[eps], by_id) if eps in cells else []
            full = eps in cells and len(finals) == len(cells[eps]["final_runs"])
            row.append(_test(finals).text() if full else "pending")
        lines.append(f"| {label} | one {unit} | {ref} | " + " | ".join(row) + " |")
    return lines


def privacy_utility_table(runs_dir: str | Path) -> str:
    """The markdown body: test metric per mechanism x epsilon, then every cell in full, then the tuning runs."""
    runs_dir = Path(runs_dir)
    selection = load_selection(runs_dir)
    by_id = {item.record.run_id: item for item in collect_records(runs_dir)}
    nodp = _finals(selection[NO_DP], by_id)
    reference = _test(nodp) if nodp and len(nodp) == len(selection[NO_DP]["final_runs"]) else None
    first = (nodp or list(by_id.values()))[0].record
    metric = first.primary_metric
    cells = [_cell_row(name, cell, _finals(cell, by_id), reference) for name, cell in selection.items()]
    return "\n".join([
        f"Test {metric} (mean ± std over seeds, Student-t 95% interval). {budget_text(first)}", "",
        *_headline(selection, by_id), "",
        "## Every cell", "",
        f"ε by dp-accounting's RDP and PLD accountants (δ = {first.config.get('privacy', {}).get('delta', '1e-05')} "
        "for every DP cell): DP-FedAvg's covers one client, DP-SGD's one example of the worst-off client. "
        "Gap: the cell minus no DP, paired over the seeds, Welch's interval beside it. A seed fixes the partition "
        "and the initial model; for DP-SGD also the client sequence, while client-level DP draws its clients "
        "from the run's secret seed (amplification by sampling needs who took part hidden), so there the pairs "
        "share less and the paired interval is close to Welch's. Convergence: the slope of the seed-mean validation curve over the last quarter of the rounds.", "",
        f"| cell | chosen (seed {selection[NO_DP]['tuning_seed']}, validation) | z | ε RDP | ε PLD | test {metric} "
        "| gap to no DP | convergence | runs |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
        *cells, "",
        "## Tuning", "",
        f"Validation {metric} of every tuning run (seed {selection[NO_DP]['tuning_seed']}), averaged over the last quarter of its rounds; bold: "
        "the choice; (ext k): added by the k-th edge extension. Test selected nothing.", "",
        *_grid_table(selection),
    ]) + "\n"


def budget_text(record: Any) -> str:
    """The fixed budget of every cell, from one record's config (the experiment varies only lr and privacy)."""
    cfg, part = record.config, record.config.get("partition", {})
    trained = cfg.get("trainable_params") or {}
    return (f"Budget: `{cfg.get('task')}` on `{cfg.get('data')}`, `{cfg.get('model')}` with `{cfg.get('trainable')}` "
            f"{trained} ({record.hardware.get('trainable_parameters', '?'):,} trained weights), {part.get('scheme')} "
            f"partition over {part.get('num_clients')} clients, {cfg.get('sampling')} sampling of "
            f"{cfg.get('clients_per_round')} per round in expectation, {cfg.get('rounds')} rounds, "
            f"{cfg.get('local_epochs')} local epoch, batch {cfg.get('batch_size')}, {cfg.get('optimizer')}.")
