"""IdMapper: raw ids -> embedding row indices, in the TensorFlow graph.

A ``tf.Module`` used both by the training input pipeline and inside the exported serving graph,
so unseen ids land in a valid row at serving time exactly as in training.
"""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.spec import FeatureSpec, IdFeature


class IdMapper(tf.Module):
    """Raw ids -> embedding row indices, in-graph (the same code in training and serving).

    Hashing (default) maps every id, including unseen, negative or huge ones, into
    ``[0, buckets)``; a vocabulary maps known ids to ``1..V`` and anything else to OOV row 0.
    """

    def __init__(self, spec: FeatureSpec, name: str = "id_mapper"):
        super().__init__(name=name)
        self.spec = spec
        self._tables = {}
        for f in spec.id_features:
            if f.vocabulary is not None:
                key_dtype = tf.string if f.dtype == "string" else tf.int64
                keys = tf.constant(list(f.vocabulary), dtype=key_dtype)
                values = tf.range(1, len(f.vocabulary) + 1, dtype=tf.int64)
                init = tf.lookup.KeyValueTensorInitializer(keys, values)
                self._tables[f.name] = tf.lookup.StaticHashTable(init, default_value=0)

    def rows(self, feature: IdFeature, ids: tf.Tensor) -> tf.Tensor:
        """Row indices (int64, same shape as ``ids``) for one feature's raw ids."""
        if feature.name in self._tables:
            return self._tables[feature.name].lookup(ids)
        text = ids if ids.dtype == tf.string else tf.strings.as_string(ids)
        return tf.strings.to_hash_bucket_fast(text, feature.buckets)

    def __call__(self, features: dict) -> dict:
        """Maps every id column of ``features`` to rows; other entries pass through unchanged."""
        out = dict(features)
        for f in self.spec.id_features:
            for column in (f.name, f.history):
                if column and column in features:
                    out[column] = self.rows(f, features[column])
        return out
