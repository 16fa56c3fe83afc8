"""Exact AUC, GAUC, log loss and calibration of a model's towers on a Parquet log (training's
per-epoch validation and ``rocket-ctr evaluate`` both use it)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from rocket_ctr.calibration.measures import check_rate
from rocket_ctr.errors import InputError
from rocket_ctr.features.id_mapping import IdMapper
from rocket_ctr.features.signatures import row_signature
from rocket_ctr.features.spec import WEIGHT, FeatureSpec
from rocket_ctr.io.reader import ClickLogReader, surfacing_input_errors, to_dataset
from rocket_ctr.metrics.streaming import StreamingEvaluator
from rocket_ctr.model.rocket import RocketModel


def model_inputs(spec: FeatureSpec, mapper: IdMapper):
    """tf.data map fn: raw (features, label) -> (row indices for the model, label, user ids, row weights)."""
    def prepare(features, label):
        rows = mapper(features)
        weight = rows.pop(WEIGHT)
        user_ids = rows.pop(spec.user_id) if spec.user_id not in spec.scalar_id_columns else features[spec.user_id]
        return rows, label, user_ids, weight
    return prepare


def evaluate(model: RocketModel, paths, spec: FeatureSpec, batch_size: int = 4096, holdout=None,
             negative_rate: float = 1.0, intercept: bool = True) -> dict:
    """Exact AUC, GAUC, log loss, PCOC and ECE of every tower of ``model`` on a Parquet log.

    Probabilities are the model's corrected ones (:meth:`RocketModel.probabilities`: back to the
    full rate when it trained on downsampled negatives, plus each tower's fitted intercept);
    metrics are weighted by the spec's weight column, if any.

    Args:
        model: a built RocketModel.
        paths: the log (file, folder, glob or list).
        spec: the FeatureSpec the model was trained with.
        batch_size: rows per prediction batch.
        holdout: optional ``(Holdout, part)`` side of a validation split (see ClickLogReader),
            e.g. the validation rows held out of a training input.
        negative_rate: share of negatives this log kept (e.g. validation rows of a log
            downsampled upstream): each negative then counts 1/rate, so the metrics estimate
            the full log's.
        intercept: apply the towers' fitted intercepts (False: the model as trained, e.g. the
            per-epoch metrics of training).
    Returns:
        ``{"light": {"auc", "gauc", "logloss", "pcoc", "ece", "count", "gauc_users",
        "reliability"}, "booster": {...}}``; with a downsampled model (``model.negative_rate`` < 1)
        also ``pcoc_uncorrected``, the PCOC of the sample probabilities, for contrast.
    """
    evaluator, sample_sums, clicks = StreamingEvaluator(), {}, 0.0
    for user_ids, label, weight, logits in scored_batches(model, paths, spec, batch_size, holdout, negative_rate):
        corrected = model.probabilities(logits, intercept)
        evaluator.update(user_ids, label, {k: v.numpy() for k, v in corrected.items()}, weight)
        clicks += float(np.dot(weight, label))
        for tower, logit in logits.items():
            q = tf.sigmoid(logit).numpy()
            sample_sums[tower] = sample_sums.get(tower, 0.0) + float(np.dot(weight, q))
    results = evaluator.result()
    if model.negative_rate < 1.0:
        for tower, values in results.items():
            values["pcoc_uncorrected"] = sample_sums[tower] / clicks if clicks > 0 else float("nan")
    return results


def scored_batches(model: RocketModel, paths, spec: FeatureSpec, batch_size: int = 4096, holdout=None,
                   negative_rate: float = 1.0):
    """The towers' logits on a Parquet log, batch by batch (arguments as in :func:`evaluate`).

    Yields:
        ``(user_ids, labels, weights, logits)``: numpy user ids and labels, float64 row weights
        (negatives counted 1/``negative_rate``) and ``{tower: logit tensor}`` (no offset added).
    """
    try:
        negative_weight = 1.0 / check_rate(negative_rate)
    except ValueError as err:
        raise InputError(str(err)) from None
    dataset = to_dataset(ClickLogReader(paths, spec, batch_size=batch_size, holdout=holdout))
    dataset = dataset.map(model_inputs(spec, IdMapper(spec)), num_parallel_calls=tf.data.AUTOTUNE)

    @tf.function(input_signature=[row_signature(spec)])
    def predict(rows):
        return model(rows, training=False)

    with surfacing_input_errors():
        for rows, label, user_ids, weight in dataset.prefetch(2):
            label, weight = label.numpy(), weight.numpy().astype(np.float64)
            yield user_ids.numpy(), label, np.where(label > 0, weight, weight * negative_weight), predict(rows)


def validation_logits(model: RocketModel, paths, spec: FeatureSpec, holdout, negative_rate: float = 1.0,
                      batch_size: int = 4096) -> tuple:
    """Every tower's logit plus ``log r`` (no intercept) on a log's rows, for :mod:`rocket_ctr.calibration.intercept`.

    Returns:
        ``({tower: float64 array}, labels, weights)`` (weights as :func:`evaluate`'s).
    """
    logits, labels, weights = {}, [], []
    for _, label, weight, batch in scored_batches(model, paths, spec, batch_size, holdout, negative_rate):
        labels.append(label)
        weights.append(weight)
        for tower, logit in batch.items():
            logits.setdefault(tower, []).append(logit.numpy().astype(np.float64) + model.logit_offset)
    if not labels:
        return {tower: np.zeros(0) for tower in model.towers}, np.zeros(0), np.zeros(0)
    return ({tower: np.concatenate(parts) for tower, parts in logits.items()}, np.concatenate(labels),
            np.concatenate(weights))
