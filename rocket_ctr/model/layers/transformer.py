"""BST's behaviour-sequence Transformer (Chen et al., 2019) as an interest extractor: ``booster_interest``
``transformer`` (alone) or ``transformer+din`` (concatenated with DIN attention).

The candidate joins its history as one more token; a learned position embedding marks each
token's distance from the newest step (the candidate at 0, the newest step at 1); encoder layers of
multi-head self-attention and a position-wise feed-forward let every token read every valid one.
The pooled vector is the candidate token's final vector and the mean of the valid history tokens'
final vectors, projected back to the embedding width D: the tower's x is as wide as with DIN.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from rocket_ctr.model.layers.attention import ValidSteps, padded_history
from rocket_ctr.model.layers.tracking import track_for_checkpoints


class EncoderLayer(keras.layers.Layer):
    """One Transformer encoder layer (post-norm): x = LN(x + Drop(MHA(x))), x = LN(x + Drop(FFN(x))).

    Args:
        heads: attention heads; each projects to D // heads (at least 1) query/key/value widths.
        dropout: dropout rate on both sublayers' outputs (training only).
        expansion: the feed-forward's hidden width in multiples of D (ReLU, then back to D).
    Call args:
        tokens: [N, T, D]; mask: [N, 1, T] bool, the tokens that may be attended to.
    Returns:
        [N, T, D].
    """

    def __init__(self, heads=2, dropout=0.1, expansion=2, **kwargs):
        super().__init__(**kwargs)
        self.heads, self.dropout, self.expansion = int(heads), float(dropout), int(expansion)

    def build(self, tokens_shape, mask_shape=None):
        dim = int(tokens_shape[-1])
        # plain attributes: tf.train.Checkpoint follows them
        self.attention = keras.layers.MultiHeadAttention(self.heads, max(dim // self.heads, 1), name="attention")
        self.attention_norm = keras.layers.LayerNormalization(name="attention_norm")
        self.hidden = keras.layers.Dense(self.expansion * dim, activation="relu", name="hidden")
        self.out = keras.layers.Dense(dim, name="out")
        self.feed_forward_norm = keras.layers.LayerNormalization(name="feed_forward_norm")
        self.attention_dropout = keras.layers.Dropout(self.dropout)
        self.feed_forward_dropout = keras.layers.Dropout(self.dropout)

    def call(self, tokens, mask, training=False):
        attended = self.attention(tokens, tokens, attention_mask=mask, training=training)
        tokens = self.attention_norm(tokens + self.attention_dropout(attended, training=training))
        transformed = self.out(self.hidden(tokens))
        return self.feed_forward_norm(tokens + self.feed_forward_dropout(transformed, training=training))

    def compute_output_shape(self, tokens_shape, mask_shape=None):
        return tokens_shape

    def get_config(self):
        return {**super().get_config(), "heads": self.heads, "dropout": self.dropout, "expansion": self.expansion}


class BehaviorTransformer(keras.layers.Layer):
    """BST over one behaviour sequence: [candidate, history] tokens -> encoder layers -> [N, D].

    Padded steps are never attended to and never pooled, so they do not change the output; the
    candidate token is always valid (an empty history pools its candidate alone, the history mean
    being 0). A history of batch size 1 (one request) is broadcast to the N candidates: each
    candidate is its own sequence, so the work is N·(L + 1)² per layer, not shared between candidates.
    A :class:`ValidSteps` history is scattered to its padded form first.

    Args:
        num_layers: encoder layers (>= 1).
        heads: attention heads per layer.
        dropout: dropout rate inside the encoder layers.
        max_history: the longest history read; positions past it share the last position's embedding.
    Call args:
        query: [N, D] candidate; keys: [B, L, D] history (B = N or 1) or ValidSteps; mask: [B, L] bool.
    Returns:
        [N, D] pooled interest.
    """

    def __init__(self, num_layers=1, heads=2, dropout=0.1, max_history=50, **kwargs):
        super().__init__(**kwargs)
        if int(num_layers) < 1:
            raise ValueError(f"BehaviorTransformer needs at least one layer, got {num_layers}")
        self.num_layers, self.heads, self.dropout = int(num_layers), int(heads), float(dropout)
        self.max_history = int(max_history)

    def build(self, query_shape, keys_shape=None, mask_shape=None):
        dim = int(query_shape[-1])
        self.positions = self.add_weight(name="positions", shape=(self.max_history + 1, dim), initializer="uniform")
        self.encoders = [EncoderLayer(self.heads, self.dropout, name=f"encoder_{i}") for i in range(self.num_layers)]
        track_for_checkpoints(self, "encoder", self.encoders)
        self.combine = keras.layers.Dense(dim, name="combine")

    def call(self, query, keys, mask, training=False):
        if isinstance(keys, ValidSteps):
            keys = padded_history(keys, tf.shape(mask)[1])
        n, width, dim = tf.shape(query)[0], tf.shape(keys)[1], query.shape[-1]
        keys = tf.broadcast_to(keys, [n, width, dim])   # a batch-1 history against N candidates
        mask = tf.broadcast_to(mask, [n, width])
        tokens = tf.concat([query[:, None, :], keys], axis=1)
        tokens += tf.cast(tf.gather(self.positions, token_positions(mask, self.max_history)), tokens.dtype)
        valid = tf.concat([tf.ones([n, 1], tf.bool), mask], axis=1)
        for encoder in self.encoders:
            tokens = encoder(tokens, valid[:, None, :], training=training)
        weights = tf.cast(mask, tokens.dtype)[..., None]                                     # [N, L, 1]
        history = tf.math.divide_no_nan(tf.reduce_sum(tokens[:, 1:] * weights, axis=1),
                                        tf.reduce_sum(weights, axis=1))
        return self.combine(tf.concat([tokens[:, 0], history], axis=-1))

    def compute_output_shape(self, query_shape, keys_shape=None, mask_shape=None):
        return query_shape

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers, "heads": self.heads,
                "dropout": self.dropout, "max_history": self.max_history}


def token_positions(mask, max_history: int) -> tf.Tensor:
    """The position of each [candidate, history] token: its distance from the newest valid step.

    Args:
        mask: [N, L] bool, histories left-aligned (oldest first).
        max_history: the largest position (longer distances are clipped to it).
    Returns:
        [N, 1 + L] int32: 0 for the candidate, length − t for step t (the newest step 1), 0 for padding.
    """
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    distance = tf.clip_by_value(lengths[:, None] - tf.range(tf.shape(mask)[1])[None, :], 0, max_history)
    return tf.concat([tf.zeros([tf.shape(mask)[0], 1], tf.int32), distance], axis=1)


def transformer_options(config, max_history: int) -> dict:
    """:class:`BehaviorTransformer`'s arguments from a ModelConfig's ``booster_transformer_*`` fields."""
    return {"num_layers": config.booster_transformer_layers, "heads": config.booster_transformer_heads,
            "dropout": config.booster_transformer_dropout, "max_history": max_history}
