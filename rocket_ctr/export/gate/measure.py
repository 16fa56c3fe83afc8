"""What the export gate compares: exported SavedModels scored on the same rows, and their latency.

Both work on SavedModel folders only (the candidate and the version now serving are treated
alike), through the export's own signatures: ``score_rows`` for quality (every row of the
held-out log, raw ids in, as TF Serving would score them) and ``serving_default`` for latency
(one real user's request with N candidates, the shape of production traffic).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from rocket_ctr.errors import InputError
from rocket_ctr.export.rows import one_user_request, sample_rows
from rocket_ctr.features.signatures import OUTPUT, SCORE_ROWS, SERVING_DEFAULT
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.reader import ClickLogReader, surfacing_input_errors
from rocket_ctr.metrics.ranking import gauc_and_users, logloss


def _signature(loaded, name: str, version_dir: Path):
    if name not in loaded.signatures:
        raise InputError(f"{version_dir}: the SavedModel has no {name!r} signature (not a rocket_ctr export?)")
    return loaded.signatures[name]


def _inputs(function, batch: dict, version_dir: Path) -> dict:
    """The batch's columns that ``function`` takes, as tensors; a missing column is an InputError."""
    names = function.structured_input_signature[1]
    missing = sorted(set(names) - set(batch))
    if missing:
        raise InputError(f"{version_dir}: the model needs columns {missing} that the gate data does not have")
    return {k: tf.constant(batch[k]) for k in names}


def score(version_dirs: list, data, spec: FeatureSpec, batch_size: int = 4096) -> list[dict]:
    """GAUC, log loss and PCOC (mean prediction / observed CTR) of each SavedModel on ``data``.

    The rows are read once (with ``spec``) and every model scores the same batches.

    Returns:
        per version dir, ``{"gauc", "gauc_users", "logloss", "pcoc", "rows", "clicks"}``.
    Raises:
        InputError: unreadable data, no clicks in it, or a model that needs other columns.
    """
    functions = [_signature(tf.saved_model.load(str(d)), SCORE_ROWS, d) for d in version_dirs]
    users, labels, scores = [], [], [[] for _ in version_dirs]
    with surfacing_input_errors():
        for features, label in ClickLogReader(data, spec, batch_size=batch_size):
            users.append(np.asarray(features[spec.user_id]))
            labels.append(np.asarray(label))
            for out, function, version_dir in zip(scores, functions, version_dirs):
                out.append(function(**_inputs(function, features, version_dir))[OUTPUT].numpy())
    if not labels:
        raise InputError(f"{data}: no rows to gate on")
    users, labels = np.concatenate(users), np.concatenate(labels)
    clicks = float(labels.sum())
    if clicks == 0:
        raise InputError(f"{data}: no clicks in the gate data: PCOC and GAUC are undefined; use more held-out rows")
    results = []
    for out in scores:
        probs = np.concatenate(out).astype(np.float64)
        gauc, gauc_users = gauc_and_users(users, labels, probs)
        results.append({"gauc": gauc, "gauc_users": gauc_users, "logloss": logloss(labels, probs),
                        "pcoc": float(probs.sum() / clicks), "rows": int(len(labels)), "clicks": int(clicks)})
    return results


def p99_latency_ms(version_dirs: list, data, spec: FeatureSpec, candidates: int = 200, requests: int = 200,
                   rounds: int = 10, warmup: int = 10) -> list[float]:
    """p99 latency (ms) of one ``serving_default`` request (a real user's history + ``candidates``
    rows of ``data`` as candidates) for each SavedModel, in-process.

    The models are timed side by side in ``rounds`` alternating chunks, so load from other
    processes falls on each alike.
    """
    rows = sample_rows(spec, data, max(candidates, 1))
    longest = int(np.argmax(rows["hist_len"][:candidates]))  # the costliest real history
    request = one_user_request(spec, rows, longest, np.arange(candidates) % len(rows["hist_len"]))
    calls = []
    for version_dir in version_dirs:
        function = _signature(tf.saved_model.load(str(version_dir)), SERVING_DEFAULT, version_dir)
        tensors = _inputs(function, request, version_dir)
        calls.append(lambda function=function, tensors=tensors: function(**tensors)[OUTPUT].numpy())
    for call in calls:
        for _ in range(warmup):
            call()
    times = [[] for _ in calls]
    chunk = max(1, requests // max(1, rounds))
    for _ in range(max(1, requests // chunk)):
        for call, out in zip(calls, times):
            for _ in range(chunk):
                started = time.perf_counter()
                call()
                out.append(time.perf_counter() - started)
    return [float(np.percentile(np.asarray(t) * 1e3, 99)) for t in times]
