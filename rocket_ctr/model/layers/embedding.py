"""``RowEmbedding``: a Keras ``Embedding`` that gathers its rows from the variable itself.

Keras 3's ``Embedding`` reads the whole table as a tensor and then gathers from it. Once a sparse
op has touched a resource variable (LazyAdam's row updates, any ``ResourceGather``), TensorFlow
keeps it in copy-on-read mode, so that dense read *copies the table* on every call: 14 MB per
lookup for 200k rows × 18, twice a step (candidate and history), the largest single cost of a
training step and of batch scoring (profiled). ``tf.gather`` on the variable is a
``ResourceGather``: only the looked-up rows are read. Same weights, names and values.
"""
from __future__ import annotations

import keras
import tensorflow as tf


class RowEmbedding(keras.layers.Embedding):
    """``keras.layers.Embedding`` whose lookup reads only the requested rows (same variables).

    Negative indices count from the end, as in Keras' ``ops.take``.
    """

    def row_indices(self, inputs) -> tf.Tensor:
        """The table rows ``inputs`` name: integer indices, a negative one counted from the end."""
        if inputs.dtype not in (tf.int32, tf.int64):
            inputs = tf.cast(inputs, tf.int32)
        return tf.where(inputs < 0, inputs + tf.cast(self.input_dim, inputs.dtype), inputs)

    def call(self, inputs):
        outputs = tf.gather(self.embeddings.value, self.row_indices(inputs))  # ResourceGather: no copy of the table
        if outputs.dtype != self.compute_dtype:
            outputs = tf.cast(outputs, self.compute_dtype)
        return outputs
