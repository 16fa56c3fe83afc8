"""StreamingEvaluator: accumulates evaluation batches, then scores them exactly.

AUC / GAUC / log loss come from :mod:`rocket_ctr.metrics.ranking`, PCOC, ECE and the reliability
bins from :mod:`rocket_ctr.calibration.measures`; every batch is checked as it arrives.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rocket_ctr.calibration.measures import ece_of_bins, pcoc, reliability_bins
from rocket_ctr.metrics import inputs
from rocket_ctr.metrics.ranking import auc_prepared, gauc_prepared, logloss_prepared

__all__ = ["StreamingEvaluator"]

DEFAULT_OUTPUT = "score"  # name used by StreamingEvaluator when scores are one array, not a mapping


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
        y = inputs.labels(labels)
        u = inputs.unbox_object_ids(inputs.as_1d(user_ids, "user_ids"), "user_ids")
        inputs.check_len(u, "user_ids", len(y), "labels")
        family = inputs.id_family(u)
        if family is None:
            raise ValueError(f"user_ids must be integers, strings or bytes, got dtype {u.dtype}")
        if self._users and family != inputs.id_family(self._users[0]):
            raise ValueError(
                f"user_ids: this batch has dtype {u.dtype} but earlier batches had "
                f"{self._users[0].dtype}; use one id type for the whole stream")
        checked = {}
        for name in names:
            p = inputs.probs(scores[name], f"scores[{name!r}]")
            inputs.check_len(p, f"scores[{name!r}]", len(y), "labels")
            checked[name] = p
        self._users.append(np.array(u, copy=True))
        self._labels.append(y)  # already a fresh int8 copy
        w = inputs.weights(weights, len(y))
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
        users = inputs.user_ids(np.concatenate(self._users))  # factorised once, shared by all outputs
        labels = np.concatenate(self._labels)
        weights = np.concatenate(self._weights)
        exact = None if np.all(weights == 1.0) else weights  # unweighted: the exact integer path
        out: dict[str, dict[str, float | int]] = {}
        for name in self._outputs:
            s = np.concatenate(self._scores[name])
            g, n_users = gauc_prepared(users, labels, s, exact)
            bins = reliability_bins(labels, s, weights)
            out[name] = {
                "auc": auc_prepared(labels, s, exact),
                "gauc": g,
                "logloss": logloss_prepared(labels, s, self.eps, exact),
                "pcoc": pcoc(labels, s, weights),
                "ece": ece_of_bins(bins),
                "count": self._n,
                "gauc_users": n_users,
                "reliability": bins,
            }
        return out
