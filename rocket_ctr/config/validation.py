"""The validation split settings of ``TrainingConfig``: the split kinds, the auto shares, the k check.

The splits themselves are planned by ``rocket_ctr.io.holdout`` (from the eval log's test protocol,
``rocket_ctr.io.test_protocol``, where there is one).
"""
from __future__ import annotations

from rocket_ctr.errors import FieldError

VALIDATION_SPLITS = ("auto", "last-event", "user-tail", "time", "users")  # see rocket_ctr.io.holdout
PER_USER_SPLITS = ("last-event", "user-tail")  # each sampled user's newest events (k = 1 and k >= 1)
# the splits fold_in_validation auto folds in: measured on the five real logs, the pass lifted every
# leave-one-out log and lowered the time-cut and user-tail ones (docs/results/real_logs.md)
FOLD_IN_SPLITS = ("last-event",)
FOLD_IN_CHOICES = ("auto", "yes", "no")  # see rocket_ctr.train.callbacks.fold_in
FOLD_IN_CALIBRATIONS = ("cross-fit", "slice", "before")  # how the calibration avoids folded-in rows
CROSS_FIT_SHARE = 0.5  # cross-fitting's two halves of the validation users
MULTI_WORKER_FOLD_IN = "not done in a multi-worker run (every worker would need the same step count)"
# validation_fraction auto: a split that is folded in afterwards costs no training rows, and
# holding out (about) every user's newest event measured best on the leave-one-out logs
DEFAULT_FRACTION, LAST_EVENT_FRACTION = 0.05, 0.15


def validation_fractions(validation_fraction: float | None, folds_in: bool) -> dict:
    """The share of rows held out per validation split kind (``validation_fraction`` resolved).

    Args:
        validation_fraction: the configured share (None: auto).
        folds_in: whether the fold-in setting allows a fold-in (not ``no``, not multi-worker).
    """
    if validation_fraction is not None:
        return dict.fromkeys(VALIDATION_SPLITS, validation_fraction)
    folded = LAST_EVENT_FRACTION if folds_in else DEFAULT_FRACTION
    return {**dict.fromkeys(VALIDATION_SPLITS, DEFAULT_FRACTION), **dict.fromkeys(FOLD_IN_SPLITS, folded)}


def check_tail_events(split: str, tail_events: int | None) -> None:
    """Refuses a k that contradicts the declared split (FieldError, one line)."""
    if tail_events is None or split in ("auto", "user-tail") or (split == "last-event" and tail_events == 1):
        return
    held = "each sampled user's newest event, k = 1" if split == "last-event" else "no per-user events"
    raise FieldError(f"{{training.validation_tail_events}} {tail_events} contradicts {{training.validation_split}} "
                     f"{split} ({held}); use {{training.validation_split}} user-tail or auto")


def fold_in_wanted(fold_in_validation: str, split_kind: str | None, distributed: bool) -> str | None:
    """Whether a run folds its validation rows in after training.

    Args:
        fold_in_validation: the setting (auto, yes, no).
        split_kind: the resolved validation split (None: no validation rows).
        distributed: a multi-worker run.
    Returns:
        None (no), ``"yes"``, or why a wanted fold-in cannot run.
    """
    if split_kind is None or fold_in_validation == "no" or \
            (fold_in_validation == "auto" and split_kind not in FOLD_IN_SPLITS):
        return None
    return MULTI_WORKER_FOLD_IN if distributed else "yes"


def calibration_share(training, split_kind: str, distributed: bool) -> float:
    """The share of validation users in the holdout's calibration part: the cross-fit's second half,
    the slice kept out of the fold-in, or 0 (no fold-in, no refit, or calibration before the fold-in)."""
    sliced = training.calibrate_intercept and fold_in_wanted(training.fold_in_validation, split_kind,
                                                             distributed) == "yes"
    method = training.fold_in_calibration
    if not sliced or method == "before":
        return 0.0
    return CROSS_FIT_SHARE if method == "cross-fit" else training.calibration_share


def check_booster_options(model) -> None:
    """Refuses booster options the model's other fields rule out (FieldError, one line): a residual
    booster in booster or two-stage mode (no light logit trained beside it to add to; base mode
    builds no booster and ignores it, as every booster option), own booster tables under a shared
    attention (which cannot read wider embeddings) or their L2 without them where a booster is built,
    wide crosses not written USER*CANDIDATE.

    Args:
        model: a ``ModelConfig``.
    """
    if model.booster_embedding_dim and model.light_interest == "shared" and "booster" in model.towers:
        raise FieldError("{model.booster_embedding_dim} needs a light tower with its own extractor ({model."
                         "light_interest} dot, din or mean): a shared attention cannot read wider embeddings; "
                         "with {model.light_interest} shared set {model.booster_embedding_dim} 0")
    if model.booster_embedding_l2 and not model.booster_embedding_dim and "booster" in model.towers:
        raise FieldError("{model.booster_embedding_l2} regularises the booster's own tables: set "
                         "{model.booster_embedding_dim} above 0 (or the L2 to 0)")
    if model.booster_residual and model.mode in ("booster", "two-stage"):
        raise FieldError(f"{{model.booster_residual}} needs {{model.mode}} rocket (the booster adds to the light "
                         f"logit it trains beside), got {model.mode!r}")
    wide_crosses(model.booster_wide_crosses)


def is_wide_auto(text: str) -> bool:
    """``--booster-wide-crosses auto``, which the run's FeatureSpec resolves (``rocket_ctr.model.parts.wide_part``)."""
    return text.strip() == "auto"


def wide_crosses(text: str) -> tuple:
    """``"user_id*cate_id, ..."`` as ``(("user_id", "cate_id"), ...)`` (``"auto"``: none here, the
    FeatureSpec decides them); FieldError for a cross that is not two names joined by ``*``."""
    if is_wide_auto(text):
        return ()
    crosses = []
    for cross in (c.strip() for c in text.split(",") if c.strip()):
        names = tuple(n.strip() for n in cross.split("*"))
        if len(names) != 2 or not all(names):
            raise FieldError(f"{{model.booster_wide_crosses}} takes USER*CANDIDATE feature names, comma-separated "
                             f"(e.g. user_id*cate_id), got {cross!r}")
        crosses.append(names)
    return tuple(crosses)
