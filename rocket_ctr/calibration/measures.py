"""Calibration: the negative-downsampling correction, PCOC, ECE, reliability bins and RelaImpr.

Numpy only. A model trained on a log whose negatives were kept with probability ``r`` predicts
``q``, the click probability *of the sample*; the full-rate probability is

    p = q / (q + (1 − q) / r)        equivalently   logit(p) = logit(q) + log(r)

so the correction is one constant added to the logit (:func:`logit_offset`), which is how the
model, ``evaluate`` and the exported graph apply it.
"""
from __future__ import annotations

import math

import numpy as np

RELIABILITY_BINS = 10  # equal-mass bins of ECE and the reliability diagram


def check_rate(rate: float, name: str = "negative_rate") -> float:
    """``rate`` as a float in (0, 1].

    Raises:
        ValueError: naming ``name`` and what was expected.
    """
    try:
        value = float(rate)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1], got {rate!r}") from None
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise ValueError(f"{name} must be in (0, 1] (the share of negatives kept), got {rate!r}")
    return value


def logit_offset(rate: float) -> float:
    """What to add to a logit learnt on a sample keeping negatives at ``rate`` (``log(rate)``; 0 at rate 1)."""
    return math.log(check_rate(rate))


def corrected_probability(q, rate: float) -> np.ndarray:
    """Full-rate click probabilities ``p = q / (q + (1 − q) / rate)`` of sample probabilities ``q``.

    Args:
        q: probabilities predicted by a model trained on the downsampled log.
        rate: the share of negatives that log kept, in (0, 1].
    Returns:
        float64 array shaped like ``q``.
    """
    q = np.asarray(q, dtype=np.float64)
    rate = check_rate(rate)
    return q / (q + (1.0 - q) / rate)


def _prepared(labels, probs, weights):
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    p = np.asarray(probs, dtype=np.float64).reshape(-1)
    w = np.ones_like(p) if weights is None else np.asarray(weights, dtype=np.float64).reshape(-1)
    if not len(y) == len(p) == len(w):
        raise ValueError(f"labels, probs and weights differ in length ({len(y)}, {len(p)}, {len(w)})")
    return y, p, w


def pcoc(labels, probs, weights=None) -> float:
    """Predicted over observed CTR: ``Σ w·p / Σ w·y`` (1 = calibrated on average; nan without clicks).

    Args:
        labels: 0/1 labels; probs: predicted click probabilities; weights: optional row weights.
    """
    y, p, w = _prepared(labels, probs, weights)
    clicks = float(np.dot(w, y))
    return float(np.dot(w, p)) / clicks if clicks > 0 else float("nan")


def reliability_bins(labels, probs, weights=None, bins: int = RELIABILITY_BINS) -> dict:
    """Equal-mass bins of the predictions: each holds ~1/bins of the total weight, by rank of p
    (rows with equal predictions stay in one bin).

    Args:
        labels: 0/1 labels; probs: predicted probabilities; weights: optional row weights.
        bins: number of bins.
    Returns:
        ``{"predicted": [...], "observed": [...], "share": [...]}``: per non-empty bin the
        weighted mean prediction, the weighted click rate and the bin's share of the weight.
    """
    y, p, w = _prepared(labels, probs, weights)
    total = w.sum()
    if not len(p) or total <= 0:
        return {"predicted": [], "observed": [], "share": []}
    order = np.argsort(p, kind="stable")
    y, p, w = y[order], p[order], w[order]
    before = np.cumsum(w) - w  # weight ranked below each row: its bin is that share × bins
    # tied predictions share a bin (the one where their run starts): splitting a tie would invent gaps
    starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])
    before = before[np.repeat(starts, np.diff(np.r_[starts, len(p)]))]
    which = np.minimum((before / total * bins).astype(np.int64), bins - 1)
    mass = np.bincount(which, weights=w, minlength=bins)
    kept = mass > 0
    predicted = np.bincount(which, weights=w * p, minlength=bins)[kept] / mass[kept]
    observed = np.bincount(which, weights=w * y, minlength=bins)[kept] / mass[kept]
    return {"predicted": predicted.tolist(), "observed": observed.tolist(), "share": (mass[kept] / total).tolist()}


def ece(labels, probs, weights=None, bins: int = RELIABILITY_BINS) -> float:
    """Expected calibration error over equal-mass bins: ``Σ_b share_b · |mean p_b − click rate_b|``.

    Args:
        labels: 0/1 labels; probs: predicted probabilities; weights: optional row weights.
        bins: number of bins.
    Returns:
        The ECE (nan for no rows).
    """
    return ece_of_bins(reliability_bins(labels, probs, weights, bins))


def ece_of_bins(table: dict) -> float:
    """The ECE of a :func:`reliability_bins` table (nan when it is empty)."""
    if not table["share"]:
        return float("nan")
    gaps = np.abs(np.asarray(table["predicted"]) - np.asarray(table["observed"]))
    return float(np.dot(table["share"], gaps))


def relaimpr(model_auc: float, baseline_auc: float) -> float:
    """DIN's relative improvement in percent: ``((AUC_model − 0.5) / (AUC_base − 0.5) − 1) · 100``.

    Returns:
        The percentage; nan when either is nan or the baseline is no better than random (<= 0.5).
    """
    if not (math.isfinite(model_auc) and math.isfinite(baseline_auc)) or baseline_auc <= 0.5:
        return float("nan")
    return ((model_auc - 0.5) / (baseline_auc - 0.5) - 1.0) * 100.0
