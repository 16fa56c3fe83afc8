"""Raw feature rows for an export's verification and warmup: real rows of a log (or random ids)
plus edge rows, and one user's ``serving_default`` request built from them."""
from __future__ import annotations

import numpy as np

from rocket_ctr.features.signatures import candidate_columns
from rocket_ctr.features.spec import FeatureSpec


def _edge_rows(spec: FeatureSpec, template: dict, seed: int = 0) -> dict:
    """Rows with unseen ids, empty histories and over-long histories (truncation)."""
    rng = np.random.default_rng(seed)
    n, width = 6, spec.max_history + 5
    first = np.array([0, width, 0, width, 1, spec.max_history], np.int32)
    # further sequence groups: the same edge lengths on other rows (one group empty, another full...)
    lengths = {c: np.roll(first, g) for g, c in enumerate(spec.length_columns)}
    rows = dict(lengths)
    for f in spec.id_features:
        seen = template[f.name][rng.integers(0, len(template[f.name]), n)]
        if f.dtype == "string":
            unseen = np.array([f"__unseen_{f.name}_{i}".encode() for i in range(n)], dtype=object)
        else:
            unseen = np.array([2**62 + i if i % 2 else -(i + 7) for i in range(n)], np.int64)
        rows[f.name] = np.where(np.arange(n) < 2, unseen, seen)
    steps = np.arange(width)
    for group, length in zip(spec.groups, spec.length_columns):
        valid = steps[None, :] < lengths[length][:, None]
        for f in spec.group_features(group):
            if f.dtype == "string":
                hist = np.array([[f"h{i}_{s}".encode() for s in steps] for i in range(n)], dtype=object)
            else:
                hist = (10**15 + np.arange(n)[:, None] * 1000 + steps[None, :]).astype(np.int64)
            rows[f.history] = np.where(valid, hist, pad_value(hist))
        for f in group.side_features:
            side = _side_ids(f, rng, (n, width))
            rows[f.name] = np.where(valid, side, pad_value(side))
    rows.update(_extra_rows(spec, n, rng, template, edge=True))
    return rows


def _side_ids(feature, rng: np.random.Generator, shape) -> np.ndarray:
    """Ids of a sequence-only side column: its vocabulary's (one unseen id in ten), else random."""
    if feature.vocabulary:
        known = np.asarray(feature.vocabulary, dtype=object if feature.dtype == "string" else np.int64)
        ids = known[rng.integers(0, len(known), shape)]
        if feature.dtype == "string":
            ids = np.array([[v.encode() if isinstance(v, str) else v for v in r] for r in ids], dtype=object)
        unseen = rng.random(shape) < 0.1
        return np.where(unseen, b"__unseen" if feature.dtype == "string" else -3, ids)
    ids = rng.integers(0, 10 * feature.num_rows, shape)
    return np.array([[str(v).encode() for v in r] for r in ids], dtype=object) if feature.dtype == "string" else ids


def _extra_rows(spec: FeatureSpec, n: int, rng: np.random.Generator, template: dict | None = None,
                edge: bool = False) -> dict:
    """Numeric and multi-hot columns of ``n`` rows: values drawn from ``template``'s (else random);
    ``edge``: missing numbers (NaN, ±inf), empty, padded and over-long lists, unseen ids."""
    rows = {}
    for f in spec.numeric_features:
        if template is not None:
            values = template[f.name][rng.integers(0, len(template[f.name]), n)].astype(np.float32)
        else:
            values = rng.normal(f.mean, f.std, n).astype(np.float32)
        if edge:
            values[:4] = [np.nan, np.inf, -np.inf, np.nan][:min(4, n)]
        rows[f.name] = values
    for f in spec.multi_hot_features:
        width = f.max_len + 2 if edge else f.max_len
        if template is not None and not edge:
            pick = rng.integers(0, len(template[f.name]), n)
            rows[f.name] = template[f.name][pick]
            if f.weights:
                rows[f.weights] = template[f.weights][pick]
            continue
        ids = rng.integers(0, 10 * f.num_rows, (n, width))
        ids = np.array([[str(v).encode() for v in r] for r in ids], dtype=object) if f.dtype == "string" else ids
        lengths = rng.integers(0, width + 1, n)
        if edge:
            lengths[:3] = [0, width, 1][:min(3, n)]
        rows[f.name] = np.where(np.arange(width)[None, :] < lengths[:, None], ids, f.pad)
        if f.weights:
            weights = rng.uniform(0.0, 2.0, (n, width)).astype(np.float32)
            rows[f.weights] = np.where(rows[f.name] == f.pad, np.float32(0), weights)
    return rows


def _fit_lists(array: np.ndarray, width: int, pad) -> np.ndarray:
    if array.shape[1] >= width:
        return array
    return np.pad(array, [(0, 0), (0, width - array.shape[1])], constant_values=pad)


def pad_value(array: np.ndarray):
    """The padding of a history array: empty bytes for strings, 0 for ids."""
    return b"" if array.dtype == object else 0


def _random_rows(spec: FeatureSpec, n: int, seed: int = 0) -> dict:
    """Rows with random ids when no data is given."""
    rng = np.random.default_rng(seed)
    lengths = {c: rng.integers(0, spec.max_history + 1, n).astype(np.int32) for c in spec.length_columns}
    rows = dict(lengths)
    for f in spec.id_features:
        ids = rng.integers(0, 10 * max(f.num_rows, 1), (n, spec.max_history + 1))
        if f.dtype == "string":
            ids = np.array([[str(v).encode() for v in r] for r in ids], dtype=object)
        rows[f.name] = ids[:, 0]
        if f.history:
            length = lengths[spec.length_columns[spec.group_of(f.history)]]
            mask = np.arange(spec.max_history)[None, :] < length[:, None]
            rows[f.history] = np.where(mask, ids[:, 1:], pad_value(ids))
    for f in spec.side_features:
        length = lengths[spec.length_columns[spec.group_of(f.name)]]
        side = _side_ids(f, rng, (n, spec.max_history))
        rows[f.name] = np.where(np.arange(spec.max_history)[None, :] < length[:, None], side, pad_value(side))
    rows.update(_extra_rows(spec, n, rng))
    return rows


def sample_rows(spec: FeatureSpec, data=None, n: int = 256, seed: int = 0) -> dict:
    """Raw feature rows for verification and warmup: real rows of ``data`` (else random ones)
    followed by edge rows (unseen ids, empty and over-long histories).

    Returns:
        {column: array}: id columns [n'], histories [n', W] left-aligned (W per sequence group),
        ``hist_len`` (and each further group's ``hist_len_<group>``) [n'] int32.
    """
    if data is not None:
        from rocket_ctr.io.reader import ClickLogReader

        reader = ClickLogReader(data, spec, batch_size=n, bucket_by_length=False)
        features, _ = next(iter(reader))
        base = {c: features[c] for c in (*spec.scalar_id_columns, *spec.history_columns, *spec.extra_columns,
                                         *spec.length_columns)}
    else:
        base = _random_rows(spec, n, seed)
    edge = _edge_rows(spec, base, seed)
    rows = {}
    for c in base:
        parts = [base[c], edge[c]]
        if c in spec.history_columns:  # the lists of a group have one width in each part: the same here
            width = max(p.shape[1] for p in parts)
            parts = [np.pad(p, [(0, 0), (0, width - p.shape[1])], constant_values=pad_value(p)) for p in parts]
        elif parts[0].ndim == 2:  # multi-hot lists and their weights
            wide = max(p.shape[1] for p in parts)
            pad = 0.0 if parts[0].dtype == np.float32 else spec.extra_feature(c).pad
            parts = [_fit_lists(p, wide, pad) for p in parts]
        rows[c] = np.concatenate(parts)
    return rows


def one_user_request(spec: FeatureSpec, rows: dict, user: int, candidates) -> dict:
    """``serving_default`` inputs: row ``user``'s profile and real history + ``candidates``' items."""
    candidates = np.asarray(candidates)
    request = {c: rows[c][user:user + 1] for c in spec.user_columns}
    for group, length in zip(spec.groups, spec.length_columns):
        steps = int(rows[length][user])
        request.update({c: rows[c][user:user + 1, :steps] for c in spec.group_columns(group)})
    request.update({c: rows[c][candidates] for c in candidate_columns(spec)})
    return request
