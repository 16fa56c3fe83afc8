"""IdMapper: raw ids -> embedding row indices, in the TensorFlow graph.

A ``tf.Module`` used both by the training input pipeline and inside the exported serving graph,
so unseen ids land in a valid row at serving time exactly as in training.
"""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.spec import FeatureSpec


class IdMapper(tf.Module):
    """Raw ids -> embedding row indices, in-graph (the same code in training and serving).

    Hashing (default) maps every id, including unseen, negative or huge ones, into
    ``[0, buckets)`` (``spec.id_hash``: splitmix64 of an int64 id, farmhash of a string); a
    vocabulary maps known ids to ``1..V`` and anything else to OOV row 0.
    """

    def __init__(self, spec: FeatureSpec, name: str = "id_mapper"):
        super().__init__(name=name)
        self.spec = spec
        self._tables = {}
        for f in spec.id_features + spec.multi_hot_features + spec.side_features:
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
        if ids.dtype != tf.string and self.spec.id_hash == "splitmix64":
            return splitmix64_buckets(ids, feature.buckets)
        text = ids if ids.dtype == tf.string else tf.strings.as_string(ids)
        return tf.strings.to_hash_bucket_fast(text, feature.buckets)

    def multi_hot_rows(self, feature, ids: tf.Tensor) -> tf.Tensor:
        """[B, L] raw id lists -> [B, max_len] rows: the first ``max_len`` elements, padding
        (-1 / "" elements, and the columns added up to ``max_len``) as row -1."""
        ids = _fit_width(ids, feature.max_len, feature.pad)
        return tf.where(tf.equal(ids, feature.pad), tf.constant(-1, tf.int64), self.rows(feature, ids))

    def __call__(self, features: dict) -> dict:
        """Maps every id column of ``features`` to rows (multi-hot lists to [B, max_len] rows, their
        weights to [B, max_len], non-finite weights as 0); other entries pass through unchanged."""
        out = dict(features)
        for f in self.spec.id_features:
            for column in (f.name, f.history):
                if column and column in features:
                    out[column] = self.rows(f, features[column])
        for f in self.spec.side_features:  # sequence-only side columns: [B, L] ids -> rows
            if f.name in features:
                out[f.name] = self.rows(f, features[f.name])
        for f in self.spec.multi_hot_features:
            if f.name in features:
                out[f.name] = self.multi_hot_rows(f, features[f.name])
            if f.weights and f.weights in features:
                weights = _fit_width(tf.cast(features[f.weights], tf.float32), f.max_len, 0.0)
                out[f.weights] = tf.where(tf.math.is_finite(weights), weights, tf.zeros_like(weights))
        return out


def splitmix64_buckets(ids: tf.Tensor, buckets: int) -> tf.Tensor:
    """int64 ids -> rows in ``[0, buckets)``: splitmix64's finaliser modulo ``buckets``, equal to
    ``rocket_ctr.features.hashing.splitmix64(ids) % buckets`` (negative ids as their two's complement).
    Elementwise integer arithmetic: XLA fuses it, and it costs a fifth of hashing the ids' text."""
    z = tf.bitcast(tf.cast(ids, tf.int64), tf.uint64) + tf.constant(0x9E3779B97F4A7C15, tf.uint64)
    for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(shift, tf.uint64)))
        z = z * tf.constant(multiplier, tf.uint64)  # wraps modulo 2**64, as splitmix64 intends
    z = tf.bitwise.bitwise_xor(z, tf.bitwise.right_shift(z, tf.constant(31, tf.uint64)))
    return tf.cast(z % tf.constant(buckets, tf.uint64), tf.int64)


def _fit_width(lists: tf.Tensor, width: int, pad) -> tf.Tensor:
    """[B, L] -> [B, width]: the first ``width`` columns, padded with ``pad`` when L < width."""
    lists = lists[:, :width]
    padded = tf.pad(lists, [[0, 0], [0, width - tf.shape(lists)[1]]], constant_values=pad)
    return tf.ensure_shape(padded, [None, width])
