"""Building blocks: embedding bank, DIN attention (local activation unit), MLP towers, Dice."""
from __future__ import annotations

from typing import NamedTuple

import keras
import tensorflow as tf

from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.layers.embedding import RowEmbedding
from rocket_ctr.model.layers.features import FeatureEncoders


def track_for_checkpoints(layer: keras.layers.Layer, prefix: str, children: list) -> None:
    """Makes layers held in a list/dict visible to ``tf.train.Checkpoint``.

    Keras 3 finds weights inside list/dict attributes, but TensorFlow's checkpoint object graph
    only follows plain attributes: without this, embeddings and hidden layers would silently be
    missing from checkpoints (or saved only through the optimizer's slot references).
    """
    for i, child in enumerate(children):
        setattr(layer, f"_ckpt_{prefix}_{i}", child)


class Dice(keras.layers.Layer):
    """DIN's data-adaptive activation: p(s)·s + (1 − p(s))·α·s, p = sigmoid(BN(s))."""

    def __init__(self, epsilon: float = 1e-8, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon
        self.bn = keras.layers.BatchNormalization(center=False, scale=False, epsilon=epsilon)

    def build(self, input_shape):
        self.alpha = self.add_weight(name="alpha", shape=(input_shape[-1],), initializer="zeros")
        self.bn.build(input_shape)

    def call(self, x, training=False):
        p = tf.sigmoid(self.bn(x, training=training))
        return p * x + (1.0 - p) * self.alpha * x

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def activation_layer(name: str) -> keras.layers.Layer:
    """``relu``, ``sigmoid``, ``prelu``, ``dice`` or any Keras activation name."""
    if name == "dice":
        return Dice()
    if name == "prelu":
        return keras.layers.PReLU()
    return keras.layers.Activation(name)


class MLP(keras.layers.Layer):
    """Dense layers (optionally Dense → BatchNorm → activation → Dropout) ending in one logit.

    Args:
        units: hidden widths, e.g. ``(200, 80)``.
        activation: see :func:`activation_layer`.
        batch_norm: BatchNormalization between each Dense and its activation.
        dropout: dropout rate after each hidden layer (0 = none).
        l2: L2 weight penalty on the Dense kernels (0 = none).
    """

    def __init__(self, units, activation="relu", batch_norm=False, dropout=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.units, self.activation, self.batch_norm = tuple(units), activation, batch_norm
        self.dropout, self.l2 = dropout, l2
        regularizer = keras.regularizers.L2(l2) if l2 else None
        self.hidden = []
        for width in units:
            self.hidden.append(keras.layers.Dense(width, use_bias=not batch_norm, kernel_regularizer=regularizer))
            if batch_norm:
                self.hidden.append(keras.layers.BatchNormalization())
            self.hidden.append(activation_layer(activation))
            if dropout:
                self.hidden.append(keras.layers.Dropout(dropout))
        track_for_checkpoints(self, "hidden", self.hidden)
        self.logit = keras.layers.Dense(1, kernel_regularizer=regularizer)

    def call(self, x, training=False):
        for layer in self.hidden:
            x = layer(x, training=training)
        return tf.cast(tf.squeeze(self.logit(x), axis=-1), tf.float32)  # losses in float32 under mixed precision

    def call_parts(self, user, rest, training=False):
        """``call(x)`` for x = [user broadcast to the rows of ``rest``, rest], without building x:
        the first layer multiplies ``user`` [U, Du] by its kernel rows once (U = 1: once per request,
        not once per candidate; the serving path) and adds it to ``rest`` [N, D − Du] times the others.

        Returns:
            The logits [N], float32.
        """
        first = self.hidden[0]
        if not first.built:  # the first call on this path: Keras builds the layers on the whole x
            return self(join_user(user, rest), training=training)
        kernel = tf.cast(first.kernel, rest.dtype)
        width = user.shape[-1]
        x = tf.matmul(rest, kernel[width:]) + tf.matmul(tf.cast(user, rest.dtype), kernel[:width])
        if first.use_bias:
            x = tf.nn.bias_add(x, tf.cast(first.bias, x.dtype))
        for layer in self.hidden[1:]:
            x = layer(x, training=training)
        return tf.cast(tf.squeeze(self.logit(x), axis=-1), tf.float32)

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "activation": self.activation,
                "batch_norm": self.batch_norm, "dropout": self.dropout, "l2": self.l2}


def project(x, weight):
    """[..., D] × [D, U] -> [..., U] as one matmul over the flattened leading axes.

    ``tf.einsum("...d,du->...u")`` computes the same but was measured ~30× slower on CPU here.
    """
    return tf.tensordot(x, weight, axes=1)


def valid_steps(query, keys, mask, layer_name: str):
    """The valid (row, step) pairs of per-row histories: ``(rows [V] int64, steps [V, D], n)``;
    ``keys`` padded [B, L, D] (``mask`` says which steps are valid) or :class:`ValidSteps`.

    One history per candidate here; a batch-1 history must take the broadcast form instead.
    """
    if isinstance(keys, ValidSteps):  # the bank looked up only the valid steps
        return keys.index[:, 0], keys.values, keys.nrows
    tf.debugging.assert_equal(tf.shape(keys)[0], tf.shape(query)[0],
                              message=f"{layer_name}: per-row histories need one history per candidate")
    where = tf.where(mask)                                         # [V, 2] (row, step)
    return where[:, 0], tf.gather_nd(keys, where), tf.shape(query, out_type=tf.int64)[0]


class ValidSteps(NamedTuple):
    """A history as its valid (row, step) cells only: ``index`` [V, 2] (row, step) int64,
    ``values`` [V, D], ``nrows`` B. A plain structure (``tf.nest`` maps over its tensors), not a
    RaggedTensor, whose row partitioning XLA cannot compile."""

    index: tf.Tensor
    values: tf.Tensor
    nrows: tf.Tensor


def takes_padded_form(keys, skip_padding: bool) -> bool:
    """Whether an extractor pools ``keys`` in its padded form: one [1, L] history broadcast
    against N candidates (serving) or padded per-row keys under XLA (``skip_padding`` off);
    never :class:`ValidSteps`, which hold no padding to mask."""
    return not isinstance(keys, ValidSteps) and (keys.shape[0] == 1 or not skip_padding)


def padded_history(history, width) -> tf.Tensor:
    """A :class:`ValidSteps` history as [B, width, D] with zeros after each row's steps."""
    if not isinstance(history, ValidSteps):
        return history
    shape = tf.stack([history.nrows, tf.cast(width, tf.int64), tf.shape(history.values, out_type=tf.int64)[-1]])
    padded = tf.scatter_nd(history.index, history.values, shape)
    padded.set_shape([None, None, history.values.shape[-1]])
    return padded


def segment_softmax(scores, rows, n):
    """Softmax of ``scores`` [V] within each row's valid steps (``rows`` ascending, as ``tf.where``
    lists them)."""
    if _tracing_for_xla():  # XLA has only the unsorted segment kernels
        weights = tf.exp(scores - tf.gather(tf.math.unsorted_segment_max(scores, rows, n), rows))
        return weights / tf.gather(tf.math.unsorted_segment_sum(weights, rows, n), rows)
    weights = tf.exp(scores - tf.gather(tf.math.segment_max(scores, rows), rows))
    return weights / tf.gather(tf.math.segment_sum(weights, rows), rows)


def segment_pool(values, rows, n):
    """Per-row sums of ``values`` [V, D] -> [n, D] (rows without steps: zeros).

    ``rows`` must be ascending (``tf.where`` order; the CPU kernel refuses others): the sorted
    segment sum was measured 3x faster than ``unsorted_segment_sum`` on batch-scoring sizes."""
    if _tracing_for_xla():
        return tf.math.unsorted_segment_sum(values, rows, n)
    summed = tf.math.segment_sum(values, rows)  # [max(rows) + 1, D]
    return tf.pad(summed, [[0, n - tf.shape(summed, out_type=tf.int64)[0]], [0, 0]])


def _tracing_for_xla() -> bool:
    """Whether the graph being built will be XLA-compiled (a ``jit_compile`` function, at any depth)."""
    from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext

    return GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


class DinAttention(keras.layers.Layer):
    """DIN local activation unit: weight_t = MLP([h_t, c, h_t − c, h_t ⊙ c]), masked, summed.

    The first Dense layer is applied in its split form h·(Wa + Wc) + c·(Wb − Wc) + (h ⊙ c)·Wd,
    which equals the concatenated form but lets a history of batch size 1 broadcast against N
    candidates: in serving the history term is computed once per request, not once per candidate.
    A batch of per-row histories (training, evaluation) is scored on its valid steps only; both
    forms give the same result.

    Args:
        units: attention MLP widths, e.g. ``(80, 40)``.
        activation: hidden activation (DIN: sigmoid or Dice).
        softmax: normalise the weights over valid steps (DIN's default is not to).
    Call args:
        query: [B, D] candidate embedding; keys: [B or 1, L, D] history; mask: [B or 1, L] bool.
    Returns:
        [B, D] attention-pooled interest.
    """

    def __init__(self, units=(80, 40), activation="sigmoid", softmax=False, **kwargs):
        super().__init__(**kwargs)
        self.units, self.activation, self.softmax = tuple(units), activation, softmax

    def build(self, query_shape, keys_shape=None, mask_shape=None):
        dim, first = int(query_shape[-1]), self.units[0]
        self.w_key = self.add_weight(name="w_key", shape=(dim, first), initializer="glorot_uniform")
        self.w_query = self.add_weight(name="w_query", shape=(dim, first), initializer="glorot_uniform")
        self.w_diff = self.add_weight(name="w_diff", shape=(dim, first), initializer="glorot_uniform")
        self.w_prod = self.add_weight(name="w_prod", shape=(dim, first), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(first,), initializer="zeros")
        self.first_act = activation_layer(self.activation)
        self.rest = [keras.layers.Dense(u) for u in self.units[1:]]
        self.rest_act = [activation_layer(self.activation) for _ in self.units[1:]]
        track_for_checkpoints(self, "rest", self.rest + self.rest_act)
        self.score = keras.layers.Dense(1)

    skip_padding = True  # off under XLA: the valid-step count is a dynamic shape it cannot compile

    def call(self, query, keys, mask, training=False):
        if takes_padded_form(keys, self.skip_padding):
            return self._pooled_padded(query, keys, mask, training)
        return self._pooled_valid_steps(query, keys, mask, training)

    def _scores(self, keys_part, query_part, products, training):
        """The unit's MLP on the split first layer: [..., D] parts -> [...] scores."""
        hidden = (project(keys_part, self.w_key + self.w_diff) + project(query_part, self.w_query - self.w_diff)
                  + project(products, self.w_prod) + self.bias)
        hidden = self.first_act(hidden, training=training)
        for dense, act in zip(self.rest, self.rest_act):
            hidden = act(dense(hidden), training=training)
        return tf.squeeze(self.score(hidden), axis=-1)

    def _pooled_padded(self, query, keys, mask, training):
        """Every (candidate, step) pair, padding included, then masked: the serving form."""
        q = query[:, None, :]                                      # [B, 1, D]
        weights = self._scores(keys, q, keys * q, training)       # [B, L]
        if self.softmax:
            weights = tf.where(mask, weights, tf.fill(tf.shape(weights), -1e9))
            weights = tf.nn.softmax(weights, axis=-1)
        weights = tf.where(mask, weights, tf.zeros_like(weights))
        # batched matmul broadcasts a batch-1 history against B candidates without copying it
        return tf.squeeze(tf.matmul(weights[:, None, :], keys), axis=1)

    def _pooled_valid_steps(self, query, keys, mask, training):
        """Only the valid (row, step) pairs: work grows with the real history lengths, not the padding.

        Training batches mix short and long histories (grouping rows by length was measured to
        cost accuracy on real logs), so most of a padded batch would be padding.
        """
        rows, steps, n = valid_steps(query, keys, mask, "DinAttention")
        queries = tf.gather(query, rows)                           # [V, D]
        weights = self._scores(steps, queries, steps * queries, training)  # [V]
        if self.softmax:
            weights = segment_softmax(weights, rows, n)
        return segment_pool(weights[:, None] * steps, rows, n)

    def get_config(self):
        return {**super().get_config(), "units": list(self.units), "activation": self.activation,
                "softmax": self.softmax}


def use_padded_attention(model: keras.layers.Layer, padded: bool) -> None:
    """Switches every interest extractor inside ``model`` that has a valid-steps form (DIN, dot)
    to the padded form (for XLA) or back (before tracing)."""
    for layer in model._flatten_layers(include_self=True):
        if hasattr(layer, "skip_padding"):
            layer.skip_padding = not padded


class EmbeddingBank(keras.layers.Layer):
    """The embedding tables of every id feature: what the towers share.

    Item and category tables serve both the candidate and the history (DIN). Inputs are row
    indices (see :class:`rocket_ctr.features.id_mapping.IdMapper`) plus ``hist_len``; user-side inputs
    (profile, history) may have batch size 1 against N candidates. ``call`` returns the lookups::

        {"candidate": [N, S·D] (every sequence feature's candidate embedding, part of x),
         "sequences": [{"query": [N, W], "history": [B, L, W] (per-row histories: ValidSteps),
                        "lengths": [B] int32, "width": L}, ...]
             (one per sequence group: its features' candidate / history embeddings, W = its
             features' and side columns' D each; a side column's query part is zeros; B = N, or 1
             for one user's request; without sequence groups: one group, query = "candidate"),
         "user": [[B, D], ...] (profile), "items": [[N, D], ...] (other candidate features)}

    (numeric and multi-hot features, :class:`rocket_ctr.model.layers.features.FeatureEncoders`, add
    their parts after the id features of their side: [B, D] embeddings, [B, 1] normalised values),
    which :func:`tower_input` turns into a tower's x, given that tower's pooled interest.

    Args:
        spec: the FeatureSpec (one table per id feature).
        embedding_dim: width of every table.
        init_std: rows start as normal(0, init_std); 0: Keras' uniform(-0.05, 0.05).
        l2: L2 penalty on the whole tables (a model loss; 0: none).
    """

    skip_padding = True  # per-row histories: only valid steps looked up; off under XLA (use_padded_attention)

    def __init__(self, spec: FeatureSpec, embedding_dim=18, init_std=0.0, l2=0.0, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.embedding_dim, self.init_std, self.l2 = spec, embedding_dim, init_std, l2
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

    def call(self, rows: dict, training=False) -> dict:
        spec, emb = self.spec, self.embeddings
        candidate = {f.name: emb[f.name](rows[f.name]) for f in spec.sequence_features}
        sequences = []
        for group, length in zip(spec.groups, spec.length_columns):
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
            sequences.append({"query": _concat(query), "history": history, "lengths": rows[length],
                              "width": tf.shape(lookups[0][1])[1]})
        embedded = {
            "candidate": _concat([candidate[f.name] for f in spec.sequence_features]),
            "sequences": sequences,
            "user": [emb[f.name](rows[f.name]) for f in spec.user_features],
            "items": [emb[f.name](rows[f.name]) for f in spec.item_features],
        }
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
        (extractors without a valid-step form get it padded: :func:`padded_history`)."""
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
        """The width of a tower's x (:func:`tower_input`) over this bank (one extractor per group,
        each pooling to its keys' width)."""
        n_seq, n_side = len(self.spec.sequence_features), len(self.spec.side_features)
        width = self.embedding_dim * (len(self.spec.user_features) + 2 * n_seq + n_side
                                      + len(self.spec.item_features))
        return width + (self.extras.output_width if self.extras is not None else 0)

    def get_config(self):
        return {**super().get_config(), "spec": self.spec.to_dict(), "embedding_dim": self.embedding_dim,
                "init_std": self.init_std, "l2": self.l2}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(FeatureSpec.from_saved(config.pop("spec")), **config)


def _concat(parts: list) -> tf.Tensor:
    return parts[0] if len(parts) == 1 else tf.concat(parts, -1)


def tower_input(embedded: dict, interest: tf.Tensor) -> tf.Tensor:
    """A tower's x = [user profile embeddings, pooled interest, candidate embeddings, other item
    embeddings], user-side parts broadcast to the N candidates."""
    user, rest = tower_input_parts(embedded, interest)
    return rest if user is None else join_user(user, rest)


def tower_input_parts(embedded: dict, interest: tf.Tensor) -> tuple:
    """:func:`tower_input` in two parts, for :meth:`MLP.call_parts`.

    Returns:
        (user profile embeddings [U, Du], not broadcast (U = 1 for a one-user request; None
        without user features), the rest of x [N, D − Du]).
    """
    user = _concat(list(embedded["user"])) if embedded["user"] else None
    return user, _concat([interest, embedded["candidate"], *embedded["items"]])


def join_user(user: tf.Tensor, rest: tf.Tensor) -> tf.Tensor:
    """[user broadcast to the N rows of ``rest``, rest]: the x of :func:`tower_input_parts`' parts."""
    return tf.concat([tf.broadcast_to(user, [tf.shape(rest)[0], user.shape[-1]]), rest], axis=-1)
