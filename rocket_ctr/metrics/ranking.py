"""Exact, vectorised CTR metrics: AUC, GAUC (DIN paper), log loss, and a streaming evaluator.

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
[0, 1]) raise ``ValueError`` naming the offending argument.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rocket_ctr.calibration.measures import ece_of_bins, pcoc, reliability_bins

__all__ = ["auc", "gauc", "gauc_and_users", "logloss", "StreamingEvaluator"]

DEFAULT_OUTPUT = "score"  # name used by StreamingEvaluator when scores are one array, not a mapping


# ----------------------------------------------------------------------------- validation


def _as_1d(x: Any, name: str) -> np.ndarray:
    """np.asarray, flattening a trailing size-1 axis (Keras outputs are shaped (batch, 1))."""
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (or shaped (n, 1)), got shape {arr.shape}")
    return arr


def _check_len(arr: np.ndarray, name: str, n: int, ref: str) -> None:
    if len(arr) != n:
        raise ValueError(f"{name} has length {len(arr)} but {ref} has length {n}")


def _labels(x: Any, name: str = "labels") -> np.ndarray:
    """Validated labels as an int8 array of 0/1."""
    arr = _as_1d(x, name)
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric or bool 0/1 values, got dtype {arr.dtype}")
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = arr[(arr != 0) & (arr != 1)][0]
        raise ValueError(f"{name} must contain only 0 and 1, found {bad!r}")
    return arr.astype(np.int8)


def _scores(x: Any, name: str = "scores") -> np.ndarray:
    """Validated finite float scores (float dtypes kept as is: casting could merge or split ties)."""
    arr = _as_1d(x, name)
    if arr.dtype.kind in "iub":
        arr = arr.astype(np.float64)
    elif arr.dtype.kind != "f":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, found {int(np.sum(~np.isfinite(arr)))} NaN/inf values")
    return arr


def _probs(x: Any, name: str = "probs") -> np.ndarray:
    arr = _scores(x, name)
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} must be probabilities in [0, 1], found range [{arr.min()}, {arr.max()}]")
    return arr


def _unbox_object_ids(arr: np.ndarray, name: str) -> np.ndarray:
    """Object arrays of bytes/str (what tf string tensors give) -> fixed-width bytes/str arrays.

    Those sort in C instead of via Python comparisons. Ids are expected to be of one type.
    """
    if arr.dtype.kind != "O" or not arr.size:
        return arr
    first = arr[0]
    try:
        if isinstance(first, bytes):
            return arr.astype(np.bytes_)
        if isinstance(first, str):
            return arr.astype(np.str_)
    except (UnicodeError, TypeError, ValueError) as e:
        raise ValueError(f"{name}: object ids must all be bytes or all str ({e})") from None
    return arr


def _user_ids(x: Any, name: str = "user_ids") -> np.ndarray:
    """User ids as a sortable numeric array (strings/bytes/objects factorised to int codes)."""
    arr = _as_1d(x, name)
    kind = arr.dtype.kind
    if kind in "iub":
        return arr
    if kind == "f":
        if arr.size and not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must not contain NaN/inf")
        return arr
    arr = _unbox_object_ids(arr, name)
    if arr.dtype.kind in "USO":
        try:
            _, codes = np.unique(arr, return_inverse=True)
        except TypeError as e:
            raise ValueError(f"{name}: ids are not mutually comparable ({e})") from None
        return codes.reshape(-1)
    raise ValueError(f"{name} must be integers, strings or bytes, got dtype {arr.dtype}")


def _id_family(arr: np.ndarray) -> str | None:
    """'number', 'str', 'bytes' or 'object': batches that may be concatenated together."""
    kind = arr.dtype.kind
    return {"i": "number", "u": "number", "b": "number", "f": "number",
            "U": "str", "S": "bytes", "O": "object"}.get(kind)


# ----------------------------------------------------------------------------- core


def _weights(x: Any, n: int, name: str = "weights") -> np.ndarray | None:
    """Validated per-row weights (finite, >= 0) as float64, or None for unweighted rows."""
    if x is None:
        return None
    arr = _as_1d(x, name)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    _check_len(arr, name, n, "labels")
    arr = arr.astype(np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and arr.min() >= 0):
        raise ValueError(f"{name} must be finite and >= 0, found {arr[~(np.isfinite(arr) & (arr >= 0))][0]!r}")
    return arr


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


def _gauc_prepared(users: np.ndarray, labels: np.ndarray, scores: np.ndarray,
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


def _auc_prepared(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None) -> float:
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


def _logloss_prepared(labels: np.ndarray, probs: np.ndarray, eps: float,
                      weights: np.ndarray | None = None) -> float:
    if len(labels) == 0:
        return float("nan")
    p = np.clip(probs.astype(np.float64), eps, 1.0 - eps)
    losses = -np.where(labels.astype(bool), np.log(p), np.log1p(-p))
    if weights is None:
        return float(losses.mean())
    total = weights.sum()
    return float(np.dot(weights, losses) / total) if total > 0 else float("nan")


# ----------------------------------------------------------------------------- public API


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
    y = _labels(labels)
    s = _scores(scores)
    _check_len(s, "scores", len(y), "labels")
    return _auc_prepared(y, s, _weights(weights, len(y)))


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
    y = _labels(labels)
    s = _scores(scores)
    _check_len(s, "scores", len(y), "labels")
    u = _as_1d(user_ids, "user_ids")
    _check_len(u, "user_ids", len(y), "labels")
    return _gauc_prepared(_user_ids(u), y, s, _weights(weights, len(y)))


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
    y = _labels(labels)
    p = _probs(probs)
    _check_len(p, "probs", len(y), "labels")
    return _logloss_prepared(y, p, eps, _weights(weights, len(y)))


class StreamingEvaluator:
    """Accumulates evaluation batches and computes exact AUC / GAUC / log loss and calibration
    (PCOC, ECE over equal-mass bins, the reliability bins) at the end, optionally weighted.

    Exact GAUC needs every row, so memory is the accumulated arrays themselves (about
    n * (id bytes + 1 + 4-or-8 bytes per output)). Batches may be numpy arrays, tf tensors or
    anything ``np.asarray`` accepts; they are validated (and copied) as they arrive, so a bad
    batch fails at ``update`` rather than at ``result``.

    Example::

        ev = StreamingEvaluator()
        for batch in eval_ds:
            out = model(batch[0], training=False)
            ev.update(batch[0]["user_id"], batch[1], {"light": out["light"], "booster": out["booster"]})
        ev.result()  # {"light": {"auc", "gauc", "logloss", "pcoc", "ece", "count", "gauc_users",
                     #            "reliability"}, ...}

    Args:
        outputs: expected output names; None to take them from the first ``update``.
        eps: log-loss clipping margin.
    """

    def __init__(self, outputs: tuple[str, ...] | list[str] | None = None, eps: float = 1e-7):
        self._outputs: tuple[str, ...] | None = tuple(outputs) if outputs is not None else None
        self.eps = eps
        self.reset()

    def reset(self) -> None:
        """Drops every accumulated batch (output names given to the constructor are kept)."""
        self._users: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._weights: list[np.ndarray] = []
        self._scores: dict[str, list[np.ndarray]] = {k: [] for k in (self._outputs or ())}
        self._n = 0

    @property
    def num_rows(self) -> int:
        """Rows accumulated so far."""
        return self._n

    @property
    def outputs(self) -> tuple[str, ...] | None:
        """Output names (None until the first update when not given to the constructor)."""
        return self._outputs

    def update(self, user_ids: Any, labels: Any, scores: Any, weights: Any = None) -> None:
        """Adds one batch.

        Args:
            user_ids: batch user ids (ints, strings or bytes; one type for the whole stream).
            labels: batch 0/1 labels.
            scores: predicted probabilities in [0, 1]: a mapping ``{output name: array}`` (the
                same names every batch) or a single array (output name ``"score"``).
            weights: optional per-row weights (finite, >= 0; None = 1 each): every metric is
                then weighted (weight k = k copies of the row).
        """
        if not isinstance(scores, Mapping):
            scores = {DEFAULT_OUTPUT: scores}
        names = tuple(scores)
        if not names:
            raise ValueError("scores: got an empty mapping; need at least one named output")
        if self._outputs is None:
            self._outputs = names
            self._scores = {k: [] for k in names}
        elif set(names) != set(self._outputs):
            raise ValueError(f"scores: expected outputs {sorted(self._outputs)}, got {sorted(names)}")
        y = _labels(labels)
        u = _unbox_object_ids(_as_1d(user_ids, "user_ids"), "user_ids")
        _check_len(u, "user_ids", len(y), "labels")
        family = _id_family(u)
        if family is None:
            raise ValueError(f"user_ids must be integers, strings or bytes, got dtype {u.dtype}")
        if self._users and family != _id_family(self._users[0]):
            raise ValueError(
                f"user_ids: this batch has dtype {u.dtype} but earlier batches had "
                f"{self._users[0].dtype}; use one id type for the whole stream")
        checked = {}
        for name in names:
            p = _probs(scores[name], f"scores[{name!r}]")
            _check_len(p, f"scores[{name!r}]", len(y), "labels")
            checked[name] = p
        self._users.append(np.array(u, copy=True))
        self._labels.append(y)  # already a fresh int8 copy
        w = _weights(weights, len(y))
        self._weights.append(np.ones(len(y)) if w is None else w)
        for name, p in checked.items():
            self._scores[name].append(np.array(p, copy=True))
        self._n += len(y)

    def result(self) -> dict[str, dict[str, float | int]]:
        """Metrics over everything accumulated.

        Returns:
            ``{output: {"auc", "gauc", "logloss", "pcoc", "ece", "count", "gauc_users",
            "reliability"}}`` where ``count`` is the number of rows, ``gauc_users`` the users
            counted by GAUC (both classes seen) and ``reliability`` the equal-mass bins of
            :func:`rocket_ctr.calibration.measures.reliability_bins`. Metrics are ``nan`` where undefined
            (no rows, one class); ``{}`` before any update when no output names were given.
        """
        if not self._outputs:
            return {}
        if self._n == 0:
            nan = float("nan")
            return {k: {"auc": nan, "gauc": nan, "logloss": nan, "pcoc": nan, "ece": nan, "count": 0,
                        "gauc_users": 0, "reliability": reliability_bins([], [])} for k in self._outputs}
        users = _user_ids(np.concatenate(self._users))  # factorised once, shared by all outputs
        labels = np.concatenate(self._labels)
        weights = np.concatenate(self._weights)
        exact = None if np.all(weights == 1.0) else weights  # unweighted: the exact integer path
        out: dict[str, dict[str, float | int]] = {}
        for name in self._outputs:
            s = np.concatenate(self._scores[name])
            g, n_users = _gauc_prepared(users, labels, s, exact)
            bins = reliability_bins(labels, s, weights)
            out[name] = {
                "auc": _auc_prepared(labels, s, exact),
                "gauc": g,
                "logloss": _logloss_prepared(labels, s, self.eps, exact),
                "pcoc": pcoc(labels, s, weights),
                "ece": ece_of_bins(bins),
                "count": self._n,
                "gauc_users": n_users,
                "reliability": bins,
            }
        return out
