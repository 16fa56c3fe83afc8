"""Intercept refit: one scalar per tower, added to its logit after training, fitted on the validation rows.

With Adam the mean logit drifts from epoch to epoch and early stopping keeps the best-GAUC epoch,
not the best-calibrated one. The refit takes that drift out: for each tower, ``b`` minimises the
weighted log loss of ``σ(z + b)`` over the validation rows, where ``z`` is the tower's logit with
the negative-downsampling offset (``log r``) already added and the weights are those of the
validation metrics (negatives of an upstream-downsampled log count 1/r). The loss is convex in
``b`` and its minimum solves ``Σ w·σ(z + b) = Σ w·y`` (so the validation PCOC becomes 1);
:func:`fit_intercept` finds it by Newton's method inside a bracket. A constant shift keeps every
ranking: AUC and GAUC are unchanged. With a slope as well (``training.calibrate_slope``, the
default) the refit is ``rocket_ctr.calibration.platt``'s instead. Numpy only.
"""
from __future__ import annotations

import numpy as np

TOLERANCE = 1e-10  # of the root, in logit units
_BRACKET = 64.0  # |b| beyond this: no useful intercept (the rows hold (almost) no clicks or no negatives)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_intercept(logits, labels, weights=None, max_iterations: int = 100) -> float | None:
    """The ``b`` minimising the weighted log loss of ``σ(logits + b)``.

    Args:
        logits: the rows' logits (offsets such as ``log r`` already added).
        labels: 0/1 labels; weights: optional row weights (None: 1 each).
        max_iterations: Newton/bisection steps at most.
    Returns:
        ``b`` (float), or None when there is no finite minimum worth using: no rows, no weighted
        click or no weighted negative, or ``|b|`` beyond 64.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    w = np.ones_like(z) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if not len(z) == len(y) == len(w):
        raise ValueError(f"logits, labels and weights differ in length ({len(z)}, {len(y)}, {len(w)})")
    clicks, total = float(np.dot(w, y)), float(w.sum())
    if not (0.0 < clicks < total):
        return None

    def gradient(b):  # dL/db = Σ w·(σ(z + b) − y); increasing in b
        p = _sigmoid(z + b)
        return float(np.dot(w, p)) - clicks, float(np.dot(w, p * (1.0 - p)))

    low, high = -_BRACKET, _BRACKET
    if gradient(low)[0] > 0 or gradient(high)[0] < 0:
        return None
    b = 0.0
    for _ in range(max_iterations):
        g, h = gradient(b)
        if g == 0:
            return float(b)
        if g > 0:
            high = b
        else:
            low = b
        step = b - g / h if h > 0 else np.nan
        new = step if low < step < high else 0.5 * (low + high)  # Newton inside the bracket, else bisect
        if abs(new - b) < TOLERANCE:
            return float(new)
        b = new
    return float(b)


def fit_towers(logits: dict, labels, weights=None) -> dict:
    """:func:`fit_intercept` per tower: ``{tower: b or None}``."""
    return {tower: fit_intercept(z, labels, weights) for tower, z in logits.items()}
