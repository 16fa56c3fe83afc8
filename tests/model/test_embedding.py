"""RowEmbedding: Keras' Embedding values and gradients, read row by row from the variable."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from rocket_ctr.model.layers.embedding import RowEmbedding


def _pair():
    ours, theirs = RowEmbedding(50, 4), keras.layers.Embedding(50, 4)
    ours.build(), theirs.build()
    theirs.embeddings.assign(ours.embeddings.value)
    return ours, theirs


def test_lookup_equals_keras_embedding_negative_indices_included():
    ours, theirs = _pair()
    ids = tf.constant([[0, 3, 49], [-1, -50, 7]], tf.int64)
    np.testing.assert_array_equal(ours(ids).numpy(), theirs(ids).numpy())
    np.testing.assert_array_equal(ours(tf.constant([2.0, 5.0])).numpy(), theirs(tf.constant([2, 5])).numpy())
    assert [w.path.split("/")[-1] for w in ours.weights] == [w.path.split("/")[-1] for w in theirs.weights]


def test_gradient_is_sparse_rows_with_keras_values():
    ours, theirs = _pair()
    ids = tf.constant([1, 1, 4], tf.int64)
    grads = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(layer(ids) ** 2)
        grads.append(tape.gradient(loss, layer.trainable_variables)[0])
    assert isinstance(grads[0], tf.IndexedSlices)  # the optimizer's lazy row updates rely on it
    np.testing.assert_allclose(tf.convert_to_tensor(grads[0]).numpy(), tf.convert_to_tensor(grads[1]).numpy())


def test_the_lookup_reads_rows_not_the_whole_table():
    ours, _ = _pair()
    graph = tf.function(ours).get_concrete_function(tf.TensorSpec([None], tf.int64)).graph
    ops = {op.type for op in graph.get_operations()}
    assert "ResourceGather" in ops and "ReadVariableOp" not in ops
