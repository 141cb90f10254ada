"""Progress that is visible wherever the output goes: bars on a terminal, plain timed lines elsewhere.

tqdm switches itself off when stderr is not a terminal (a log file, CI, a
pipe), which left long runs silent for minutes. This module is the one place
that decides how progress is shown:

* on a terminal: tqdm bars (rounds, clients) plus one line per phase;
* elsewhere: one line per phase (loading, tokenizing, caching, training,
  evaluating) and one per round (round k/R, clients, train loss, metric,
  elapsed, ETA), never a bar, never an ANSI code;
* everywhere: a heartbeat thread repeats the current activity when nothing
  was printed for :data:`HEARTBEAT_S` seconds, so no gap exceeds a minute
  even inside one long phase.

Deep code (a task's tokenizer, a frozen-layer cache) reports through the
module-level :func:`phase`, so no reporter object has to be passed down.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

#: Seconds without output after which the heartbeat repeats the current activity (< 60 s by design).
HEARTBEAT_S = 30.0


def format_seconds(seconds: float) -> str:
    """``75.3`` -> ``'1m15s'``: short enough for one log line."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m"
    if m:
        return f"{m}m{s:02d}s"
    return f"{s}s"


class Reporter:
    """Writes progress lines to ``stream``; ``bars`` decides whether tqdm bars are drawn too.

    ``bars=None`` means "bars only when ``stream`` is a terminal" (the default
    of every command); ``False`` forces plain lines (``--no-progress``).
    """

    def __init__(self, bars: bool | None = None, stream: TextIO | None = None, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.stream = stream if stream is not None else sys.stderr
        is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.bars = is_tty if bars is None else (bars and is_tty)
        self.heartbeat_s = heartbeat_s
        self.prefix = ""
        self._activity = ""
        self._since = time.monotonic()
        self._last_line = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lines
    def line(self, message: str) -> None:
        """One plain line (through tqdm.write on a terminal so bars are not torn)."""
        text = f"{time.strftime('%H:%M:%S')} {self.prefix}{message}"
        with self._lock:
            self._last_line = time.monotonic()
            if self.bars:
                from tqdm.auto import tqdm

                tqdm.write(text, file=self.stream)
            else:
                print(text, file=self.stream, flush=True)

    def phase(self, activity: str) -> None:
        """Start a phase: print it and remember it for the heartbeat."""
        with self._lock:
            self._activity = activity
            self._since = time.monotonic()
        self.line(activity)

    def activity(self, activity: str) -> None:
        """Change what the heartbeat reports without printing (e.g. the client being trained)."""
        with self._lock:
            self._activity = activity

    def round_line(
        self, rnd: int, total: int, clients: int, train_loss: float | None, metric: tuple[str, float] | None,
        elapsed_s: float, eta_s: float | None,
    ) -> None:
        """One line per finished round (not on a terminal, where the round bar shows the same)."""
        if self.bars:
            return
        loss = "-" if train_loss is None else f"{train_loss:.4f}"
        shown = f", {metric[0]} {metric[1]:.4f}" if metric is not None else ""
        eta = "" if eta_s is None else f", ETA {format_seconds(eta_s)}"
        self.line(f"round {rnd}/{total}: {clients} client(s), train loss {loss}{shown}, "
                  f"elapsed {format_seconds(elapsed_s)}{eta}")

    # ---------------------------------------------------------------- bars
    def bar(self, iterable: Iterable[T], **kwargs: Any) -> Iterable[T]:
        """A tqdm bar over ``iterable`` on a terminal; the plain iterable elsewhere."""
        if not self.bars:
            return iterable
        from tqdm.auto import tqdm

        return tqdm(iterable, file=self.stream, **kwargs)

    # ---------------------------------------------------------------- heartbeat
    def start_heartbeat(self) -> None:
        if self._thread is not None or self.heartbeat_s <= 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="fednlp-progress-heartbeat", daemon=True)
        self._thread.start()

    def stop_heartbeat(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._thread = None

    def _beat(self) -> None:
        while not self._stop.wait(min(5.0, self.heartbeat_s / 2)):
            with self._lock:
                quiet = time.monotonic() - self._last_line
                activity, since = self._activity, self._since
            if quiet >= self.heartbeat_s and activity:
                self.line(f"... still {activity} ({format_seconds(time.monotonic() - since)} in this phase)")


_active: Reporter | None = None


def current() -> Reporter | None:
    """The reporter of the command or run in progress, if any."""
    return _active


def phase(activity: str) -> None:
    """Report a phase on the active reporter; silent when none is active (library use without a run)."""
    if _active is not None:
        _active.phase(activity)


def activity(text: str) -> None:
    """Update the heartbeat's activity on the active reporter without printing."""
    if _active is not None:
        _active.activity(text)


@contextmanager
def reporting(bars: bool | None = None, prefix: str | None = None, stream: TextIO | None = None,
              heartbeat_s: float = HEARTBEAT_S) -> Iterator[Reporter]:
    """Activate a reporter (with heartbeat) for a command or run; nested calls reuse the outer one.

    ``compare`` activates one for all its runs, each run then only changes the prefix.
    """
    global _active
    if _active is not None:
        old_prefix = _active.prefix
        if prefix is not None:
            _active.prefix = prefix
        try:
            yield _active
        finally:
            _active.prefix = old_prefix
        return
    reporter = Reporter(bars=bars, stream=stream, heartbeat_s=heartbeat_s)
    reporter.prefix = prefix or ""
    _active = reporter
    reporter.start_heartbeat()
    try:
        yield reporter
    finally:
        reporter.stop_heartbeat()
        _active = None
