"""RocketModel: a shared DIN bottom feeding a light tower (served) and a booster tower (teacher)."""
from __future__ import annotations

import keras
import tensorflow as tf

from rocket_ctr.calibration import logit_offset
from rocket_ctr.config import HintConfig, ModelConfig, RocketConfig
from rocket_ctr.layers import MLP, SharedBottom
from rocket_ctr.losses import get_hint
from rocket_ctr.spec import FeatureSpec

LOSS_TERMS = ("loss", "light_ce", "booster_ce", "hint")


class RocketModel(keras.Model):
    """Rocket Launching (Zhou et al., AAAI 2018) on a DIN bottom.

    Inputs are embedding-row indices (``IdMapper`` output) and ``hist_len``; ``call`` returns the
    logits ``{"light": l, "booster": z}`` of the towers the mode builds.

    Args:
        spec: the FeatureSpec.
        config: the ModelConfig (mode, embeddings, attention, towers, sharing); a RocketConfig
            gives its model and hint parts.
        hint: the HintConfig (loss, λ, gradient block...) of eq. (1).
        negative_rate: share of negatives the training rows kept (downsampling, upstream and in
            the reader); :meth:`probabilities` corrects back to the full rate. Default: the
            spec's ``negative_rate`` times a RocketConfig's ``training.negative_rate``.
    """

    def __init__(self, spec: FeatureSpec, config: ModelConfig | RocketConfig | None = None,
                 hint: HintConfig | None = None, negative_rate: float | None = None, **kwargs):
        super().__init__(**kwargs)
        if negative_rate is None:
            reader_rate = config.training.negative_rate if isinstance(config, RocketConfig) else 1.0
            negative_rate = spec.negative_rate * reader_rate
        self.negative_rate = float(negative_rate)
        # logit(p) = logit(q) + log(r): the full-rate probability of a model trained on the sample
        self.logit_offset = logit_offset(self.negative_rate)
        if isinstance(config, RocketConfig):
            config, hint = config.model, hint or config.hint
        self.spec, self.config, self.hint_config = spec, config or ModelConfig(), hint or HintConfig()
        cfg = self.config
        self.towers = cfg.towers
        self.stage = {"two-stage": "booster"}.get(cfg.mode, "joint")

        def bottom(name):
            return SharedBottom(spec, cfg.embedding_dim, cfg.attention.units, cfg.attention.activation,
                                cfg.attention.softmax, name=name)

        separate = len(self.towers) == 2 and (not cfg.share or cfg.mode == "two-stage")
        if separate:
            self.light_bottom, self.booster_bottom = bottom("light_bottom"), bottom("booster_bottom")
        else:
            self.bottom = bottom("shared_bottom")
        if "light" in self.towers:
            self.light = _tower(cfg.light, "light_tower")
        if "booster" in self.towers:
            self.booster = _tower(cfg.booster, "booster_tower")
        self.hint = get_hint(self.hint_config.loss)
        # The scale the model reads, written by a training policy (callbacks.hint_warmup): it
        # multiplies λ and lets the booster's gradient into the shared bottom; 1 = eq. (1) as is.
        self.hint_scale = self.add_weight(name="hint_scale", shape=(), initializer="ones", trainable=False)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_TERMS}

    # ----- forward ---------------------------------------------------------------------------
    def bottom_of(self, tower: str) -> SharedBottom:
        """The bottom a tower reads (the same object for both towers when shared)."""
        return getattr(self, "bottom", None) or getattr(self, f"{tower}_bottom")

    def call(self, rows: dict, training=False) -> dict:
        outputs, shared_x = {}, None
        if hasattr(self, "bottom"):
            shared_x = self.bottom(rows, training=training)
        if "light" in self.towers:
            x = shared_x if shared_x is not None else self.light_bottom(rows, training=training)
            if self.config.detach_light:
                x = tf.stop_gradient(x)  # EasyRec's variant: only the booster trains the bottom
            outputs["light"] = self.light(x, training=training)
            if training and not self.hint_config.trains_bottom and "booster" in self.towers:
                # the same light logit, but the hint's gradient stops at the light tower: a
                # mismatched teacher cannot drag the shared embeddings along with it
                outputs["light_for_hint"] = self.light(tf.stop_gradient(x), training=training)
        if "booster" in self.towers:
            frozen = self.stage == "light"  # two-stage, stage 2: booster runs in inference mode
            x = shared_x if shared_x is not None else self.booster_bottom(rows, training=training and not frozen)
            if shared_x is not None and training:
                # Only hint_scale of the booster's gradient reaches the shared bottom: at 0 (a hint
                # warm-up before the booster leads on validation) the light tower trains as it
                # would alone; at 1 the mix is x itself, value and gradient.
                x = self.hint_scale * x + (1.0 - self.hint_scale) * tf.stop_gradient(x)
            outputs["booster"] = self.booster(x, training=training and not frozen)
        return outputs

    def light_logit(self, rows: dict) -> tf.Tensor:
        """The served path alone: light bottom + light tower, inference mode."""
        return self.light(self.bottom_of("light")(rows, training=False), training=False)

    def probabilities(self, logits: dict) -> dict:
        """Click probabilities of :meth:`call`'s logits, corrected for negative downsampling:
        ``σ(logit + log r)`` = ``q / (q + (1 − q) / r)`` (``σ(logit)`` when nothing was downsampled)."""
        return {tower: tf.sigmoid(logit + self.logit_offset) for tower, logit in logits.items()}

    # ----- the paper's eq. (1) ---------------------------------------------------------------------
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
            hint = self.hint(logits.get("light_for_hint", logits["light"]), booster_logit, self.hint_config.temperature)
            if self.hint_config.gate:
                # the booster teaches only where it models the true label better than the light tower
                better = _ce(labels, logits["booster"]) < _ce(labels, logits["light"])
                hint *= tf.cast(tf.stop_gradient(better), hint.dtype)
            terms["hint"] = self.hint_config.weight * self.hint_scale * mean(hint)
        return terms

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

    # ----- Keras step ---------------------------------------------------------------------------
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

    # ----- stages and variable groups -------------------------------------------------------------
    def set_stage(self, stage: str, initialise: bool = True) -> None:
        """two-stage mode: ``booster`` (stage 1) or ``light`` (stage 2, booster frozen).

        Entering stage 2 initialises the light bottom from the trained booster bottom (the
        paper's "no joint training" baseline; ``initialise=False`` when resuming inside stage 2,
        whose light bottom comes from the checkpoint) and freezes the booster and its bottom.
        """
        if self.config.mode != "two-stage" or stage not in ("booster", "light"):
            raise ValueError(f"set_stage({stage!r}) is only for two-stage mode")
        if stage == "light" and self.stage != "light" and initialise:
            for target, source in zip(self.light_bottom.weights, self.booster_bottom.weights):
                target.assign(source)
        self.stage = stage
        self.light.trainable = self.light_bottom.trainable = stage == "light"
        self.booster.trainable = self.booster_bottom.trainable = stage == "booster"

    def tower_variables(self, tower: str) -> list:
        """Variables only this tower uses (its MLP, plus its own bottom when not shared)."""
        own = list(getattr(self, tower).weights)
        if not hasattr(self, "bottom"):
            own += list(self.bottom_of(tower).weights)
        return own

    def shared_variables(self) -> list:
        """Variables of the shared bottom (empty when towers have separate bottoms)."""
        return list(self.bottom.weights) if hasattr(self, "bottom") else []


def _tower(tower, name: str) -> MLP:
    """The MLP of a TowerConfig."""
    return MLP(tower.units, tower.activation, tower.batch_norm, tower.dropout, tower.l2, name=name)


def _ce(labels, logits):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)

