"""``EmbeddingBank``: the embedding tables of a FeatureSpec's columns, what the towers share."""
from __future__ import annotations

import keras
import tensorflow as tf

from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.layers.attention import ValidSteps
from rocket_ctr.model.layers.batch_l2 import looked_up_ids, mini_batch_l2
from rocket_ctr.model.layers.embedding import RowEmbedding
from rocket_ctr.model.layers.features import FeatureEncoders
from rocket_ctr.model.layers.recency import add_recency
from rocket_ctr.model.layers.tracking import track_for_checkpoints


class EmbeddingBank(keras.layers.Layer):
    """The embedding tables of every id feature: what the towers share.

    Item and category tables serve both the candidate and the history (DIN). Inputs are row
    indices (see :class:`rocket_ctr.features.id_mapping.IdMapper`) plus ``hist_len``; user-side inputs
    (profile, history) may have batch size 1 against N candidates. ``call`` returns the lookups::

        {"candidate": [N, S·D] (every sequence feature's candidate embedding, part of x),
         "sequences": [{"query": [N, W], "history": [B, L, W] (per-row histories: ValidSteps; with
                        ``recency``, each step's position row added),
                        "lengths": [B] int32, "width": L}, ...]
             (one per sequence group: its features' candidate / history embeddings, W = its
             features' and side columns' D each; a side column's query part is zeros; B = N, or 1
             for one user's request; without sequence groups: one group, query = "candidate"),
         "user": [[B, D], ...] (profile), "items": [[N, D], ...] (other candidate features)}

    (numeric and multi-hot features, :class:`rocket_ctr.model.layers.features.FeatureEncoders`, add
    their parts after the id features of their side: [B, D] embeddings, [B, 1] normalised values),
    which :func:`rocket_ctr.model.layers.tower_input.tower_input` turns into a tower's x, given that
    tower's pooled interest.

    Args:
        spec: the FeatureSpec (one table per id feature).
        embedding_dim: width of every table.
        init_std: rows start as normal(0, init_std); 0: Keras' uniform(-0.05, 0.05).
        l2: L2 penalty on the whole tables (a model loss; 0: none).
        recency: ``"position"``: one more table per sequence group, ``recency_<i>`` [max_history, W],
            zeros at first, whose row p is added to every history step p steps before the newest
            (:func:`rocket_ctr.model.layers.recency.add_recency`); ``"none"``: no such table.
        batch_l2: mini-batch aware L2 on the id tables in training: this × the squared norm of each
            row a batch reads (:func:`rocket_ctr.model.layers.batch_l2.mini_batch_l2`; 0: none).
    """

    skip_padding = True  # per-row histories: only valid steps looked up; off under XLA (use_padded_attention)

    def __init__(self, spec: FeatureSpec, embedding_dim=18, init_std=0.0, l2=0.0, recency="none", batch_l2=0.0,
                 **kwargs):
        super().__init__(**kwargs)
        self.spec, self.embedding_dim, self.init_std, self.l2 = spec, embedding_dim, init_std, l2
        self.recency, self.batch_l2 = recency, float(batch_l2)
        initializer = keras.initializers.RandomNormal(stddev=init_std) if init_std else "uniform"
        regularizer = keras.regularizers.L2(l2) if l2 else None
        self.embeddings = {
            f.name: RowEmbedding(f.num_rows, embedding_dim, embeddings_initializer=initializer,
                                 embeddings_regularizer=regularizer, name=f"emb_{f.name}")
            for f in spec.id_features
        }
        track_for_checkpoints(self, "emb", list(self.embeddings.values()))
        # created after the id tables (and only when the spec has such features): older banks keep their layout
        self.extras = FeatureEncoders(spec.extra_features, embedding_dim, init_std, l2, name="extra_features") \
            if spec.extra_features else None
        # sequence-only side columns (sequence groups): their own tables, after everything else
        self.side_embeddings = {
            f.name: RowEmbedding(f.num_rows, embedding_dim, embeddings_initializer=initializer,
                                 embeddings_regularizer=regularizer, name=f"emb_{f.name}")
            for f in spec.side_features
        }
        track_for_checkpoints(self, "side", list(self.side_embeddings.values()))

    def build(self, rows_shape=None):
        for table in self.embeddings.values():
            table.build()
        if self.extras is not None:
            self.extras.build()
        for table in self.side_embeddings.values():
            table.build()
        if self.recency == "position":  # plain attributes, after every other table: tf.train.Checkpoint follows them
            for i, group in enumerate(self.spec.groups):
                width = self.embedding_dim * (len(self.spec.group_features(group)) + len(group.side_features))
                table = self.add_weight(name=f"recency_{i}", shape=(self.spec.max_history, width), initializer="zeros")
                setattr(self, f"recency_{i}", table)

    def call(self, rows: dict, training=False) -> dict:
        spec, emb = self.spec, self.embeddings
        candidate = {f.name: emb[f.name](rows[f.name]) for f in spec.sequence_features}
        sequences = []
        for i, (group, length) in enumerate(zip(spec.groups, spec.length_columns)):
            features = spec.group_features(group)
            lookups = [(emb[f.name], rows[f.history]) for f in features]
            lookups += [(self.side_embeddings[f.name], rows[f.name]) for f in group.side_features]
            query = [candidate[f.name] for f in features]
            if group.side_features:  # no candidate-side value: zeros of the side columns' width
                n = tf.shape(query[0])[0]
                query.append(tf.zeros([n, self.embedding_dim * len(group.side_features)], query[0].dtype))
            # per-row histories (training, batch scoring, evaluation) are looked up on their valid
            # steps only; a [1, L] history (one request's user) stays padded to broadcast against N
            per_row = training or lookups[0][1].shape[0] != 1
            history = self._history(lookups, rows[length], valid_only=per_row and self.skip_padding)
            width = tf.shape(lookups[0][1])[1]
            if self.recency == "position":
                history = add_recency(history, rows[length], width, getattr(self, f"recency_{i}"))
            sequences.append({"query": _concat(query), "history": history, "lengths": rows[length], "width": width})
        embedded = {
            "candidate": _concat([candidate[f.name] for f in spec.sequence_features]),
            "sequences": sequences,
            "user": [emb[f.name](rows[f.name]) for f in spec.user_features],
            "items": [emb[f.name](rows[f.name]) for f in spec.item_features],
        }
        if training and self.batch_l2:
            self.add_loss(mini_batch_l2({**emb, **self.side_embeddings}, looked_up_ids(spec, rows), self.batch_l2))
        if self.extras is not None:
            extra = self.extras(rows)
            embedded["user"] += extra["user"]
            embedded["items"] += extra["items"]
        return embedded

    @staticmethod
    def _history(lookups: list, lengths, valid_only: bool) -> tf.Tensor:
        """[B, L, width] embeddings of a group's history columns; ``valid_only``: only the valid
        steps (:class:`ValidSteps`), so the lookup, the attention, their gradients
        and the optimizer's row updates follow the real history lengths, not the padded width
        (extractors without a valid-step form get it padded:
        :func:`rocket_ctr.model.layers.attention.padded_history`)."""
        if not valid_only:
            return _concat([table(ids) for table, ids in lookups])
        first = lookups[0][1]
        index = tf.where(tf.sequence_mask(lengths, tf.shape(first)[1]))          # [V, 2] (row, step)
        values = _concat([table(tf.gather_nd(ids, index)) for table, ids in lookups])  # [V, width]
        return ValidSteps(index, values, tf.shape(first, out_type=tf.int64)[0])

    def link_for_checkpoints(self, name: str, trackable) -> None:
        """A checkpoint-only dependency ``name`` -> ``trackable``, not a Keras sublayer (the bank's
        weights stay its tables): checkpoints written with ``trackable`` inside the bank restore."""
        self.__dict__.setdefault("_checkpoint_links", {})[name] = trackable  # past Keras' attribute tracking

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        children = super()._trackable_children(save_type, **kwargs)
        if save_type == "checkpoint":
            children.update(self.__dict__.get("_checkpoint_links", {}))
        return children

    def _lookup_dependency(self, name, cached_dependencies=None):
        link = self.__dict__.get("_checkpoint_links", {}).get(name)
        return link if link is not None else super()._lookup_dependency(name, cached_dependencies)

    @property
    def output_width(self) -> int:
        """The width of a tower's x (:func:`rocket_ctr.model.layers.tower_input.tower_input`) over this
        bank (one extractor per group, each pooling to its keys' width)."""
        n_seq, n_side = len(self.spec.sequence_features), len(self.spec.side_features)
        width = self.embedding_dim * (len(self.spec.user_features) + 2 * n_seq + n_side
                                      + len(self.spec.item_features))
        return width + (self.extras.output_width if self.extras is not None else 0)

    def get_config(self):
        return {**super().get_config(), "spec": self.spec.to_dict(), "embedding_dim": self.embedding_dim,
                "init_std": self.init_std, "l2": self.l2, "recency": self.recency,
                "batch_l2": self.batch_l2}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(FeatureSpec.from_saved(config.pop("spec")), **config)


def _concat(parts: list) -> tf.Tensor:
    return parts[0] if len(parts) == 1 else tf.concat(parts, -1)
