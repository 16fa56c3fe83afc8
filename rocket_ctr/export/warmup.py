"""TF Serving warmup records of an export (``assets.extra/tf_serving_warmup_requests``): requests
covering the shapes XLA compiles, replayed by the server when it loads the model, the shapes
requests hit most often first."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from rocket_ctr.export.rows import one_user_request, pad_value
from rocket_ctr.export.serving_module import candidate_buckets
from rocket_ctr.features.signatures import SCORE_ROWS, SERVING_DEFAULT
from rocket_ctr.features.spec import HIST_LEN, FeatureSpec

MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many


def warmup_logs(spec: FeatureSpec, rows: dict, max_candidates: int = 512) -> list:
    """TF Serving warmup ``PredictionLog``s built from ``rows``: one-user requests for every
    history bucket x every candidate bucket up to ``max_candidates``
    (:func:`rocket_ctr.export.serving_module.candidate_buckets`), plus row batches, one history
    bucket after the other, the bucket most of ``rows`` fall in first (:func:`history_order`), so
    a server that replays them in order warms the common shapes first.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    def log(signature, inputs):
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = signature
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))

    n, logs = len(rows[HIST_LEN]), []
    sizes = candidate_buckets(max(max_candidates, 1))
    for b in history_order(spec, rows):
        width = spec.history_buckets[b]
        # a history of `width` real (item, category) pairs taken from the candidate columns (side
        # columns: their values in the rows, cycled), every sequence group `width` long
        steps = (np.arange(width) + b) % n
        history = {f.history: rows[f.name][steps][None, :] for f in spec.sequence_features}
        history.update({f.name: np.resize(rows[f.name].reshape(-1), width)[None, :] for f in spec.side_features})
        for i, size in enumerate(sizes):
            user = (b + i) % n
            inputs = one_user_request(spec, rows, user, np.arange(size) % n)
            inputs.update(history)
            logs.append(log(SERVING_DEFAULT, inputs))
        for size in (64, 256):
            index = np.arange(size) % n
            batch = {c: rows[c][index] for c in (*spec.scalar_id_columns, *spec.extra_columns)}
            batch.update({c: np.minimum(rows[c][index], width).astype(np.int32) for c in spec.length_columns})
            batch.update({c: _fit(rows[c][index], width) for c in spec.history_columns})
            logs.append(log(SCORE_ROWS, batch))
    return logs[:MAX_WARMUP_RECORDS]


def history_order(spec: FeatureSpec, rows: dict) -> list:
    """Indices of ``spec.history_buckets``, the bucket holding most of ``rows``' histories (their
    ``hist_len``, truncated to ``max_history`` as served) first; equal counts keep the shorter first."""
    lengths = np.minimum(np.asarray(rows[HIST_LEN]), spec.max_history)
    buckets = np.searchsorted(np.asarray(spec.history_buckets), lengths, side="left")
    counts = np.bincount(buckets, minlength=len(spec.history_buckets))
    return sorted(range(len(spec.history_buckets)), key=lambda b: -counts[b])


def _fit(hist: np.ndarray, width: int) -> np.ndarray:
    if hist.shape[1] >= width:
        return hist[:, :width]
    return np.pad(hist, [(0, 0), (0, width - hist.shape[1])], constant_values=pad_value(hist))


def write_warmup(path, logs: list) -> None:
    """Writes ``logs`` as the TFRecord file TF Serving replays at load."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in logs:
            writer.write(record.SerializeToString())
