"""splitmix64: the one 64-bit integer mixer (numpy only), for sparse synthetic ids, splits by user
and distinct-count sketches."""
from __future__ import annotations

import zlib

import numpy as np


def splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser applied elementwise.

    Args:
        x: integer array; int64 values are reinterpreted as uint64 (negative ids included).
    Returns:
        uint64 array of the same shape, uniformly mixed.
    """
    z = np.asarray(x).astype(np.uint64)
    with np.errstate(over="ignore"):  # wrapping uint64 arithmetic is the point
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def user_unit_hash(user_ids: np.ndarray) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) per user id (int64, or an object array of bytes),
    for splits by user."""
    if user_ids.dtype == object:
        return np.fromiter((zlib.crc32(u) for u in user_ids), dtype=np.float64, count=len(user_ids)) / 2.0 ** 32
    return (splitmix64(user_ids) >> np.uint64(11)).astype(np.float64) / 2.0 ** 53


def salted_unit_hash(user_ids: np.ndarray, salt: int) -> np.ndarray:
    """Like :func:`user_unit_hash`, but from another stream per ``salt``: a second split by user that
    is independent of the first (e.g. a slice of already sampled users)."""
    if user_ids.dtype == object:
        return np.fromiter((zlib.crc32(u, salt) for u in user_ids), dtype=np.float64,
                           count=len(user_ids)) / 2.0 ** 32
    salted = np.asarray(user_ids).astype(np.uint64) ^ splitmix64(np.uint64(salt))
    return (splitmix64(salted) >> np.uint64(11)).astype(np.float64) / 2.0 ** 53
