"""Exact AUC, GAUC and log loss of a model's towers on a Parquet log (training's per-epoch
validation and ``rocket-ctr evaluate`` both use it)."""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.data import ClickLogReader, surfacing_input_errors, to_dataset
from rocket_ctr.id_mapping import IdMapper
from rocket_ctr.metrics import StreamingEvaluator
from rocket_ctr.model import RocketModel
from rocket_ctr.signatures import row_signature
from rocket_ctr.spec import FeatureSpec


def model_inputs(spec: FeatureSpec, mapper: IdMapper):
    """tf.data map fn: raw (features, label) -> (row indices for the model, label, user ids)."""
    def prepare(features, label):
        rows = mapper(features)
        user_ids = rows.pop(spec.user_id) if spec.user_id not in spec.scalar_id_columns else features[spec.user_id]
        return rows, label, user_ids
    return prepare


def evaluate(model: RocketModel, paths, spec: FeatureSpec, batch_size: int = 4096, holdout=None) -> dict:
    """Exact AUC, GAUC and log loss of every tower of ``model`` on a Parquet log.

    Args:
        model: a built RocketModel.
        paths: the log (file, folder, glob or list).
        spec: the FeatureSpec the model was trained with.
        batch_size: rows per prediction batch.
        holdout: optional ``(Holdout, part)`` side of a validation split (see ClickLogReader),
            e.g. the validation rows held out of a training input.
    Returns:
        ``{"light": {"auc", "gauc", "logloss", "count", "gauc_users"}, "booster": {...}}``.
    """
    dataset = to_dataset(ClickLogReader(paths, spec, batch_size=batch_size, holdout=holdout))
    dataset = dataset.map(model_inputs(spec, IdMapper(spec)), num_parallel_calls=tf.data.AUTOTUNE)
    predict = tf.function(lambda rows: {k: tf.sigmoid(v) for k, v in model(rows, training=False).items()},
                          input_signature=[row_signature(spec)])
    evaluator = StreamingEvaluator()
    with surfacing_input_errors():
        for rows, label, user_ids in dataset.prefetch(2):
            evaluator.update(user_ids.numpy(), label.numpy(), {k: v.numpy() for k, v in predict(rows).items()})
    return evaluator.result()
