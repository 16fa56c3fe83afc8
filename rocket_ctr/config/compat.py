"""Reading the config.json of a run dir written before some config fields existed.

Such a file lacks those fields; the run it describes built what :data:`BEFORE_FIELD_EXISTED` says,
not what today's defaults would build, so a missing field takes that value and the run dir still
resumes, restores and warm-starts as it was trained.
"""
from __future__ import annotations

from rocket_ctr.config.fields import dotted, flat_names

# the value each field had in effect in a run dir written before the field existed
BEFORE_FIELD_EXISTED = {"model.light_interest": "shared", "training.calibrate_intercept": False,
                        "training.calibrate_slope": False, "training.calibration_knots": 0,
                        "training.fold_in_validation": "no", "training.fold_in_calibration": "before",
                        "hint.booster_bottom": "after-launch",
                        "model.user_id_embedding": "no", "model.booster_interest": "din",
                        "model.booster_cross": 0, "model.booster_embedding_dim": 0,
                        "model.booster_wide_crosses": "", "training.booster_wide_rate": 10.0}


def with_fields_it_predates(values: dict, root) -> dict:
    """A saved config of ``root`` (nested, dotted or flat names) with each field of
    :data:`BEFORE_FIELD_EXISTED` that it does not name set to that value."""
    given = set(dotted(values, root)) | {flat_names(root).get(k, k) for k in dotted(values, root)}
    implied = {path: value for path, value in BEFORE_FIELD_EXISTED.items() if path not in given}
    return {**implied, **values}
