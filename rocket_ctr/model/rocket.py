"""``RocketModel``: shared embedding tables feeding a light tower (served) and a booster tower (teacher).

Construction, the interest extractors, ``call`` and the one-tower serving path. The loss of eq. (1)
(``rocket_ctr.model.loss``), the calibration head (``rocket_ctr.model.calibration_head``) and the
training stages (``rocket_ctr.model.stages``) are mixins over the same object and variables.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from rocket_ctr.config.hint import HintConfig
from rocket_ctr.config.schema import ModelConfig, RocketConfig
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.calibration_head import CalibrationHeadMixin
from rocket_ctr.model.hints import get_hint
from rocket_ctr.model.layers.attention import ValidSteps, padded_history
from rocket_ctr.model.layers.bank import EmbeddingBank
from rocket_ctr.model.layers.booster import append_columns
from rocket_ctr.model.layers.interest import make_extractor, newest_steps
from rocket_ctr.model.layers.tower_input import tower_input, tower_input_parts
from rocket_ctr.model.layers.transformer import transformer_options
from rocket_ctr.model.loss import LOSS_TERMS, LossMixin
from rocket_ctr.model.parts import bank, booster_only_layers, check_model_config, hint_weight, map_floats, mlp_of, widen
from rocket_ctr.model.stages import StagesMixin


class RocketModel(LossMixin, CalibrationHeadMixin, StagesMixin, keras.Model):
    """Rocket Launching (Zhou et al., AAAI 2018) on DIN: shared embeddings, a light and a booster tower.

    Inputs are embedding-row indices (``IdMapper`` output) and ``hist_len``; ``call`` returns the
    logits ``{"light": l, "booster": z}`` of the towers the mode builds.

    What the towers share is the embedding bank (``bottom``; ``light_bottom``/``booster_bottom``
    when not shared). Each tower pools the history with its interest extractor: the booster with
    DIN attention (``booster_interest``, over its newest ``booster_history`` steps), the light tower
    with ``light_interest`` (its own DIN, dot or mean extractor over its newest ``light_history``
    steps) or, with ``light_interest="shared"``, the booster's attention itself (then part of the
    bottom, :meth:`shared_variables`; an own one is the tower's, :meth:`tower_variables`). With
    several sequence groups (``FeatureSpec.sequence_groups``) each tower has one extractor per
    group (:meth:`interests_of`; the first group's is ``<tower>_interest`` as without groups, the
    others ``<tower>_interest_<group>``), their pooled vectors concatenated into its x.

    What only the booster reads (capacity the served light tower cannot afford): more history
    steps (``booster_history``), its own attention widths, its own embedding tables beside the
    shared ones (``booster_embedding_dim``), the booster-only columns of the FeatureSpec (tables
    outside the shared bank, ``booster_columns``; ignored in ``base`` mode) and a DCN-v2 cross stack
    (``booster_cross``) before its MLP, and a wide part added to its logit (``booster_wide``: one scalar
    per id, and per crossed pair of ``booster_wide_crosses``). ``booster_residual``: its logit adds the
    light one.

    Args:
        spec: the FeatureSpec.
        config: the ModelConfig (mode, embeddings, attention, towers, sharing); a RocketConfig
            gives its model and hint parts.
        hint: the HintConfig (loss, λ, gradient block...) of eq. (1).
        negative_rate: share of negatives the training rows kept (downsampling, upstream and in
            the reader); :meth:`probabilities` corrects back to the full rate. Default: the
            spec's ``negative_rate`` times a RocketConfig's ``training.negative_rate``.
        intercept: give each tower a non-trainable ``<tower>_intercept`` added to its logit (fitted after
            training: ``rocket_ctr.calibration.intercept``). Default: ``training.calibrate_intercept``.
        slope: with ``intercept``, also a non-trainable ``<tower>_slope`` multiplying the tower's own logit
            (Platt scaling, ``rocket_ctr.calibration.platt``; 1 until fitted). Default: ``training.calibrate_slope``.
        knots: with ``intercept``, this many knots (0: none) of an isotonic map per tower,
            non-trainable ``<tower>_knots_x`` / ``<tower>_knots_y`` applied after the slope and
            intercept (``rocket_ctr.calibration.isotonic``; the identity until fitted). Default:
            ``training.calibration_knots``.
        (Defaults named ``training.*`` are a RocketConfig's; without one: no intercept, slope or knots.)
    """

    def __init__(self, spec: FeatureSpec, config: ModelConfig | RocketConfig | None = None,
                 hint: HintConfig | None = None, negative_rate: float | None = None, intercept: bool | None = None,
                 slope: bool | None = None, knots: int | None = None, **kwargs):
        super().__init__(**kwargs)
        intercept, slope, knots = self._init_calibration(spec, config, negative_rate, intercept, slope, knots)
        if isinstance(config, RocketConfig):
            config, hint = config.model, hint or config.hint
        self.spec, self.config, self.hint_config = spec, config or ModelConfig(), hint or HintConfig()
        cfg = self.config
        self.towers = cfg.towers
        self.stage = {"two-stage": "booster"}.get(cfg.mode, "joint")

        check_model_config(spec, cfg)
        self.hint_weight = hint_weight(spec, self.hint_config)  # λ of eq. (1), auto resolved on this spec
        self.separate = len(self.towers) == 2 and (not cfg.share or cfg.mode == "two-stage")
        # the light tower reads the booster's very attention layer
        self.light_shares_attention = cfg.light_interest == "shared" and len(self.towers) == 2 and not self.separate
        # Built in the order of the checkpoints before per-tower extractors (banks, extractors,
        # towers): the optimizer's slots are saved by variable index.
        # Further sequence groups (FeatureSpec.sequence_groups) get their own extractor of the
        # same kind, <tower>_interest_<group>, after the first group's (<tower>_interest).
        if self.separate:
            for tower in self.towers:
                setattr(self, f"{tower}_bottom", bank(spec, cfg, f"{tower}_bottom"))
                setattr(self, f"{tower}_interest", self._extractor(tower))
                self._group_extractors(tower)
        else:
            self.bottom = bank(spec, cfg, "shared_bottom")
            for tower in ("booster", "light"):
                if tower in self.towers and not (tower == "light" and self.light_shares_attention):
                    setattr(self, f"{tower}_interest", self._extractor(tower))
                    self._group_extractors(tower)
        if cfg.light_interest == "shared":
            for tower in self.towers:
                # checkpoints before per-tower extractors hold this attention as <bottom>/attention
                self.bottom_of(tower).link_for_checkpoints("attention", self.interest_of(tower))
        if "light" in self.towers:
            self.light = mlp_of(cfg.light, "light_tower")
        if "booster" in self.towers:
            self.booster = mlp_of(cfg.booster, "booster_tower")
        for name, layer in booster_only_layers(spec, cfg, self.towers).items():  # in the checkpoints' order
            setattr(self, name, layer)
        self.hint = get_hint(self.hint_config.loss)
        # The hint's launch scale, written by a training policy (callbacks.hint_warmup); 1 = eq. (1)
        # as is. Two roles: it multiplies λ (_hint_lambda) and, unless --booster-bottom from-start,
        # lets that share of the booster's gradient into the shared bottom (_gate_booster_gradient).
        self.hint_scale = self.add_weight(name="hint_scale", shape=(), initializer="ones", trainable=False)
        self._add_calibration_weights(intercept, slope, knots)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOSS_TERMS}

    def _extractor(self, tower: str, group: str | None = None):
        """A tower's interest extractor from the config: ``booster_interest`` for the booster (and
        for a light tower that shares it but has its own copy: separate bottoms, base mode);
        ``group``: the name of a sequence group after the first."""
        cfg = self.config
        kind = cfg.booster_interest if tower == "booster" or cfg.light_interest == "shared" else cfg.light_interest
        units = cfg.light_attention if tower == "light" and cfg.light_interest == "din" else cfg.attention.units
        shared_din = cfg.light_interest == "shared" and not self.separate and kind == "din"
        name = ("din_attention" if shared_din else f"{tower}_{kind.replace('+', '_')}") + (f"_{group}" if group else "")
        return make_extractor(kind, units=units, activation=cfg.attention.activation, softmax=cfg.attention.softmax,
                              projection=cfg.light_projection, name=name,
                              transformer=transformer_options(cfg, self.spec.max_history))

    def _group_extractors(self, tower: str) -> None:
        """One extractor per sequence group after the first: ``<tower>_interest_<group>``."""
        for group in self.spec.groups[1:]:
            setattr(self, f"{tower}_interest_{group.name}", self._extractor(tower, group.name))

    def bottom_of(self, tower: str) -> EmbeddingBank:
        """The embedding bank a tower reads (the same object for both towers when shared)."""
        return getattr(self, "bottom", None) or getattr(self, f"{tower}_bottom")

    def interest_of(self, tower: str):
        """The interest extractor a tower reads (the booster's for a light tower that shares it);
        with several sequence groups, the first group's (:meth:`interests_of`: all)."""
        if tower == "light" and self.light_shares_attention:
            return self.booster_interest
        return getattr(self, f"{tower}_interest")

    def interests_of(self, tower: str) -> list:
        """A tower's extractors, one per sequence group (in the FeatureSpec's group order)."""
        owner = "booster" if tower == "light" and self.light_shares_attention else tower
        return [self.interest_of(tower)] + [getattr(self, f"{owner}_interest_{g.name}") for g in self.spec.groups[1:]]

    def _history_of(self, tower: str) -> int | None:
        """Newest history steps a tower reads (None: all the rows hold)."""
        steps = self.config.light_history if tower == "light" else self.config.booster_history
        return None if steps is None or steps >= self.spec.max_history else steps

    def _x(self, tower: str, embedded: dict, training=False) -> tf.Tensor:
        """A tower's x: its extractors (one per sequence group) pool their group's newest history
        steps against each candidate, the pooled vectors concatenated in group order."""
        return tower_input(embedded, self._interest(tower, embedded, training))

    def _interest(self, tower: str, embedded: dict, training=False) -> tf.Tensor:
        """A tower's pooled interest [N, ·]: each group's extractor over its newest steps, concatenated."""
        pooled = []
        for extractor, sequence in zip(self.interests_of(tower), embedded["sequences"]):
            history, limit = sequence["history"], self._history_of(tower)
            if limit is not None or not getattr(extractor, "skip_padding", False):  # no valid-step form
                history = padded_history(history, sequence["width"])
            history, lengths = newest_steps(history, sequence["lengths"], limit)
            width = sequence["width"] if isinstance(history, ValidSteps) else tf.shape(history)[1]
            mask = tf.sequence_mask(lengths, width)
            pooled.append(extractor(sequence["query"], history, mask, training=training))
        return pooled[0] if len(pooled) == 1 else tf.concat(pooled, axis=-1)

    def call(self, rows: dict, training=False) -> dict:
        outputs, shared = {}, None
        if hasattr(self, "bottom"):
            shared = self.bottom(rows, training=training)
        light_x = None  # undetached, for a booster that pools the same way
        if "light" in self.towers:
            embedded = shared if shared is not None else self.light_bottom(rows, training=training)
            light_x, x, hint_x = self._light_inputs(embedded, training)
            outputs["light"] = self.light(x, training=training)
            if hint_x is not None:
                outputs["light_for_hint"] = self.light(hint_x, training=training)
        if "booster" in self.towers:
            frozen = self.stage == "light"  # two-stage, stage 2: booster runs in inference mode
            sub_training = training and not frozen
            if shared is None:
                x = self._x("booster", self._booster_embedded(self.booster_bottom(rows, training=sub_training), rows,
                                                              sub_training), sub_training)
            elif self.light_shares_attention:
                same = light_x is not None and self._history_of("light") == self._history_of("booster")
                x = light_x if same else self._x("booster", shared, training)
                if training and self._booster_bottom_gated:
                    # what the towers share is the embeddings and, here, the attention
                    x = self._gate_booster_gradient(x)
            else:  # the booster's own attention trains fully; only the embeddings' gradient is scaled
                gated = training and self._booster_bottom_gated
                embedded = map_floats(self._gate_booster_gradient, shared) if gated else shared
                x = self._x("booster", self._booster_embedded(embedded, rows, training), training)
            outputs["booster"] = self._boost(self.booster(self._booster_x(x, rows), training=sub_training), rows,
                                             outputs.get("light"))
        return outputs

    def _booster_embedded(self, embedded: dict, rows: dict, training=False) -> dict:
        """What the booster reads of the embeddings: the shared lookups, widened by its own tables'."""
        if self.booster_embeddings is None:
            return embedded
        return widen(embedded, self.booster_embeddings(rows, training=training))

    def _boost(self, booster_logit: tf.Tensor, rows: dict, light_logit=None) -> tf.Tensor:
        """The booster's logit from its MLP's: plus its wide part (``booster_wide``); ``booster_residual``:
        plus the light logit, whose gradient stops here: the booster's cross-entropy fits what the light
        tower misses and never trains the light tower toward it (only the hint, through its own term, may)."""
        if self.booster_wide is not None:
            booster_logit = booster_logit + self.booster_wide(rows)
        if not self.config.booster_residual:
            return booster_logit
        return booster_logit + tf.stop_gradient(light_logit)

    def _booster_x(self, x: tf.Tensor, rows: dict) -> tf.Tensor:
        """The booster's x with its booster-only columns appended, through its cross stack (if any).

        The booster-only tables are the booster's alone: their gradient is never scaled by the
        warm-up's ``hint_scale`` (that only guards what the towers share)."""
        if self.booster_columns is not None:
            x = append_columns(x, self.booster_columns(rows))
        if self.booster_extras is not None:
            parts = self.booster_extras(rows)
            x = append_columns(x, parts["user"] + parts["items"])
        return self.booster_cross(x) if self.booster_cross is not None else x

    def _light_inputs(self, embedded: dict, training) -> tuple:
        """(x before any detaching, x the light tower reads, x of the hint's light logit or None)."""
        detach = self.config.detach_light  # EasyRec's variant: only the booster trains the bottom
        # (λ = 0: no hint term to detach, no second light pass)
        hinted = training and not self.hint_config.trains_bottom and "booster" in self.towers \
            and self.hint_weight > 0
        # The hint's light logit is the light logit itself, but its gradient stops at the light
        # tower and its own extractor: a mismatched teacher cannot drag the shared embeddings along.
        if self.config.light_interest == "shared":  # the extractor counts as the bottom
            raw = self._x("light", embedded, training)
            return raw, tf.stop_gradient(raw) if detach else raw, tf.stop_gradient(raw) if hinted else None
        detached = map_floats(tf.stop_gradient, embedded)
        x = self._x("light", detached if detach else embedded, training)
        hint_x = None
        if hinted and detach:
            hint_x = x  # its gradient already stops at the embeddings
        elif hinted and any(e.trainable_weights for e in self.interests_of("light")):
            hint_x = self._x("light", detached, training)  # trains the extractor, not the embeddings
        elif hinted:
            hint_x = tf.stop_gradient(x)
        return x, x, hint_x

    def tower_logit(self, tower: str, rows: dict) -> tf.Tensor:
        """One tower alone, inference mode: its embeddings, its extractor, its MLP (for the light
        tower: the served path; a residual booster adds the light tower's logit). The user profile's
        share of the first layer is computed once per request (``MLP.call_parts``), not once per
        candidate; equal to ``call``'s logit."""
        if tower != "booster":
            return self._own_logit(tower, rows)
        light = self._own_logit("light", rows) if self.config.booster_residual else None
        return self._boost(self._own_logit(tower, rows), rows, light)

    def _own_logit(self, tower: str, rows: dict) -> tf.Tensor:
        embedded = self.bottom_of(tower)(rows, training=False)
        if tower == "booster":
            embedded = self._booster_embedded(embedded, rows)
        interest = self._interest(tower, embedded, training=False)
        if tower == "booster" and (self.booster_columns is not None or self.booster_extras is not None
                                   or self.booster_cross is not None):  # x is more than the two parts
            return self.booster(self._booster_x(tower_input(embedded, interest), rows), training=False)
        user, rest = tower_input_parts(embedded, interest)
        mlp = getattr(self, tower)
        return mlp(rest, training=False) if user is None else mlp.call_parts(user, rest)

    def light_logit(self, rows: dict) -> tf.Tensor:
        """The served path alone: light embeddings, light extractor, light tower, inference mode."""
        return self.tower_logit("light", rows)

    def serving_layers(self, tower: str) -> tuple:
        """The layers one tower's path reads (what an export of that tower holds)."""
        light = self.serving_layers("light") if tower == "booster" and self.config.booster_residual else ()
        return (self.bottom_of(tower), *self.interests_of(tower), getattr(self, tower),
                *self._booster_only_layers(tower), *[layer for layer in light if layer is not self.bottom_of(tower)])

    def _booster_only_layers(self, tower: str) -> tuple:
        """The booster's booster-only columns and cross stack (none for the light tower)."""
        if tower != "booster":
            return ()
        return tuple(layer for layer in (self.booster_columns, self.booster_extras, self.booster_cross,
                                         self.booster_embeddings, self.booster_wide) if layer is not None)

