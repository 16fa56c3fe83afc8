"""The validation rows folded into the model at the end of training.

A validation split shaped like the test split holds out the rows the test resembles most: in a
leave-last-out log, each sampled user's newest event. Early stopping needs them unseen; once it
has decided, the model takes one more pass over them (same optimizer, same batch size, shuffled)
before it is saved as the run's final model. The calibration must not be fitted on rows the
served model trained on, so a slice of the validation users (``training.calibration_share``) is
kept out of the pass and the refit (:mod:`rocket_ctr.train.callbacks.intercept_refit`) runs after
it, on that slice; with a share of 0 the refit runs first, on every validation row, and the pass
then moves the model away from it. ``training.fold_in_validation = "auto"`` folds in the splits
where the pass measured better on the real logs (docs/results/real_logs.md).
"""
from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf


class ValidationFoldIn(keras.callbacks.Callback):
    """Trains one pass over the validation rows in ``on_train_end`` (after the intercept refit).

    Args:
        train_pass: ``() -> (rows, steps)``: one shuffled pass over the validation rows (without the
            calibration slice) with the run's training step; None when the run cannot fold in (the
            reason is ``skipped``).
        evaluate_eval: ``() -> evaluate(...)`` results on the eval data, or None without eval data
            or when a later step (the refit on the calibration slice) evaluates the final model.
        checkpoints: the run's CheckpointManager (the folded-in model is saved as its latest).
        skipped: why ``train_pass`` is None (printed once), e.g. a multi-worker run.
        verbose: print what was folded in.
        checkpoint_offset: the saved checkpoint's number is the run's global step plus this (the
            steps after training save in the order they run).
    """

    name = "fold_in"

    def __init__(self, train_pass: Callable | None, evaluate_eval: Callable | None,
                 checkpoints: tf.train.CheckpointManager, skipped: str | None = None, verbose: int = 0,
                 checkpoint_offset: int = 3):
        super().__init__()
        self.train_pass, self.evaluate_eval, self.checkpoints = train_pass, evaluate_eval, checkpoints
        self.skipped, self.verbose, self.checkpoint_offset = skipped, verbose, checkpoint_offset

    def on_train_end(self, logs=None):
        """When this call finishes a run (``logs["finishing"]``): trains the pass, saves it after
        ``logs["global_step"]``, writes ``logs["fold_in"]`` and, with eval data,
        ``logs["eval_with_intercept"]`` (the final model's eval metrics)."""
        if not logs.get("finishing"):
            return
        if self.train_pass is None:
            logs["fold_in"] = {"rows": 0, "skipped": self.skipped}
            if self.verbose:
                print(f"  validation rows not folded in: {self.skipped}")
            return
        rows, steps = self.train_pass()
        self.checkpoints.save(checkpoint_number=logs["global_step"] + self.checkpoint_offset)
        logs["fold_in"] = {"rows": rows, "steps": steps}
        if self.verbose:
            print(f"  folded in: one pass over the {rows:,} validation rows ({steps} steps)")
        if self.evaluate_eval is not None:
            logs["eval_with_intercept"] = self.evaluate_eval()
