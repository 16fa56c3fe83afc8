"""Validation hold-outs: what ``auto`` picks from a log's shape, which rows each split holds out."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REFERENCE_SCHEMA, log_columns, write_log
from rocket_ctr.config.validation import VALIDATION_SPLITS as SPLITS
from rocket_ctr.errors import FieldError, InputError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.holdout import plan_holdout
from rocket_ctr.io.reader import ClickLogReader
from rocket_ctr.io.test_protocol import TestProtocol

SPEC = FeatureSpec()


def _leave_last_out_log(path, users=40, seed=0, string_users=False):
    """Every user has 3..12 events; ts = the event's position in the user's sequence (1, 2, ...);
    each event is a positive and a negative row sharing ts, as in the shared Amazon/Yelp logs."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        for position in range(1, int(rng.integers(3, 13)) + 1):
            rows += [(user, position, 1), (user, position, 0)]
    columns = log_columns(len(rows), seed=seed, max_len=5)
    columns["user_id"] = [f"u{u}" if string_users else u for u, _, _ in rows]
    columns["ts"] = [t for _, t, _ in rows]
    columns["label"] = [y for _, _, y in rows]
    if string_users:
        schema = REFERENCE_SCHEMA.set(REFERENCE_SCHEMA.get_field_index("user_id"), pa.field("user_id", pa.string()))
        return write_log(path, columns, schema=schema), rows
    return write_log(path, columns), rows


def _held(path, holdout, part="validation"):
    reader = ClickLogReader(path, SPEC, batch_size=10_000, holdout=(holdout, part))
    return [int(i) for features, _ in reader for i in features["item_id"]]


def test_auto_picks_last_event_for_per_user_positions(tmp_path):
    path, rows = _leave_last_out_log(tmp_path / "log.parquet")
    holdout = plan_holdout([path], SPEC, "auto", 0.1)
    assert holdout.kind == "last-event"
    assert "counts each user's own events" in holdout.reason
    last = {}
    for user, ts, _ in rows:
        last[user] = max(last.get(user, 0), ts)
    held_items = {i for i in _held(path, holdout)}
    held_rows = [rows[i] for i in sorted(held_items)]
    # only last events, both rows of each, of a subset of users, about 10 % of the rows
    assert held_rows and all(ts == last[user] for user, ts, _ in held_rows)
    users = {user for user, _, _ in held_rows}
    assert len(held_rows) == 2 * len(users)
    assert 0.05 <= len(held_rows) / len(rows) <= 0.1
    assert len(users) < len(last)
    # the train side is exactly the complement, and still holds the held-out users' earlier events
    train_items = {i for i in _held(path, holdout, "train")}
    assert train_items | held_items == set(range(len(rows))) and not train_items & held_items
    assert all(any(rows[i][0] == u for i in train_items) for u in users)


def test_last_event_with_string_user_ids(tmp_path):
    path, rows = _leave_last_out_log(tmp_path / "log.parquet", string_users=True)
    holdout = plan_holdout([path], SPEC, "last-event", 0.1)
    held = [rows[i] for i in _held(path, holdout)]
    last = {}
    for user, ts, _ in rows:
        last[user] = max(last.get(user, 0), ts)
    assert held and all(ts == last[user] for user, ts, _ in held)


def test_auto_picks_time_for_a_shared_clock(tmp_path):
    path = write_log(tmp_path / "log.parquet", n=400)  # ts = 1_700_000_000 + row: one clock for all users
    holdout = plan_holdout([path], SPEC, "auto", 0.1)
    assert holdout.kind == "time" and "clock shared by all users" in holdout.reason
    held = sorted(i for i in _held(path, holdout))
    assert held == list(range(400 - len(held), 400))  # the newest rows
    assert 35 <= len(held) <= 45


def test_users_split_and_logs_without_timestamps(tmp_path):
    columns = log_columns(300)
    columns.pop("ts")
    path = write_log(tmp_path / "log.parquet", columns)
    holdout = plan_holdout([path], SPEC, "auto", 0.3)
    assert holdout.kind == "users" and "no timestamp column" in holdout.reason
    held = {i for i in _held(path, holdout)}
    users = {columns["user_id"][i] for i in held}
    # whole users: every row of a held-out user is held out
    assert held == {i for i, u in enumerate(columns["user_id"]) if u in users}
    with pytest.raises(InputError, match="needs the timestamp column 'ts'"):
        plan_holdout([path], SPEC, "last-event", 0.1)
    with pytest.raises(InputError, match="validation split must be one of"):
        plan_holdout([path], SPEC, "newest", 0.1)


def test_null_timestamps_are_refused(tmp_path):
    columns = log_columns(20)
    columns["ts"][3] = None
    path = write_log(tmp_path / "log.parquet", columns)
    with pytest.raises(InputError, match="'ts': null timestamps"):
        plan_holdout([path], SPEC, "auto", 0.1)
    assert pq.read_table(path).num_rows == 20


def test_a_share_per_kind_applies_the_share_of_the_kind_auto_picks(tmp_path):
    shares = {"auto": 0.05, "last-event": 0.3, "time": 0.1, "users": 0.05}
    path, rows = _leave_last_out_log(tmp_path / "events.parquet")
    last_event = plan_holdout([path], SPEC, "auto", shares)
    assert last_event.kind == "last-event" and last_event.fraction == 0.3
    assert 0.1 < len(_held(path, last_event)) / len(rows) <= 0.3  # every user's last event: 13 %
    clock = plan_holdout([write_log(tmp_path / "clock.parquet", n=400)], SPEC, "auto", shares)
    assert clock.kind == "time" and clock.fraction == 0.1


def _clock_log(path, users=40, seed=0):
    """Users with 1..12 events on a clock shared by all users; each event is 1..3 rows sharing ts."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(users):
        stamps = sorted(rng.choice(10**6, size=int(rng.integers(1, 13)), replace=False) + 1_700_000_000)
        rows += [(user, int(t)) for t in stamps for _ in range(int(rng.integers(1, 4)))]
    columns = log_columns(len(rows), seed=seed, max_len=5)
    columns["user_id"] = [u for u, _ in rows]
    columns["ts"] = [t for _, t in rows]
    return write_log(path, columns), rows


def test_user_tail_holds_out_each_sampled_users_last_k_events_and_at_most_half(tmp_path):
    path, rows = _clock_log(tmp_path / "log.parquet")
    stamps = {}
    for user, ts in rows:
        stamps.setdefault(user, set()).add(ts)
    for k in (2, 3):
        holdout = plan_holdout([path], SPEC, "user-tail", 0.3, tail_events=k)
        assert (holdout.kind, holdout.tail_events) == ("user-tail", k) and f"the last {k} events" in holdout.reason
        held = set(_held(path, holdout))
        users = {rows[i][0] for i in held}
        assert users and all(len(stamps[u]) >= 2 for u in users)  # a one-event user is never sampled
        for user in users:
            newest = sorted(stamps[user])[-min(k, len(stamps[user]) // 2):]
            # exactly every row of the user's newest events (k, or half of the user's events)
            assert {i for i, (u, t) in enumerate(rows) if u == user and t in newest} == \
                {i for i in held if rows[i][0] == user}
        assert held | set(_held(path, holdout, "train")) == set(range(len(rows)))


def test_last_event_is_the_user_tail_of_one_event(tmp_path):
    path, _ = _leave_last_out_log(tmp_path / "log.parquet")
    assert _held(path, plan_holdout([path], SPEC, "last-event", 0.1)) == \
        _held(path, plan_holdout([path], SPEC, "user-tail", 0.1, tail_events=1))


def test_auto_follows_the_eval_logs_protocol(tmp_path):
    path, _ = _clock_log(tmp_path / "log.parquet")
    tail = TestProtocol("user-tail", 3, "each user's last 3 events")
    holdout = plan_holdout([path], SPEC, "auto", {**dict.fromkeys(SPLITS, 0.05), "user-tail": 0.2}, tail)
    assert (holdout.kind, holdout.tail_events, holdout.fraction) == ("user-tail", 3, 0.2)
    assert holdout.record() == {"kind": "user-tail", "reason": holdout.reason, "tail_events": 3,
                                "protocol": {"kind": "user-tail", "tail_events": 3,
                                             "reason": "each user's last 3 events"}, "calibration_share": 0.0}
    assert plan_holdout([path], SPEC, "auto", 0.1, tail, tail_events=2).tail_events == 2  # a given k wins
    assert plan_holdout([path], SPEC, "user-tail", 0.1, tail).tail_events == 3  # k from the eval log
    assert plan_holdout([path], SPEC, "auto", 0.1, TestProtocol("time", 1, "a time cut")).kind == "time"
    # without a protocol: the training log's clock
    assert plan_holdout([path], SPEC, "auto", 0.1).record()["protocol"] is None


@pytest.mark.parametrize("split,protocol,k,message", [
    ("time", TestProtocol("last-event", 1, "each user's last event"), None,
     "{training.validation_split} time contradicts the eval log, a last-event split: each user's last event"),
    ("last-event", TestProtocol("users", 1, "cold users"), None, "last-event contradicts the eval log, a users"),
    ("users", TestProtocol("time", 1, "a time cut"), None, "users contradicts the eval log, a time split"),
    ("user-tail", None, None, "user-tail needs {training.validation_tail_events}"),
    ("auto", TestProtocol("time", 1, "a time cut"), 3, "{training.validation_tail_events} 3 needs a per-user split"),
    ("auto", None, 3, "needs a per-user split, but 'ts' is a clock shared by all users")])
def test_a_split_or_k_the_logs_contradict_is_refused_in_one_line(tmp_path, split, protocol, k, message):
    path, _ = _clock_log(tmp_path / "log.parquet")
    with pytest.raises(FieldError) as caught:
        plan_holdout([path], SPEC, split, 0.1, protocol, k)
    assert message in caught.value.template and "\n" not in str(caught.value)
