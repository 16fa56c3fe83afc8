"""Every named training recipe of the benchmark scripts, and the full config each resolves to today.

A recipe is a name within a family (the runs of one experiment script). It stands for config
overrides on top of ``RocketConfig``'s defaults and, for a few, FeatureSpec edits, environment
variables or another system (DeepCTR's DIN, the oracle). :func:`resolve` turns a name and the run's
own settings (epochs, seed, flags) into the resolved config: ``RocketConfig.to_dict()`` after the
family's common settings, the run's settings and the recipe's overrides, in that order, beside the
spec edits and environment. :func:`recipe_key` makes a short key of a resolved config. Results
lines store the resolved config (``experiment_results.provenance``); readers join a line to a
recipe by key, never by its name alone.

Families (:data:`FAMILIES`):

* ``real logs`` (``experiment_real_logs.py``, ``bench_frontier.py``): ``defaults``, a preset
  (:data:`REAL_LOGS_PRESETS`), or changes (:data:`REAL_LOGS_CHANGES`) joined by `` + `` on top of
  ``no validation``, e.g. ``validation auto + no warmup + hint 0``; and ``DeepCTR DIN``.
* ``protection`` (``experiment_protection.py``): 2 epochs, 5 % of the training users for validation.
* ``ablation`` (``experiment_ablation.py``): the paper's training (no validation split, the hint
  from the first step and into the shared bottom), plus follow-up investigations.
* ``throughput`` (``bench_train_throughput.py``): a mode plus ``+`` options, e.g. ``rocket+dot+buckets``.
* ``calibration`` (``bench_calibration.py``): ``full rate``, ``upstream r=R``, ``reader r=R``, ``oracle``.
* ``feature types`` (``bench_feature_types.py``): ``with``, ``without``.
* ``warm start`` (``bench_warm_start.py``): ``warm start``, ``warm start, small model``.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re

ROCKET_CTR = "rocket_ctr"


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What a recipe name stands for.

    Args:
        config: flat ``RocketConfig`` overrides (flag names without dashes); for another system, its settings.
        spec: FeatureSpec edits the run applies (or, for a generated log, what its spec records).
        env: environment variables of the run.
        system: ``rocket_ctr``, or what else the line measures (``DeepCTR DIN``, ``oracle``).
    """

    config: dict = dataclasses.field(default_factory=dict)
    spec: dict = dataclasses.field(default_factory=dict)
    env: dict = dataclasses.field(default_factory=dict)
    system: str = ROCKET_CTR


# ----- real logs: experiment_real_logs.py, bench_frontier.py -------------------------------------------
# change -> recipe; a name is "defaults", a preset, or changes joined by " + " on top of "no validation"
# (so the choices of the fit are measured without the validation split's own effect)
# the 7-layer DIN booster on the shared tables alone, λ 0: the booster before own tables, wide part and hint auto
DIN_BOOSTER = {"booster_interest": "din", "booster_embedding_dim": 0, "booster_wide_crosses": "",
               "booster_wide_rate": 10.0, "hint_weight": 0.0}
# --light-interest shared: the light tower reads that booster's DIN attention (a shared attention cannot read
# the booster's own, wider tables)
SHARED_ATTENTION = {"light_interest": "shared", **DIN_BOOSTER}
REAL_LOGS_CHANGES = {
    "no validation": Recipe({"validation_fraction": 0.0}),
    "lr 1e-3": Recipe({"learning_rate": 1e-3}),
    "lr 2e-3": Recipe({"learning_rate": 2e-3}),
    "relu attention": Recipe({"attention_activation": "relu"}),
    "dice attention": Recipe({"attention_activation": "dice"}),
    "user_id feature": Recipe(spec={"user_id": True}),
    "no user_id embedding": Recipe({"user_id_embedding": "no"}),
    "calibration share 0.1": Recipe({"calibration_share": 0.1}),
    "calibration slice": Recipe({"fold_in_calibration": "slice"}),  # users kept out of the last pass
    "recency position": Recipe({"history_recency": "position"}),
    "since last event": Recipe(spec={"since_last_event": True}),  # a derived numeric column (time-ordered logs)
    "vocabulary (no hashing)": Recipe(spec={"vocabulary": True}),
    "one bucket (50)": Recipe(spec={"history_buckets": [50]}),
    "text id hash": Recipe(spec={"id_hash": "string"}),  # each int64 id's decimal text through farmhash
    "length buckets": Recipe({"length_buckets": True}),
    "dense Adam": Recipe({"optimizer": "adam"}),
    "shuffle 100k": Recipe({"shuffle_buffer": 100_000}),
    "xla": Recipe({"jit_compile": True}),
    "base mode": Recipe({"mode": "base"}),
    # lr 5e-3, 5 % of the users held out, patience 1 (with 3 epochs like every row)
    "users 5 %, lr 5e-3, patience 1": Recipe({"learning_rate": 5e-3, "validation_fraction": 0.05,
                                              "validation_split": "users", "early_stopping_patience": 1}),
    "lr 5e-3": Recipe({"learning_rate": 5e-3}),
    "user hold-out": Recipe({"validation_fraction": 0.05, "validation_split": "users"}),
    "patience 1": Recipe({"early_stopping_patience": 1}),
    # the light tower's own interest extractor
    "light shared": Recipe(SHARED_ATTENTION),
    "light din 32-16": Recipe({"light_interest": "din", "light_attention": [32, 16]}),
    "light dot": Recipe({"light_interest": "dot", "light_projection": 16}),
    "light dot raw": Recipe({"light_interest": "dot", "light_projection": 0}),  # c·h / √D, no weights
    "light mean": Recipe({"light_interest": "mean"}),
    "light history 20": Recipe({"light_history": 20}),  # e.g. "light dot + light history 20"
    # "validation" puts the split back on top of "no validation"
    "validation": Recipe({"validation_fraction": 0.05}),
    "validation 0.1": Recipe({"validation_fraction": 0.1}),  # more newest events held out, then folded in
    "validation 0.15": Recipe({"validation_fraction": 0.15}),
    "no fold-in": Recipe({"fold_in_validation": "no"}),  # the validation rows never trained on
    "fold-in": Recipe({"fold_in_validation": "yes"}),  # whatever the split
    "validation auto": Recipe({"validation_fraction": None}),  # the default (None: the config's auto)
    "no warmup": Recipe({"hint_warmup": False}),  # booster CE into the shared bottom from the first step
    "booster from start": Recipe({"booster_bottom": "from-start"}),  # booster CE into the bottom; λ waits
    "hint 0": Recipe({"hint_weight": 0.0}),
    "hint 0.01": Recipe({"hint_weight": 0.01}),
    "hint 0.1": Recipe({"hint_weight": 0.1}),
    "hint into bottom": Recipe({"hint_trains_bottom": True}),
    "hint mse": Recipe({"hint": "mse"}),
    "hint kd": Recipe({"hint": "kd"}),
    "hint scaled": Recipe({"hint_scale_to_label": True}),  # hint gradient the size of the label's
    "booster din+dot": Recipe({"booster_interest": "din+dot"}),
    "booster dot": Recipe({"booster_interest": "dot"}),
    "no share": Recipe({"share": False}),  # each tower its own embeddings: the hint is the only channel
    # DeepCTR's embeddings: normal(0, 1e-4) rows and an L2 on the whole tables (dense Adam: every row decays)
    "embedding init 1e-4": Recipe({"embedding_init_std": 1e-4}),
    "embedding l2 1e-6": Recipe({"embedding_l2": 1e-6, "optimizer": "adam"}),
    # booster capacity the light tower does not pay for at serving time
    "booster cross 2": Recipe({"booster_cross": 2}),  # DCN-v2 cross stack before the booster's MLP
    # --attention-units are the booster's DIN widths; with light_interest "shared" the light tower reads that
    # very attention, so this widens (and slows) the served light tower too: measure it booster-only as
    # "light din 32-16 + booster attention 160-80" (or light dot / light mean)
    "booster attention 160-80": Recipe({"attention_units": [160, 80]}),
    # a stronger booster alone (docs/results/boosters.md): the light tower's kind of dot-product attention, 2 DCN-v2
    # crosses, 512 x 256 without BatchNorm, its cross-entropy kept off the shared embeddings until it leads
    "dot cross booster": Recipe({"booster_interest": "dot", "booster_units": [512, 256], "booster_batch_norm": False,
                                 "booster_cross": 2, "booster_bottom": "after-launch"}),
    "wide din+dot booster": Recipe({"booster_interest": "din+dot", "booster_units": [1024, 512],
                                    "booster_batch_norm": False, "booster_cross": 2, "booster_bottom": "after-launch"}),
    "hint 1": Recipe({"hint_weight": 1.0}),
    # the 7-layer booster with DIN + dot attention and more of what only it reads (docs/results/boosters.md)
    "din+dot booster, own embeddings 18": Recipe({"booster_interest": "din+dot", "booster_embedding_dim": 18}),
    "din+dot booster, own embeddings 36": Recipe({"booster_interest": "din+dot", "booster_embedding_dim": 36}),
    "din+dot booster, residual": Recipe({"booster_interest": "din+dot", "booster_residual": True}),
    "hint 0.1 from the first step": Recipe({"hint_weight": 0.1, "hint_warmup": False}),
    "7-layer din booster": Recipe(DIN_BOOSTER),
    # a wide part in the booster's logit: per-id scalars and the user's affinity to each category
    "wide part, user x category": Recipe({"booster_wide": True, "booster_wide_crosses": "user_id*cate_id",
                                          "booster_wide_rate": 30.0}),
    # the same where the user id is embedded for both towers (many rows per user), none elsewhere
    "wide part auto": Recipe({"booster_wide_crosses": "auto", "booster_wide_rate": 30.0}),
}
REAL_LOGS_PRESETS = {
    "defaults": [],
    "users 5 %, lr 5e-3, patience 1": ["users 5 %, lr 5e-3, patience 1"],
    "base": ["base mode"],  # --mode base with every other default
    "base + user_id feature": ["base mode", "user_id feature"],
    "defaults + user_id feature": ["user_id feature"],
    "base + no fold-in": ["base mode", "no fold-in"],
    "base + user_id feature + fold-in 0.15": ["base mode", "user_id feature", "fold-in", "validation 0.15"],
    "base + fold-in": ["base mode", "fold-in"],
    "defaults + fold-in": ["fold-in"],
    "defaults + calibration share 0.1": ["calibration share 0.1"],
    "defaults + calibration slice": ["calibration slice"],
    "base + since last event": ["base mode", "since last event"],
    "defaults + since last event": ["since last event"],
    "base + recency position": ["base mode", "recency position"],
    "defaults + recency position": ["recency position"],
    "base + no user_id embedding": ["base mode", "no user_id embedding"],
    "defaults + no fold-in": ["no fold-in"],
    "defaults + dot cross booster": ["dot cross booster"],
    "defaults + dot cross booster + hint 0.1": ["dot cross booster", "hint 0.1"],
    "defaults + dot cross booster + hint 1": ["dot cross booster", "hint 1"],
    "defaults + wide din+dot booster": ["wide din+dot booster"],
    "reference-like": ["no validation", "lr 1e-3", "relu attention", "shuffle 100k", "xla", "user_id feature",
                       "vocabulary (no hashing)", "one bucket (50)", "dense Adam"],
}
DEEPCTR_DIN = "DeepCTR DIN"
# benchmarks/deepctr_din.py's flags: Dice attention, user_id embedded, DeepCTR's embedding L2
REAL_LOGS_DIN = Recipe({"with_user_id": True, "att_activation": "dice", "l2_reg_embedding": 1e-6},
                       env={"TF_USE_LEGACY_KERAS": "1"}, system=DEEPCTR_DIN)


def _real_logs(name: str) -> Recipe:
    if name == DEEPCTR_DIN:
        return REAL_LOGS_DIN
    changes = REAL_LOGS_PRESETS.get(name)
    if changes is None:
        changes = ["no validation", *[c for c in name.split(" + ") if c != "no validation"]]
    unknown = [c for c in changes if c not in REAL_LOGS_CHANGES]
    if unknown:
        raise KeyError(f"unknown changes {unknown}; known: {sorted(REAL_LOGS_CHANGES)} and presets "
                       f"{sorted(REAL_LOGS_PRESETS)}")
    config, spec, env = {}, {}, {}
    for change in changes:
        part = REAL_LOGS_CHANGES[change]
        config.update(part.config), spec.update(part.spec), env.update(part.env)
    return Recipe(config, spec, env)


# ----- protection: experiment_protection.py ------------------------------------------------------------
PROTECTION = {
    "base": Recipe(dict(mode="base", early_stopping_patience=1)),
    "booster": Recipe(dict(mode="booster", early_stopping_patience=1)),
    "rocket paper": Recipe(dict(mode="rocket", hint_warmup=False, hint_trains_bottom=True,
                                early_stopping_patience=0)),
    "rocket defaults": Recipe(dict(mode="rocket")),
    # separate bottoms, so an unlaunched booster still learns its own embeddings
    "rocket --no-share": Recipe(dict(mode="rocket", share=False)),
    # launch when the booster's validation GAUC leads (its log loss rarely does: BN boosters rank better
    # before they are calibrated)
    "rocket, launch on GAUC": Recipe(dict(mode="rocket", hint_launch_metric="gauc")),
    "rocket --no-share, launch on GAUC": Recipe(dict(mode="rocket", share=False, hint_launch_metric="gauc")),
    "base (patience 2)": Recipe(dict(mode="base")),
    # a dot-attention booster whose cross-entropy trains the shared embeddings from the first step, λ = 0
    "rocket multi-task": Recipe(dict(mode="rocket", booster_interest="dot", booster_bottom="from-start",
                                     hint_weight=0.0)),
    "rocket multi-task, DIN booster": Recipe(dict(mode="rocket", booster_bottom="from-start", hint_weight=0.0)),
}

# ----- ablation: experiment_ablation.py ----------------------------------------------------------------
ABLATION = {
    "base": Recipe(dict(mode="base")),
    "rocket (mimic)": Recipe(dict(mode="rocket")),
    "booster": Recipe(dict(mode="booster")),
    "rocket --no-gradient-block": Recipe(dict(mode="rocket", gradient_block=False)),
    "rocket --no-share": Recipe(dict(mode="rocket", share=False)),
    "two-stage": Recipe(dict(mode="two-stage")),
    "rocket --hint mse": Recipe(dict(mode="rocket", hint="mse")),
    "rocket --hint kd (T=2)": Recipe(dict(mode="rocket", hint="kd", temperature=2.0)),
}
# follow-ups that look for why rocket does or does not beat base (run with --variants ... --seeds 0)
ABLATION_INVESTIGATIONS = {
    "rocket --hint-weight 0.1": Recipe(dict(mode="rocket", hint_weight=0.1)),
    "booster --no-booster-batch-norm": Recipe(dict(mode="booster", booster_batch_norm=False)),
    "rocket --no-booster-batch-norm": Recipe(dict(mode="rocket", booster_batch_norm=False)),
    "rocket --hint-gate": Recipe(dict(mode="rocket", hint_gate=True)),
    "rocket --hint-warmup (2 epochs, 5% validation)": Recipe(dict(mode="rocket", hint_warmup=True,
                                                                  validation_fraction=0.05, epochs=2)),
    "base (2 epochs, 5% validation)": Recipe(dict(mode="base", validation_fraction=0.05, epochs=2)),
    "rocket (2 epochs, 5% validation)": Recipe(dict(mode="rocket", validation_fraction=0.05, epochs=2)),
}
ABLATION.update(ABLATION_INVESTIGATIONS)

# ----- throughput: bench_train_throughput.py -----------------------------------------------------------
# the booster options beside the default one (docs/results/boosters.md), as the real-logs recipes set them
BOOSTER_OPTIONS = {"dotbooster": REAL_LOGS_CHANGES["dot cross booster"].config,
                   "widebooster": REAL_LOGS_CHANGES["wide din+dot booster"].config,
                   "dindotbooster": REAL_LOGS_CHANGES["booster din+dot"].config,
                   "ownembbooster": REAL_LOGS_CHANGES["din+dot booster, own embeddings 18"].config,
                   "ownemb36booster": REAL_LOGS_CHANGES["din+dot booster, own embeddings 36"].config,
                   "dinbooster": REAL_LOGS_CHANGES["7-layer din booster"].config,
                   "residualbooster": REAL_LOGS_CHANGES["din+dot booster, residual"].config,
                   "widepartbooster": REAL_LOGS_CHANGES["wide part, user x category"].config,
                   "wideautobooster": REAL_LOGS_CHANGES["wide part auto"].config,
                   "dicebooster": {"booster_activation": "dice"},
                   "batchl2booster": {"booster_embedding_l2": 0.1},
                   # the defaults less one part each: what each part of the booster costs in training
                   "noownbooster": {"booster_embedding_dim": 0},
                   "nobnbooster": {"booster_batch_norm": False}}
THROUGHPUT_OPTIONS = ("buckets", "stringhash", "afterlaunch", *BOOSTER_OPTIONS)  # and light extractors


def _throughput(name: str) -> Recipe:
    """``rocket``, ``base`` ... plus ``+`` options: ``buckets`` (batches grouped by history length),
    ``dot`` / ``mean`` / ``din`` / ``shared`` (the light tower's interest extractor), ``afterlaunch``
    (the booster kept off the shared bottom until the warm-up launches it, λ = 1), ``stringhash``
    (each int64 id's decimal text through farmhash), ``dotbooster``, ``widebooster``, ``dindotbooster``,
    ``ownembbooster``, ``ownemb36booster``, ``dinbooster``, ``residualbooster``, ``widepartbooster``,
    ``wideautobooster``, ``dicebooster``, ``batchl2booster``, ``noownbooster``, ``nobnbooster``
    (:data:`BOOSTER_OPTIONS`), e.g. ``rocket+dot+buckets``."""
    from rocket_ctr.config.schema import LIGHT_INTERESTS

    mode, *extras = name.split("+")
    unknown = [e for e in extras if e not in THROUGHPUT_OPTIONS and e not in LIGHT_INTERESTS]
    if unknown:
        raise KeyError(f"unknown mode options {unknown}: {', '.join(THROUGHPUT_OPTIONS)} or one of "
                       f"{LIGHT_INTERESTS}")
    boosters = {k: v for e in extras for k, v in BOOSTER_OPTIONS.get(e, {}).items()}
    interests = [e for e in extras if e in LIGHT_INTERESTS]
    boosters = {**(SHARED_ATTENTION if interests[-1:] == ["shared"] else {}), **boosters}
    return Recipe({"mode": mode, "length_buckets": "buckets" in extras,
                   **({"light_interest": interests[-1]} if interests else {}),
                   **({"booster_bottom": "after-launch", "hint_weight": 1.0} if "afterlaunch" in extras else {}),
                   **boosters},
                  spec={"id_hash": "string"} if "stringhash" in extras else {})


# ----- calibration: bench_calibration.py ---------------------------------------------------------------
def _calibration(name: str) -> Recipe:
    if name == "oracle":  # the true click probability: no training
        return Recipe(system="oracle")
    if name == "full rate":
        return Recipe({"negative_rate": 1.0})
    match = re.fullmatch(r"(upstream|reader) r=([0-9.e-]+)", name)
    if match is None:
        raise KeyError(f"unknown calibration run {name!r}: oracle, full rate, upstream r=R or reader r=R")
    rate = float(match[2])
    if match[1] == "upstream":  # the log itself keeps r of the negatives; its FeatureSpec records r
        return Recipe({"negative_rate": 1.0}, spec={"negative_rate": rate})
    return Recipe({"negative_rate": rate})


# ----- feature types, warm start -------------------------------------------------------------------------
FEATURE_TYPES = {
    "with": Recipe(),  # the generated spec: price bucketised, tags mean-pooled
    "without": Recipe(spec={"numeric_features": [], "multi_hot_features": []}),
}
WARM_START = {
    "warm start": Recipe({"early_stopping_patience": 0}),
    "warm start, small model": Recipe({"early_stopping_patience": 0, "embedding_dim": 4, "light_units": [16],
                                       "booster_units": [32, 16], "attention_units": [8]}),
}

# family -> (common settings, recipe of a name)
FAMILIES = {
    "real logs": ({"batch_size": 256}, _real_logs),
    "protection": ({"epochs": 2, "validation_fraction": 0.05}, PROTECTION.__getitem__),
    # the paper's training: no validation split, the hint from the first step and into the shared bottom
    "ablation": ({"validation_fraction": 0.0, "hint_warmup": False, "hint_trains_bottom": True,
                  "early_stopping_patience": 0}, ABLATION.__getitem__),
    "throughput": ({"batch_size": 256, "embedding_dim": 18, "attention_units": [80, 40], "light_units": [200, 80],
                    "epochs": 1}, _throughput),
    "calibration": ({}, _calibration),
    "feature types": ({}, FEATURE_TYPES.__getitem__),
    "warm start": ({}, WARM_START.__getitem__),
}


def recipe(family: str, name: str) -> Recipe:
    """The recipe ``name`` of ``family``.

    Raises:
        KeyError: an unknown family or name (the message lists what is known).
    """
    if family not in FAMILIES:
        raise KeyError(f"unknown recipe family {family!r}; known: {sorted(FAMILIES)}")
    try:
        return FAMILIES[family][1](name)
    except KeyError as err:
        raise KeyError(err.args[0] if family in ("real logs", "throughput", "calibration")
                       else f"unknown {family} recipe {name!r}") from None


def overrides(family: str, name: str, **run) -> dict:
    """Flat config overrides of a run: the family's common settings, then ``run``'s (epochs, seed,
    flags), then the recipe's own."""
    return {**FAMILIES[family][0], **run, **recipe(family, name).config}


def rocket_config(family: str, name: str, **run):
    """The ``RocketConfig`` a run of ``name`` trains (:func:`overrides` applied over the defaults, as
    ``rocket-ctr train --config`` applies a file: ``None`` values keep the default)."""
    from rocket_ctr.config import RocketConfig

    if recipe(family, name).system != ROCKET_CTR:
        raise ValueError(f"{family} recipe {name!r} does not train rocket_ctr")
    return RocketConfig().replace(overrides(family, name, **run))


def resolve(family: str, name: str, **run) -> dict:
    """The resolved config of a run of ``name`` with ``run``'s own settings (epochs, seed, flags).

    Returns:
        ``{"system", "config", "spec", "env"}``: ``config`` is ``RocketConfig.to_dict()`` after
        :func:`overrides` (another system: its settings with ``run``'s), ``spec`` the FeatureSpec
        edits, ``env`` the environment variables.
    Raises:
        KeyError: an unknown name; ``rocket_ctr.errors.FieldError``: overrides the config rejects.
    """
    found = recipe(family, name)
    if found.system == ROCKET_CTR:
        config = rocket_config(family, name, **run).to_dict()
    else:
        config = {**found.config, **run}
    return json.loads(json.dumps({"system": found.system, "config": config, "spec": found.spec, "env": found.env}))


def recipe_key(resolved: dict) -> str:
    """A short key of a resolved config (:func:`resolve`, or as stored in a results line): equal
    exactly when everything but the seed is equal (a seed is a replicate of the same recipe)."""
    body = copy.deepcopy(resolved)
    config = body.get("config", {})
    (config.get("training", {}) if body.get("system") == ROCKET_CTR else config).pop("seed", None)
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def listed(family: str) -> list[str]:
    """The names a family lists (the real logs: presets, single changes and DeepCTR DIN; throughput:
    each mode with each option, the booster options with rocket only; calibration: its runs at r = 0.1)."""
    if family == "real logs":
        return [*REAL_LOGS_PRESETS, *REAL_LOGS_CHANGES, DEEPCTR_DIN]
    if family == "throughput":
        from rocket_ctr.config.schema import LIGHT_INTERESTS, MODES

        return [*MODES, *(f"{m}+{o}" for m in ("rocket", "base") for o in (*THROUGHPUT_OPTIONS, *LIGHT_INTERESTS)
                          if m == "rocket" or o not in BOOSTER_OPTIONS)]
    if family == "calibration":
        return ["oracle", "full rate", "upstream r=0.1", "reader r=0.1"]
    return list({"protection": PROTECTION, "ablation": ABLATION, "feature types": FEATURE_TYPES,
                 "warm start": WARM_START}[family])
