"""``--dry-run`` of the privacy-utility experiment: every config checked, every noise multiplier calibrated.

Nothing trains and nothing is tokenized. Every run config is built (bad
settings, unreachable client-level targets and infeasible adaptive splits
fail here), then the training split is loaded and partitioned once, exactly
as a run does it, and each DP cell's privacy is set up through the engine's
own ``RunFeatures`` per seed (DP-SGD's worst client depends on who the seed
samples), so the printed z and epsilons are the ones the records will hold.
"""

from __future__ import annotations

from typing import Any, Callable

from fednlp_bench.privacy.experiment import Experiment


def preview(exp: Experiment, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One row per DP cell and seed: mechanism, target, calibrated z, epsilon RDP and PLD after the last round."""
    from fednlp_bench.engine.client.data import ClientData
    from fednlp_bench.engine.run.features import RunFeatures
    from fednlp_bench.engine.run.sources import build_partition, build_task

    runs = exp.all_runs()  # every config validated before anything is loaded
    log(f"{len(runs)} configs valid; {exp.run_count()} runs to do, at most {exp.max_run_count()} with edge "
        f"extensions ({len(exp.cells())} cells x {len(exp.grid_points())} grid points with seed {exp.tuning_seed}, "
        f"up to {exp.extensions} extension step(s) per cell, then {len(exp.seeds) - 1} more seed(s) of each cell's "
        f"chosen point)")
    first = runs[0][1]
    train = build_task(first).load()["train"]
    part = build_partition(train, first.partition)
    log(f"partition: {part.num_clients} clients, sizes {int(part.sizes().min())}-{int(part.sizes().max())} rows")
    rows = []
    point = exp.grid_points()[0]  # the grid (lr, ...) does not change the accounting
    for cell in exp.cells():
        if cell.privacy is None:
            continue
        for seed in exp.seeds:
            config = exp.config(cell, point, seed)
            features = RunFeatures(config, ClientData(config, part, train), train)
            section = features.privacy.record_section(config.rounds)  # type: ignore[union-attr]
            rows.append({"cell": cell.name, "seed": seed, "mechanism": cell.mechanism,
                         "target_epsilon": cell.target_epsilon, "noise_multiplier": section["noise_multiplier"],
                         "epsilon_rdp": section["epsilon_rdp"], "epsilon_pld": section["epsilon_pld"]})
    log(f"{'cell':<26} {'seed':>4} {'z':>8} {'eps RDP':>8} {'eps PLD':>8}")
    for r in rows:
        log(f"{r['cell']:<26} {r['seed']:>4} {r['noise_multiplier']:8.4f} {r['epsilon_rdp']:8.3f} {r['epsilon_pld']:8.3f}")
    return rows
