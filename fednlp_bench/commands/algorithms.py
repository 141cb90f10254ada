"""`fednlp-bench algorithms`: every registered algorithm with its parameters, client side and family."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("algorithms", help="list the FL algorithms (--algorithm values) and their parameters",
                              description=__doc__)
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE:CLASS",
                   help="also load and list a user algorithm (repeatable)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from fednlp_bench.algorithms.registry import ALGORITHMS

    for path in args.plugin:
        ALGORITHMS.lookup(path)
    rows = [("name", "label", "family", "client side", "parameters (defaults)")]
    for name in ALGORITHMS.names():
        cls = ALGORITHMS[name]
        params = ", ".join(f"{k}={v}" for k, v in cls.defaults.items()) or "-"
        client = "centralized baseline" if cls.centralized else (cls.client.__name__ if cls.client else "-")
        rows.append((name, ALGORITHMS.label(name), cls.family or "-", client, params))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4])
    print(f"\n{len(rows) - 1} algorithms; use --algorithm NAME (or package.module:Class) with --NAME-OF-PARAM VALUE")
    return 0
