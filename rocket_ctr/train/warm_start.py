"""Warm start: a new run begins from another run's weights, e.g. yesterday's model on today's log.

What may change between the runs: everything about training (epochs, learning rate, data,
validation, the hint's weight and warm-up...), dropout and L2, history lengths, and the ids of a
vocabulary feature (new ids get fresh rows, known ids keep their rows, by id, wherever they
moved; ids no longer listed are dropped). What may not (refused with one line naming the
difference): the mode, embedding width, attention and tower shapes and activations, sharing, the
feature set (names, columns, dtypes, hash buckets, hashing vs vocabulary).

The optimizer's state (Adam's moments and step count, remapped like the rows they belong to)
carries over unless ``carry_optimizer=False``; its learning rate is always the new config's. The
hint warm-up's launch carries over too: when the source ended with the hint on
(``model.hint_scale`` > 0), the new run starts with the hint at full weight instead of waiting for
the booster to lead again; ``warm_start.json`` in the new run dir records what was carried (and
keeps the launch across resumes of the new run). The towers' fitted intercepts carry over when
both runs have them (``training.calibrate_intercept``), and so do the slopes
(``training.calibrate_slope``) and the isotonic maps' knots (``training.calibration_knots``, the
same number in both); a new run with validation rows refits them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import FieldError
from rocket_ctr.features.spec import FeatureSpec

STATE_FILE = "warm_start.json"
# model fields that may differ between the runs (no variable depends on them, or only through the feature set,
# which is checked on its own); every other one may not
CHANGEABLE_MODEL_FIELDS = {"model.light.dropout", "model.light.l2", "model.booster.dropout", "model.booster.l2",
                           "model.attention.softmax", "model.detach_light", "model.light_history",
                           "model.booster_history", "model.user_id_embedding"}


def read_state(run_dir) -> dict:
    """The ``warm_start.json`` of a run dir ({} for a run that did not warm-start)."""
    path = Path(run_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclasses.dataclass
class WarmStartSource:
    """A finished (or checkpointed) run to start from: its config, spec and newest intact checkpoint."""

    run_dir: Path
    config: RocketConfig
    spec: FeatureSpec
    checkpoint: str

    @classmethod
    def open(cls, run_dir, target_run_dir=None) -> WarmStartSource:
        """Reads ``run_dir``; FieldError ({warm_start}) when it is missing, not a run or has no checkpoint."""
        from rocket_ctr.train import run_dir as layout  # run_dir imports the model (TensorFlow): only when used

        source = Path(run_dir)
        if target_run_dir is not None and source.resolve() == Path(target_run_dir).resolve():
            raise FieldError(f"{{warm_start}} {source} is the run dir itself; warm-start into a new {{run_dir}}")
        for name in (layout.CONFIG_FILE, layout.SPEC_FILE):
            if not (source / name).is_file():
                raise FieldError(f"{{warm_start}} {source}: not a training run dir (no {name})")
        try:
            config = RocketConfig.from_saved(json.loads((source / layout.CONFIG_FILE).read_text()))
        except ValueError as err:
            raise FieldError(f"{{warm_start}} {source}: unreadable {layout.CONFIG_FILE} ({err})") from None
        spec = FeatureSpec.load(source / layout.SPEC_FILE, saved=True)
        checkpoint = layout.latest_checkpoint(source)
        if checkpoint is None:
            raise FieldError(f"{{warm_start}} {source}: no checkpoint in {source / layout.CHECKPOINTS}")
        return cls(source, config, spec, checkpoint)

    # ----- what may change ---------------------------------------------------------------------
    def check_compatible(self, config: RocketConfig, spec: FeatureSpec) -> None:
        """Raises FieldError naming the first difference that the source's weights cannot follow."""
        ours, theirs = config.flat(), self.config.flat()
        for path in ours:
            if path.startswith("model.") and path not in CHANGEABLE_MODEL_FIELDS and ours[path] != theirs.get(path):
                raise FieldError(f"cannot warm-start from {self.run_dir}: {{{path}}} is {_show(theirs.get(path))} "
                                 f"there and {_show(ours[path])} here; the mode, embedding width, attention and "
                                 "tower shapes must stay the same")
        problem = feature_set_difference(self.spec, spec)
        if problem:
            raise FieldError(f"cannot warm-start from {self.run_dir}: the feature set differs: {problem}; "
                             "names, columns, dtypes and hash buckets must stay the same "
                             "(vocabularies may grow)")

    # ----- loading -----------------------------------------------------------------------------
    def load_into(self, model, optimizers: dict, carry_optimizer: bool = True) -> dict:
        """Copies the source's weights (and optimizer state) into a built ``model`` and built ``optimizers``.

        Returns:
            What was carried: ``{"source", "checkpoint", "optimizer_state", "vocabulary", "hint_launched"}``.
        """
        import tensorflow as tf

        from rocket_ctr.features.signatures import example_rows
        from rocket_ctr.model.rocket import RocketModel
        from rocket_ctr.train.optimizers import make_optimizer

        source = RocketModel(self.spec, self.config)
        source(example_rows(self.spec), training=False)
        source_optimizers = {}
        if carry_optimizer:
            training = self.config.training
            source_optimizers = {stage: make_optimizer(training.optimizer, training.learning_rate)
                                 for stage in optimizers}
            for stage, optimizer in source_optimizers.items():
                optimizer.build(source.trainable_variables if stage == "joint" else source.tower_variables(stage))
        status = tf.train.Checkpoint(model=source, **source_optimizers).restore(self.checkpoint)
        try:
            status.assert_existing_objects_matched().expect_partial()  # the run's progress is not carried
        except AssertionError as err:
            raise FieldError(f"cannot warm-start from {self.checkpoint}: it does not hold this model "
                             f"({str(err).splitlines()[0][:200]})") from None

        takes, vocabulary = {}, {}
        for feature in model.spec.id_features:
            old = self.spec.feature(feature.name)
            if feature.vocabulary is not None and feature.vocabulary != old.vocabulary:
                take, vocabulary[feature.name] = row_mapping(old.vocabulary, feature.vocabulary)
                for table in _tables(model, feature.name):
                    takes[id(table)] = take
        _copy_all(_without_intercepts(source), _without_intercepts(model), takes)
        carried = {t: value for t, value in source.intercept_values().items() if t in model.intercepts}
        for tower, value in carried.items():  # the new run refits it when it has validation rows
            model.intercepts[tower].assign(value)
        slopes = {t: value for t, value in source.slope_values().items() if t in model.slopes}
        for tower, value in slopes.items():  # (a source without slopes: 1, the function it served)
            model.slopes[tower].assign(value)
        knots = {t: v for t, v in source.knot_values().items()
                 if t in model.knots and len(v["x"]) == model.knots[t][0].shape[0]}
        for tower, value in knots.items():  # (another K or none: the identity, refitted with validation rows)
            model.knots[tower][0].assign(value["x"])
            model.knots[tower][1].assign(value["y"])
        if carry_optimizer:
            for stage, optimizer in optimizers.items():
                slot_takes = {id(slot): takes[id(var)] for var in model.trainable_variables if id(var) in takes
                              for slot in _slots(optimizer, var)}
                pairs = [(s, t) for s, t in zip(source_optimizers[stage].variables, optimizer.variables)
                         if t.name != "learning_rate"]  # the new run's learning rate, always
                _copy_all([s for s, _ in pairs], [t for _, t in pairs], slot_takes)
        _reset_moved_crosses(model, optimizers, vocabulary)
        launched = len(model.towers) == 2 and float(model.hint_scale.numpy()) > 0
        model.hint_scale.assign(1.0)  # a fresh model's; the new run's warm-up (if on) sets it from `launched`
        state = {"source": str(self.run_dir), "checkpoint": self.checkpoint, "optimizer_state": carry_optimizer,
                 "vocabulary": vocabulary, "hint_launched": launched}
        return {**state, **({"intercept": carried} if carried else {}), **({"slope": slopes} if slopes else {}),
                **({"knots": knots} if knots else {})}


def feature_set_difference(old: FeatureSpec, new: FeatureSpec) -> str | None:
    """The first difference between two specs that changes embedding tables or id mapping (None if none)."""
    for group in ("sequence_features", "user_features", "item_features"):
        old_names = [f.name for f in getattr(old, group)]
        new_names = [f.name for f in getattr(new, group)]
        if old_names != new_names:
            return f"{group} are {old_names} there and {new_names} here"
    for before, after in zip(old.id_features, new.id_features):
        for attribute in ("history", "dtype", "booster_only"):
            if getattr(before, attribute) != getattr(after, attribute):
                return (f"{after.name}: {attribute} is {getattr(before, attribute)!r} there and "
                        f"{getattr(after, attribute)!r} here")
        if (before.vocabulary is None) != (after.vocabulary is None):
            kinds = ["a vocabulary" if f.vocabulary is not None else "hashing" for f in (before, after)]
            return f"{after.name}: {kinds[0]} there and {kinds[1]} here"
        if before.vocabulary is None and before.buckets != after.buckets:
            return f"{after.name}: {before.buckets} hash buckets there and {after.buckets} here (every id would move)"
    if old.groups != new.groups:  # extractors per behaviour sequence, side-column tables
        return (f"sequence groups are {[dataclasses.asdict(g) for g in old.groups]} there and "
                f"{[dataclasses.asdict(g) for g in new.groups]} here")
    if old.extra_features != new.extra_features:  # tables and transforms of numeric / multi-hot columns
        changed = sorted({f.name for f in set(old.extra_features) ^ set(new.extra_features)})
        return f"numeric / multi-hot features {changed} differ (they must be declared the same to warm-start)"
    return None


def row_mapping(old_vocabulary, new_vocabulary) -> tuple[np.ndarray, dict]:
    """For each row of the new table, the old table's row holding the same id (-1: a new id, fresh row).

    Row 0 (out of vocabulary) maps to row 0; id ``v`` at position ``i`` of a vocabulary is row ``i + 1``.
    Returns:
        (rows, ``{"kept", "new", "dropped"}`` counts).
    """
    old_row = {value: i + 1 for i, value in enumerate(old_vocabulary)}
    take = np.array([0] + [old_row.get(value, -1) for value in new_vocabulary], dtype=np.int64)
    kept = int((take[1:] >= 0).sum())
    return take, {"kept": kept, "new": len(new_vocabulary) - kept, "dropped": len(old_vocabulary) - kept}


def _tables(model, feature: str) -> list:
    """The embedding variables of one feature (one per bottom)."""
    bottoms = {id(model.bottom_of(t)): model.bottom_of(t) for t in model.towers}
    # the booster-only columns', its own tables, its wide part's per-id scalars
    for own in (model.booster_columns, model.booster_embeddings, model.booster_wide):
        if own is not None:
            bottoms[id(own)] = own
    return [bottom.embeddings[feature].embeddings for bottom in bottoms.values() if feature in bottom.embeddings]


def _reset_moved_crosses(model, optimizers: dict, vocabulary: dict) -> None:
    """Zeroes (with their optimizer slots) the wide part's crossed tables over a feature whose vocabulary
    changed: a pair's row is hashed from the two features' rows, which moved, so no pair can be carried."""
    wide = model.booster_wide
    for (user, item), table in zip(wide.crosses, wide.cross_tables) if wide is not None else ():
        if user in vocabulary or item in vocabulary:
            for variable in [table.embeddings, *(s for o in optimizers.values() for s in _slots(o, table.embeddings))]:
                variable.assign(np.zeros(variable.shape, variable.dtype))


def _without_intercepts(model) -> list:
    """The model's variables but its intercepts, slopes and knots (a run with them may start from one without)."""
    skip = {id(v) for v in (*model.intercepts.values(), *model.slopes.values(),
                            *(v for pair in model.knots.values() for v in pair))}
    return [v for v in model.weights if id(v) not in skip]


def _slots(optimizer, variable) -> list:
    """Adam's first and second moments of ``variable`` (empty if the optimizer holds none for it)."""
    try:
        index = optimizer._get_variable_index(variable)
    except KeyError:
        return []
    return [slots[index] for slots in (getattr(optimizer, "_momentums", []), getattr(optimizer, "_velocities", []))]


def _copy_all(sources: list, targets: list, takes: dict) -> None:
    """Assigns each source variable to its target (same order); ``takes`` remaps rows of resized tables."""
    if len(sources) != len(targets):
        raise FieldError(f"cannot warm-start: the source holds {len(sources)} variables here and the new model "
                         f"{len(targets)}; the architecture differs")
    for source, target in zip(sources, targets):
        value = np.asarray(source.numpy())
        take = takes.get(id(target))
        if take is not None:
            fresh = np.asarray(target.numpy())
            value = np.where((take >= 0)[:, None], value[np.maximum(take, 0)], fresh)
        if tuple(value.shape) != tuple(target.shape):
            raise FieldError(f"cannot warm-start: variable {target.path} is {tuple(value.shape)} in the source "
                             f"and {tuple(target.shape)} here; the architecture differs")
        target.assign(value)


def _show(value) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
