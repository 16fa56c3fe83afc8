"""A progress bar for batch jobs on stderr: redrawn in place on a terminal, a line every
``every`` seconds otherwise (CI logs, files)."""
from __future__ import annotations

import sys
import time


class Progress:
    """``Progress(total, label)``; ``update(n)`` after ``n`` more items; ``close()`` at the end."""

    def __init__(self, total: int, label: str = "rows", *, stream=None, enabled: bool = True, every: float = 10.0):
        self.total, self.label, self.enabled = max(int(total), 0), label, enabled
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every = 0.2 if self.tty else every
        self.done, self.start = 0, time.perf_counter()
        self._shown, self._drawn = self.start, -1

    def update(self, n: int) -> None:
        self.done += int(n)
        now = time.perf_counter()
        if self.enabled and now - self._shown >= self.every:
            self._shown = now
            self._draw(now)

    def _draw(self, now: float, end: str = "") -> None:
        self._drawn = self.done
        elapsed = max(now - self.start, 1e-9)
        fraction = self.done / self.total if self.total else 1.0
        bar = "#" * int(30 * min(fraction, 1.0))
        line = (f"[{bar:<30}] {fraction:6.1%} {self.done:,}/{self.total:,} {self.label} "
                f"{self.done / elapsed:,.0f}/s {elapsed:.0f}s")
        self.stream.write(("\r" + line + end) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and (self.tty or self._drawn != self.done):
            self._draw(time.perf_counter(), end="\n")
