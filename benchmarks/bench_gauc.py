"""Times rocket_ctr.metrics.ranking.gauc on 1 M and 10 M rows (1 M distinct users) and compares it with a
brute-force per-user Python loops on a ~100 k-row subset (as a speed ratio).

    .venv/bin/python benchmarks/bench_gauc.py [--repeats 3]

Data: sparse random int64 user ids (huge and negative), float32 scores rounded to 3 decimals
(so ties are common), labels drawn with a score-dependent click rate.
The subset is every row of the 10 M set whose user is among the first 10 k users (~100 k rows,
~10 rows per user: the same density as the 10 M set).
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from rocket_ctr.metrics.ranking import auc, gauc_and_users

N_USERS = 1_000_000


def make_log(n: int, n_users: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    user_index = rng.integers(0, n_users, size=n)
    ids = rng.integers(-(2**62), 2**62, size=n_users, dtype=np.int64)
    scores = np.round(rng.random(n, dtype=np.float32), 3)
    labels = (rng.random(n, dtype=np.float32) < 0.2 * (0.5 + scores)).astype(np.int8)
    return user_index, ids[user_index], labels, scores


def brute_auc(labels, scores) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))


def brute_gauc_masked(users, labels, scores) -> tuple[float, int]:
    """The test suite's reference: a Python loop over users, one boolean mask per user."""
    num = den = 0.0
    counted = 0
    for u in np.unique(users):
        rows = users == u
        a = brute_auc(labels[rows], scores[rows])
        if not math.isnan(a):
            num += rows.sum() * a
            den += rows.sum()
            counted += 1
    return num / den, counted


def brute_gauc_grouped(users, labels, scores) -> tuple[float, int]:
    """A kinder per-user loop: rows grouped in a dict first, then a Python loop over users."""
    rows: dict = {}
    for i, u in enumerate(users.tolist()):
        rows.setdefault(u, []).append(i)
    num = den = 0.0
    counted = 0
    for idx in rows.values():
        idx = np.asarray(idx)
        a = brute_auc(labels[idx], scores[idx])
        if not math.isnan(a):
            num += len(idx) * a
            den += len(idx)
            counted += 1
    return num / den, counted


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="best-of repeats per timing")
    args = parser.parse_args()

    for n in (1_000_000, 10_000_000):
        user_index, users, labels, scores = make_log(n, N_USERS)
        secs, (g, counted) = best_of(lambda: gauc_and_users(users, labels, scores), args.repeats)
        auc_secs, a = best_of(lambda: auc(labels, scores), args.repeats)
        print(f"gauc  {n:>10,} rows, {N_USERS:,} users: {secs:7.3f} s  "
              f"(gauc={g:.6f} over {counted:,} users; auc {auc_secs:.3f} s, auc={a:.6f})")

    keep = user_index < 10_000
    su, sy, ss = users[keep], labels[keep], scores[keep]
    fast_secs, (g_fast, c_fast) = best_of(lambda: gauc_and_users(su, sy, ss), args.repeats)
    print(f"subset {len(su):,} rows, {len(np.unique(su)):,} users: vectorised gauc {fast_secs * 1e3:.1f} ms "
          f"(gauc={g_fast:.6f} over {c_fast:,} users)")
    for label, brute in (("per-user loop, mask per user (test reference)", brute_gauc_masked),
                         ("per-user loop, rows grouped in a dict first", brute_gauc_grouped)):
        brute_secs, (g_brute, c_brute) = best_of(lambda: brute(su, sy, ss), 1)
        assert c_fast == c_brute and abs(g_fast - g_brute) < 1e-12, (label, g_fast, g_brute, c_fast, c_brute)
        print(f"  {label}: {brute_secs:.2f} s -> vectorised is {brute_secs / fast_secs:,.0f}x faster (results agree)")

if __name__ == "__main__":
    main()
