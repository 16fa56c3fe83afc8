"""The loss of the paper's eq. (1) and the Keras step that minimises it (``RocketModel``'s mixin).

    L = H(y, σ(l)) + H(y, σ(z)) + λ · hint(l, stop_gradient(z))

with l the light logit, z the booster logit, H the cross-entropy. The model's ``hint_scale``
(a non-trainable scalar the hint warm-up writes, ``rocket_ctr.train.callbacks.hint_warmup``) has
two roles, one helper each: it scales λ (:meth:`LossMixin._hint_lambda`) and it gates how much of
the booster's gradient reaches what the towers share (:meth:`LossMixin._gate_booster_gradient`).
"""
from __future__ import annotations

import tensorflow as tf

LOSS_TERMS = ("loss", "light_ce", "booster_ce", "hint")


class LossMixin:
    """Eq. (1), its trackers and ``train_step`` for :class:`rocket_ctr.model.rocket.RocketModel`.

    Reads the model's ``towers``, ``stage``, ``hint`` (the hint loss), ``hint_config``, ``hint_weight``,
    ``hint_scale`` and ``trackers`` (one ``Mean`` per name of :data:`LOSS_TERMS`).
    """

    def loss_terms(self, labels, logits: dict, weights=None) -> dict:
        """Eq. (1) term by term, each a weighted mean over the batch (Σ w·term / Σ w):

            L = H(y, σ(l)) + H(y, σ(z)) + λ · hint(l, z)

        with l the light logit, z the booster logit, H the cross-entropy and hint the chosen
        hint loss (``mimic`` = (l − z)²); ``weights`` are the rows' sample weights (None: 1
        each, the plain mean). Terms whose tower is not trained in the current mode/stage are
        left out.
        """
        labels = tf.cast(labels, tf.float32)
        weights = tf.ones_like(labels) if weights is None else tf.cast(weights, tf.float32)

        def mean(values):
            return tf.math.divide_no_nan(tf.reduce_sum(weights * values), tf.reduce_sum(weights))

        trained, terms = self.loss_term_names, {}
        if "light_ce" in trained:
            terms["light_ce"] = mean(_ce(labels, logits["light"]))
        if "booster_ce" in trained:
            terms["booster_ce"] = mean(_ce(labels, logits["booster"]))
        if "hint" in trained:
            booster_logit = logits["booster"]
            if self.hint_config.gradient_block or self.stage == "light":
                # Gradient block: z is a fixed target, so the hint trains the light tower (and,
                # through it, the shared bottom) but never the booster's own weights.
                booster_logit = tf.stop_gradient(booster_logit)
            light_logit = logits.get("light_for_hint", logits["light"])
            hint = self.hint(light_logit, booster_logit, self.hint_config.temperature)
            if self.hint_config.scale_to_label:
                hint *= self._label_gradient_ratio(labels, light_logit, booster_logit, mean)
            if self.hint_config.gate:
                # the booster teaches only where it models the true label better than the light tower
                better = _ce(labels, logits["booster"]) < _ce(labels, logits["light"])
                hint *= tf.cast(tf.stop_gradient(better), hint.dtype)
            if self.hint_config.confidence:
                # exp(−H(y, σ(z))): the booster's probability of the observed label, a constant of the step
                hint *= tf.exp(-tf.stop_gradient(_ce(labels, logits["booster"])))
            terms["hint"] = self._hint_lambda() * mean(hint)
        return terms

    def _hint_lambda(self):
        """λ of eq. (1) as trained now: the model's ``hint_weight`` (``hint.weight``, auto resolved)
        times ``hint_scale`` (0 until the hint's launch under a warm-up, 1 otherwise)."""
        return self.hint_weight * self.hint_scale

    def _gate_booster_gradient(self, x):
        """``x`` in value, but only ``hint_scale`` of the booster's gradient flows back through it:
        the gate on what the towers share (used when ``hint.booster_bottom`` is ``after-launch``,
        :attr:`_booster_bottom_gated`). At 0 (a hint warm-up before the booster leads on validation)
        the light tower trains the shared bottom as it would alone; at 1 this is ``x`` itself,
        value and gradient."""
        scale = self.hint_scale
        return scale * x + (1.0 - scale) * tf.stop_gradient(x)

    @property
    def _booster_bottom_gated(self) -> bool:
        """The booster's gradient into the shared bottom waits for the hint's launch
        (:meth:`_gate_booster_gradient`); ``--booster-bottom from-start``: it trains the bottom from
        the first step (λ still waits)."""
        return self.hint_config.booster_bottom == "after-launch"

    def _label_gradient_ratio(self, labels, light_logit, booster_logit, mean) -> tf.Tensor:
        """mean |∂CE/∂l| / mean |∂hint/∂l| over the batch, a constant of the step (no gradient)."""
        light, booster = tf.stop_gradient(light_logit), tf.stop_gradient(booster_logit)
        with tf.GradientTape() as tape:
            tape.watch(light)
            hint = self.hint(light, booster, self.hint_config.temperature)
        hint_gradient = tape.gradient(hint, light)
        label_gradient = tf.sigmoid(light) - labels
        return tf.math.divide_no_nan(mean(tf.abs(label_gradient)), mean(tf.abs(hint_gradient)))

    @property
    def loss_term_names(self) -> tuple:
        """The eq. (1) terms the current mode/stage trains (a term whose tower is not trained is left out)."""
        names = []
        if "light" in self.towers and self.stage != "booster":
            names.append("light_ce")
        if "booster" in self.towers and self.stage != "light":
            names.append("booster_ce")
        if len(self.towers) == 2 and self.stage != "booster":
            names.append("hint")
        return tuple(names)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Eq. (1) summed (:meth:`loss_terms`, weighted by ``sample_weight``) plus weight
        regularisation; records each term in its tracker (Keras' ``compute_loss`` signature;
        Keras' ``evaluate`` reaches it too).

        Returns:
            The scalar loss.
        """
        terms = self.loss_terms(y, y_pred, sample_weight)
        total = tf.add_n(list(terms.values()))
        if self.losses:
            total += tf.add_n(self.losses)
        self.trackers["loss"].update_state(total)
        for name, value in terms.items():
            self.trackers[name].update_state(value)
        return total

    def train_step(self, data):
        """One update on ``(rows, labels)`` or ``(rows, labels, sample_weights)``; returns the
        epoch's running mean of each loss term."""
        x, y = data[0], data[1]
        weights = data[2] if len(data) > 2 else None
        with tf.GradientTape() as tape:
            loss = self.compute_loss(x, y, self(x, training=True), weights)
            # distributed loops sum replica gradients: scale so the sum is the global mean
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        return {name: self.trackers[name].result() for name in ("loss", *self.loss_term_names)}

    @property
    def metrics(self):
        return list(self.trackers.values())


def _ce(labels, logits):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
