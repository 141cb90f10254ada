"""`fednlp-bench` console script: one subcommand per module in ``fednlp_bench.commands``.

Each command module exposes ``register(subparsers)`` which adds its parser and
sets ``func``; heavy imports happen inside the command, so ``--help`` is fast.
Flags derived from a registry's declarations (``commands/flags.py``) are added
by :meth:`CommandParser.defer` when that command is parsed or its help shown,
so ``fednlp-bench leaderboard`` never loads the task registry.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any, Callable, Sequence

COMMAND_MODULES = ("partition", "run", "compare", "algorithms", "leaderboard", "suite", "datasets")


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser whose registry-derived flags are added on first use (parse or help)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, build: Callable[[argparse.ArgumentParser], None]) -> None:
        self._deferred.append(build)

    def complete(self) -> "CommandParser":
        while self._deferred:
            self._deferred.pop(0)(self)
        return self

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        return super(CommandParser, self.complete()).parse_known_args(args, namespace)

    def format_help(self) -> str:
        return super(CommandParser, self.complete()).format_help()

    def format_usage(self) -> str:
        return super(CommandParser, self.complete()).format_usage()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fednlp-bench",
        description="Federated learning benchmark for NLP: partition data, run FL vs centralized, publish leaderboards.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
    for name in COMMAND_MODULES:
        importlib.import_module(f"fednlp_bench.commands.{name}").register(sub)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line (what ``main`` runs), including flags read as algorithm parameters."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    _read_algorithm_flags(parser, args, extra)
    return args


def _read_algorithm_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, extra: list[str]) -> None:
    """``run``/``compare`` read flags they do not define as algorithm parameters (``--mu 0.01``)."""
    if not extra:
        return
    if getattr(args, "algorithm_flags", None) is None:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.flag_params = args.algorithm_flags(extra)


def configure_output() -> None:
    """Plain, timestamp-free log lines on stderr for the project's loggers; no third-party loading bars.

    Progress lines come from :mod:`fednlp_bench.progress`; datasets' per-map
    bars would otherwise repeat (and on a non-terminal print raw carriage
    returns) for every tokenization.
    """
    import logging
    import os

    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    logger = logging.getLogger("fednlp_bench")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: Sequence[str] | None = None) -> int:
    configure_output()
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        _read_algorithm_flags(parser, args, extra)
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as err:
        # Bad input: one clear line, no traceback; exit code 2 like argparse.
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"fednlp-bench {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
