"""Negative downsampling in the reader: keep every click and each negative with probability ``rate``.

Which negatives stay is decided by a hash of the row's identity (user, candidate ids, history
length) and the seed, not by a random draw: the same rows are kept in every epoch, on every
worker whatever the sharding, and after a resume — exactly as if the log had been downsampled
upstream. The model trained on the sample is corrected back to the full rate by
:mod:`rocket_ctr.calibration.measures`. numpy only.
"""
from __future__ import annotations

import zlib

import numpy as np

from rocket_ctr.features.hashing import splitmix64
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.batches import Chunk


def _column_hash(values: np.ndarray) -> np.ndarray:
    """uint64 per value: splitmix64 of integer ids, crc32 of byte strings."""
    if values.dtype == object:
        return np.fromiter((zlib.crc32(v) for v in values), dtype=np.uint64, count=len(values))
    return splitmix64(values)


def row_uniform(chunk: Chunk, spec: FeatureSpec, seed: int) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) per row of ``chunk``, from its identity and ``seed``."""
    mixed = splitmix64(np.full(chunk.n, seed, dtype=np.int64))
    keys = [chunk.scalars[spec.user_id], *(chunk.scalars[f.name] for f in spec.sequence_features), chunk.lengths]
    for key in keys:
        mixed = splitmix64(mixed ^ _column_hash(np.asarray(key)))
    return (mixed >> np.uint64(11)).astype(np.float64) / 2.0 ** 53


def keep_rows(chunk: Chunk, spec: FeatureSpec, rate: float, seed: int) -> np.ndarray:
    """Indices of the rows kept: every positive, and the negatives whose hash falls below ``rate``.

    Args:
        chunk: the rows; spec: their FeatureSpec; rate: share of negatives kept, in (0, 1];
        seed: the run's seed (another seed keeps other negatives).
    """
    if rate >= 1.0:
        return np.arange(chunk.n)
    return np.flatnonzero((chunk.label > 0) | (row_uniform(chunk, spec, seed) < rate))
