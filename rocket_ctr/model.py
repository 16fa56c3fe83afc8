"""RocketModel: a shared DIN bottom feeding a light tower (served) and a booster tower (teacher)."""
from __future__ import annotations

import keras
import tensorflow as tf

from rocket_ctr.config import RocketConfig
from rocket_ctr.spec import FeatureSpec
from rocket_ctr.layers import MLP, SharedBottom
from rocket_ctr.losses import get_hint

LOSS_TERMS = ("loss", "light_ce", "booster_ce", "hint")


class RocketModel(keras.Model):
    """Rocket Launching (Zhou et al., AAAI 2018) on a DIN bottom.

    Inputs are embedding-row indices (``IdMapper`` output) and ``hist_len``; ``call`` returns the
    logits ``{"light": l, "booster": z}`` of the towers the mode builds.

    Args:
        spec: the FeatureSpec.
        config: a RocketConfig (mode, tower sizes, hint, λ, gradient block, sharing...).
    """

    def __init__(self, spec: FeatureSpec, config: RocketConfig | None = None, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.config = spec, config or RocketConfig()
        cfg = self.config
        self.towers = cfg.towers
        self.stage = {"two-stage": "booster"}.get(cfg.mode, "joint")

        def bottom(name):
            return SharedBottom(spec, cfg.embedding_dim, cfg.attention_units, cfg.attention_activation,
                                cfg.attention_softmax, name=name)

        separate = len(self.towers) == 2 and (not cfg.share or cfg.mode == "two-stage")
        if separate:
            self.light_bottom, self.booster_bottom = bottom("light_bottom"), bottom("booster_bottom")
        else:
            self.bottom = bottom("shared_bottom")
        if "light" in self.towers:
            self.light = MLP(cfg.light_units, cfg.light_activation, name="light_tower")
        if "booster" in self.towers:
            self.booster = MLP(cfg.booster_units, cfg.booster_activation, cfg.booster_batch_norm,
                               cfg.booster_dropout, cfg.booster_l2, name="booster_tower")
        self.hint = get_hint(cfg.hint)
        # multiplies λ; the trainer's hint warm-up keeps it at 0 until the booster is the better model
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
            if training and not self.config.hint_trains_bottom and "booster" in self.towers:
                # the same light logit, but the hint's gradient stops at the light tower: a
                # mismatched teacher cannot drag the shared embeddings along with it
                outputs["light_for_hint"] = self.light(tf.stop_gradient(x), training=training)
        if "booster" in self.towers:
            frozen = self.stage == "light"  # two-stage, stage 2: booster runs in inference mode
            x = shared_x if shared_x is not None else self.booster_bottom(rows, training=training and not frozen)
            if shared_x is not None and training and self.config.warmup_active:
                # Until the booster is launched (leads on validation), it learns from the shared
                # bottom without training it, so the light tower trains as it would alone.
                x = self.hint_scale * x + (1.0 - self.hint_scale) * tf.stop_gradient(x)
            outputs["booster"] = self.booster(x, training=training and not frozen)
        return outputs

    def light_logit(self, rows: dict) -> tf.Tensor:
        """The served path alone: light bottom + light tower, inference mode."""
        return self.light(self.bottom_of("light")(rows, training=False), training=False)

    # ----- the paper's eq. (1) ---------------------------------------------------------------------
    def loss_terms(self, labels, logits: dict) -> dict:
        """Eq. (1) term by term, each averaged over the batch:

            L = H(y, σ(l)) + H(y, σ(z)) + λ · hint(l, z)

        with l the light logit, z the booster logit, H the cross-entropy and hint the chosen
        hint loss (``mimic`` = (l − z)²). Terms whose tower is not trained in the current
        mode/stage are left out.
        """
        labels = tf.cast(labels, tf.float32)
        terms = {}
        if "light" in logits and self.stage != "booster":
            terms["light_ce"] = _mean_ce(labels, logits["light"])
        if "booster" in logits and self.stage != "light":
            terms["booster_ce"] = _mean_ce(labels, logits["booster"])
        if "light" in logits and "booster" in logits and self.stage != "booster":
            booster_logit = logits["booster"]
            if self.config.gradient_block or self.stage == "light":
                # Gradient block: z is a fixed target, so the hint trains the light tower (and,
                # through it, the shared bottom) but never the booster's own weights.
                booster_logit = tf.stop_gradient(booster_logit)
            hint = self.hint(logits.get("light_for_hint", logits["light"]), booster_logit, self.config.temperature)
            if self.config.hint_gate:
                # the booster teaches only where it models the true label better than the light tower
                better = _ce(labels, logits["booster"]) < _ce(labels, logits["light"])
                hint *= tf.cast(tf.stop_gradient(better), hint.dtype)
            terms["hint"] = self.config.hint_weight * self.hint_scale * tf.reduce_mean(hint)
        return terms

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Eq. (1) summed, plus weight regularisation (Keras' compute_loss signature)."""
        total = tf.add_n(list(self.loss_terms(y, y_pred).values()))
        if self.losses:
            total += tf.add_n(self.losses)
        return total

    # ----- Keras steps ----------------------------------------------------------------------------
    def train_step(self, data):
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            logits = self(x, training=True)
            terms = self.loss_terms(y, logits)
            loss = tf.add_n(list(terms.values())) + (tf.add_n(self.losses) if self.losses else 0.0)
            # distributed loops sum replica gradients: scale so the sum is the global mean
            scaled = loss / tf.distribute.get_strategy().num_replicas_in_sync
        variables = self.trainable_variables
        gradients = tape.gradient(scaled, variables)
        self.optimizer.apply(gradients, variables)
        return self._track(loss, terms)

    def test_step(self, data):
        x, y = data[0], data[1]
        logits = self(x, training=False)
        terms = self.loss_terms(y, logits)
        return self._track(tf.add_n(list(terms.values())), terms)

    def _track(self, loss, terms) -> dict:
        self.trackers["loss"].update_state(loss)
        for name, value in terms.items():
            self.trackers[name].update_state(value)
        return {name: self.trackers[name].result() for name in ("loss", *terms)}

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


def _ce(labels, logits):
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)


def _mean_ce(labels, logits):
    return tf.reduce_mean(_ce(labels, logits))
