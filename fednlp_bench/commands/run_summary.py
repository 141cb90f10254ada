"""What ``fednlp-bench run`` prints when a run ends: the test metric, the budget spent, the compute used."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def summarize_record(record: Any, runs_dir: Path) -> str:
    metric = record.primary_metric
    others = ", ".join(f"{k}={v:.4f}" for k, v in sorted(record.final_metrics.items()) if k != metric)
    extra = ""
    best = (record.test or {}).get("best_round")
    if best:
        extra += f"\n  best validation round {best['round']}: test {metric}={best['test'][metric]:.4f}"
    if record.resumed_after:
        extra += ("\n  resumed from its checkpoint after round " +
                  ", ".join(str(r) for r in record.resumed_after) + f" (continued from round {record.resumed_after[-1] + 1})")
    lead = (record.baselines or {}).get("lead")
    if lead:
        extra += f"\n  lead baseline (first {lead['k']} words, k chosen on validation): test {metric}={lead['test'][metric]:.4f}"
    return (
        f"{record.algorithm} on {record.task}: test {metric}={record.final_metrics[metric]:.4f}"
        f"{' (' + others + ')' if others else ''}{extra}\n"
        f"  {len(record.rounds)} rounds in {record.wall_time_s:.1f} s; "
        f"communication {record.bytes_up / 2**20:.1f} MiB up, {record.bytes_down / 2**20:.1f} MiB down\n"
        f"{compute_line(record.hardware)}"
        f"  record: {runs_dir / record.run_id / 'record.json'}"
    )


def compute_line(hardware: Any) -> str:
    """Device, trained share of the model and frozen-bottom cache size (empty for records without them)."""
    if not isinstance(hardware, dict) or "trainable_parameters" not in hardware:
        return ""
    line = (f"  device {hardware.get('device')}; {hardware['trainable_parameters']:,} of "
            f"{hardware['total_parameters']:,} parameters trained")
    if "frozen_cache_bytes" in hardware:
        line += f"; frozen-bottom cache {hardware['frozen_cache_bytes'] / 2**20:.1f} MiB"
    return line + "\n"
