"""The eval log's test protocol, read from made-up logs of each shape."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.test_protocol import TestProtocol, detect_protocol

SPEC = FeatureSpec()


def _write(path, rows, ts=True) -> list[str]:
    """A log of (user, ts) rows: only the two columns the detection reads."""
    columns = {"user_id": pa.array([u for u, _ in rows], pa.int64())}
    if ts:
        columns["ts"] = pa.array([t for _, t in rows], pa.int64())
    pq.write_table(pa.table(columns), path)
    return [str(path)]


def _events(users, seed=0):
    """``{user: sorted clock timestamps}``: 8..20 events per user on a clock shared by all users."""
    rng = np.random.default_rng(seed)
    return {u: sorted(rng.choice(10**6, size=int(rng.integers(8, 21)), replace=False) + 1_700_000_000)
            for u in range(users)}


def _rows(stamps, per_event=2):
    """Rows of events: a click and its negatives share the event's ts."""
    return [(u, int(t)) for u, times in stamps.items() for t in times for _ in range(per_event)]


def _split(tmp_path, train_stamps, eval_stamps, **kwargs):
    return detect_protocol(_write(tmp_path / "train.parquet", _rows(train_stamps), **kwargs),
                           _write(tmp_path / "eval.parquet", _rows(eval_stamps), **kwargs), SPEC)


def test_leave_one_out_with_positions_is_last_event(tmp_path):
    # ts = the event's position in the user's sequence; the eval log is each user's last position
    lengths = np.random.default_rng(1).integers(3, 12, size=50)
    train = {u: list(range(1, n)) for u, n in enumerate(lengths)}
    test = {u: [int(n)] for u, n in enumerate(lengths)}
    protocol = _split(tmp_path, train, test)
    assert protocol == TestProtocol("last-event", 1, protocol.reason)
    assert "each user's last event" in protocol.reason and "\n" not in protocol.reason


def test_the_last_k_events_on_a_clock_are_a_user_tail(tmp_path):
    stamps = _events(60)
    for k in (3, 5):
        protocol = _split(tmp_path, {u: t[:-k] for u, t in stamps.items()}, {u: t[-k:] for u, t in stamps.items()})
        assert (protocol.kind, protocol.tail_events) == ("user-tail", k)
        assert f"each user's last {k} events" in protocol.reason


def test_k_is_the_median_over_users(tmp_path):
    stamps = _events(60)
    ks = {u: 2 if u < 20 else 4 for u in stamps}  # median 4
    protocol = _split(tmp_path, {u: t[:-ks[u]] for u, t in stamps.items()},
                      {u: t[-ks[u]:] for u, t in stamps.items()})
    assert (protocol.kind, protocol.tail_events) == ("user-tail", 4)


def test_a_global_time_cut_is_time(tmp_path):
    stamps = _events(60)
    cut = np.quantile(np.concatenate(list(stamps.values())), 0.8)
    protocol = _split(tmp_path, {u: [t for t in ts if t < cut] for u, ts in stamps.items()},
                      {u: [t for t in ts if t >= cut] for u, ts in stamps.items()})
    assert protocol.kind == "time" and "global time cut" in protocol.reason


def test_mostly_cold_users_are_users(tmp_path):
    stamps = _events(60)
    protocol = _split(tmp_path, {u: t for u, t in stamps.items() if u < 40},
                      {u: t for u, t in stamps.items() if u >= 25})  # 20 of the 35 eval users are cold
    assert protocol.kind == "users" and "never appear in the training log" in protocol.reason


def test_no_timestamp_column_is_not_detected(tmp_path):
    stamps = _events(30)
    assert _split(tmp_path, {u: t[:-1] for u, t in stamps.items()}, {u: t[-1:] for u, t in stamps.items()},
                  ts=False) is None


def test_an_unrecognised_shape_is_none(tmp_path):
    # eval events drawn from anywhere in each user's sequence: neither a time cut nor a per-user tail
    stamps = _events(60)
    rng = np.random.default_rng(3)
    picked = {u: set(rng.choice(t, size=3, replace=False).tolist()) for u, t in stamps.items()}
    assert _split(tmp_path, {u: [x for x in t if x not in picked[u]] for u, t in stamps.items()},
                  {u: sorted(picked[u]) for u, t in stamps.items()}) is None
