"""Every input signature and example-rows builder: the TensorSpecs the model, datasets and export take."""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.features import FeatureSpec


def row_signature(spec: FeatureSpec) -> dict:
    """TensorSpecs of the model's inputs (row indices), any batch size and history length."""
    rows = {f.name: tf.TensorSpec([None], tf.int64) for f in spec.id_features}
    rows.update({f.history: tf.TensorSpec([None, None], tf.int64) for f in spec.sequence_features})
    rows["hist_len"] = tf.TensorSpec([None], tf.int32)
    return rows


def example_rows(spec: FeatureSpec, batch: int = 2, steps: int = 3) -> dict:
    """A tiny batch of valid model inputs (row indices), for building a model's variables."""
    rows = {f.name: tf.zeros([batch], tf.int64) for f in spec.id_features}
    rows.update({f.history: tf.zeros([batch, steps], tf.int64) for f in spec.sequence_features})
    rows["hist_len"] = tf.fill([batch], steps)
    return rows
