"""Verification of a written SavedModel: both signatures against the in-memory tower, within TOLERANCE."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from rocket_ctr.errors import InputError
from rocket_ctr.export.rows import one_user_request, pad_value
from rocket_ctr.export.serving_module import tower_probability
from rocket_ctr.features.id_mapping import IdMapper
from rocket_ctr.features.signatures import OUTPUT, SCORE_ROWS, SERVING_DEFAULT, candidate_columns
from rocket_ctr.features.spec import HIST_LEN, FeatureSpec
from rocket_ctr.progress import Progress, stage

TOLERANCE = 1e-5


class VerificationError(InputError):
    """The written SavedModel does not reproduce the in-memory tower (the export is discarded)."""


def _truncated(spec: FeatureSpec, rows: dict) -> dict:
    """Numpy reference of the in-graph truncation: each history keeps its newest steps (each
    sequence group by its own length input)."""
    out = dict(rows)
    for group, length in zip(spec.groups, spec.length_columns):
        lengths = rows[length].astype(np.int64)
        keep = np.minimum(lengths, spec.max_history)
        width = int(keep.max()) if len(keep) else 0
        out[length] = keep.astype(np.int32)
        for c in spec.group_columns(group):
            hist = rows[c]
            new = np.full((len(hist), width), pad_value(hist), dtype=hist.dtype)
            for i, (total, k) in enumerate(zip(lengths, keep)):
                new[i, :k] = hist[i, total - k:total]
            out[c] = new
    return out


def reference_probabilities(model, tower: str, rows: dict) -> np.ndarray:
    """The in-memory tower's click probabilities for raw rows (numpy truncation + IdMapper)."""
    spec = model.spec.for_tower(tower)
    truncated = _truncated(spec, rows)
    lengths = spec.length_columns
    mapped = IdMapper(spec)({c: tf.constant(v) for c, v in truncated.items() if c not in lengths})
    mapped.update({c: tf.constant(truncated[c], tf.int32) for c in lengths})
    return tower_probability(model, tower, mapped).numpy()


def _tiled(spec: FeatureSpec, rows: dict, user: int, candidates) -> dict:
    """The rows ``score_rows`` sees for :func:`one_user_request` (user side repeated)."""
    candidates = np.asarray(candidates)
    n = len(candidates)
    out = {c: np.repeat(rows[c][user:user + 1], n, axis=0) for c in (*spec.history_columns, *spec.length_columns)}
    out.update({c: np.repeat(rows[c][user:user + 1], n, axis=0) for c in spec.user_columns})
    out.update({c: rows[c][candidates] for c in candidate_columns(spec)})
    return out


def verify_export(path, model, tower: str, rows: dict, users: int = 8, progress: bool = False) -> float:
    """Loads the SavedModel at ``path`` and compares both signatures with the in-memory tower.

    Args:
        rows: raw sample rows, scored row-wise and as 1 user x N candidates requests.
        users: how many of the first rows' users send a request (the last rows, edge cases, always do).
        progress: the stage and its requests on stderr (``rocket_ctr.progress``).

    Returns:
        The largest absolute probability difference.
    Raises:
        VerificationError: a difference above TOLERANCE.
    """
    spec = model.spec.for_tower(tower)
    n = len(rows[HIST_LEN])
    senders = [*range(min(users, n)), *range(max(n - 6, 0), n)]  # some real users + the edge rows
    stage(f"export: verifying {n} rows and {len(senders)} requests of {n} candidates against the in-memory "
          f"{tower} tower", enabled=progress)
    loaded = tf.saved_model.load(str(path))
    score_rows, request = loaded.signatures[SCORE_ROWS], loaded.signatures[SERVING_DEFAULT]
    worst = float(np.max(np.abs(score_rows(**_tensors(rows))[OUTPUT].numpy()
                                - reference_probabilities(model, tower, rows))))
    everyone = np.arange(n)
    with Progress(len(senders), "requests", prefix="export: verified ", enabled=progress) as shown:
        for user in senders:
            served = request(**_tensors(one_user_request(spec, rows, user, everyone)))[OUTPUT].numpy()
            expected = reference_probabilities(model, tower, _tiled(spec, rows, user, everyone))
            worst = max(worst, float(np.max(np.abs(served - expected))))
            shown.update(1)
    if not worst <= TOLERANCE:
        raise VerificationError(f"exported {tower} tower differs from the in-memory model by {worst:.3g} "
                                f"(> {TOLERANCE}); nothing was written")
    return worst


def _tensors(inputs: dict) -> dict:
    return {k: tf.constant(v) for k, v in inputs.items()}
