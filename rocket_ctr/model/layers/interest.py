"""Interest extractors: pool a behaviour sequence into one vector per candidate, one per tower.

Every extractor is called as ``extractor(query, keys, mask)`` with ``query`` [N, D] (the
candidate), ``keys`` [B, L, D] (the history, B = N or 1) and ``mask`` [B, L] (valid steps), and
returns [N, D]; an empty history pools to zero. A history of batch size 1 broadcasts against the
N candidates, so in serving its per-step work is done once per request, not once per candidate.

* ``DinAttention`` (rocket_ctr.model.layers.attention): DIN's local activation unit, the booster's extractor.
* :class:`DotAttention`: scaled dot-product target attention on a learned projection.
* :class:`MeanPooling`: the masked mean (no weights, candidate-independent).
* ``BehaviorTransformer`` (rocket_ctr.model.layers.transformer): BST's self-attention over the
  history and the candidate, a booster option (the exception to the two rules above: an empty
  history pools the candidate token alone, and each candidate attends over its own sequence).

:func:`make_extractor` builds one by name (``model.light_interest`` picks the light tower's) and
:func:`newest_steps` cuts a history to its newest steps (a tower that reads fewer of them).
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from rocket_ctr.model.layers.attention import (
    DinAttention,
    project,
    segment_pool,
    segment_softmax,
    takes_padded_form,
    valid_steps,
)
from rocket_ctr.model.layers.transformer import BehaviorTransformer


class DotAttention(keras.layers.Layer):
    """Target attention w_t = softmax_t((c·Wq)·(h_t·Wk) / √P) over the valid steps; returns Σ_t w_t·h_t.

    Serving (a batch-1 history): the history is projected once per request, then one [N, P] × [P, L]
    matmul scores every (candidate, step) pair and one [N, L] × [L, D] matmul pools. Per-row batches
    (training) are scored on their valid steps only, as in DinAttention; both forms are equal.

    Args:
        projection: P, the width of the query and key projections; 0 = none (w_t from c·h_t / √D,
            no weights: candidate and history share the embedding tables, so this is their similarity).
    """

    skip_padding = True  # off under XLA (see rocket_ctr.model.layers.attention.use_padded_attention)

    def __init__(self, projection=16, **kwargs):
        super().__init__(**kwargs)
        self.projection = int(projection)

    def build(self, query_shape, keys_shape=None, mask_shape=None):
        dim = int(query_shape[-1])
        self.scale = 1.0 / math.sqrt(self.projection or dim)
        if self.projection:
            self.w_query = self.add_weight(name="w_query", shape=(dim, self.projection), initializer="glorot_uniform")
            self.w_key = self.add_weight(name="w_key", shape=(dim, self.projection), initializer="glorot_uniform")

    def _project(self, x, weight_name):
        if not self.projection:
            return x
        return project(x, getattr(self, weight_name))

    def call(self, query, keys, mask, training=False):
        if takes_padded_form(keys, self.skip_padding):
            return self._pooled_padded(query, keys, mask)
        return self._pooled_valid_steps(query, keys, mask)

    def _pooled_padded(self, query, keys, mask):
        """Every (candidate, step) pair, padding included, then masked: the serving form."""
        q = self._project(query, "w_query") * self.scale                      # [N, P]
        k = self._project(keys, "w_key")                                     # [B, L, P]
        one = keys.shape[0] == 1
        scores = tf.matmul(q, k[0], transpose_b=True) if one else tf.einsum("bp,blp->bl", q, k)  # [N, L]
        scores = tf.where(mask, scores, tf.fill(tf.shape(scores), tf.cast(-1e9, scores.dtype)))
        weights = tf.where(mask, tf.nn.softmax(scores, axis=-1), tf.zeros_like(scores))
        return tf.matmul(weights, keys[0]) if one else tf.einsum("bl,bld->bd", weights, keys)

    def _pooled_valid_steps(self, query, keys, mask):
        """Only the valid (row, step) pairs: work grows with the real history lengths."""
        rows, steps, n = valid_steps(query, keys, mask, "DotAttention")
        q = tf.gather(self._project(query, "w_query") * self.scale, rows)    # [V, P]
        scores = tf.reduce_sum(q * self._project(steps, "w_key"), axis=-1)   # [V]
        weights = segment_softmax(scores, rows, n)
        return segment_pool(weights[:, None] * steps, rows, n)

    def get_config(self):
        return {**super().get_config(), "projection": self.projection}


class MeanPooling(keras.layers.Layer):
    """The mean of the valid history steps (zero for an empty history); ignores the candidate.

    One form serves both cases: the masked sum costs B·L·D multiply-adds, as little as gathering
    the valid steps would, and a batch-1 history is pooled once and broadcast to the N candidates.
    """

    def call(self, query, keys, mask, training=False):
        weights = tf.cast(mask, keys.dtype)                                  # [B, L]
        total = tf.squeeze(tf.matmul(weights[:, None, :], keys), axis=1)     # [B, D]
        mean = tf.math.divide_no_nan(total, tf.reduce_sum(weights, axis=1, keepdims=True))
        return tf.broadcast_to(mean, [tf.shape(query)[0], tf.shape(keys)[-1]])


class ConcatenatedExtractors(keras.layers.Layer):
    """Several extractors over the same history, their pooled vectors concatenated: [N, k·D].

    Args:
        extractors: the extractor layers (e.g. DIN and dot attention: a booster that reads both).
    """

    def __init__(self, extractors, **kwargs):
        super().__init__(**kwargs)
        self.extractors = list(extractors)
        for i, extractor in enumerate(self.extractors):  # plain attributes: tf.train.Checkpoint follows them
            setattr(self, f"extractor_{i}", extractor)

    def call(self, query, keys, mask, training=False):
        return tf.concat([e(query, keys, mask, training=training) for e in self.extractors], axis=-1)


def make_extractor(kind: str, *, units=(80, 40), activation="sigmoid", softmax=False, projection=16,
                   transformer=None, name=None) -> keras.layers.Layer:
    """An extractor by name: ``din`` (DinAttention of ``units``, ``activation``, ``softmax``),
    ``dot`` (DotAttention of width ``projection``), ``mean`` (MeanPooling), ``transformer``
    (:class:`rocket_ctr.model.layers.transformer.BehaviorTransformer` of the ``transformer`` dict's
    arguments) or several joined by ``+`` (:class:`ConcatenatedExtractors`, e.g. ``din+dot``)."""
    if "+" in kind:
        parts = [make_extractor(part, units=units, activation=activation, softmax=softmax, projection=projection,
                                transformer=transformer, name=f"{name}_{part}" if name else None)
                 for part in kind.split("+")]
        return ConcatenatedExtractors(parts, name=name)
    if kind == "din":
        return DinAttention(units, activation, softmax, name=name)
    if kind == "dot":
        return DotAttention(projection, name=name)
    if kind == "mean":
        return MeanPooling(name=name)
    if kind == "transformer":
        return BehaviorTransformer(**(transformer or {}), name=name)
    raise ValueError(f"unknown interest extractor {kind!r} (din, dot, mean or transformer)")


def newest_steps(history, lengths, steps: int | None):
    """The newest ``steps`` valid steps of each left-aligned history, left-aligned again.

    Args:
        history: [B, L, D]; lengths: [B] valid steps (oldest first); steps: how many to keep
            (None: all).
    Returns:
        (history [B, min(L, steps), D], lengths [B]).
    """
    if steps is None:
        return history, lengths
    width = history.shape[1]
    if width is not None and width <= steps:
        return history, lengths
    width = tf.shape(history)[1]
    lengths = tf.minimum(lengths, width)
    keep = tf.minimum(lengths, steps)
    # row i reads steps [len_i - keep_i, len_i); steps past keep_i are padding, clamped into range
    index = tf.minimum((lengths - keep)[:, None] + tf.range(tf.minimum(width, steps))[None, :], width - 1)
    return tf.gather(history, index, batch_dims=1), keep
