"""The test protocol an eval log follows, read from its (user, timestamp) columns against the training log's.

How the eval rows relate to the training rows says how the model will be tested, and so which
validation rows (``rocket_ctr.io.holdout``) resemble the test:

* ``time``: the eval rows come after the training log's newest timestamp ("train until yesterday,
  serve today"): a global time cut.
* ``users``: most eval users never appear in the training log (cold users).
* ``last-event`` / ``user-tail``: each eval user's events all follow that user's newest training
  event: each user's last event (leave-one-out) or last k events.

Anything else is not recognised (None): the validation split is then chosen from the training log
alone. pyarrow only, two columns per log.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from rocket_ctr.features.spec import FeatureSpec

# share of eval rows at or after the training log's newest timestamp for a global time cut: not all,
# since a log exported in parts can repeat the cut's own second on both sides
TIME_CUT_SHARE = 0.9
# share of eval users absent from training for a cold-user protocol: above half, cold users are what
# the test measures, not a side effect of a per-user or time split
COLD_USER_SHARE = 0.5
# share of the (seen) eval users whose eval events all follow their own newest training event for a
# per-user tail: a few users with clock ties or late-logged events do not break the shape
TAIL_USER_SHARE = 0.9
# what training prints when the eval log is none of the shapes below
PROTOCOL_UNRECOGNISED = ("not recognised (the eval log is not a global time cut, mostly cold users or each user's "
                         "newest events, or a log lacks the timestamp column); the validation split follows the "
                         "training log")


@dataclasses.dataclass(frozen=True)
class TestProtocol:
    """What the eval log is, relative to the training log.

    Args:
        kind: ``last-event``, ``user-tail``, ``time`` or ``users`` (a validation split of that name).
        tail_events: k, the eval events per user of a per-user tail (1 for the other kinds).
        reason: one line on what the eval log looks like and why it is this kind.
    """

    __test__ = False  # not a pytest class despite its name

    kind: str
    tail_events: int
    reason: str


def _columns(files: list[str], spec: FeatureSpec) -> pa.Table | None:
    """The log's (user, timestamp) columns, rows with a null timestamp dropped; None without the column."""
    dataset = pads.dataset(files, format="parquet")
    if spec.timestamp is None or spec.timestamp not in dataset.schema.names:
        return None
    table = dataset.to_table(columns=[spec.user_id, spec.timestamp])
    return table.filter(pc.is_valid(table.column(spec.timestamp)))


def detect_protocol(train_files: list[str], eval_files: list[str], spec: FeatureSpec) -> TestProtocol | None:
    """Reads which test protocol the eval log follows (one pass over both logs' user and timestamp columns).

    Args:
        train_files, eval_files: the two logs' Parquet files (checked by the log gate).
        spec: their FeatureSpec (user and timestamp columns).
    Returns:
        A :class:`TestProtocol`, or None: a log without the timestamp column, an empty one, or a shape
        none of the rules recognises.
    """
    user, ts = spec.user_id, spec.timestamp
    train, evals = _columns(train_files, spec), _columns(eval_files, spec)
    if train is None or evals is None or not train.num_rows or not evals.num_rows:
        return None
    newest = pc.max(train.column(ts)).as_py()
    after = pc.mean(pc.cast(pc.greater_equal(evals.column(ts), newest), pa.int8())).as_py()
    if after >= TIME_CUT_SHARE:
        return TestProtocol("time", 1, f"{after:.0%} of the eval rows are at or after the training log's newest "
                                       f"{ts!r} ({newest}): a global time cut")
    last = train.group_by(user).aggregate([(ts, "max")]).rename_columns([user, "_last"])
    if evals.schema.field(user).type != last.schema.field(user).type:
        evals = evals.set_column(0, user, evals.column(user).cast(last.schema.field(user).type))
    joined = evals.join(last, user, join_type="left outer")
    joined = joined.append_column("_after", pc.greater_equal(joined.column(ts), joined.column("_last")))
    per_user = joined.group_by(user).aggregate([(ts, "count_distinct"), ("_last", "count"), ("_after", "all")])
    seen = per_user.column("_last_count").to_numpy() > 0
    cold = 1.0 - seen.mean()
    if cold >= COLD_USER_SHARE:
        return TestProtocol("users", 1, f"{cold:.0%} of the {len(seen):,} eval users never appear in the "
                                        "training log: held-out users")
    tail = per_user.column("_after_all").to_numpy(zero_copy_only=False)[seen].astype(bool).mean()
    if tail < TAIL_USER_SHARE:
        return None
    # k from the users seen in training: a cold user's eval events are its whole history, not a tail
    events = per_user.column(f"{ts}_count_distinct").to_numpy()[seen]
    k = int(np.quantile(events, 0.5, method="lower"))
    shape = "each user's last event" if k == 1 else f"each user's last {k} events"
    return TestProtocol("last-event" if k == 1 else "user-tail", k,
                        f"{tail:.0%} of the eval users have every eval event at or after their own newest "
                        f"training event, {k} distinct {ts!r} per user (median): {shape}")
