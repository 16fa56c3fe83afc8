"""Feature types beyond single ids: numeric columns and multi-hot (list of ids) columns.

Declared in a :class:`rocket_ctr.features.spec.FeatureSpec` (``numeric_features``, ``multi_hot_features``),
each on the user side (one value per request, sent once with batch 1 to the export) or the item
side (one per candidate). Both enter the towers' x beside the id embeddings
(:mod:`rocket_ctr.model.layers.features`); the raw -> model transform (bucketising, normalising, default
for missing values; id hashing / vocabulary for list elements) runs inside the model graph, so an
export takes raw floats and raw id lists.

Behaviour sequences: :class:`SequenceGroup` (``FeatureSpec.sequence_groups``) splits the sequence
features into several behaviour sequences, each pooled by its own interest extractor per tower,
with optional :class:`SideFeature` columns (sequence-only lists such as a behaviour type, appended
to that group's history keys; the query side gets zeros). Pure Python (no TensorFlow).
"""
from __future__ import annotations

import dataclasses
import math

SIDES = ("user", "item")
POOLINGS = ("sum", "mean")
MULTI_HOT_PAD = {"int64": -1, "string": b""}  # list elements equal to these are padding, ignored


def _finite(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _common(feature) -> None:
    if not isinstance(feature.name, str) or not feature.name:
        raise ValueError(f"a feature name must be a non-empty string, got {feature.name!r}")
    if feature.side not in SIDES:
        raise ValueError(f"feature {feature.name!r}: side must be one of {SIDES}, got {feature.side!r}")
    if not isinstance(feature.booster_only, bool):
        raise ValueError(f"feature {feature.name!r}: booster_only must be true or false, got {feature.booster_only!r}")


@dataclasses.dataclass(frozen=True)
class NumericFeature:
    """A numeric column (float or int; null / NaN = missing), one value per row.

    Args:
        name: the column.
        side: ``"user"`` (one value per user: sent once in a 1 x N request) or ``"item"``.
        boundaries: sorted bucket boundaries; the value is bucketised (bucket i holds values in
            ``[boundaries[i-1], boundaries[i])``, ``np.digitize``'s convention) into an embedding
            of the model's embedding width. None: no bucketising.
        num_buckets: how many equal-mass buckets ``rocket-ctr inspect --fit-spec`` computes
            boundaries for (0: leave ``boundaries`` as given).
        normalize: append ``(value - mean) / std`` as one scalar to the towers' x.
        mean, std: the normalisation (``--fit-spec`` computes them from the data).
        default: the value used where the column is null, NaN (or, at serving, ±inf).
        booster_only: known when training, never when serving (see ``IdFeature.booster_only``).
    """

    name: str
    side: str = "item"
    boundaries: tuple | None = None
    num_buckets: int = 0
    normalize: bool = False
    mean: float = 0.0
    std: float = 1.0
    default: float = 0.0
    booster_only: bool = False

    def __post_init__(self):
        _common(self)
        where = f"numeric feature {self.name!r}"
        if self.boundaries is not None:
            if isinstance(self.boundaries, (str, bytes)) or not hasattr(self.boundaries, "__iter__"):
                raise ValueError(f"{where}: boundaries must be a list of sorted numbers, got {self.boundaries!r}")
            values = tuple(_finite(b, f"{where}: every boundary") for b in self.boundaries)
            if not values:
                raise ValueError(f"{where}: boundaries must hold at least one number (or be null)")
            if any(b >= a for b, a in zip(values, values[1:])):
                raise ValueError(f"{where}: boundaries must be sorted ascending without repeats, got {list(values)}")
            object.__setattr__(self, "boundaries", values)
        if isinstance(self.num_buckets, bool) or not isinstance(self.num_buckets, int) or self.num_buckets < 0 \
                or self.num_buckets == 1:
            raise ValueError(f"{where}: num_buckets must be 0 (none) or an integer >= 2, got {self.num_buckets!r}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"{where}: normalize must be true or false, got {self.normalize!r}")
        object.__setattr__(self, "mean", _finite(self.mean, f"{where}: mean"))
        object.__setattr__(self, "std", _finite(self.std, f"{where}: std"))
        object.__setattr__(self, "default", _finite(self.default, f"{where}: default"))
        if self.std <= 0:
            raise ValueError(f"{where}: std must be > 0, got {self.std}")
        if self.boundaries is None and not self.num_buckets and not self.normalize:
            raise ValueError(f"{where}: give boundaries (or num_buckets for --fit-spec) and/or normalize: true; "
                             "otherwise the column is not used")

    @property
    def bucketized(self) -> bool:
        return self.boundaries is not None

    @property
    def fitted(self) -> bool:
        """Whether the model can be built: boundaries exist when buckets were asked for."""
        return not self.num_buckets or self.boundaries is not None

    @property
    def columns(self) -> tuple:
        return (self.name,)


@dataclasses.dataclass(frozen=True)
class MultiHotFeature:
    """A list-of-ids column (e.g. an ad's tags), its ids embedded and pooled into one vector.

    Args:
        name: the list<int64> or list<string> column.
        side: ``"user"`` or ``"item"`` (as :class:`NumericFeature`).
        dtype: ``"int64"`` or ``"string"`` (the element type).
        buckets, vocabulary: the id -> row mapping, as ``IdFeature``'s (hash buckets, or known ids
            -> rows 1..V and the rest -> OOV row 0).
        pooling: ``"sum"`` or ``"mean"`` of the element embeddings (mean: divided by the sum of
            the weights, i.e. the element count without weights; an empty list pools to zeros).
        weights: optional parallel list<float> column of per-element weights (same length as
            the ids on every row); None: every element weighs 1.
        max_len: elements kept per row (the first ``max_len``), in training and serving alike.
        booster_only: known when training, never when serving.

    Padding: a request pads its lists to one length with -1 (int64) or "" (string); such elements
    are ignored everywhere (in a log too).
    """

    name: str
    side: str = "item"
    dtype: str = "int64"
    buckets: int = 10_000
    vocabulary: tuple | None = None
    pooling: str = "mean"
    weights: str | None = None
    max_len: int = 16
    booster_only: bool = False

    def __post_init__(self):
        _common(self)
        where = f"multi-hot feature {self.name!r}"
        if self.dtype not in MULTI_HOT_PAD:
            raise ValueError(f"{where}: dtype must be one of {tuple(MULTI_HOT_PAD)}, got {self.dtype!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"{where}: pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if isinstance(self.max_len, bool) or not isinstance(self.max_len, int) or self.max_len < 1:
            raise ValueError(f"{where}: max_len must be an integer >= 1, got {self.max_len!r}")
        if self.vocabulary is None and (not isinstance(self.buckets, int) or self.buckets < 1):
            raise ValueError(f"{where}: buckets must be >= 1, got {self.buckets!r}")
        if self.vocabulary is not None:
            object.__setattr__(self, "vocabulary", tuple(self.vocabulary))
        if self.weights is not None and (not isinstance(self.weights, str) or not self.weights):
            raise ValueError(f"{where}: weights must be a column name or null, got {self.weights!r}")

    @property
    def num_rows(self) -> int:
        """Rows of the embedding table this feature needs."""
        return len(self.vocabulary) + 1 if self.vocabulary is not None else self.buckets

    @property
    def pad(self):
        """The padding element of this feature's lists (-1 or b"")."""
        return MULTI_HOT_PAD[self.dtype]

    @property
    def columns(self) -> tuple:
        return (self.name,) + ((self.weights,) if self.weights else ())


def build(cls, value, group: str):
    """A ``cls`` from an instance or its dict form (as in JSON), with a clear error."""
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{group}: expected {cls.__name__} objects or dicts, got {value!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ValueError(f"{group}: unknown {cls.__name__} keys {unknown} (known: {sorted(known)})")
    if "name" not in value:
        raise ValueError(f"{group}: {cls.__name__} {value!r} has no 'name'")
    return cls(**value)


GROUP_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


@dataclasses.dataclass(frozen=True)
class SideFeature:
    """A sequence-only side column: a list column aligned step by step with a sequence group's
    history (e.g. the behaviour type or a time-gap bucket of each step) that has no candidate-side
    counterpart. Its ids are embedded (own table, the model's width) and appended to that group's
    history keys; the candidate's query gets zeros of the same width there.

    Args:
        name: the list<int64> or list<string> column (as long as the group's histories on every row).
        dtype, buckets, vocabulary: the id -> row mapping, as ``IdFeature``'s.
    """

    name: str
    dtype: str = "int64"
    buckets: int = 1_000
    vocabulary: tuple | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a side feature name must be a non-empty string, got {self.name!r}")
        where = f"side feature {self.name!r}"
        if self.dtype not in MULTI_HOT_PAD:
            raise ValueError(f"{where}: dtype must be one of {tuple(MULTI_HOT_PAD)}, got {self.dtype!r}")
        if self.vocabulary is None and (isinstance(self.buckets, bool) or not isinstance(self.buckets, int)
                                        or self.buckets < 1):
            raise ValueError(f"{where}: buckets must be an integer >= 1, got {self.buckets!r}")
        if self.vocabulary is not None:
            object.__setattr__(self, "vocabulary", tuple(self.vocabulary))

    @property
    def num_rows(self) -> int:
        return len(self.vocabulary) + 1 if self.vocabulary is not None else self.buckets

    @property
    def history(self) -> str:
        """The list column (side features have no candidate column)."""
        return self.name


@dataclasses.dataclass(frozen=True)
class SequenceGroup:
    """One behaviour sequence with its own attention: some sequence features (candidate id +
    history column sharing a table) and optional sequence-only side columns, all aligned step by
    step; its history length is its lists' length.

    Args:
        name: the group's name (letters, digits, ``_``); names the length input of every group but
            the first (``hist_len_<name>``; the first group's is ``hist_len``) and its extractors.
        features: names of the FeatureSpec's ``sequence_features`` in this group (their
            embeddings are concatenated: the extractor's query and keys).
        side_features: :class:`SideFeature` columns appended to this group's keys only.
    """

    name: str
    features: tuple = ()
    side_features: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or not set(self.name) <= GROUP_NAME_CHARS:
            raise ValueError(f"a sequence group name must be letters, digits or '_', got {self.name!r}")
        if isinstance(self.features, (str, bytes)) or not hasattr(self.features, "__iter__"):
            raise ValueError(f"sequence group {self.name!r}: features must be a list of sequence feature names, "
                             f"got {self.features!r}")
        object.__setattr__(self, "features", tuple(self.features))
        if not self.features:
            raise ValueError(f"sequence group {self.name!r} needs at least one sequence feature (the candidate "
                             "side of its attention)")
        object.__setattr__(self, "side_features", tuple(build(SideFeature, f, f"sequence group {self.name!r} "
                                                               "side_features") for f in self.side_features))

    @property
    def side_columns(self) -> tuple:
        return tuple(f.name for f in self.side_features)
