"""The calibration head every served probability goes through (``RocketModel``'s mixin).

A tower's logit becomes ``σ(f(a·logit + log r + b))``: ``log r`` undoes negative downsampling,
and, where the model has them, the non-trainable ``<tower>_slope`` ``a``, ``<tower>_intercept``
``b`` and isotonic map ``f`` (``<tower>_knots_x`` / ``<tower>_knots_y``) are fitted after training
(``rocket_ctr.calibration``).
"""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.calibration.isotonic import identity_knots, piecewise_linear
from rocket_ctr.calibration.measures import logit_offset
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import FieldError


class CalibrationHeadMixin:
    """The per-tower calibration head of :class:`rocket_ctr.model.rocket.RocketModel`.

    Sets ``negative_rate`` and ``logit_offset``; its variables are the model's own attributes
    (``<tower>_intercept``, ``<tower>_slope``, ``<tower>_knots_x``, ``<tower>_knots_y``).
    """

    def _init_calibration(self, spec, config, negative_rate, intercept, slope, knots) -> tuple:
        """Resolves the head's options (``None``: a RocketConfig's ``training`` fields, else off) and
        sets ``negative_rate`` and ``logit_offset``.

        Returns:
            ``(intercept, slope, knots)`` to pass to :meth:`_add_calibration_weights`.
        """
        if negative_rate is None:
            reader_rate = config.training.negative_rate if isinstance(config, RocketConfig) else 1.0
            negative_rate = spec.negative_rate * reader_rate
        if intercept is None:
            intercept = isinstance(config, RocketConfig) and config.training.calibrate_intercept
        if slope is None:
            slope = isinstance(config, RocketConfig) and config.training.calibrate_slope
        if knots is None:
            knots = config.training.calibration_knots if isinstance(config, RocketConfig) else 0
        if knots == 1:
            raise FieldError("{training.calibration_knots} must be 0 (off) or >= 2, got 1")
        self.negative_rate = float(negative_rate)
        # logit(p) = logit(q) + log(r): the full-rate probability of a model trained on the sample
        self.logit_offset = logit_offset(self.negative_rate)
        return intercept, slope, knots

    def _add_calibration_weights(self, intercept: bool, slope: bool, knots: int) -> None:
        """The non-trainable intercepts, then slopes, then knots of every tower (that order: the
        checkpoints' variable order), each created only when asked for: a checkpoint written
        without them restores exactly as it was."""
        # (attributes, not a dict: checkpoints track a Keras model's variables by attribute)
        for tower in self.towers if intercept else ():
            setattr(self, f"{tower}_intercept", self.add_weight(name=f"{tower}_intercept", shape=(),
                                                                initializer="zeros", trainable=False))
        for tower in self.towers if intercept and slope else ():
            setattr(self, f"{tower}_slope", self.add_weight(name=f"{tower}_slope", shape=(),
                                                            initializer="ones", trainable=False))
        for tower in self.towers if intercept and knots else ():
            for axis in ("x", "y"):
                setattr(self, f"{tower}_knots_{axis}", self.add_weight(
                    name=f"{tower}_knots_{axis}", shape=(knots,), trainable=False,
                    initializer=lambda shape, dtype=None: tf.constant(identity_knots(shape[0]), dtype or "float32")))

    def offset(self, tower: str, intercept: bool = True):
        """What a tower's logit gets before the sigmoid: ``log r`` plus, when the model has one and
        ``intercept``, the tower's fitted intercept (a plain float without one)."""
        if intercept and tower in self.intercepts:
            return self.logit_offset + self.intercepts[tower]
        return self.logit_offset

    @property
    def intercepts(self) -> dict:
        """``{tower: variable}`` of the towers' intercepts ({} for a model without them)."""
        return {tower: getattr(self, f"{tower}_intercept") for tower in self.towers
                if hasattr(self, f"{tower}_intercept")}

    def intercept_values(self) -> dict:
        """``{tower: float}`` of the fitted intercepts ({} for a model without them)."""
        return {tower: float(variable.numpy()) for tower, variable in self.intercepts.items()}

    @property
    def slopes(self) -> dict:
        """``{tower: variable}`` of the towers' slopes ({} for a model without them)."""
        return {tower: getattr(self, f"{tower}_slope") for tower in self.towers if hasattr(self, f"{tower}_slope")}

    def slope_values(self) -> dict:
        """``{tower: float}`` of the fitted slopes ({} for a model without them)."""
        return {tower: float(variable.numpy()) for tower, variable in self.slopes.items()}

    @property
    def knots(self) -> dict:
        """``{tower: (x variable, y variable)}`` of the towers' isotonic maps ({} for a model without them)."""
        return {tower: (getattr(self, f"{tower}_knots_x"), getattr(self, f"{tower}_knots_y")) for tower in self.towers
                if hasattr(self, f"{tower}_knots_x")}

    def knot_values(self) -> dict:
        """``{tower: {"x": [...], "y": [...]}}`` of the isotonic maps' knots ({} for a model without them)."""
        return {tower: {"x": x.numpy().tolist(), "y": y.numpy().tolist()} for tower, (x, y) in self.knots.items()}

    def calibrated_logit(self, tower: str, logit, intercept: bool = True):
        """The served logit of a tower's own logit: ``f(a·logit + log r + b)`` (``a``, ``b``: the fitted
        slope and intercept, ``f`` the isotonic map, where the model has them; ``intercept=False``:
        ``logit + log r``)."""
        if intercept and tower in self.slopes:
            logit = self.slopes[tower] * logit
        logit = logit + self.offset(tower, intercept)
        if intercept and tower in self.knots:
            logit = piecewise_linear(logit, *self.knots[tower])
        return logit

    def probabilities(self, logits: dict, intercept: bool = True) -> dict:
        """Click probabilities of :meth:`call`'s logits, corrected for negative downsampling:
        ``σ(f(a·logit + log r + b))``: ``σ(logit + log r)`` = ``q / (q + (1 − q) / r)`` with the tower's
        fitted slope ``a``, intercept ``b`` and isotonic map ``f`` (``σ(logit)`` when nothing was
        downsampled and nothing is fitted; ``intercept=False``: without ``a``, ``b`` and ``f``)."""
        return {tower: tf.sigmoid(self.calibrated_logit(tower, logit, intercept)) for tower, logit in logits.items()}
