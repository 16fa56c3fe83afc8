"""Exact, vectorised CTR metrics: AUC, GAUC (DIN paper) and log loss.

Numpy only. Every function is exact (ties get average ranks, as in the Mann-Whitney U statistic,
which equals pairwise AUC with a tie counting 0.5) and runs in O(n log n) with no Python loop over
users: one argsort by score, one stable argsort by user, then run boundaries and ``reduceat``.

Single-class convention: :func:`auc` returns ``nan`` when only one class is present (and for empty
input) rather than raising, so an evaluation over a small or skewed split reports "undefined"
instead of crashing a training run. :func:`gauc` skips users with one class (DIN definition) and
returns ``nan`` when no user has both classes; :func:`gauc_and_users` also returns how many users
were counted (0 in that case).

Weights: every metric takes optional per-row weights (finite, >= 0); an integer weight k gives
exactly the metric of k copies of the row (AUC pairs count the product of their weights, GAUC's
w_u is the user's total weight). Unweighted, the arithmetic stays in int64 (exact).

Bad inputs (mismatched lengths, labels outside {0, 1}, non-finite scores, probabilities outside
[0, 1]) raise ``ValueError`` naming the offending argument (:mod:`rocket_ctr.metrics.inputs`); the
``*_prepared`` forms take arrays already checked there.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rocket_ctr.metrics import inputs

__all__ = ["auc", "gauc", "gauc_and_users", "logloss"]


def _group_rank_stats(
    labels_sorted: np.ndarray, scores_sorted: np.ndarray, new_group: np.ndarray,
    weights_sorted: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group weight, positive weight and twice the (weighted) Mann-Whitney U of the positives.

    Rows must be sorted by (group, score), with ``new_group[i]`` True where row i starts a group
    (``new_group[0]`` True). A positive scores 1 against each lower-scored negative of its group
    and 1/2 against each tied one, every pair counted with the product of the two rows' weights
    (so an integer weight k is k copies of the row). Unweighted (``weights_sorted`` None),
    everything is int64 ("twice" avoids the 1/2 of ties), so it is exact.
    """
    n = len(labels_sorted)
    if weights_sorted is None:
        pos_w, neg_w = labels_sorted.astype(np.int64), 1 - labels_sorted.astype(np.int64)
    else:
        pos_w = np.where(labels_sorted == 1, weights_sorted, 0.0)
        neg_w = weights_sorted - pos_w
    new_tie = new_group.copy()
    new_tie[1:] |= scores_sorted[1:] != scores_sorted[:-1]
    # cum_x[i] = weight among rows [0, i): any run's weight is a difference of two entries
    cum_pos = np.zeros(n + 1, dtype=pos_w.dtype)
    np.cumsum(pos_w, out=cum_pos[1:])
    cum_neg = np.zeros(n + 1, dtype=neg_w.dtype)
    np.cumsum(neg_w, out=cum_neg[1:])

    group_bounds = np.append(np.flatnonzero(new_group), n)
    positives = np.diff(cum_pos[group_bounds])
    sizes = positives + np.diff(cum_neg[group_bounds])

    tie_bounds = np.append(np.flatnonzero(new_tie), n)
    tie_starts = tie_bounds[:-1]
    group_of_tie = np.cumsum(new_group[tie_starts]) - 1  # every group start is a tie start
    negatives_below = cum_neg[tie_starts] - cum_neg[group_bounds[group_of_tie]]
    tie_term = np.diff(cum_pos[tie_bounds]) * (2 * negatives_below + np.diff(cum_neg[tie_bounds]))
    twice_u = np.add.reduceat(tie_term, np.flatnonzero(new_group[tie_starts]))
    return sizes, positives, twice_u


def _sort_by_user_then_score(users: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Permutation ordering rows by (user, score); users must be a numeric array."""
    by_score = np.argsort(scores)  # ties within a user need not be ordered: tie runs handle them
    return by_score[np.argsort(users[by_score], kind="stable")]


def gauc_prepared(users: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                  weights: np.ndarray | None = None) -> tuple[float, int]:
    """GAUC on already validated arrays (users numeric). Returns (gauc, users counted)."""
    if len(labels) == 0:
        return float("nan"), 0
    order = _sort_by_user_then_score(users, scores)
    users_sorted = users[order]
    new_user = np.empty(len(order), dtype=bool)
    new_user[0] = True
    np.not_equal(users_sorted[1:], users_sorted[:-1], out=new_user[1:])
    sizes, pos, twice_u = _group_rank_stats(labels[order], scores[order], new_user,
                                            None if weights is None else weights[order])
    neg = sizes - pos
    valid = (pos > 0) & (neg > 0)
    n_users = int(np.count_nonzero(valid))
    if n_users == 0:
        return float("nan"), 0
    w = sizes[valid].astype(np.float64)
    user_auc = twice_u[valid] / (2.0 * pos[valid] * neg[valid])
    return float(np.dot(w, user_auc) / w.sum()), n_users


def auc_prepared(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
    """AUC on already validated arrays (see :func:`auc`)."""
    n = len(labels)
    if n == 0:
        return float("nan")
    order = np.argsort(scores)
    new_group = np.zeros(n, dtype=bool)
    new_group[0] = True
    size, pos, twice_u = _group_rank_stats(labels[order], scores[order], new_group,
                                           None if weights is None else weights[order])
    p, neg = pos[0], size[0] - pos[0]
    if p == 0 or neg == 0:
        return float("nan")
    return float(twice_u[0] / (2.0 * p * neg))


def logloss_prepared(labels: np.ndarray, probs: np.ndarray, eps: float,
                     weights: np.ndarray | None = None) -> float:
    """Log loss on already validated arrays (see :func:`logloss`)."""
    if len(labels) == 0:
        return float("nan")
    p = np.clip(probs.astype(np.float64), eps, 1.0 - eps)
    losses = -np.where(labels.astype(bool), np.log(p), np.log1p(-p))
    if weights is None:
        return float(losses.mean())
    total = weights.sum()
    return float(np.dot(weights, losses) / total) if total > 0 else float("nan")


def auc(labels: Any, scores: Any, weights: Any = None) -> float:
    """Exact ROC AUC (Mann-Whitney U; tied scores get average ranks, i.e. a tie counts 0.5).

    Args:
        labels: 0/1 (or bool) array-like of length n.
        scores: finite numeric array-like of length n; higher means more likely positive.
        weights: optional per-row weights (finite, >= 0); a pair counts the product of its rows'
            weights, so weight k equals k copies of the row.

    Returns:
        AUC in [0, 1], or ``nan`` when only one class is present or the input is empty.
    """
    y = inputs.labels(labels)
    s = inputs.scores(scores)
    inputs.check_len(s, "scores", len(y), "labels")
    return auc_prepared(y, s, inputs.weights(weights, len(y)))


def gauc_and_users(user_ids: Any, labels: Any, scores: Any, weights: Any = None) -> tuple[float, int]:
    """GAUC (DIN paper) and the number of users it averages over.

    GAUC = sum_u w_u * AUC_u / sum_u w_u over users whose impressions hold both classes, with
    w_u = the user's impression count (the sum of its rows' weights when weighted) and AUC_u
    exact with average ranks for ties (weighted as in :func:`auc`).

    Args:
        user_ids: array-like of length n: any int64 (huge or negative), strings or bytes.
        labels: 0/1 (or bool) array-like of length n.
        scores: finite numeric array-like of length n.
        weights: optional per-row weights (finite, >= 0); weight k equals k copies of the row.

    Returns:
        ``(gauc, n_users)``; ``(nan, 0)`` when no user has both a positive and a negative.
    """
    y = inputs.labels(labels)
    s = inputs.scores(scores)
    inputs.check_len(s, "scores", len(y), "labels")
    u = inputs.as_1d(user_ids, "user_ids")
    inputs.check_len(u, "user_ids", len(y), "labels")
    return gauc_prepared(inputs.user_ids(u), y, s, inputs.weights(weights, len(y)))


def gauc(user_ids: Any, labels: Any, scores: Any, weights: Any = None) -> float:
    """GAUC (DIN paper): impression-weighted mean of per-user AUCs; see :func:`gauc_and_users`.

    Args:
        user_ids: array-like of length n: any int64 (huge or negative), strings or bytes.
        labels: 0/1 (or bool) array-like of length n.
        scores: finite numeric array-like of length n.
        weights: optional per-row weights (finite, >= 0).

    Returns:
        GAUC in [0, 1], or ``nan`` when no user has both classes.
    """
    return gauc_and_users(user_ids, labels, scores, weights)[0]


def logloss(labels: Any, probs: Any, eps: float = 1e-7, weights: Any = None) -> float:
    """Mean binary cross-entropy, with probabilities clipped to [eps, 1 - eps].

    Args:
        labels: 0/1 (or bool) array-like of length n.
        probs: predicted click probabilities in [0, 1], length n.
        eps: clipping margin that keeps log() finite.
        weights: optional per-row weights (finite, >= 0): the weighted mean.

    Returns:
        Mean log loss (natural log), or ``nan`` for empty input.
    """
    y = inputs.labels(labels)
    p = inputs.probs(probs)
    inputs.check_len(p, "probs", len(y), "labels")
    return logloss_prepared(y, p, eps, inputs.weights(weights, len(y)))

