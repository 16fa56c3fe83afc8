"""FeatureSpec: which columns a click log has and how raw ids become embedding rows.

Data, model and export all read this one object; its defaults are the reference click-log schema
(DESIGN.md), defined here and nowhere else. Raw ids stay raw (sparse, possibly huge int64 or
strings); the id -> row mapping is :class:`rocket_ctr.features.id_mapping.IdMapper`, the JSON form
:mod:`rocket_ctr.features.spec_json`. Pure Python: the generator, converters and tools read and write
specs without importing TensorFlow.
"""
from __future__ import annotations

import dataclasses
import math

from rocket_ctr.features.id_feature import ID_HASHES, IdFeature
from rocket_ctr.features.spec_json import SpecJson
from rocket_ctr.features.types import MultiHotFeature, NumericFeature, SequenceGroup, build

HIST_LEN = "hist_len"  # int32 feature added by the pipeline: true history length before padding
WEIGHT = "sample_weight"  # float32 entry added by the pipeline: each row's weight (1 without a weight column)


def _default_sequence_features():
    return (
        IdFeature("item_id", history="hist_item_id", buckets=200_000),
        IdFeature("cate_id", history="hist_cate_id", buckets=10_000),
    )


def _default_user_features():
    return (
        IdFeature("user_gender", dtype="string", buckets=16),
        IdFeature("user_occupation", dtype="string", buckets=256),
    )


@dataclasses.dataclass(frozen=True)
class FeatureSpec(SpecJson):
    """Columns of a click log (defaults = the reference schema of DESIGN.md).

    Args:
        sequence_features: candidate ids that also appear in the behaviour sequence (DIN
            attention runs over these); candidate and history share one embedding table each.
        user_features: user profile columns, one value per row.
        item_features: extra candidate-only columns (e.g. brand without a history).
        user_id: column identifying the user (GAUC groups by it; a feature only if also listed).
        label: 0/1 click column.
        timestamp: event-time column, used for time splits; None if the log has none.
        max_history: histories longer than this keep their newest steps.
        history_buckets: padded lengths the pipeline groups rows into (the last must equal
            ``max_history``); a short history is padded only to its bucket, not to the maximum.
        weight: optional per-row weight column (numeric, finite, >= 0): every loss term and
            metric is then a weighted mean (weight k = k copies of the row). A row-level column
            like ``label``, not a feature. None: every row weighs 1.
        negative_rate: share of negatives the *training* log kept when it was downsampled
            upstream, in (0, 1]; the model's probabilities are corrected back to the full rate
            (``rocket_ctr.calibration.measures``) and validation rows held out of it count each negative
            1/rate times. Evaluation logs are expected at the full rate. 1 = not downsampled.
        numeric_features: numeric columns (:class:`rocket_ctr.features.types.NumericFeature`),
            user- or item-side, bucketised and/or normalised inside the model graph.
        multi_hot_features: list-of-ids columns (:class:`rocket_ctr.features.types.MultiHotFeature`),
            user- or item-side, embedded and pooled.
        sequence_groups: behaviour sequences, each with its own attention
            (:class:`rocket_ctr.features.types.SequenceGroup`: a name, the ``sequence_features`` it
            holds, optional sequence-only side columns); every sequence feature in exactly one.
            Empty (default): one group of every sequence feature, no side columns (:attr:`groups`).
        id_hash: how hashed (non-vocabulary) ids become rows: ``"splitmix64"`` (int64 ids mixed
            arithmetically, then modulo the buckets; string ids by farmhash) or ``"string"`` (every
            id's decimal text by farmhash: the mapping :meth:`from_saved` gives a saved spec without
            an ``id_hash`` key). Changing it re-maps every hashed id.
    """

    sequence_features: tuple = dataclasses.field(default_factory=_default_sequence_features)
    user_features: tuple = dataclasses.field(default_factory=_default_user_features)
    item_features: tuple = ()
    user_id: str = "user_id"
    label: str = "label"
    timestamp: str | None = "ts"
    max_history: int = 50
    history_buckets: tuple = (8, 16, 32, 50)
    weight: str | None = None
    negative_rate: float = 1.0
    numeric_features: tuple = ()
    multi_hot_features: tuple = ()
    sequence_groups: tuple = ()
    id_hash: str = "splitmix64"

    def __post_init__(self):
        if self.id_hash not in ID_HASHES:
            raise ValueError(f"id_hash must be one of {ID_HASHES}, got {self.id_hash!r}")
        for group in ("sequence_features", "user_features", "item_features"):
            value = tuple(build(IdFeature, f, group) for f in getattr(self, group))
            object.__setattr__(self, group, value)
        object.__setattr__(self, "numeric_features",
                           tuple(build(NumericFeature, f, "numeric_features") for f in self.numeric_features))
        object.__setattr__(self, "multi_hot_features",
                           tuple(build(MultiHotFeature, f, "multi_hot_features") for f in self.multi_hot_features))
        object.__setattr__(self, "sequence_groups",
                           tuple(build(SequenceGroup, g, "sequence_groups") for g in self.sequence_groups))
        if self.max_history < 1:
            raise ValueError(f"max_history must be >= 1, got {self.max_history}")
        if any(int(b) < 1 for b in self.history_buckets):
            raise ValueError(f"history_buckets must be >= 1, got {tuple(self.history_buckets)}")
        # sorted, distinct, capped below max_history, and max_history always the last bucket
        buckets = tuple(sorted({int(b) for b in self.history_buckets if int(b) < self.max_history}))
        object.__setattr__(self, "history_buckets", buckets + (int(self.max_history),))
        if not self.sequence_features:
            raise ValueError("FeatureSpec needs at least one sequence feature (the candidate id)")
        missing = [f.name for f in self.sequence_features if not f.history]
        if missing:
            raise ValueError(f"sequence features {missing} need a history column; "
                             "list candidate-only columns under item_features")
        booster_only = [f.name for f in self.sequence_features if f.booster_only]
        if booster_only:
            raise ValueError(f"sequence features {booster_only} cannot be booster_only: the candidate and its "
                             "history feed the light tower's interest extractor, which is served; declare a "
                             "booster-only column under user_features or item_features (no history)")
        self._check_groups()
        if isinstance(self.negative_rate, bool) or not isinstance(self.negative_rate, (int, float)) \
                or not (math.isfinite(self.negative_rate) and 0 < self.negative_rate <= 1):
            raise ValueError(f"negative_rate must be in (0, 1] (the share of negatives the training log kept), "
                             f"got {self.negative_rate!r}")
        object.__setattr__(self, "negative_rate", float(self.negative_rate))
        # the user id may also be a feature; any other repeated name is an error
        names = [*self.scalar_id_columns, *self.history_columns, *self.length_columns[1:], *self.extra_columns,
                 self.label,
                 *([self.weight] if self.weight else [])]
        if self.label == self.user_id:
            names.append(self.label)
        duplicates = sorted({c for c in names if names.count(c) > 1})
        if duplicates:
            raise ValueError(f"FeatureSpec names these columns twice: {duplicates}")

    def _check_groups(self) -> None:
        if not self.sequence_groups:
            return
        names = [g.name for g in self.sequence_groups]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"sequence_groups: names {repeated} are used twice")
        sequence = [f.name for f in self.sequence_features]
        grouped = [n for g in self.sequence_groups for n in g.features]
        unknown = [n for n in grouped if n not in sequence]
        if unknown:
            raise ValueError(f"sequence_groups: {unknown} are not sequence features (those are {sequence})")
        twice = sorted({n for n in grouped if grouped.count(n) > 1})
        if twice:
            raise ValueError(f"sequence_groups: {twice} are in more than one group")
        left = [n for n in sequence if n not in grouped]
        if left:
            raise ValueError(f"sequence_groups: sequence features {left} are in no group; put each in exactly one")

    # ----- column groups -------------------------------------------------------------------
    @property
    def id_features(self) -> tuple:
        """Every IdFeature (one embedding table each)."""
        return self.sequence_features + self.user_features + self.item_features

    @property
    def history_columns(self) -> tuple:
        """Every list column of the behaviour sequences, group by group: each group's feature
        histories, then its side columns (without groups: the sequence features' histories)."""
        return tuple(c for group in self.groups for c in self.group_columns(group))

    # ----- behaviour sequences (sequence groups) ---------------------------------------------
    @property
    def groups(self) -> tuple:
        """The behaviour sequences: the declared ``sequence_groups``, else one group (``history``)
        of every sequence feature."""
        if self.sequence_groups:
            return self.sequence_groups
        return (SequenceGroup("history", tuple(f.name for f in self.sequence_features)),)

    def group_features(self, group: SequenceGroup) -> tuple:
        """The IdFeatures of a group, in the group's order."""
        return tuple(self.feature(name) for name in group.features)

    def group_columns(self, group: SequenceGroup) -> tuple:
        """A group's list columns: its features' histories, then its side columns."""
        return tuple(f.history for f in self.group_features(group)) + group.side_columns

    @property
    def length_columns(self) -> tuple:
        """Each group's history-length input (added by the pipeline, not read from the log):
        ``hist_len`` for the first group, ``hist_len_<name>`` for the others."""
        return tuple(HIST_LEN if i == 0 else f"{HIST_LEN}_{g.name}" for i, g in enumerate(self.groups))

    @property
    def side_features(self) -> tuple:
        """Every sequence-only side column (:class:`rocket_ctr.features.types.SideFeature`)."""
        return tuple(f for g in self.groups for f in g.side_features)

    def group_of(self, column: str) -> int:
        """The index of the group a history or side column belongs to."""
        for i, group in enumerate(self.groups):
            if column in self.group_columns(group):
                return i
        raise KeyError(column)

    @property
    def scalar_id_columns(self) -> tuple:
        return tuple(f.name for f in self.id_features)

    @property
    def columns(self) -> tuple:
        """Every column the pipeline reads (label and weight included; timestamp excluded)."""
        cols = (self.user_id,) + self.scalar_id_columns + self.history_columns + self.extra_columns + (self.label,)
        cols += (self.weight,) if self.weight else ()
        return tuple(dict.fromkeys(cols))

    # ----- numeric and multi-hot columns (rocket_ctr.features.types) ------------------------
    @property
    def extra_features(self) -> tuple:
        """Every NumericFeature and MultiHotFeature (numeric first)."""
        return self.numeric_features + self.multi_hot_features

    @property
    def extra_columns(self) -> tuple:
        """The columns of the numeric and multi-hot features (multi-hot weight columns included)."""
        return tuple(c for f in self.extra_features for c in f.columns)

    def extra_columns_of(self, side: str) -> tuple:
        """The extra columns of one side (``"user"`` or ``"item"``)."""
        return tuple(c for f in self.extra_features if f.side == side for c in f.columns)

    @property
    def user_columns(self) -> tuple:
        """Every user-side input column: profile ids, then user-side numeric / multi-hot columns
        (one value per request in ``serving_default``)."""
        return tuple(f.name for f in self.user_features) + self.extra_columns_of("user")

    def extra_feature(self, column: str):
        """The NumericFeature or MultiHotFeature a column (or weight column) belongs to."""
        for f in self.extra_features:
            if column in f.columns:
                return f
        raise KeyError(column)

    @property
    def booster_only_features(self) -> tuple:
        """The user and item features only the booster reads (``booster_only``), user side first."""
        return tuple(f for f in self.user_features + self.item_features if f.booster_only)

    @property
    def booster_only_extra_features(self) -> tuple:
        """The numeric and multi-hot features only the booster reads."""
        return tuple(f for f in self.extra_features if f.booster_only)

    @property
    def booster_only_columns(self) -> tuple:
        return tuple(f.name for f in self.booster_only_features + self.booster_only_extra_features)

    def served(self) -> "FeatureSpec":
        """The spec of what serving knows: this one without its booster-only features (the light
        tower's embedding bank, its export's signatures and metadata, and the columns a request or
        a log scored by that export needs)."""
        if not self.booster_only_features and not self.booster_only_extra_features:
            return self
        return dataclasses.replace(
            self, user_features=tuple(f for f in self.user_features if not f.booster_only),
            item_features=tuple(f for f in self.item_features if not f.booster_only),
            numeric_features=tuple(f for f in self.numeric_features if not f.booster_only),
            multi_hot_features=tuple(f for f in self.multi_hot_features if not f.booster_only))

    def for_tower(self, tower: str) -> "FeatureSpec":
        """The columns one tower's path reads: :meth:`served` for the light tower, all for the booster."""
        return self if tower == "booster" else self.served()

    def feature(self, name: str) -> IdFeature:
        """The IdFeature of a column (or history column); a side column's SideFeature."""
        for f in self.id_features:
            if name in (f.name, f.history):
                return f
        for g in self.sequence_groups:
            for f in g.side_features:
                if f.name == name:
                    return f
        raise KeyError(name)

    def with_buckets(self, **buckets: int) -> "FeatureSpec":
        """A copy whose named features hash into the given numbers of buckets (e.g. sized to a log).

        Raises:
            KeyError: a name that is not one of this spec's features.
        """
        unknown = sorted(set(buckets) - set(self.scalar_id_columns))
        if unknown:
            raise KeyError(f"no features {unknown} in this FeatureSpec")
        resized = {group: tuple(dataclasses.replace(f, buckets=int(buckets[f.name])) if f.name in buckets else f
                                for f in getattr(self, group))
                   for group in ("sequence_features", "user_features", "item_features")}
        return dataclasses.replace(self, **resized)
