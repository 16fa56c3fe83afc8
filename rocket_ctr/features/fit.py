"""Fitting numeric features to a log (``rocket-ctr inspect --fit-spec``): equal-mass bucket
boundaries (quantiles) and the mean / std of each numeric column.

One streaming pass over the numeric columns only: exact mean and std (float64 sums of the finite
values), quantiles from a uniform sample of at most ``sample_rows`` rows (every row of a smaller
log). Missing values (null, NaN) are left out of both. pyarrow and numpy only.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from rocket_ctr.errors import InputError
from rocket_ctr.features.checks import check_numeric_files
from rocket_ctr.features.spec import FeatureSpec

SAMPLE_ROWS = 1_000_000


def quantile_boundaries(values: np.ndarray, num_buckets: int) -> tuple:
    """Boundaries of ``num_buckets`` equal-mass buckets of ``values``: the inner quantiles,
    repeats removed (a heavily tied column gets fewer buckets)."""
    inner = np.quantile(values.astype(np.float64), np.arange(1, num_buckets) / num_buckets)
    return tuple(float(b) for b in np.unique(inner))


def fit_numeric(files: list[str], spec: FeatureSpec, sample_rows: int = SAMPLE_ROWS, seed: int = 0) -> tuple:
    """``(fitted spec, {column: stats})``: every numeric feature with ``num_buckets`` gets quantile
    boundaries, every one with ``normalize`` the column's mean and std; ``stats`` holds
    ``count`` (finite values), ``mean``, ``std``, ``min``, ``max`` per column.

    Raises:
        InputError: a column with strings, ±inf or no number at all (as training refuses it).
    """
    features = spec.numeric_features
    if not features:
        return spec, {}
    check_numeric_files(files, spec)
    columns = [f.name for f in features]
    total = sum(pq.ParquetFile(path).metadata.num_rows for path in files)
    fraction = min(1.0, sample_rows / max(total, 1))
    rng = np.random.default_rng(seed)
    sums = {c: np.zeros(3) for c in columns}  # count, sum, sum of squares
    low, high = dict.fromkeys(columns, np.inf), dict.fromkeys(columns, -np.inf)
    samples = {c: [] for c in columns}
    try:
        for batch in pads.dataset(files, format="parquet").to_batches(columns=columns):
            chosen = rng.random(batch.num_rows) < fraction if fraction < 1 else None
            for column, array in zip(columns, batch.columns):
                values = array.to_numpy(zero_copy_only=False).astype(np.float64)
                finite = np.isfinite(values)
                kept = values[finite]
                sums[column] += (len(kept), kept.sum(), np.square(kept).sum())
                if len(kept):
                    low[column], high[column] = min(low[column], kept.min()), max(high[column], kept.max())
                samples[column].append(values[finite & chosen] if chosen is not None else kept)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{files[0]}: cannot read columns {columns} ({str(err).splitlines()[0]})") from None
    fitted, stats = [], {}
    for f in features:
        count, total_sum, squares = sums[f.name]
        mean = total_sum / count
        std = float(np.sqrt(max(squares / count - mean * mean, 0.0)))
        stats[f.name] = {"count": int(count), "mean": float(mean), "std": std,
                         "min": float(low[f.name]), "max": float(high[f.name])}
        changes = {}
        if f.normalize:
            changes.update(mean=float(mean), std=std if std > 0 else 1.0)  # a constant column: centred only
        if f.num_buckets:
            sample = np.concatenate(samples[f.name]) if samples[f.name] else np.zeros(0)
            if not len(sample):  # a tiny sampled share of a huge log: fall back to the extremes
                sample = np.array([low[f.name], high[f.name]])
            boundaries = quantile_boundaries(sample, f.num_buckets)
            changes["boundaries"] = boundaries or (float(low[f.name]),)
            stats[f.name]["boundaries"] = len(changes["boundaries"])
        fitted.append(dataclasses.replace(f, **changes))
    return dataclasses.replace(spec, numeric_features=tuple(fitted)), stats
