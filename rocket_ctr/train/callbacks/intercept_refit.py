"""The intercept refit at the end of training: after early stopping restored its epoch (and after the
validation fold-in, when the run keeps a calibration slice out of it), each tower's intercept (and
slope, when the model has one: Platt scaling; then the knots of its isotonic map, when it has them)
is fitted on validation rows the served model never trained on (``rocket_ctr.calibration.intercept``,
``rocket_ctr.calibration.platt``, ``rocket_ctr.calibration.isotonic``), saved in a checkpoint, and the
eval data is evaluated again with it (what metrics.json reports).

Per-epoch metrics (early stopping, the hint warm-up, history.json) are the model's without the
intercept, so the refit never changes what training decides.
"""
from __future__ import annotations

import math
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from rocket_ctr.calibration import intercept, isotonic, platt


class InterceptRefit(keras.callbacks.Callback):
    """Fits and applies the towers' intercepts (and slopes) in ``on_train_end`` (a model with intercepts only).

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
        fitted_on: what the rows are, for metrics.json (``"validation rows"`` or the calibration slice).
        evaluate_always: evaluate even when nothing was fitted (the model changed before the refit:
            the fold-in ran first).
        checkpoint_offset: the saved checkpoint's number is the run's global step plus this.
    """

    name = "intercept_refit"

    def __init__(self, validation_logits: Callable | None, evaluate_eval: Callable | None,
                 share: Callable, checkpoints: tf.train.CheckpointManager, is_chief: bool = True, verbose: int = 0,
                 fitted_on: str = "validation rows", evaluate_always: bool = False, checkpoint_offset: int = 2):
        super().__init__()
        self.fitted_on, self.evaluate_always, self.checkpoint_offset = fitted_on, evaluate_always, checkpoint_offset
        self.validation_logits, self.evaluate_eval = validation_logits, evaluate_eval
        self.share, self.checkpoints, self.is_chief, self.verbose = share, checkpoints, is_chief, verbose

    def on_train_end(self, logs=None):
        """Writes ``logs["intercept"]`` (values and how they were fitted), ``logs["slope"]`` (a model
        with slopes), ``logs["knots"]`` (a model with isotonic maps) and, with eval data and a fitted
        value, ``logs["eval_with_intercept"]``; saves a checkpoint after ``logs["global_step"]`` when a
        value changed."""
        model = self.model
        towers, with_slope = list(model.intercepts), bool(model.slopes)
        before = model.intercept_values(), model.slope_values(), model.knot_values()
        record = {"fitted_on": None, "rows": 0}
        if self.validation_logits is not None:
            fitted, rows, (logits, labels, weights) = {}, 0, (None, None, None)
            if self.is_chief:
                logits, labels, weights = self.validation_logits()
                rows = len(labels)
                if with_slope:
                    fitted = platt.fit_towers(logits, labels, weights, model.logit_offset)
                else:
                    fitted = {t: (1.0, b) for t, b in intercept.fit_towers(logits, labels, weights).items()
                              if b is not None}
            # NaN: no finite fit (no click or no negative): the tower keeps slope 1 and intercept 0
            values = self.share([rows] + [v for t in towers for v in (fitted.get(t) or (math.nan, math.nan))])
            rows, values = int(values[0]), [float(v) for v in values[1:]]
            unfitted = [t for t, b in zip(towers, values[1::2]) if math.isnan(b)]
            for tower, a, b in zip(towers, values[0::2], values[1::2]):
                model.intercepts[tower].assign(0.0 if math.isnan(b) else b)
                if with_slope:
                    model.slopes[tower].assign(1.0 if math.isnan(a) else a)
            unfitted_knots = self._fit_knots(logits, labels, weights)
            record = {"fitted_on": self.fitted_on, "rows": rows}
            if unfitted:
                record["not_fitted"] = unfitted  # no finite minimum: no click or no negative
            if unfitted_knots:
                record["knots_not_fitted"] = unfitted_knots
        after = model.intercept_values(), model.slope_values(), model.knot_values()
        if after != before:
            self.checkpoints.save(checkpoint_number=logs["global_step"] + self.checkpoint_offset)
        logs["intercept"] = {**after[0], **record}
        if with_slope:
            logs["slope"] = after[1]
        if model.knots:
            logs["knots"] = after[2]
        if self.verbose and self.validation_logits is not None:
            print(f"  refit on the {self.fitted_on} ({rows:,}): " + "  ".join(
                f"{t} b {b:+.4f}" + (f" a {after[1][t]:.4f}" if with_slope else "") for t, b in after[0].items()))
        fitted_any = any(after[0].values()) or any(a != 1.0 for a in after[1].values()) or any(
            k["x"] != k["y"] for k in after[2].values())  # the identity map has x = y
        if self.evaluate_eval is not None and (fitted_any or self.evaluate_always) and self.is_chief:
            logs["eval_with_intercept"] = self.evaluate_eval()

    def _fit_knots(self, logits, labels, weights) -> list:
        """Fits and assigns the isotonic maps on the validation logits as the model now serves them
        before the map (its assigned slope and intercept; chief's arguments, None elsewhere).
        Returns the towers left with the identity map."""
        model = self.model
        if not model.knots:
            return []
        fitted = {}
        if self.is_chief:
            offset, slopes, intercepts = model.logit_offset, model.slope_values(), model.intercept_values()
            served = {t: slopes.get(t, 1.0) * (np.asarray(z, np.float64) - offset) + offset + intercepts[t]
                      for t, z in logits.items() if t in model.knots}
            k = next(iter(model.knots.values()))[0].shape[0]
            fitted = isotonic.fit_towers(served, labels, weights, k)
        unfitted = []
        for tower, (x, y) in model.knots.items():
            k = x.shape[0]
            knots = fitted.get(tower)
            values = self.share([math.nan] * (2 * k) if knots is None else [*knots[0], *knots[1]])
            if math.isnan(values[0]):
                unfitted.append(tower)
                values = [*isotonic.identity_knots(k)] * 2
            x.assign(values[:k])
            y.assign(values[k:])
        return unfitted
