"""Numeric and multi-hot columns (``rocket_ctr.features.types``) -> parts of the towers' x.

Everything from the raw value on runs in the graph, so an export takes raw floats and id lists:
a numeric value that is NaN (null in a log) or ±inf becomes the feature's ``default``, then is
bucketised by its ``boundaries`` into an embedding and/or normalised to one scalar; a multi-hot
list's rows (``IdMapper.multi_hot_rows``: padding = row -1) are embedded and pooled (weighted sum
or mean). The embedding bank (:class:`rocket_ctr.model.layers.bank.EmbeddingBank`) holds one
:class:`FeatureEncoders` for its columns; the booster one for its booster-only columns.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from rocket_ctr.errors import InputError
from rocket_ctr.features.types import MultiHotFeature, NumericFeature
from rocket_ctr.model.layers.embedding import RowEmbedding
from rocket_ctr.model.layers.tracking import track_for_checkpoints


def clean(values: tf.Tensor, default: float) -> tf.Tensor:
    """NaN / ±inf -> ``default`` (float32)."""
    values = tf.cast(values, tf.float32)
    return tf.where(tf.math.is_finite(values), values, tf.constant(default, tf.float32))


def bucketize(values: tf.Tensor, boundaries) -> tf.Tensor:
    """Bucket indices (int64, ``np.digitize(values, boundaries)``): how many boundaries are <= the
    value, compared in float64. A sum of comparisons: XLA compiles it, and specs hold few boundaries."""
    bounds = tf.constant(boundaries, tf.float64)
    return tf.reduce_sum(tf.cast(tf.cast(values, tf.float64)[..., None] >= bounds, tf.int64), axis=-1)


def pool(embedded: tf.Tensor, rows: tf.Tensor, weights: tf.Tensor | None, pooling: str) -> tf.Tensor:
    """[B, M, D] element embeddings -> [B, D]: Σ w·e (``sum``) or Σ w·e / Σ w (``mean``), padding
    (row < 0) weighing 0; an empty list pools to zeros."""
    w = tf.cast(rows >= 0, embedded.dtype)
    if weights is not None:
        w *= tf.cast(weights, embedded.dtype)
    total = tf.reduce_sum(embedded * w[..., None], axis=1)
    if pooling == "sum":
        return total
    return tf.math.divide_no_nan(total, tf.reduce_sum(w, axis=1, keepdims=True))


def _feature(value):
    if isinstance(value, (NumericFeature, MultiHotFeature)):
        return value
    return MultiHotFeature(**value) if "pooling" in value else NumericFeature(**value)


class FeatureEncoders(keras.layers.Layer):
    """The tables and transforms of some numeric and multi-hot features.

    ``call(rows)`` -> ``{"user": [...], "items": [...]}``: per feature, in spec order, a [B, D]
    bucket embedding and/or a [B, 1] normalised value (numeric), or a [B, D] pooled embedding
    (multi-hot); user-side parts may have batch 1 against N candidates.

    Args:
        features: NumericFeatures and MultiHotFeatures (or their dicts).
        embedding_dim, init_std, l2: as the embedding bank's.
    """

    def __init__(self, features, embedding_dim=18, init_std=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.features = tuple(_feature(f) for f in features)
        self.embedding_dim, self.init_std, self.l2 = embedding_dim, init_std, l2
        unfitted = [f.name for f in self.features if isinstance(f, NumericFeature) and not f.fitted]
        if unfitted:
            raise InputError(f"numeric features {unfitted} ask for num_buckets but have no boundaries; "
                             "run `rocket-ctr inspect DATA --fit-spec OUT.json` (or give boundaries)")
        initializer = keras.initializers.RandomNormal(stddev=init_std) if init_std else "uniform"
        regularizer = keras.regularizers.L2(l2) if l2 else None
        self.tables = {}
        for f in self.features:
            rows = f.num_rows if isinstance(f, MultiHotFeature) else len(f.boundaries or ()) + 1
            if isinstance(f, MultiHotFeature) or f.bucketized:
                self.tables[f.name] = RowEmbedding(
                    rows, embedding_dim, embeddings_initializer=initializer, embeddings_regularizer=regularizer,
                    name=f"emb_{f.name}")
        track_for_checkpoints(self, "emb", list(self.tables.values()))

    def build(self, rows_shape=None):
        for table in self.tables.values():
            table.build()

    def call(self, rows: dict) -> dict:
        missing = [c for f in self.features for c in f.columns if c not in rows]
        if missing:
            raise InputError(f"these rows lack the feature columns {missing}")
        parts = {"user": [], "items": []}
        for f in self.features:
            out = parts["user" if f.side == "user" else "items"]
            if isinstance(f, MultiHotFeature):
                ids = rows[f.name]
                embedded = self.tables[f.name](tf.maximum(ids, 0))
                out.append(pool(embedded, ids, rows[f.weights] if f.weights else None, f.pooling))
                continue
            values = clean(rows[f.name], f.default)
            if f.bucketized:
                out.append(self.tables[f.name](bucketize(values, f.boundaries)))
            if f.normalize:
                out.append(tf.cast(((values - f.mean) / f.std)[:, None], self.compute_dtype))
        return parts

    @property
    def output_width(self) -> int:
        """The columns these features add to a tower's x."""
        width = 0
        for f in self.features:
            if isinstance(f, MultiHotFeature):
                width += self.embedding_dim
            else:
                width += self.embedding_dim * f.bucketized + int(f.normalize)
        return width

    def get_config(self):
        return {**super().get_config(), "features": [dataclasses.asdict(f) for f in self.features],
                "embedding_dim": self.embedding_dim, "init_std": self.init_std, "l2": self.l2}
