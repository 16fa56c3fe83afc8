"""Platt scaling: a slope ``a`` and an intercept ``b`` per tower, fitted on the validation rows.

The intercept refit (``rocket_ctr.calibration.intercept``) moves the mean of the predictions but cannot change
the slope of the reliability curve, which is most of the ECE left after it. Platt scaling serves
``σ(a·z + o + b)``: ``z`` is the tower's own logit, ``o`` the negative-downsampling offset
``log r`` (the slope applies to what the model learned, not to the correction), and ``(a, b)``
minimise the weighted log loss over the validation rows. The loss is convex in ``(a, b)``;
:func:`fit_platt` finds its minimum by Newton's method with a backtracking line search. ``a`` is
kept in :data:`SLOPE_RANGE`, positive, so every ranking (AUC, GAUC) is unchanged. Numpy only.
"""
from __future__ import annotations

import numpy as np

from rocket_ctr.calibration.intercept import fit_intercept

SLOPE_RANGE = (0.1, 10.0)  # a outside it: the fit is chasing noise or a (near-)separable sample
TOLERANCE = 1e-10  # of the Newton step, in logit units
_QUADRATIC = 1e-14  # Newton decrement (mean log loss) below which the full step is taken
_DIVERGED = 1e3  # |a| or |b| beyond this: no finite minimum (the rows are (almost) separable)


def _loss_terms(z, y, w, offset, a, b, total):
    """Mean weighted log loss of ``σ(a·z + offset + b)``, its gradient and Hessian in ``(a, b)``."""
    s = a * z + offset + b
    loss = float(np.dot(w, np.logaddexp(0.0, s) - y * s)) / total
    p = 0.5 * (1.0 + np.tanh(0.5 * s))
    r, h = w * (p - y), w * p * (1.0 - p)
    gradient = np.array([np.dot(r, z), r.sum()]) / total
    hz = h * z
    hessian = np.array([[np.dot(hz, z), hz.sum()], [hz.sum(), h.sum()]]) / total
    return loss, gradient, hessian


def fit_platt(logits, labels, weights=None, offset: float = 0.0, slope_range: tuple = SLOPE_RANGE,
              max_iterations: int = 100) -> tuple[float, float] | None:
    """The ``(a, b)`` minimising the weighted log loss of ``σ(a·logits + offset + b)``, ``a`` in ``slope_range``.

    Args:
        logits: the rows' own logits (no offset added).
        labels: 0/1 labels; weights: optional row weights (None: 1 each).
        offset: added after the slope (``log r`` of negative downsampling).
        slope_range: ``(low, high)`` bounds of ``a``, both > 0 (rankings are kept).
        max_iterations: Newton steps at most.
    Returns:
        ``(a, b)`` floats, or None when the intercept alone has no finite minimum (no rows, no
        weighted click or no weighted negative; see :func:`~rocket_ctr.calibration.intercept.fit_intercept`).
        All logits equal: ``a`` = 1 (no slope to fit).
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    w = np.ones_like(z) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    low, high = slope_range
    if not 0 < low <= 1.0 <= high:
        raise ValueError(f"slope_range must hold 1 and be positive, got {slope_range}")
    start = fit_intercept(z + offset, y, w)  # also checks the lengths
    if start is None:
        return None
    if np.ptp(z) == 0:
        return 1.0, start
    total = float(w.sum())
    a, b = _newton(z, y, w, offset, total, 1.0, start, max_iterations)
    if a is not None and low <= a <= high:
        return a, b
    # Convex loss, minimum outside the range (or none): the constrained one lies on a bound.
    candidates = []
    for bound in (low, high):
        intercept = fit_intercept(bound * z + offset, y, w)
        if intercept is not None:
            candidates.append((_loss_terms(z, y, w, offset, bound, intercept, total)[0], bound, intercept))
    _, a, b = min(candidates)
    return float(a), float(b)


def _newton(z, y, w, offset, total, a, b, max_iterations):
    """Damped Newton from ``(a, b)``: the unconstrained minimum, or ``(None, None)`` if it diverges."""
    loss, gradient, hessian = _loss_terms(z, y, w, offset, a, b, total)
    for _ in range(max_iterations):
        try:
            step = -np.linalg.solve(hessian, gradient)
        except np.linalg.LinAlgError:
            step = -gradient
        if np.dot(step, gradient) >= 0:  # not a descent direction (a numerically singular Hessian)
            step = -gradient
        decrement = -float(np.dot(step, gradient))  # the loss Newton's step expects to save, x 2
        if np.max(np.abs(step)) < TOLERANCE or decrement < _QUADRATIC:
            # within Newton's quadratic convergence: a full step leaves an error far below the step,
            # and the loss could no longer tell a line search's steps apart at float precision
            return float(a + step[0]), float(b + step[1])
        t = 1.0
        while True:  # backtracking (Armijo) line search
            new = _loss_terms(z, y, w, offset, a + t * step[0], b + t * step[1], total)
            if new[0] <= loss + 1e-4 * t * np.dot(gradient, step) or t < 1e-12:
                break
            t *= 0.5
        if t < 1e-12:  # no decrease left at float precision: converged
            return float(a), float(b)
        a, b = a + t * step[0], b + t * step[1]
        loss, gradient, hessian = new
        if max(abs(a), abs(b)) > _DIVERGED:
            return None, None
    return float(a), float(b)


def fit_towers(logits: dict, labels, weights=None, offset: float = 0.0) -> dict:
    """:func:`fit_platt` per tower: ``{tower: (a, b) or None}``.

    Args:
        logits: ``{tower: logits + offset}`` (as ``rocket_ctr.train.evaluation.validation_logits`` gives).
        labels, weights: the rows' labels and weights.
        offset: what ``logits`` already hold (``log r``); the slope applies to the rest.
    """
    return {tower: fit_platt(np.asarray(z, np.float64) - offset, labels, weights, offset)
            for tower, z in logits.items()}
