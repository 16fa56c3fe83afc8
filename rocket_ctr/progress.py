"""Progress of long jobs on stderr: a bar redrawn in place on a terminal; elsewhere (CI, nohup, a
scheduler's log) a line every few seconds with the items done, the rate and the time left::

    epoch 1/3: 12,800/54,000 rows, 4,300 rows/s, 0:00:12 left

The seconds between two lines are ``$ROCKET_CTR_PROGRESS_SECONDS`` when set, else ``EVERY_SECONDS``.
"""
from __future__ import annotations

import datetime
import math
import os
import sys
import time
from typing import Callable

EVERY_SECONDS = 10.0  # between two lines without a terminal
SECONDS_VARIABLE = "ROCKET_CTR_PROGRESS_SECONDS"
REDRAW_SECONDS = 0.2  # between two redraws of a terminal bar
BAR_WIDTH = 30


def line_interval() -> float:
    """Seconds between two progress lines: ``$ROCKET_CTR_PROGRESS_SECONDS`` (a number >= 0) or EVERY_SECONDS."""
    try:
        seconds = float(os.environ.get(SECONDS_VARIABLE, ""))
    except ValueError:
        return EVERY_SECONDS
    return seconds if seconds >= 0 else EVERY_SECONDS  # NaN fails the test too


def duration(seconds: float) -> str:
    """``0:00:12``: hours, minutes, seconds."""
    return str(datetime.timedelta(seconds=round(max(seconds, 0))))


def stage(message: str, *, enabled: bool = True, stream=None) -> None:
    """One line on ``stream`` (default: stderr) for a step of a long job (``export: writing 64 warmup records``)."""
    if enabled:
        stream = stream or sys.stderr
        stream.write(message + "\n")
        stream.flush()


class Progress:
    """The progress of one job: ``update(n)`` after ``n`` more items, ``close()`` at the end.

    On a terminal a bar is redrawn in place and ended with a newline by ``close()``; otherwise a
    line is printed every ``every`` seconds and a last one (items, rate, time taken) by ``close()``.
    As a context manager it closes on success and only ends the bar's line on an error.

    Args:
        total: items expected (None: unknown, the lines then show no total and no time left).
        label: what is counted (``rows``, ``requests``).
        prefix: starts every line (``epoch 1/3: ``).
        stream: where to write (default: stderr).
        enabled: False prints nothing.
        every: seconds between two lines (default: :func:`line_interval`).
        terminal: draw a bar (True) or print lines (False); default: whether ``stream`` is a terminal.
        done: items done before this job started (a resumed epoch); the rate counts only the new ones.
        detail: returns text shown in parentheses after the count (``4,100 rows``).
        clock: the time in seconds (default: ``time.perf_counter``).
    """

    def __init__(self, total: int | None, label: str = "rows", *, prefix: str = "", stream=None,
                 enabled: bool = True, every: float | None = None, terminal: bool | None = None, done: int = 0,
                 detail: Callable[[], str] | None = None, clock: Callable[[], float] = time.perf_counter):
        self.total = None if total is None else max(int(total), 0)
        self.label, self.prefix, self.enabled, self.detail, self.clock = label, prefix, enabled, detail, clock
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if terminal is None else terminal
        self.every = REDRAW_SECONDS if self.tty else (line_interval() if every is None else every)
        self.done = self._first = int(done)
        self.start = self._shown = clock()
        self._steady: tuple[float, int] | None = None  # (time, count) after the first update
        self._width, self._closed = 0, False

    def update(self, n: int) -> None:
        """Counts ``n`` more items; draws when ``every`` seconds passed since the last drawing."""
        self.done += int(n)
        now = self.clock()
        if self._steady is None and n:
            self._steady = (now, self.done)
        if self.enabled and now - self._shown >= self.every:
            self._shown = now
            self._write(self._bar(now) if self.tty else self._line(now))

    def close(self) -> None:
        """The last drawing: the bar ended with a newline, or the final line (items, rate, time taken)."""
        if self._closed:
            return
        self._closed = True
        if self.enabled:
            now = self.clock()
            self._write(self._bar(now) + "\n" if self.tty else self._line(now, final=True))

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
        elif not self._closed:
            self._closed = True
            if self.enabled and self.tty and self._width:
                self._write("\n")  # what follows (the error) starts on a line of its own

    # ----- drawing ------------------------------------------------------------------------------
    def _rate(self, now: float, final: bool = False) -> float:
        """Items per second; while running, since the first update, whose items carry the start-up
        (tracing, loading) and would make the time left too long."""
        if not final and self._steady and now > self._steady[0] and self.done > self._steady[1]:
            return (self.done - self._steady[1]) / (now - self._steady[0])
        return (self.done - self._first) / max(now - self.start, 1e-9)

    def _count(self, with_total: bool = True) -> str:
        total = f"/{self.total:,}" if with_total and self.total is not None else ""
        detail = f" ({self.detail()})" if self.detail else ""
        return f"{self.done:,}{total} {self.label}{detail}"

    def _line(self, now: float, final: bool = False) -> str:
        rate = self._rate(now, final)
        if final:
            return (f"{self.prefix}{self._count(with_total=False)}, {rate:,.0f} {self.label}/s, "
                    f"done in {duration(now - self.start)}\n")
        line = f"{self.prefix}{self._count()}, {rate:,.0f} {self.label}/s"
        if self.total is not None and rate > 0:
            line += f", {duration(math.ceil(max(self.total - self.done, 0) / rate))} left"  # never 0 too early
        return line + "\n"

    def _bar(self, now: float) -> str:
        text = f"{self._count()} {self._rate(now):,.0f}/s {now - self.start:.0f}s"
        if self.total is not None:
            fraction = self.done / self.total if self.total else 1.0
            text = f"[{'#' * int(BAR_WIDTH * min(fraction, 1.0)):<{BAR_WIDTH}}] {fraction:6.1%} {text}"
        text = self.prefix + text
        padded = text.ljust(self._width)  # wipes the rest of a longer earlier drawing
        self._width = len(text)
        return "\r" + padded

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
