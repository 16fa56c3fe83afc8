"""Adam with lazy (sparse) updates for embedding tables.

Keras 3's Adam densifies an embedding's IndexedSlices gradient and then updates every row of
the table, its first and second moments on every step: the cost grows with the id space, not
with the batch. ``LazyAdam`` updates only the rows a batch touched (as TF Addons' LazyAdam and
the legacy optimizers' sparse path did); dense variables get plain Adam.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from rocket_ctr.errors import FieldError


class RateScales:
    """An optimizer mixin: some variables step at a multiple of the learning rate (a tower's own
    rate in joint training: one optimizer, one checkpoint layout, a different step size)."""

    def scale_rates(self, variables, scale: float) -> None:
        """Steps of ``variables`` use ``scale`` × the learning rate (set before the first step)."""
        self._rate_scales = {**getattr(self, "_rate_scales", {}), **{self._var_key(v): float(scale) for v in variables}}

    def update_step(self, gradient, variable, learning_rate):
        scale = getattr(self, "_rate_scales", {}).get(self._var_key(variable), 1.0)
        return super().update_step(gradient, variable, learning_rate * scale if scale != 1.0 else learning_rate)


class LazyAdam(keras.optimizers.Adam):
    """Adam whose sparse (embedding) updates touch only the rows present in the batch."""

    def update_step(self, gradient, variable, learning_rate):
        if not isinstance(gradient, tf.IndexedSlices):
            return self._dense_update(gradient, variable, learning_rate)
        dtype = variable.dtype
        rows, position = tf.unique(gradient.indices)
        values = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), position, tf.shape(rows)[0])
        lr = tf.cast(learning_rate, dtype)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_rows = beta_1 * tf.gather(m.value, rows) + (1 - beta_1) * values
        v_rows = beta_2 * tf.gather(v.value, rows) + (1 - beta_2) * tf.square(values)
        self.assign(m, tf.IndexedSlices(m_rows, rows))
        self.assign(v, tf.IndexedSlices(v_rows, rows))
        self.assign_sub(variable, tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))

    def _dense_update(self, gradient, variable, learning_rate):
        """Plain Adam, as TensorFlow's fused kernel: one op per variable instead of about a dozen
        (a step of the rocket model updates ~40 small dense variables, so op count matters)."""
        if self.amsgrad:
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=_handle(variable), m=_handle(self._momentums[index]), v=_handle(self._velocities[index]),
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype), grad=tf.cast(gradient, dtype))


def _handle(variable):
    """The resource handle of a Keras 3 (TensorFlow backend) variable."""
    return variable.handle if isinstance(variable, tf.Variable) else variable.value.handle


class ScaledLazyAdam(RateScales, LazyAdam):
    """:class:`LazyAdam` with per-variable learning-rate multiples (:class:`RateScales`)."""


class ScaledAdam(RateScales, keras.optimizers.Adam):
    """Keras' Adam with per-variable learning-rate multiples (:class:`RateScales`)."""


def make_optimizer(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The training optimizer by its config name (``training.optimizer``).

    Args:
        name: ``lazy_adam`` (:class:`LazyAdam`: sparse rows only) or ``adam`` (Keras' Adam: every
            row of every table each step, as Keras and DeepCTR train).
        learning_rate: Adam's learning rate (:meth:`RateScales.scale_rates` sets multiples of it).
    """
    if name == "lazy_adam":
        return ScaledLazyAdam(learning_rate)
    if name == "adam":
        return ScaledAdam(learning_rate)
    raise FieldError(f"{{training.optimizer}} must be lazy_adam or adam, got {name!r}")
