"""Isotonic calibration: a monotone piecewise-linear map of a tower's calibrated logit, fitted on the validation rows.

Platt scaling (``rocket_ctr.calibration.platt``) fixes the mean and the slope of the reliability curve, not a
bend in it. After Platt, each tower's served logit ``u = a·z + log r + b`` goes through ``f``: the
rows are cut into ``K`` equal-mass bins of ``u`` (weighted like the refit: negatives of an
upstream-downsampled log count 1/r; tied ``u`` share a bin), pool-adjacent-violators makes the
bins' click rates increasing, and each pooled block gives one knot ``(x, y)``: its weighted mean
``u`` and the logit of its click rate. ``f`` interpolates linearly between knots and continues
with slope 1 (Platt's) beyond them, so it is strictly increasing: no ties are created and every
ranking (AUC, GAUC) is unchanged. Last, all knots move by one intercept so that the validation rows'
weighted PCOC is 1 again (interpolating in logit space between bins' rates is not mean-preserving;
Platt's fit has this property and the map keeps it). Fewer blocks than ``K``: the widest segments are split at their
midpoints, which leaves ``f`` the same, so a tower always holds exactly ``K`` knots.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from rocket_ctr.calibration.intercept import fit_intercept

RATE_CLIP = 1e-6  # a block with no click (or only clicks) gets logit(1e-6) instead of -inf
IDENTITY_SPAN = 8.0  # the knots of an unfitted map: x = y = linspace(-8, 8, K), i.e. f(u) = u


def identity_knots(k: int) -> np.ndarray:
    """``k`` knots of the identity map (an unfitted tower's): ``linspace(-8, 8, k)``, ``k >= 2``."""
    return np.linspace(-IDENTITY_SPAN, IDENTITY_SPAN, k)


def _bins(u: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """Bin index (0..k-1) per row of ``u`` sorted ascending: equal weighted mass, ties in one bin."""
    cumulative = np.cumsum(w) - w  # the weight before each row
    first = np.searchsorted(u, u, side="left")  # a tied value's first row decides its bin
    return np.minimum((k * cumulative[first] / w.sum()).astype(np.int64), k - 1)


def pool_adjacent_violators(values: np.ndarray, weights: np.ndarray) -> list:
    """Weighted isotonic regression of a sequence by pool adjacent violators (strictly increasing result).

    Neighbours whose values do not increase are pooled into one block valued at their weighted mean,
    until the blocks' values strictly increase.

    Args:
        values: the sequence, in the order the fit must increase along (e.g. bins' click rates, or
            rows' labels sorted by score); weights: their weights (> 0).
    Returns:
        ``[(first index, last index, value)]`` of the pooled blocks, in order, covering every index;
        values strictly increasing.
    """
    blocks = []  # [first, last, value, weight]
    for i, (v, wt) in enumerate(zip(values, weights)):
        blocks.append([i, i, float(v), float(wt)])
        while len(blocks) > 1 and blocks[-2][2] >= blocks[-1][2]:
            last = blocks.pop()
            prev = blocks[-1]
            total = prev[3] + last[3]
            prev[1], prev[2], prev[3] = last[1], (prev[2] * prev[3] + last[2] * last[3]) / total, total
    return [(first, last, value) for first, last, value, _ in blocks]


def fit_knots(logits, labels, weights=None, k: int = 16) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``k`` knots ``(x, y)`` of the isotonic map of ``logits`` (see the module docstring).

    Args:
        logits: the rows' calibrated logits ``u`` (Platt's output, ``log r`` included).
        labels: 0/1 labels; weights: optional row weights (None: 1 each).
        k: knots (and bins), ``k >= 2``.
    Returns:
        ``(x, y)`` float64 arrays of shape [k], ``x`` and ``y`` strictly increasing, the rows'
        weighted mean of ``σ(f(logits))`` equal to their click rate, or None when there is nothing
        to fit (no rows, no weighted click or negative).
    """
    if k < 2:
        raise ValueError(f"k must be >= 2, got {k}")
    u = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    w = np.ones_like(u) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if not len(u) == len(y) == len(w):
        raise ValueError(f"logits, labels and weights differ in length ({len(u)}, {len(y)}, {len(w)})")
    keep = w > 0
    u, y, w = u[keep], y[keep], w[keep]
    clicks, total = float(np.dot(w, y)), float(w.sum())
    if not 0.0 < clicks < total:
        return None
    order = np.argsort(u, kind="stable")
    u, y, w = u[order], y[order], w[order]
    index = _bins(u, w, k)
    mass = np.bincount(index, w, k)
    used = mass > 0
    mass, centre_sum, click_sum = mass[used], np.bincount(index, w * u, k)[used], np.bincount(index, w * y, k)[used]
    x, rates = [], []
    for first, last, rate in pool_adjacent_violators(click_sum / mass, mass):
        x.append(centre_sum[first:last + 1].sum() / mass[first:last + 1].sum())
        rates.append(rate)
    rates = np.clip(np.array(rates), RATE_CLIP, 1.0 - RATE_CLIP)
    x, knots_y = _fill(np.array(x), np.log(rates / (1.0 - rates)), k)
    shift = fit_intercept(apply_knots(u, x, knots_y), y, w) or 0.0  # None only beyond |64|
    return x, knots_y + shift


def _fill(x: np.ndarray, y: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` knots of the same map: one knot gets neighbours on the slope-1 line, then the widest
    segments are halved until there are ``k``."""
    if len(x) == 1:
        x, y = x[0] + np.array([-1.0, 1.0]), y[0] + np.array([-1.0, 1.0])
    x, y = list(x), list(y)
    while len(x) < k:
        widths = np.diff(x)
        # the leftmost of the widest: equal widths (an evenly spaced score grid) would otherwise be
        # chosen by float noise, and the same map refitted on the same rows would get other knots
        i = int(np.argmax(widths >= widths.max() * (1.0 - 1e-9)))
        x.insert(i + 1, 0.5 * (x[i] + x[i + 1]))
        y.insert(i + 1, 0.5 * (y[i] + y[i + 1]))
    return np.array(x), np.array(y)


def apply_knots(logits, x, y) -> np.ndarray:
    """Numpy reference of :func:`piecewise_linear`: ``f(logits)`` with slope 1 beyond the knots."""
    u = np.asarray(logits, dtype=np.float64)
    inside = np.interp(u, x, y)
    return inside + np.minimum(u - x[0], 0.0) + np.maximum(u - x[-1], 0.0)


def piecewise_linear(logits, x, y):
    """In-graph ``f(logits)``: linear between the knots ``(x, y)``, slope 1 beyond them.

    A sum of clipped segments (no search, no gather: XLA-friendly, any input shape); each term
    is non-decreasing in the input, so the result is monotone in float arithmetic too.

    Args:
        logits: a float tensor of any shape; x, y: [K] knots, ``x`` strictly increasing.
    Returns:
        A tensor of ``logits``' shape and dtype.
    """
    u = tf.convert_to_tensor(logits)
    x, y = tf.cast(x, u.dtype), tf.cast(y, u.dtype)
    slopes = (y[1:] - y[:-1]) / (x[1:] - x[:-1])
    segments = tf.reduce_sum(slopes * (tf.minimum(tf.maximum(u[..., None], x[:-1]), x[1:]) - x[:-1]), axis=-1)
    return y[0] + segments + tf.minimum(u - x[0], 0.0) + tf.maximum(u - x[-1], 0.0)


def fit_towers(logits: dict, labels, weights=None, k: int = 16) -> dict:
    """:func:`fit_knots` per tower: ``{tower: (x, y) or None}`` (``logits``: each tower's ``u``)."""
    return {tower: fit_knots(u, labels, weights, k) for tower, u in logits.items()}
