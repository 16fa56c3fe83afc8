"""rocket_ctr.metrics.ranking: exact AUC / GAUC / log loss against brute-force references."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest

from rocket_ctr.metrics.ranking import auc, gauc, gauc_and_users, logloss
from rocket_ctr.metrics.streaming import StreamingEvaluator

# ----------------------------------------------------------------------------- references


def brute_auc(labels, scores) -> float:
    """Pairwise definition: P(score_pos > score_neg) + 0.5 * P(tie); nan with one class."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def brute_gauc(user_ids, labels, scores) -> tuple[float, int]:
    """Python loop over users; weight = impressions; users with one class skipped."""
    user_ids, labels, scores = np.asarray(user_ids), np.asarray(labels), np.asarray(scores)
    num = den = 0.0
    counted = 0
    for u in set(user_ids.tolist()):
        rows = user_ids == u
        a = brute_auc(labels[rows], scores[rows])
        if math.isnan(a):
            continue
        num += rows.sum() * a
        den += rows.sum()
        counted += 1
    return (num / den if den else float("nan")), counted


def random_log(n, n_users, seed, *, decimals=1, pos_rate=0.3):
    """Rows with heavy score ties (scores rounded), sparse huge/negative int64 user ids."""
    rng = np.random.default_rng(seed)
    id_pool = rng.integers(-(2**62), 2**62, size=n_users, dtype=np.int64)
    users = id_pool[rng.integers(0, n_users, size=n)]
    scores = np.round(rng.random(n), decimals)
    labels = (rng.random(n) < pos_rate * (0.5 + scores)).astype(np.int64)
    return users, labels, scores


# ----------------------------------------------------------------------------- auc


def test_auc_hand_computed():
    # positives 0.4, 0.35 vs negatives 0.1, 0.8: wins (0.4>0.1), (0.35>0.1); losses vs 0.8.
    assert auc([0, 1, 1, 0], [0.1, 0.4, 0.35, 0.8]) == 0.5
    assert auc([0, 1, 0, 1], [0.1, 0.4, 0.35, 0.8]) == 1.0
    assert auc([1, 0], [0.1, 0.2]) == 0.0
    assert auc([0, 0, 1, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5  # all tied
    # pos 0.9 vs neg {0.5, 0.9}: one win, one tie -> 0.75
    assert auc([1, 0, 0], [0.9, 0.5, 0.9]) == 0.75


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_pairwise_bruteforce_with_ties(seed):
    _, labels, scores = random_log(2000, 1, seed, decimals=1)
    assert auc(labels, scores) == pytest.approx(brute_auc(labels, scores), abs=1e-12)


def test_auc_single_class_is_nan_and_empty_is_nan():
    assert math.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(auc([0, 0], [0.1, 0.2]))
    assert math.isnan(auc([], []))


def test_auc_accepts_bool_labels_int_scores_and_column_vectors():
    y = np.array([[0], [1], [1], [0]])
    s = np.array([[0.1], [0.4], [0.35], [0.8]], dtype=np.float32)
    assert auc(y, s) == 0.5
    assert auc(np.array([False, True]), np.array([1, 2])) == 1.0


# ----------------------------------------------------------------------------- gauc


def test_gauc_hand_computed():
    users = [7, 7, 7, 8, 8, 9, 10, 10, 10, 10]
    labels = [1, 0, 0, 0, 1, 1, 0, 1, 1, 0]
    scores = [0.9, 0.5, 0.9, 0.3, 0.2, 0.7, 0.1, 0.4, 0.35, 0.8]
    # user 7: 0.75 (w 3); user 8: 0.0 (w 2); user 9: one class, skipped; user 10: 0.5 (w 4)
    expected = (3 * 0.75 + 2 * 0.0 + 4 * 0.5) / 9
    value, n_users = gauc_and_users(users, labels, scores)
    assert n_users == 3
    assert value == pytest.approx(expected, abs=1e-15)
    assert gauc(users, labels, scores) == value


@pytest.mark.parametrize("seed", range(6))
def test_gauc_matches_per_user_bruteforce_with_ties(seed):
    users, labels, scores = random_log(5000, 300 + 100 * seed, seed, decimals=1)
    value, n_users = gauc_and_users(users, labels, scores)
    ref, ref_users = brute_gauc(users, labels, scores)
    assert n_users == ref_users
    assert 0 < n_users < len(set(users.tolist()))  # some users were excluded (one class only)
    assert value == pytest.approx(ref, abs=1e-12)


def test_gauc_float32_scores_and_coarse_ties():
    users, labels, scores = random_log(3000, 50, 11, decimals=0)  # scores only 0.0 or 1.0
    value, n_users = gauc_and_users(users, labels, scores.astype(np.float32))
    ref, ref_users = brute_gauc(users, labels, scores)
    assert (value, n_users) == (pytest.approx(ref, abs=1e-12), ref_users)


def test_gauc_string_and_bytes_ids_match_int_ids():
    users, labels, scores = random_log(4000, 200, 3)
    expected = gauc_and_users(users, labels, scores)
    as_str = np.array([f"user-{u}" for u in users])
    as_bytes = np.array([f"user-{u}".encode() for u in users])
    as_object = np.array([f"user-{u}".encode() for u in users], dtype=object)
    for ids in (as_str, as_bytes, as_object, as_str.tolist()):
        value, n_users = gauc_and_users(ids, labels, scores)
        assert n_users == expected[1]
        assert value == pytest.approx(expected[0], abs=1e-12)


def test_gauc_is_invariant_to_row_order():
    users, labels, scores = random_log(5000, 400, 5)
    perm = np.random.default_rng(0).permutation(len(users))
    a = gauc_and_users(users, labels, scores)
    b = gauc_and_users(users[perm], labels[perm], scores[perm])
    assert b[1] == a[1] and b[0] == pytest.approx(a[0], abs=1e-12)


def test_gauc_one_user_equals_auc():
    _, labels, scores = random_log(1000, 1, 2)
    assert gauc(np.zeros(1000, dtype=np.int64), labels, scores) == pytest.approx(auc(labels, scores), abs=1e-12)


def test_gauc_no_user_with_both_classes_is_nan():
    value, n_users = gauc_and_users([1, 1, 2, 3], [1, 1, 0, 1], [0.1, 0.2, 0.3, 0.4])
    assert math.isnan(value) and n_users == 0
    value, n_users = gauc_and_users([], [], [])
    assert math.isnan(value) and n_users == 0


def test_gauc_scales_to_10m_rows():
    # 10 M rows, 1 M distinct users: a Python loop per user takes minutes here.
    n, n_users = 10_000_000, 1_000_000
    rng = np.random.default_rng(0)
    users = rng.integers(-(2**62), 2**62, size=n_users, dtype=np.int64)[rng.integers(0, n_users, size=n)]
    scores = np.round(rng.random(n, dtype=np.float32), 3)
    labels = (rng.random(n, dtype=np.float32) < 0.2 * (0.5 + scores)).astype(np.int8)
    start = time.perf_counter()
    value, counted = gauc_and_users(users, labels, scores)
    elapsed = time.perf_counter() - start
    assert elapsed < 30, f"gauc on 10M rows took {elapsed:.1f}s"
    assert 0.5 < value < 0.8 and 100_000 < counted <= n_users


# ----------------------------------------------------------------------------- logloss


def test_logloss_matches_formula_and_clips():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.6, 0.5])
    expected = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert logloss(y, p) == pytest.approx(expected, rel=1e-12)
    # p = 0 / 1 on the wrong side: finite thanks to eps
    assert logloss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert logloss([1, 0], [1.0, 0.0]) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(logloss([], []))


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: auc([0, 1, 1], [0.1, 0.2]), "scores has length 2 but labels has length 3"),
        (lambda: auc([0, 2], [0.1, 0.2]), "labels must contain only 0 and 1"),
        (lambda: auc([0, 1], [0.1, float("nan")]), "scores must be finite"),
        (lambda: auc([0, 1], [0.1, float("inf")]), "scores must be finite"),
        (lambda: auc(["a", "b"], [0.1, 0.2]), "labels must be numeric"),
        (lambda: auc([0, 1], np.zeros((2, 2))), "scores must be 1-D"),
        (lambda: gauc([1, 2, 3], [0, 1], [0.1, 0.2]), "user_ids has length 3 but labels has length 2"),
        (lambda: gauc([1, 2], [0, -1], [0.1, 0.2]), "labels must contain only 0 and 1"),
        (lambda: gauc([1, 2], [0, 1], [0.1, np.nan]), "scores must be finite"),
        (lambda: logloss([0, 1], [0.1, 1.5]), r"probs must be probabilities in \[0, 1\]"),
        (lambda: logloss([0, 1, 1], [0.1, 0.5]), "probs has length 2 but labels has length 3"),
    ],
)
def test_invalid_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- streaming


def _split(n, rng):
    cuts = np.sort(rng.choice(np.arange(1, n), size=7, replace=False))
    return np.split(np.arange(n), cuts)


def test_streaming_evaluator_equals_one_shot():
    users, labels, scores = random_log(6000, 500, 9, decimals=2)
    rng = np.random.default_rng(1)
    booster = np.clip(scores + rng.normal(0, 0.1, len(scores)), 0, 1).round(2).astype(np.float32)
    ev = StreamingEvaluator()
    for idx in _split(len(users), rng):
        ev.update(users[idx], labels[idx].reshape(-1, 1),
                  {"light": scores[idx].reshape(-1, 1), "booster": booster[idx]})
    assert ev.num_rows == len(users) and ev.outputs == ("light", "booster")
    result = ev.result()
    assert set(result) == {"light", "booster"}
    for name, s in (("light", scores), ("booster", booster)):
        g, n_users = gauc_and_users(users, labels, s)
        r = result[name]
        assert r["auc"] == pytest.approx(auc(labels, s), abs=1e-12)
        assert r["gauc"] == pytest.approx(g, abs=1e-12)
        assert r["logloss"] == pytest.approx(logloss(labels, s), rel=1e-12)
        assert r["count"] == len(users) and r["gauc_users"] == n_users


def test_streaming_evaluator_with_tf_tensors_and_string_ids():
    import tensorflow as tf

    users, labels, scores = random_log(3000, 200, 4, decimals=1)
    str_users = np.array([str(u).encode() for u in users], dtype=object)
    ev_int, ev_str = StreamingEvaluator(), StreamingEvaluator()
    for idx in np.array_split(np.arange(len(users)), 5):
        s = tf.constant(scores[idx].reshape(-1, 1), dtype=tf.float32)
        y = tf.constant(labels[idx])
        ev_int.update(tf.constant(users[idx]), y, s)
        ev_str.update(tf.constant(str_users[idx].tolist()), y, s)
    s32 = scores.astype(np.float32)
    expected_g, expected_users = gauc_and_users(users, labels, s32)
    for r in (ev_int.result()["score"], ev_str.result()["score"]):
        assert r["gauc"] == pytest.approx(expected_g, abs=1e-12)
        assert r["gauc_users"] == expected_users
        assert r["auc"] == pytest.approx(auc(labels, s32), abs=1e-12)


def test_streaming_evaluator_copies_batches_and_resets():
    ev = StreamingEvaluator(outputs=("light",))
    assert math.isnan(ev.result()["light"]["auc"]) and ev.result()["light"]["count"] == 0
    buf_u, buf_y, buf_s = np.array([1, 1]), np.array([0, 1]), np.array([0.2, 0.8])
    ev.update(buf_u, buf_y, {"light": buf_s})
    buf_s[:] = [0.9, 0.1]  # caller reuses its buffer: the evaluator must have copied
    ev.update(buf_u, buf_y, {"light": buf_s})
    r = ev.result()["light"]
    assert r["count"] == 4 and r["gauc_users"] == 1
    assert r["auc"] == pytest.approx(brute_auc([0, 1, 0, 1], [0.2, 0.8, 0.9, 0.1]))
    ev.reset()
    assert ev.num_rows == 0 and ev.outputs == ("light",)
    assert StreamingEvaluator().result() == {}


def test_streaming_evaluator_rejects_inconsistent_batches():
    ev = StreamingEvaluator()
    ev.update([1, 2], [0, 1], {"light": [0.1, 0.2], "booster": [0.3, 0.4]})
    with pytest.raises(ValueError, match="expected outputs"):
        ev.update([1, 2], [0, 1], {"light": [0.1, 0.2]})
    with pytest.raises(ValueError, match="user_ids: this batch has dtype"):
        ev.update(["a", "b"], [0, 1], {"light": [0.1, 0.2], "booster": [0.3, 0.4]})
    with pytest.raises(ValueError, match=r"scores\['booster'\] must be probabilities"):
        ev.update([1, 2], [0, 1], {"light": [0.1, 0.2], "booster": [0.3, 4.0]})
    with pytest.raises(ValueError, match=r"scores\['light'\] has length 1 but labels has length 2"):
        ev.update([1, 2], [0, 1], {"light": [0.1], "booster": [0.3, 0.4]})
    assert ev.num_rows == 2  # failed batches added nothing
