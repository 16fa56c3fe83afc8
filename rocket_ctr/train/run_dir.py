"""A training run's folder: its layout, the resume check, atomic writes, strict JSON, restoring its model.

Layout of ``<run_dir>/``::

    config.json, feature_spec.json   what the run is (written once everything they describe was built)
    checkpoints/                     the latest steps: resume, evaluate and export read it
    best/                            the best validation epoch's weights (early stopping)
    tensorboard/{train,validation,eval}/
    history.json, metrics.json, curves.png

Reading a run dir (evaluate, export) needs only this module and the model: nothing of training.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import FieldError, InputError
from rocket_ctr.features.signatures import example_rows
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.rocket import RocketModel
from rocket_ctr.train.checkpoints import newest_intact

CONFIG_FILE, SPEC_FILE, METRICS_FILE, HISTORY_FILE = "config.json", "feature_spec.json", "metrics.json", "history.json"
CURVES_FILE = "curves.png"
CHECKPOINTS, BEST, TENSORBOARD = "checkpoints", "best", "tensorboard"
# config fields whose only effect is the run's feature spec, compared on its own: a run resumes whatever they say
SPEC_DECIDING_FIELDS = ("model.user_id_embedding",)
# config fields that decide only the steps after the last epoch (the fold-in and the refit): a run
# resumes with the command's value, so a run dir written before the field existed still resumes
AFTER_TRAINING_FIELDS = ("training.calibration_share", "training.fold_in_calibration")


def latest_checkpoint(run_dir) -> str | None:
    """The prefix of the run's newest intact checkpoint in ``checkpoints/`` (None before the first save).

    A truncated or corrupt newer one is skipped with a warning naming its files; when none is
    intact, InputError (see ``rocket_ctr.train.checkpoints``).
    """
    return newest_intact(Path(run_dir) / CHECKPOINTS)


def check_run_dir(run_dir, config: RocketConfig, spec: FeatureSpec) -> None:
    """Checks ``run_dir`` (creating nothing): one that holds checkpoints resumes only with the same
    config and FeatureSpec.

    Raises:
        InputError: the run dir's config.json or feature_spec.json differs from ``config``/``spec``.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise FieldError(f"{run_dir} is a file; {{run_dir}} must be a folder (it is created if missing)")
    if not run_dir.is_dir() or latest_checkpoint(run_dir) is None:
        return
    for name, current in ((CONFIG_FILE, config.flat()), (SPEC_FILE, spec.to_dict())):
        path = run_dir / name
        previous = json.loads(path.read_text()) if path.exists() else None
        if previous is not None and name == CONFIG_FILE:
            previous = RocketConfig.from_saved(previous).flat()  # nested or an earlier version's flat names
            previous, current = ({k: v for k, v in c.items() if k not in SPEC_DECIDING_FIELDS + AFTER_TRAINING_FIELDS}
                                 for c in (previous, current))
        elif previous is not None:
            with contextlib.suppress(TypeError, ValueError):  # keys added since (weight...) at their defaults
                previous = FeatureSpec.from_saved(previous).to_dict()
        current = json.loads(json.dumps(current))  # tuples -> lists, as saved
        previous = json.loads(json.dumps(previous))
        if previous is not None and previous != current:
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            hint = ' (a run trained before "id_hash" existed resumes with "id_hash": "string" in the ' \
                   'feature_spec.json)' if "id_hash" in changed else ""
            raise FieldError(f"{run_dir} holds a run with another {name} (differs in {changed}); "
                             f"use a new {{run_dir}} or the same settings to resume{hint}")


def record_run(run_dir, config: RocketConfig, spec: FeatureSpec) -> None:
    """Creates ``run_dir`` and writes config.json and feature_spec.json (call once everything they
    describe was built and checked: a refused run leaves no folder behind)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / CONFIG_FILE, json.dumps(config.to_dict(), indent=2) + "\n")
    write_atomic(run_dir / SPEC_FILE, json.dumps(spec.to_dict(), indent=2) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a rename: readers (other workers) never see half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def to_json(value, indent: int = 2) -> str:
    """Strict JSON: numpy scalars as numbers, NaN (e.g. GAUC when no user has both classes) as null."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (float, np.floating)):
            return float(v) if math.isfinite(v) else None
        return v.item() if isinstance(v, np.generic) else v
    return json.dumps(clean(value), indent=indent, allow_nan=False)


def restore_model(run_dir) -> tuple[RocketModel, FeatureSpec, RocketConfig]:
    """Rebuilds the trained model of a run dir from its config, spec and latest checkpoint.

    Returns:
        ``(model, spec, config)``; a two-stage run's model is in its ``light`` stage.
    Raises:
        InputError: not a run dir, or no checkpoint in it.
    """
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, SPEC_FILE):
        if not (run_dir / name).exists():
            raise FieldError(f"{run_dir}: not a training run dir (no {name}); {{run_dir}} must be a folder that "
                             "training wrote")
    config = RocketConfig.from_saved(json.loads((run_dir / CONFIG_FILE).read_text()))
    spec = FeatureSpec.load(run_dir / SPEC_FILE, saved=True)
    latest = latest_checkpoint(run_dir)
    if latest is None:
        raise InputError(f"{run_dir}: no checkpoint in {run_dir / CHECKPOINTS}")
    model = RocketModel(spec, config)
    if config.model.mode == "two-stage":
        model.set_stage("light")
    model(example_rows(spec), training=False)
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    return model, spec, config
