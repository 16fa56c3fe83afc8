"""MLP towers and their activations: ``MLP`` (Dense layers ending in one logit), DIN's ``Dice``."""
from __future__ import annotations

import keras
import tensorflow as tf

from rocket_ctr.model.layers.tower_input import join_user
from rocket_ctr.model.layers.tracking import track_for_checkpoints


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
