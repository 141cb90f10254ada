"""The pilot curves that chose a tier's rounds: one PNG per task and a Markdown table, from pilot records only.

Protocol v2 sets each task's round budget from pilot runs of FedAvg and the
centralized baseline at the tier's budget shape (docs/protocol.md, "Pilot
curves"). This script redraws that evidence from the committed records, so
anyone can check the choice:

    python scripts/pilot_curves.py leaderboards/cpu/pilots            # PNGs beside the records + table on stdout
    python scripts/pilot_curves.py leaderboards/cpu/pilots --window 0.25 --tolerance 0.002

The table gives, per pilot, the validation metric at a quarter, half, three
quarters and all of its rounds, the OLS slope over the convergence window
(single run, so noisier than a cell's seed-mean curve) and the test metric.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fednlp_bench.leaderboard.convergence import Criterion, record_curve, record_rounds, record_status
from fednlp_bench.leaderboard.records import collect_records
from fednlp_bench.results.curves import write_learning_curves
from fednlp_bench.results.record import RunRecord


def value_near(record: RunRecord, share: float) -> str:
    """Validation metric at the evaluated round nearest to ``share`` of the budget."""
    curve = record_curve(record)
    if not curve:
        return "—"
    target = share * record_rounds(record)
    r, v = min(curve, key=lambda p: (abs(p[0] - target), p[0]))
    return f"{v:.3f} (r{r})"


def pilot_row(record: RunRecord, criterion: Criterion) -> str:
    partition = record.partition.get("scheme", "?")
    params = record.partition.get("params") or {}
    if params.get("alpha") is not None:
        partition += f" α={params['alpha']}"
    status = record_status(record, criterion).text()
    test = record.final_metrics.get(record.primary_metric)
    cells = [record.run_id, record.algorithm, partition, f"{record.config.get('lr'):g}",
             *(value_near(record, s) for s in (0.25, 0.5, 0.75, 1.0)), status,
             "—" if test is None else f"{test:.4f}", wall_text(record)]
    return "| " + " | ".join(cells) + " |"


def wall_text(record: RunRecord) -> str:
    """Wall time with the machine that took it: GPU pilots' minutes are not the tier's CPU minutes."""
    gpu = (record.hardware or {}).get("gpu")
    minutes = record.wall_time_s / 60
    return f"{minutes:.1f} min ({gpu})" if gpu else f"{minutes:.0f} min"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("pilots", type=Path, help="folder of pilot run records, e.g. leaderboards/cpu/pilots")
    p.add_argument("--window", type=float, default=0.25, help="convergence window share (default 0.25)")
    p.add_argument("--tolerance", type=float, default=0.002, help="slope tolerance per round (default 0.002)")
    args = p.parse_args(argv)
    if not args.pilots.is_dir():
        p.error(f"{args.pilots} is not a folder of pilot records")
    criterion = Criterion.from_dict({"window": args.window, "tolerance": args.tolerance, "min_points": 3})
    by_task: dict[str, list[RunRecord]] = {}
    for item in collect_records(args.pilots):
        by_task.setdefault(item.record.task, []).append(item.record)
    if not by_task:
        p.error(f"no finished pilot record under {args.pilots}")
    print("| pilot | algorithm | partition | lr | val @25% | val @50% | val @75% | val @100% | last-quarter slope "
          "(one run) | test | wall |")
    print("|" + "---|" * 11)
    for task in sorted(by_task):
        records = sorted(by_task[task], key=lambda r: r.run_id)
        for record in records:
            print(pilot_row(record, criterion))
        png = write_learning_curves({r.run_id: [r] for r in records}, args.pilots / f"{task}.png",
                                    title=f"{task}: pilot curves (validation), cpu tier v2 budget shape")
        print(f"wrote {png}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
