"""Validation rows held out of a training log, chosen to look like the log's test split.

Three ways to hold out a share ``fraction`` of the training rows:

* ``last-event``: the last event (every row at the user's newest timestamp: a click and the
  negatives logged with it) of a pseudo-random subset of users, sized so these rows are about
  ``fraction`` of the log. The users keep their earlier events in training — the shape of a
  leave-last-out test split (each user's next event), as in the Amazon/Yelp logs.
* ``time``: the newest ``fraction`` of the rows by timestamp — the shape of a time-split test.
* ``users``: every row of a pseudo-random ``fraction`` of the users (users never trained on).

``auto`` reads the log's (user, timestamp) columns once and decides: timestamps that count each
user's own events (most users start at the same value, e.g. 1) mean a leave-last-out log, so
``last-event``; timestamps on a clock shared by all users mean ``time``; no timestamp column
means ``users``. :attr:`Holdout.reason` says which and why, for the training output.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from rocket_ctr.config.schema import VALIDATION_SPLITS as SPLITS
from rocket_ctr.errors import InputError
from rocket_ctr.features.hashing import user_unit_hash
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.batches import column_to_numpy

PARTS = ("train", "validation")  # the two sides a reader can take
SAME_START_SHARE = 0.5  # share of users starting at one timestamp above which ts counts per-user events


@dataclasses.dataclass(frozen=True)
class Holdout:
    """Which rows of a training log are validation rows.

    Args:
        kind: ``last-event``, ``time`` or ``users`` (already resolved from ``auto``).
        fraction: the share of rows meant to be held out.
        reason: one line on what is held out and why (printed by training).
        user_cut: ``users``: users whose :func:`user_unit_hash` is below it are held out.
        users, last_ts: ``last-event``: the sampled users' keys (sorted) and their newest timestamp.
        threshold: ``time``: rows at or after this timestamp are held out.
        timestamp: the timestamp column the split reads (None for ``users``).
    """

    kind: str
    fraction: float
    reason: str
    user_cut: float = 0.0
    users: np.ndarray | None = None
    last_ts: np.ndarray | None = None
    threshold: float | None = None
    timestamp: str | None = None

    def columns(self, spec: FeatureSpec) -> tuple:
        """Columns :meth:`validation_rows` reads."""
        return (spec.user_id,) + ((self.timestamp,) if self.timestamp else ())

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
        return (self.users[at] == user) & (ts == self.last_ts[at])


def plan_holdout(files: list[str], spec: FeatureSpec, split: str = "auto", fraction: float | dict = 0.05) -> Holdout:
    """Decides the validation rows of a training log (one pass over its user and timestamp columns).

    Args:
        files: the training log's Parquet files.
        spec: its FeatureSpec (user and timestamp columns).
        split: one of :data:`SPLITS`.
        fraction: share of rows to hold out, in (0, 0.5); or ``{kind: share}`` for whichever kind
            the split resolves to.
    Returns:
        A :class:`Holdout`.
    Raises:
        InputError: an unknown split, or a timestamp split on a log without a usable timestamp.
    """
    if split not in SPLITS:
        raise InputError(f"validation split must be one of {SPLITS}, got {split!r}")
    shares = fraction if isinstance(fraction, dict) else dict.fromkeys(SPLITS, fraction)
    fraction = shares["users"]
    dataset = pads.dataset(files, format="parquet")
    has_ts = spec.timestamp is not None and spec.timestamp in dataset.schema.names
    if split in ("last-event", "time") and not has_ts:
        raise InputError(f"validation split {split!r} needs the timestamp column {spec.timestamp!r}, "
                         "which the training log lacks; use the 'users' split")
    if split == "users" or not has_ts:
        why = "" if split == "users" else f" (the log has no timestamp column {spec.timestamp!r})"
        return Holdout("users", fraction, f"all events of {fraction:.0%} of the users{why}", user_cut=fraction)
    table = dataset.to_table(columns=[spec.user_id, spec.timestamp])
    if table.column(spec.timestamp).null_count:
        raise InputError(f"column {spec.timestamp!r}: null timestamps; fill them or use the 'users' split")
    per_user = table.group_by(spec.user_id).aggregate([(spec.timestamp, "min"), (spec.timestamp, "max")])
    starts = per_user.column(f"{spec.timestamp}_min").to_numpy()
    values, counts = np.unique(starts, return_counts=True)
    same_start = counts.max() / len(starts) if len(starts) else 0.0
    if split == "auto":
        split = "last-event" if same_start >= SAME_START_SHARE else "time"
        clue = (f"{spec.timestamp!r} counts each user's own events ({same_start:.0%} of users start at "
                f"{values[counts.argmax()]})" if split == "last-event" else
                f"{spec.timestamp!r} is a clock shared by all users")
    else:
        clue = "chosen by the validation split setting"
    fraction = shares[split]
    if split == "time":
        ts = table.column(spec.timestamp).to_numpy()
        threshold = float(np.quantile(ts, 1.0 - fraction, method="higher"))
        return Holdout("time", fraction, f"the newest {fraction:.0%} of the rows by {spec.timestamp!r} ({clue})",
                       threshold=threshold, timestamp=spec.timestamp)
    return _last_event(table, per_user, spec, fraction, clue)


def _last_event(table: pa.Table, per_user: pa.Table, spec: FeatureSpec, fraction: float, clue: str) -> Holdout:
    """Samples users in hash order until their last events make up ``fraction`` of the rows."""
    user, ts = spec.user_id, spec.timestamp
    last = table.join(per_user.select([user, f"{ts}_max"]), user)
    last = last.filter(pc.equal(last.column(ts), last.column(f"{ts}_max")))
    sizes = last.group_by(user).aggregate([(ts, "count"), (f"{ts}_max", "max")])
    keys = column_to_numpy(sizes.column(user).combine_chunks())
    order = np.argsort(user_unit_hash(keys), kind="stable")
    taken = np.cumsum(sizes.column(f"{ts}_count").to_numpy()[order]) <= fraction * table.num_rows
    chosen = order[:max(1, int(taken.sum()))]
    chosen = chosen[np.argsort(keys[chosen], kind="stable")]  # sorted keys for searchsorted
    return Holdout("last-event", fraction,
                   f"the last event of {len(chosen):,} of {len(keys):,} users ({fraction:.0%} of the rows; {clue})",
                   users=keys[chosen], last_ts=sizes.column(f"{ts}_max_max").to_numpy()[chosen], timestamp=ts)
