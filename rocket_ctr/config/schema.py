"""Run configuration as nested typed dataclasses: model (embeddings, attention, towers), hint, training.

Each part goes only where it is used: the model receives ``ModelConfig`` and ``HintConfig`` (eq. 1
lives in the model), the trainer the whole ``RocketConfig``. Every leaf field has one CLI flag,
generated from the fields (``rocket_ctr.config.fields.flag_table(RocketConfig)``); choices and
minimums are declared once, in the field's metadata, and both validation and the CLI read them.
Config files are YAML/JSON, nested or flat (``hint_weight: 0.1``). Errors name fields; the CLI shows flags.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from rocket_ctr.config.compat import with_fields_it_predates
from rocket_ctr.config.fields import from_paths, leaves, option, overridden, plain, section, set_flat, validate
from rocket_ctr.config.hint import HintConfig
from rocket_ctr.config.towers import AttentionConfig, TowerConfig, booster_tower
from rocket_ctr.config.validation import (
    DEFAULT_FRACTION,
    FOLD_IN_CALIBRATIONS,
    FOLD_IN_CHOICES,
    LAST_EVENT_FRACTION,
    VALIDATION_SPLITS,
    check_booster_options,
    check_tail_events,
    validation_fractions,
)
from rocket_ctr.errors import InputError

MODES = ("rocket", "base", "booster", "two-stage")
OPTIMIZERS = ("lazy_adam", "adam")
LIGHT_INTERESTS = ("shared", "din", "dot", "mean")  # see rocket_ctr.model.layers.interest
BOOSTER_INTERESTS = ("din", "dot", "din+dot", "transformer", "transformer+din")  # see rocket_ctr.model.layers
HISTORY_RECENCIES = ("none", "position")  # see rocket_ctr.model.layers.recency


@dataclasses.dataclass
class ModelConfig:
    """What is built: the mode's towers over shared embedding tables, each with its interest extractor."""

    mode: str = option("rocket", choices=MODES,
                       help="rocket: light + booster (eq. 1); base: light alone; booster: booster alone; "
                            "two-stage: booster first, then light with the hint against it frozen")
    embedding_dim: int = option(18, help="embedding width of every id feature", minimum=1)
    embedding_init_std: float = option(0.0, minimum=0.0,
                                       help="embedding rows start as normal(0, std) (DeepCTR: 1e-4); 0: Keras' "
                                            "uniform(-0.05, 0.05)")
    embedding_l2: float = option(0.0, minimum=0.0,
                                 help="L2 penalty on the whole embedding tables every step (DeepCTR's "
                                      "embeddings_regularizer; with --optimizer adam every row decays)")
    attention: AttentionConfig = section(AttentionConfig)
    booster_interest: str = option("din+dot", choices=BOOSTER_INTERESTS,
                                   help="the booster's interest extractor: din: DIN attention of --attention-units; "
                                        "dot: scaled dot-product (--light-projection width); din+dot: both, "
                                        "concatenated (--light-interest shared reads it too); transformer: BST's "
                                        "self-attention over the history and the candidate (--booster-transformer-*); "
                                        "transformer+din: it and DIN attention, concatenated")
    light_interest: str = option("dot", choices=LIGHT_INTERESTS,
                                 help="the light tower's interest extractor: dot: scaled dot-product target "
                                      "attention (--light-projection; about as accurate as DIN attention at a "
                                      "fraction of its cost); shared: the booster's attention (the paper's "
                                      "sharing: --booster-interest din, with --booster-embedding-dim 0); din: its "
                                      "own DIN of --light-attention widths; mean: masked mean")
    light_attention: tuple = option((32, 16), help="attention MLP widths of --light-interest din (activation and "
                                                     "softmax: the --attention-* ones)", minimum=1)
    light_projection: int = option(16, minimum=0,
                                   help="query/key projection width of --light-interest dot (0: raw embeddings)")
    light_history: int | None = option(None, minimum=1,
                                       help="the light tower reads only the newest N steps of each history "
                                            "(unset: all)")
    booster_history: int | None = option(None, minimum=1,
                                         help="the booster reads only the newest N steps of each history (unset: all; "
                                              "at most the FeatureSpec's max_history)")
    history_recency: str = option("none", choices=HISTORY_RECENCIES,
                                  help="position: add a learned embedding of each history step's position from the "
                                       "newest (0 = newest; starts at zero) to the step's embedding, before every "
                                       "tower's interest extractor (and in the light export); none: no such table")
    booster_cross: int = option(0, minimum=0,
                                help="DCN-v2 cross layers x' = x0 * (W x + b) + x (full-rank W) between the "
                                     "booster's input and its MLP (stacked; 0 = none; never in the light tower)")
    booster_embedding_dim: int = option(36, minimum=0, help="width of the booster's own embedding tables, one per id "
                                         "feature, read beside the shared ones (0 = none; never in the light tower)")
    booster_embedding_l2: float = option(0.0, minimum=0.0, help="DIN's mini-batch aware L2 on the booster's own "
                                         "tables: this x the squared norm of each row a batch reads, once per batch "
                                         "(0 = none)")
    booster_residual: bool = option(False, help="rocket: the booster's logit is its MLP's output plus the light logit "
                                                 "(gradient-stopped): it learns what the light tower misses")
    booster_wide: bool = option(False, help="a wide part in the booster's logit (Wide & Deep): one learned scalar per "
                                            "id of the candidate's and the user's id features, summed")
    booster_wide_crosses: str = option("auto", help="crossed columns USER*CANDIDATE of the booster's wide part, "
                                                "comma-separated (e.g. user_id*cate_id: one scalar per user and "
                                                "category, the user's affinity to it, hashed into 2^20 rows); also "
                                                "without --booster-wide. auto: where the user id is embedded for "
                                                "both towers, the user id crossed with every candidate-side "
                                                "sequence feature but the candidate id, with the per-id scalars; "
                                                "elsewhere none (the per-id scalars only with --booster-wide)")
    booster_transformer_layers: int = option(1, minimum=1, help="--booster-interest transformer: encoder layers "
                                                                 "(self-attention, then a feed-forward 2x as wide)")
    booster_transformer_heads: int = option(2, minimum=1, help="--booster-interest transformer: attention heads "
                                                                "(each 1/heads of a history step's width)")
    booster_transformer_dropout: float = option(0.1, minimum=0.0, below=1.0, help="--booster-interest transformer: "
                                                "dropout on its attention's and feed-forward's outputs")
    light: TowerConfig = section(TowerConfig)
    booster: TowerConfig = section(booster_tower)
    share: bool = option(True, help="both towers read the same embedding tables (and, with --light-interest "
                                     "shared, the same attention); off: each tower has its own")
    detach_light: bool = option(False, help="the light tower does not train the shared bottom (EasyRec's variant)")
    user_id_embedding: str = option("auto", choices=("auto", "yes", "no"),
                                    help="embed the user id as a user feature (both towers and the light export, "
                                         "which then needs it in every request); auto: when the training log holds "
                                         "at least 50 rows per user (a resumed or warm-started run keeps its choice)")

    @property
    def towers(self) -> tuple:
        """Towers the mode builds."""
        return {"base": ("light",), "booster": ("booster",)}.get(self.mode, ("light", "booster"))


@dataclasses.dataclass
class TrainingConfig:
    """How the model is trained: epochs, batches, optimizer, validation and early stopping."""

    epochs: int = option(3, help="passes over the training data", minimum=1)
    batch_size: int = option(256, help="rows per step (per worker under --strategy multi-worker)", minimum=1)
    learning_rate: float = option(1e-3, help="Adam's learning rate", above=0.0)
    booster_learning_rate: float | None = option(None, above=0.0, help="Adam's learning rate of the booster's own "
                                                 "variables (MLP, extractor, crosses, own tables); unset: "
                                                 "--learning-rate (the shared embeddings keep it)")
    optimizer: str = option("lazy_adam", choices=OPTIMIZERS,
                            help="lazy_adam: Adam updating only the embedding rows a batch touched; "
                                 "adam: Keras' Adam, every row every step")
    seed: int = option(0, help="seed of initialisation and shuffling")
    shuffle_buffer: int = option(65_536, help="rows shuffled together (bounds memory)", minimum=1)
    jit_compile: bool = option(False, help="XLA-compile the training step (it then pads histories to "
                                                  "the FeatureSpec's history_buckets)")
    length_buckets: bool = option(False, help="batch rows of similar history length together (the FeatureSpec's "
                                              "history_buckets); off: batches mix lengths, which tends to train "
                                              "better (the attention skips padding either way)")
    checkpoint_every: int = option(500, help="steps between checkpoints", minimum=1)
    negative_rate: float = option(1.0, above=0.0, maximum=1.0,
                                  help="train on every click and this share of the negatives (chosen by a hash "
                                       "of each row, the same every epoch); predictions, evaluation and the "
                                       "export are corrected back to the full rate: p = q / (q + (1 - q) / r)")
    booster_wide_rate: float = option(30.0, above=0.0,
                                      help="the learning rate of the booster's wide part (--booster-wide, "
                                           "--booster-wide-crosses) as a multiple of the booster's (Adam moves a "
                                           "scalar about one learning rate each time its id is seen)")
    booster_epochs: int | None = option(None, help="two-stage: epochs of stage 1 (default: --epochs)", minimum=1)
    validation_fraction: float | None = option(None, minimum=0.0, below=0.5,
                                               help="share of the training rows held out and evaluated every "
                                                    "epoch (0 = none; never the eval data); auto (null): "
                                                    f"{LAST_EVENT_FRACTION} for a per-user split (last-event, "
                                                    "user-tail) that is folded in after training, "
                                                    f"{DEFAULT_FRACTION} otherwise")
    validation_split: str = option("auto", choices=VALIDATION_SPLITS,
                                   help="which rows are held out: auto follows the eval log's test protocol, "
                                        "else decides from the training log (see rocket_ctr.io.holdout); "
                                        "last-event: each sampled user's newest event; user-tail: each sampled "
                                        "user's newest --validation-tail-events events; time: the newest rows; "
                                        "users: every row of sampled users")
    validation_tail_events: int | None = option(None, minimum=1,
                                                help="k of the user-tail split: each sampled user's newest k "
                                                     "events (distinct timestamps, at most half of the user's); "
                                                     "unset: the k of the eval log's test protocol")
    early_stopping_min_delta: float = option(0.002, minimum=0.0,
                                             help="a later epoch whose light validation GAUC is within this of the "
                                                  "best counts as the best (it has seen more data): one noisy "
                                                  "validation epoch does not pick an earlier epoch's weights")
    early_stopping_patience: int = option(2, minimum=0,
                                          help="stop after this many epochs without a better light validation GAUC "
                                               "and restore the best weights (0 = off)")
    calibrate_intercept: bool = option(True, help="after training, fit one scalar per tower added to its logit "
                                                  "on the validation rows (weighted log loss; AUC and GAUC "
                                                  "unchanged): the model, evaluate and the export apply it")
    calibrate_slope: bool = option(True, help="with calibrate_intercept: fit a slope too (Platt scaling): the "
                                              "served logit is a*logit + log r + b, a in [0.1, 10] (rankings "
                                              "unchanged), fixing the reliability curve's slope as well as its mean")
    calibration_knots: int = option(16, minimum=0,
                                    help="with calibrate_intercept: after Platt, a monotone piecewise-linear map of "
                                         "the served logit with this many knots, fitted by isotonic regression on "
                                         "the validation rows (rankings unchanged; fixes a bent reliability "
                                         "curve); 0 = off")
    fold_in_validation: str = option("auto", choices=FOLD_IN_CHOICES,
                                     help="after training: one more pass over the validation rows (except the "
                                          "calibration slice), so the served model also learns from the held-out "
                                          "events; auto: only for a per-user split (last-event, user-tail: each "
                                          "user's newest events, where the pass helps ranking)")
    fold_in_calibration: str = option("cross-fit", choices=FOLD_IN_CALIBRATIONS,
                                      help="with the fold-in: cross-fit: the calibration is fitted on out-of-fold "
                                           "logits (each half of the validation users scored by the model folded in "
                                           "on the other half), then every row is folded in; slice: a share of the "
                                           "users is kept out and fitted on; before: fitted before the fold-in")
    calibration_share: float = option(0.3, minimum=0.0, below=1.0,
                                      help="fold_in_calibration slice: the share of validation users kept out")

    @property
    def holds_out(self) -> bool:
        """Whether training holds validation rows out (``validation_fraction`` auto or > 0)."""
        return self.validation_fraction is None or self.validation_fraction > 0

    def validation_fractions(self, folds_in: bool) -> dict:
        """The share of rows held out per validation split kind (``validation_fraction`` resolved)."""
        return validation_fractions(self.validation_fraction, folds_in)


@dataclasses.dataclass(init=False)
class RocketConfig:
    """Everything a training run is made of (saved as config.json and in metrics.json).

    Args:
        model, hint, training: the parts (defaults where omitted).
        **flat: any leaf field by its flat name, the flag without dashes (``epochs=3``,
            ``hint_weight=0.1``, ``light_units=(64,)``), applied over the parts.
    Raises:
        FieldError: an unknown name or an invalid value (the message names the fields).
    """

    model: ModelConfig = section(ModelConfig)
    hint: HintConfig = section(HintConfig)
    training: TrainingConfig = section(TrainingConfig)

    def __init__(self, model: ModelConfig | None = None, hint: HintConfig | None = None,
                 training: TrainingConfig | None = None, **flat):
        if hint is not None and not isinstance(hint, HintConfig):  # the flat name of hint.loss
            flat, hint = {"hint": hint, **flat}, None
        self.model = copy.deepcopy(model) if model is not None else ModelConfig()
        self.hint = copy.deepcopy(hint) if hint is not None else HintConfig()
        self.training = copy.deepcopy(training) if training is not None else TrainingConfig()
        set_flat(self, flat)
        validate(self)
        check_tail_events(self.training.validation_split, self.training.validation_tail_events)
        check_booster_options(self.model)

    # ----- what the parts imply -----------------------------------------------------------------
    @property
    def warmup_active(self) -> bool:
        """Whether the hint warm-up runs: it needs validation rows to compare the towers on."""
        return self.hint.warmup and self.training.holds_out and self.model.mode == "rocket"

    @property
    def early_stopping_active(self) -> bool:
        """Whether early stopping runs: it needs validation rows."""
        return self.training.early_stopping_patience > 0 and self.training.holds_out

    # ----- conversions ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (tuples as lists), as written to config.json."""
        return plain(self)

    def flat(self) -> dict[str, Any]:
        """``{dotted.path: value}`` of every leaf field."""
        return {path: getattr(holder, field.name) for path, holder, field in leaves(self)}

    def replace(self, overrides: dict | None = None, **flat_overrides) -> "RocketConfig":
        """A copy with overrides applied; ``None`` values are ignored (unset CLI flags).

        Args:
            overrides: nested (``{"hint": {"weight": 0.1}}``), dotted (``{"hint.weight": 0.1}``) or
                flat flag names (``{"hint_weight": 0.1}``), in any mix.
            flat_overrides: more of the same as keyword arguments (flat names).
        Raises:
            FieldError: unknown keys or invalid values.
        """
        return RocketConfig.from_flat(overridden(self, overrides or {}, flat_overrides))

    @classmethod
    def from_flat(cls, values: dict[str, Any]) -> "RocketConfig":
        """Builds a config from ``{dotted.path: value}`` (missing paths keep their defaults)."""
        return from_paths(cls, values)

    @classmethod
    def from_saved(cls, values: dict) -> "RocketConfig":
        """The config of a run dir's config.json (nested or flat names).

        A field the file does not name takes the value in
        :data:`rocket_ctr.config.compat.BEFORE_FIELD_EXISTED` where it has one (what a run written
        before the field existed built, so that its run dir still restores), else its default.
        """
        return cls().replace(with_fields_it_predates(values, cls))

    @classmethod
    def from_file(cls, path: str | Path, base: "RocketConfig | None" = None) -> "RocketConfig":
        """Loads a YAML or JSON file of config fields (nested or flat names), applied over ``base``
        (default: the defaults; e.g. a warm start's source config)."""
        try:
            text = Path(path).read_text()
            data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
        except (OSError, ValueError, yaml.YAMLError) as err:
            raise InputError(f"{path}: cannot read config ({str(err).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: config must be a mapping of field: value")
        return (base or cls()).replace(data)

