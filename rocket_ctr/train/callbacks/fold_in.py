"""The validation rows folded into the model at the end of training.

A validation split shaped like the test split holds out the rows the test resembles most: in a
leave-last-out log, each sampled user's newest event. Early stopping needs them unseen; once it
has decided, the model takes one more pass over them (same optimizer, same batch size, shuffled)
before it is saved as the run's final model. The calibration must not be fitted on logits of rows
the scoring model trained on (``training.fold_in_calibration``): ``cross-fit`` first folds in each
half of the validation users on a copy of the state and scores the other half (the out-of-fold
logits the refit fits, moved to the served model's level after the pass), then folds in every
row; ``slice`` keeps a share of the users out of the pass and the refit fits the served model on
them; ``before`` fits every validation row before the pass. ``training.fold_in_validation =
"auto"`` folds in the splits where the pass measured better on the real logs
(docs/results/real_logs.md).
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
        cross_fit: a :class:`rocket_ctr.train.cross_fit.CrossFit` run around the pass; its result
            is kept as :attr:`out_of_fold` for the refit (None: no cross-fitting).
    """

    name = "fold_in"

    def __init__(self, train_pass: Callable | None, evaluate_eval: Callable | None,
                 checkpoints: tf.train.CheckpointManager, skipped: str | None = None, verbose: int = 0,
                 checkpoint_offset: int = 3, cross_fit=None):
        super().__init__()
        self.cross_fit, self.out_of_fold = cross_fit, None
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
        if self.cross_fit is not None:
            scored = self.cross_fit.score_out_of_fold()
            if self.verbose:
                print(f"  cross-fitted: {scored:,} validation rows scored by the model folded in on the other half "
                      "of the validation users")
        rows, steps = self.train_pass()
        logs["fold_in"] = {"rows": rows, "steps": steps}
        if self.cross_fit is not None:
            shifts = self.cross_fit.match_levels()
            self.out_of_fold = self.cross_fit.result
            logs["fold_in"]["cross_fit_level_shift"] = shifts
            if self.verbose:
                print("  out-of-fold logits moved to the served model's level: "
                      + ", ".join(f"{t} {' / '.join(f'{v:+.3f}' for v in s)}" for t, s in shifts.items()))
        self.checkpoints.save(checkpoint_number=logs["global_step"] + self.checkpoint_offset)
        if self.verbose:
            print(f"  folded in: one pass over the {rows:,} validation rows ({steps} steps)")
        if self.evaluate_eval is not None:
            logs["eval_with_intercept"] = self.evaluate_eval()
