"""The intercept refit at the end of training: after early stopping restored its epoch, each tower's
intercept is fitted on the validation rows (``rocket_ctr.intercept``), saved in a checkpoint, and
the eval data is evaluated again with it (what metrics.json reports).

Per-epoch metrics (early stopping, the hint warm-up, history.json) are the model's without the
intercept, so the refit never changes what training decides.
"""
from __future__ import annotations

import math
from typing import Callable

import keras
import tensorflow as tf

from rocket_ctr.intercept import fit_towers


class InterceptRefit(keras.callbacks.Callback):
    """Fits and applies the towers' intercepts in ``on_train_end`` (a model with intercepts only).

    Args:
        validation_logits: ``() -> ({tower: logits + log r}, labels, weights)`` of the validation
            rows, or None when the run has none (the intercepts stay as they are, e.g. carried
            by a warm start).
        evaluate_eval: ``() -> evaluate(...)`` results on the eval data with the intercepts, or
            None when the run has no eval data.
        share: ``list[float] -> list[float]``: the chief's values on every worker.
        checkpoints: the run's CheckpointManager (a changed intercept is saved as its latest).
        is_chief: only the chief evaluates.
        verbose: print the fitted values.
    """

    name = "intercept_refit"

    def __init__(self, validation_logits: Callable | None, evaluate_eval: Callable | None,
                 share: Callable, checkpoints: tf.train.CheckpointManager, is_chief: bool = True, verbose: int = 0):
        super().__init__()
        self.validation_logits, self.evaluate_eval = validation_logits, evaluate_eval
        self.share, self.checkpoints, self.is_chief, self.verbose = share, checkpoints, is_chief, verbose

    def on_train_end(self, logs=None):
        """Writes ``logs["intercept"]`` (values and how they were fitted) and, with eval data and a
        non-zero intercept, ``logs["eval_with_intercept"]``; saves a checkpoint after
        ``logs["global_step"]`` when a value changed."""
        towers = list(self.model.intercepts)
        before = self.model.intercept_values()
        record = {"fitted_on": None, "rows": 0}
        if self.validation_logits is not None:
            fitted, rows = {}, 0
            if self.is_chief:
                logits, labels, weights = self.validation_logits()
                fitted, rows = fit_towers(logits, labels, weights), len(labels)
            # NaN: no finite fit (no click or no negative): the tower keeps intercept 0
            values = self.share([rows] + [fitted.get(t) if fitted.get(t) is not None else math.nan
                                          for t in towers])
            rows, values = int(values[0]), [float(v) for v in values[1:]]
            unfitted = [t for t, v in zip(towers, values) if math.isnan(v)]
            for tower, value in zip(towers, values):
                self.model.intercepts[tower].assign(0.0 if math.isnan(value) else value)
            record = {"fitted_on": "validation rows", "rows": rows}
            if unfitted:
                record["not_fitted"] = unfitted  # no finite minimum: no click or no negative
        after = self.model.intercept_values()
        if after != before:
            self.checkpoints.save(checkpoint_number=logs["global_step"] + 2)  # early stopping's is + 1
        logs["intercept"] = {**after, **record}
        if self.verbose and self.validation_logits is not None:
            print("  intercept refit on the validation rows: " + "  ".join(f"{t} {v:+.4f}" for t, v in after.items()))
        if self.evaluate_eval is not None and any(after.values()) and self.is_chief:
            logs["eval_with_intercept"] = self.evaluate_eval()
