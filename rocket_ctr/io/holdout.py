"""Validation rows held out of a training log, chosen to look like the test split.

Four ways to hold out a share ``fraction`` of the training rows:

* ``user-tail``: the last k events (every row at each of the user's k newest timestamps: a click
  and the negatives logged with it share one) of a pseudo-random subset of users, sized so these
  rows are about ``fraction`` of the log; at most half of a user's events, and a user with a single
  event is never sampled, so every held-out user keeps events in training — the shape of a test
  split of each user's next k events.
* ``last-event``: the k = 1 case of ``user-tail`` (any user's newest event) — the shape of a
  leave-last-out test split, as in the Amazon/Yelp logs.
* ``time``: the newest ``fraction`` of the rows by timestamp — the shape of a time-split test.
* ``users``: every row of a pseudo-random ``fraction`` of the users (users never trained on).

``auto`` follows the eval log's test protocol (:mod:`rocket_ctr.io.test_protocol`) where one was
detected. Otherwise it reads the training log's (user, timestamp) columns once and decides:
timestamps that count each user's own events (most users start at the same value, e.g. 1) mean a
leave-last-out log, so ``last-event``; timestamps on a clock shared by all users mean ``time``; no
timestamp column means ``users``. :attr:`Holdout.reason` says which and why, for the training output.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from rocket_ctr.config.validation import PER_USER_SPLITS
from rocket_ctr.config.validation import VALIDATION_SPLITS as SPLITS
from rocket_ctr.errors import FieldError, InputError
from rocket_ctr.features.hashing import salted_unit_hash, user_unit_hash
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.batches import column_to_numpy
from rocket_ctr.io.test_protocol import TestProtocol

# the sides a reader can take: train | validation, and validation = fold + calibration
PARTS = ("train", "validation", "fold", "calibration")
CALIBRATION_SALT = 1  # the calibration slice's hash stream, independent of the hash that samples users
SAME_START_SHARE = 0.5  # share of users starting at one timestamp above which ts counts per-user events


@dataclasses.dataclass(frozen=True)
class Holdout:
    """Which rows of a training log are validation rows.

    Args:
        kind: ``last-event``, ``user-tail``, ``time`` or ``users`` (already resolved from ``auto``).
        fraction: the share of rows meant to be held out.
        reason: one line on what is held out and why (printed by training).
        user_cut: ``users``: users whose :func:`user_unit_hash` is below it are held out.
        users, start_ts: per-user kinds: the sampled users' keys (sorted) and the oldest timestamp
            held out of each (its rows at or after it are validation rows).
        threshold: ``time``: rows at or after this timestamp are held out.
        timestamp: the timestamp column the split reads (None for ``users``).
        tail_events: per-user kinds: k, the newest events held out per sampled user.
        protocol: the eval log's test protocol the split was checked against (None: none detected).
        protocol_note: the line training prints on the eval log's protocol (None: no eval log).
        calibration_share: the share of validation users whose validation rows form the calibration
            slice (kept out of the fold-in; the refit fits the served model on them); 0 = none.
    """

    kind: str
    fraction: float
    reason: str
    user_cut: float = 0.0
    users: np.ndarray | None = None
    start_ts: np.ndarray | None = None
    threshold: float | None = None
    timestamp: str | None = None
    tail_events: int | None = None
    protocol: TestProtocol | None = None
    protocol_note: str | None = None
    calibration_share: float = 0.0

    def record(self) -> dict:
        """What metrics.json records of the split (``validation_split``)."""
        protocol = self.protocol and dataclasses.asdict(self.protocol)
        return {"kind": self.kind, "reason": self.reason, "protocol": protocol, "tail_events": self.tail_events,
                "calibration_share": self.calibration_share}

    def columns(self, spec: FeatureSpec) -> tuple:
        """Columns :meth:`validation_rows` reads."""
        return (spec.user_id,) + ((self.timestamp,) if self.timestamp else ())

    def rows(self, batch: pa.RecordBatch, spec: FeatureSpec, part: str) -> np.ndarray:
        """A bool mask over ``batch``'s rows: True for the rows of ``part`` (one of :data:`PARTS`)."""
        held_out = self.validation_rows(batch, spec)
        if part in ("train", "validation"):
            return held_out == (part == "validation")
        in_slice = salted_unit_hash(column_to_numpy(batch.column(spec.user_id)), CALIBRATION_SALT) \
            < self.calibration_share
        return held_out & (in_slice == (part == "calibration"))

    def validation_rows(self, batch: pa.RecordBatch, spec: FeatureSpec) -> np.ndarray:
        """A bool mask over ``batch``'s rows: True for the validation rows."""
        if self.kind == "time":
            return batch.column(self.timestamp).to_numpy(zero_copy_only=False) >= self.threshold
        user = column_to_numpy(batch.column(spec.user_id))
        if self.kind == "users":
            return user_unit_hash(user) < self.user_cut
        if not len(self.users):
            return np.zeros(len(user), dtype=bool)
        at = np.clip(np.searchsorted(self.users, user), 0, len(self.users) - 1)
        ts = batch.column(self.timestamp).to_numpy(zero_copy_only=False)
        return (self.users[at] == user) & (ts >= self.start_ts[at])


def plan_holdout(files: list[str], spec: FeatureSpec, split: str = "auto", fraction: float | dict = 0.05,
                 protocol: TestProtocol | None = None, tail_events: int | None = None) -> Holdout:
    """Decides the validation rows of a training log (one pass over its user and timestamp columns).

    Args:
        files: the training log's Parquet files.
        spec: its FeatureSpec (user and timestamp columns).
        split: one of :data:`SPLITS`.
        fraction: share of rows to hold out, in (0, 0.5); or ``{kind: share}`` for whichever kind
            the split resolves to.
        protocol: the eval log's test protocol (:func:`rocket_ctr.io.test_protocol.detect_protocol`):
            ``auto`` follows it, a declared split must agree with it.
        tail_events: k of a per-user split (None: the protocol's, else 1 for ``auto``).
    Returns:
        A :class:`Holdout`.
    Raises:
        InputError: an unknown split, or a timestamp split on a log without a usable timestamp.
        FieldError: a split or k the eval log's protocol contradicts, or ``user-tail`` without a k.
    """
    if split not in SPLITS:
        raise InputError(f"validation split must be one of {SPLITS}, got {split!r}")
    shares = fraction if isinstance(fraction, dict) else dict.fromkeys(SPLITS, fraction)
    fraction = shares["users"]
    split, k, clue = _follow_protocol(split, protocol, tail_events)
    dataset = pads.dataset(files, format="parquet")
    has_ts = spec.timestamp is not None and spec.timestamp in dataset.schema.names
    if split not in ("auto", "users") and not has_ts:
        raise InputError(f"validation split {split!r} needs the timestamp column {spec.timestamp!r}, "
                         "which the training log lacks; use the 'users' split")
    if split == "users" or not has_ts:
        if split == "auto" and tail_events is not None:
            raise FieldError(f"{{training.validation_tail_events}} {tail_events} needs a per-user split, but the "
                             f"training log has no timestamp column {spec.timestamp!r}")
        why = f" ({clue})" if protocol else ""
        if split == "auto":
            why = f" (the log has no timestamp column {spec.timestamp!r})"
        return Holdout("users", fraction, f"all events of {fraction:.0%} of the users{why}", user_cut=fraction,
                       protocol=protocol)
    table = dataset.to_table(columns=[spec.user_id, spec.timestamp])
    if table.column(spec.timestamp).null_count:
        raise InputError(f"column {spec.timestamp!r}: null timestamps; fill them or use the 'users' split")
    if split == "auto":
        starts = table.group_by(spec.user_id).aggregate([(spec.timestamp, "min")])[f"{spec.timestamp}_min"].to_numpy()
        values, counts = np.unique(starts, return_counts=True)
        same_start = counts.max() / len(starts) if len(starts) else 0.0
        split = "last-event" if same_start >= SAME_START_SHARE else "time"
        clue = (f"{spec.timestamp!r} counts each user's own events ({same_start:.0%} of users start at "
                f"{values[counts.argmax()]})" if split == "last-event" else
                f"{spec.timestamp!r} is a clock shared by all users")
        if tail_events is not None and split == "time":
            raise FieldError(f"{{training.validation_tail_events}} {tail_events} needs a per-user split, but "
                             f"{clue} (a time split); set {{training.validation_split}} user-tail")
    if split == "time":
        fraction = shares["time"]
        threshold = float(np.quantile(table.column(spec.timestamp).to_numpy(), 1.0 - fraction, method="higher"))
        return Holdout("time", fraction, f"the newest {fraction:.0%} of the rows by {spec.timestamp!r} ({clue})",
                       threshold=threshold, timestamp=spec.timestamp, protocol=protocol)
    k = k or tail_events or 1
    kind = "last-event" if k == 1 else "user-tail"
    return _user_tail(table, spec, kind, shares[kind], k, clue, protocol)


def _follow_protocol(split: str, protocol: TestProtocol | None, tail_events: int | None) -> tuple:
    """``(split, k, clue)``: the split the eval log's protocol implies for ``split`` (``auto`` stays
    ``auto`` without one), k of a per-user split (None: not known yet) and why."""
    if protocol is None:
        if split == "user-tail" and tail_events is None:
            raise FieldError("{training.validation_split} user-tail needs {training.validation_tail_events} "
                             "(k), or an eval log of each user's last k events to read it from")
        clue = None if split == "auto" else "chosen by the validation split setting"
        return split, (1 if split == "last-event" else tail_events), clue
    per_user = protocol.kind in PER_USER_SPLITS
    if split == "auto":
        if tail_events is not None and not per_user:
            raise FieldError(f"{{training.validation_tail_events}} {tail_events} needs a per-user split, but "
                             f"the eval log is a {protocol.kind} split: {protocol.reason}")
        split = protocol.kind
    elif per_user != (split in PER_USER_SPLITS) or (not per_user and split != protocol.kind):
        raise FieldError(f"{{training.validation_split}} {split} contradicts the eval log, a {protocol.kind} split: "
                         f"{protocol.reason}; use {{training.validation_split}} auto or {protocol.kind}")
    k = {"last-event": 1, "user-tail": tail_events or protocol.tail_events}.get(split)
    return split, k, "the eval log's test protocol"


def _user_tail(table: pa.Table, spec: FeatureSpec, kind: str, fraction: float, k: int, clue: str,
               protocol: TestProtocol | None) -> Holdout:
    """Samples users in hash order until their last ``k`` events make up ``fraction`` of the rows."""
    user, ts = spec.user_id, spec.timestamp
    pairs = table.group_by([user, ts]).aggregate([([], "count_all")])  # an event: distinct (user, ts)
    pairs = pairs.sort_by([(user, "ascending"), (ts, "descending")])
    keys = column_to_numpy(pairs.column(user).combine_chunks())
    stamps, rows = pairs.column(ts).to_numpy(), pairs.column("count_all").to_numpy()
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    events = np.diff(np.r_[first, len(keys)])  # distinct timestamps per user, newest first from `first`
    # k = 1 takes any user's newest event; k > 1 at most half of a user's events, so the user trains on the rest
    take = np.ones_like(events) if k == 1 else np.minimum(k, events // 2)
    rank = np.arange(len(keys)) - np.repeat(first, events)
    held_rows = np.add.reduceat(np.where(rank < np.repeat(take, events), rows, 0), first) if len(keys) else rows
    start = stamps[first + np.maximum(take, 1) - 1]
    eligible = np.flatnonzero(take > 0)
    users = keys[first]
    order = eligible[np.argsort(user_unit_hash(users[eligible]), kind="stable")]
    taken = np.cumsum(held_rows[order]) <= fraction * table.num_rows
    chosen = order[:max(1, int(taken.sum()))]
    chosen = chosen[np.argsort(users[chosen], kind="stable")]  # sorted keys for searchsorted
    what = "the last event" if k == 1 else f"the last {k} events (at most half of each user's)"
    return Holdout(kind, fraction, f"{what} of {len(chosen):,} of {len(users):,} users ({fraction:.0%} of the rows; "
                   f"{clue})", users=users[chosen], start_ts=start[chosen], timestamp=ts, tail_events=k,
                   protocol=protocol)
