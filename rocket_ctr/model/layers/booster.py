"""What only the booster reads, capacity the served light tower cannot afford: a DCN-v2 cross
stack (``model.booster_cross``) and the embedding tables of booster-only columns (FeatureSpec
``booster_only``: known when training, not when serving).

Neither is ever part of the light tower's path, so neither is ever in a light export.
"""
from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from rocket_ctr.errors import InputError
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.layers.attention import project
from rocket_ctr.model.layers.embedding import RowEmbedding
from rocket_ctr.model.layers.tracking import track_for_checkpoints


class CrossNetwork(keras.layers.Layer):
    """DCN-v2's cross network (Wang et al., 2021), full-rank: ``x_{l+1} = x0 ⊙ (W_l x_l + b_l) + x_l``.

    Each layer adds explicit feature crosses one degree higher than the last (layer l holds
    products of up to l + 1 of x0's entries) at D² weights a layer; the output has x0's width.
    The booster uses the *stacked* structure: cross layers, then its deep MLP on their output.

    Args:
        num_layers: number of cross layers (>= 1).
        l2: L2 penalty on the kernels W (0 = none).
    Call args:
        x0: [N, D].
    Returns:
        [N, D].
    """

    def __init__(self, num_layers: int = 2, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if int(num_layers) < 1:
            raise ValueError(f"CrossNetwork needs at least one layer, got {num_layers}")
        self.num_layers, self.l2 = int(num_layers), float(l2)

    def build(self, input_shape):
        dim = int(input_shape[-1])
        regularizer = keras.regularizers.L2(self.l2) if self.l2 else None
        for i in range(self.num_layers):  # plain attributes: tf.train.Checkpoint follows them
            setattr(self, f"kernel_{i}", self.add_weight(name=f"kernel_{i}", shape=(dim, dim),
                                                         initializer="glorot_uniform", regularizer=regularizer))
            setattr(self, f"bias_{i}", self.add_weight(name=f"bias_{i}", shape=(dim,), initializer="zeros"))

    def call(self, x0):
        x = x0
        for i in range(self.num_layers):
            x = x0 * (project(x, getattr(self, f"kernel_{i}")) + getattr(self, f"bias_{i}")) + x
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "l2": self.l2}


class ColumnEmbeddings(keras.layers.Layer):
    """The embedding tables of the booster-only columns; ``call(rows)`` -> one [B, D] lookup per column.

    Kept out of the shared :class:`rocket_ctr.model.layers.bank.EmbeddingBank` (which is built over the
    served columns only): the light tower's path, and so its export, holds none of these tables.

    Args:
        features: the booster-only IdFeatures (``FeatureSpec.booster_only_features`` but the
            ``wide_only`` ones, which have no table).
        embedding_dim, init_std, l2: as the bank's.
    """

    def __init__(self, features, embedding_dim=18, init_std=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.features = tuple(f if isinstance(f, IdFeature) else IdFeature(**f) for f in features)
        self.embedding_dim, self.init_std, self.l2 = embedding_dim, init_std, l2
        initializer = keras.initializers.RandomNormal(stddev=init_std) if init_std else "uniform"
        regularizer = keras.regularizers.L2(l2) if l2 else None
        self.embeddings = {
            f.name: RowEmbedding(f.num_rows, embedding_dim, embeddings_initializer=initializer,
                                 embeddings_regularizer=regularizer, name=f"emb_{f.name}")
            for f in self.features
        }
        track_for_checkpoints(self, "emb", list(self.embeddings.values()))

    def build(self, rows_shape=None):
        for table in self.embeddings.values():
            table.build()

    def call(self, rows: dict) -> list:
        missing = [f.name for f in self.features if f.name not in rows]
        if missing:
            raise InputError(f"the booster reads the booster-only columns {missing}, which these rows lack "
                             "(only the light tower scores without them)")
        return [self.embeddings[f.name](rows[f.name]) for f in self.features]

    def get_config(self):
        return {**super().get_config(), "features": [dataclasses.asdict(f) for f in self.features],
                "embedding_dim": self.embedding_dim, "init_std": self.init_std, "l2": self.l2}


def append_columns(x: tf.Tensor, lookups: list) -> tf.Tensor:
    """[x, lookups...] along the last axis, each lookup ([N, D] or a user-side [1, D]) broadcast to x's N rows."""
    if not lookups:
        return x
    n = tf.shape(x)[0]
    return tf.concat([x, *(tf.broadcast_to(e, [n, e.shape[-1]]) for e in lookups)], axis=-1)


# Rows of each crossed pair's table: pairs are hashed into it (user × category pairs number far fewer)
CROSS_ROWS = 1 << 20


class WideTerms(keras.layers.Layer):
    """Wide & Deep's wide part (Cheng et al., 2016) for the booster's logit: one learned scalar per id
    of every candidate-side and user-side id feature (``ids``), and one per hashed pair of each
    crossed column (``user*candidate`` feature names, e.g. a user's affinity to a category), summed.

    Every scalar starts at zero (the booster starts as its MLP alone). Never on the light tower's
    path, so never in a light export.

    Args:
        spec: the FeatureSpec (booster-only columns included: the wide part is the booster's).
        crosses: ``(user_feature, candidate_feature)`` name pairs (checked by
            :func:`rocket_ctr.model.parts.check_model_config`).
        ids: the per-id scalars too (off: the crossed pairs' only).
    Call args:
        rows: the model's inputs (user-side ones may have batch 1 against N candidates).
    Returns:
        [N], the wide logit.
    """

    def __init__(self, spec, crosses=(), ids=True, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.crosses, self.ids = spec, tuple(tuple(pair) for pair in crosses), ids
        features = [*spec.sequence_features, *spec.item_features, *spec.user_features]
        self.rows_of = {f.name: f.num_rows for f in features}
        self.embeddings = {f.name: RowEmbedding(f.num_rows, 1, embeddings_initializer="zeros", name=f"wide_{f.name}")
                           for f in features} if ids else {}
        track_for_checkpoints(self, "wide", list(self.embeddings.values()))
        self.cross_tables = [RowEmbedding(CROSS_ROWS, 1, embeddings_initializer="zeros", name=f"wide_{a}_x_{b}")
                             for a, b in self.crosses]
        track_for_checkpoints(self, "cross", self.cross_tables)

    def build(self, rows_shape=None):
        for table in [*self.embeddings.values(), *self.cross_tables]:
            table.build()

    def call(self, rows: dict) -> tf.Tensor:
        candidate = [f.name for f in (*self.spec.sequence_features, *self.spec.item_features)]
        logit = tf.zeros_like(tf.cast(rows[candidate[0]], self.compute_dtype))[:, None]  # [N, 1]
        for name in self.embeddings:  # a user-side [B, 1], B = 1 for one request's user, broadcasts
            logit = logit + self.embeddings[name](rows[name])
        for (user, item), table in zip(self.crosses, self.cross_tables):
            pair = tf.cast(rows[user], tf.int64) * self.rows_of[item] + tf.cast(rows[item], tf.int64)
            logit = logit + table(pair % CROSS_ROWS)
        return tf.squeeze(logit, -1)

    def get_config(self):
        return {**super().get_config(), "spec": self.spec.to_dict(), "crosses": [list(p) for p in self.crosses],
                "ids": self.ids}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(FeatureSpec.from_saved(config.pop("spec")), **config)
