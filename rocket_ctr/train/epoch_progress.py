"""What a training epoch shows: the Keras bar on stdout when it is a terminal; otherwise Keras'
line at the epoch's end on stdout and a progress line on stderr every few seconds
(``rocket_ctr.progress``). Both end with the epoch, whatever its real step count."""
from __future__ import annotations

import sys

import keras

from rocket_ctr.model.loss import LOSS_TERMS
from rocket_ctr.progress import Progress


def finish_bar(bar: keras.utils.Progbar, steps: int, values=None) -> None:
    """Ends ``bar`` at the epoch's real step count ``steps`` when it is below the bar's target.

    The reader's count of full batches per history bucket can fall below the estimate: the bar
    would stay open (the next print glued onto its line) and, without a terminal, never print.
    """
    if 0 < steps < (bar.target or 0):
        bar.target = steps
        bar.update(steps, values, finalize=True)


class EpochProgress:
    """One epoch's display: ``step(in_epoch, logs)`` after each step, ``close(in_epoch, logs)`` at the end.

    Args:
        label: starts each progress line (``epoch 1/3``).
        steps: the epoch's estimated step count (the bar's target).
        rows_per_step: rows one step trains (every worker's batch).
        skip: steps of the epoch trained before a resume.
        verbose: 0 shows nothing.
    """

    def __init__(self, label: str, steps: int, rows_per_step: int, skip: int = 0, verbose: int = 1):
        terminal = sys.stdout.isatty()
        self.steps, self.skip, self.rows_per_step = steps, skip, rows_per_step
        self.bar = keras.utils.Progbar(steps, verbose=(1 if terminal else 2) if verbose else 0,
                                       stateful_metrics=list(LOSS_TERMS))
        self.lines = Progress(steps * rows_per_step, "rows", prefix=f"{label}: ", terminal=False,
                              enabled=bool(verbose) and not terminal, done=skip * rows_per_step)

    def step(self, in_epoch: int, logs: dict) -> None:
        self.bar.update(min(in_epoch, self.steps), list(logs.items()))
        self.lines.update(self.rows_per_step)

    def close(self, in_epoch: int, logs: dict) -> None:
        if in_epoch > self.skip:  # steps were taken (a resume at an epoch's end takes none)
            finish_bar(self.bar, in_epoch, list(logs.items()))
            self.lines.close()
