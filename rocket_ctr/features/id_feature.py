"""IdFeature: one categorical column and its embedding table (hash buckets or a vocabulary).

Also the accepted id dtypes and id hashes (``FeatureSpec.id_hash``). Pure Python: no TensorFlow.
"""
from __future__ import annotations

import dataclasses

ID_DTYPES = ("int64", "string")
# How hashed ids become rows: "splitmix64" mixes an int64 id arithmetically (string ids: farmhash);
# "string" hashes every id's decimal text with farmhash, the mapping of a saved spec without an
# ``id_hash`` key (5x slower on int64 ids: the text is built for every history step of every row).
ID_HASHES = ("splitmix64", "string")
ID_HASH_BEFORE_FIELD_EXISTED = "string"


@dataclasses.dataclass(frozen=True)
class IdFeature:
    """One categorical column and its embedding table.

    Args:
        name: candidate-side (or user-side) column name, e.g. ``item_id``.
        history: name of the list column holding the same kind of id in the behaviour sequence
            (e.g. ``hist_item_id``); it shares this feature's embedding table. None for none.
        dtype: ``"int64"`` or ``"string"``.
        buckets: hash buckets (the default mapping; every id, seen or not, gets a row).
        vocabulary: optional known ids; when given, ids map to rows 1..len(vocabulary) and every
            other id to the OOV row 0 instead of hashing.
        booster_only: a column known when training but not when serving (e.g. the slot an ad was
            shown in): only the booster reads it; the light tower, its export and every request
            to that export never see it. User or item features only (not sequence features).
        wide_only: a booster-only column read by the booster's wide crosses alone
            (``--booster-wide-crosses``), with no embedding table in the booster's MLP input: a
            user id too sparse to embed, whose (user, category) pairs the crosses learn.
    """

    name: str
    history: str | None = None
    dtype: str = "int64"
    buckets: int = 100_000
    vocabulary: tuple | None = None
    booster_only: bool = False
    wide_only: bool = False

    def __post_init__(self):
        for flag in ("booster_only", "wide_only"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"feature {self.name!r}: {flag} must be true or false, got {getattr(self, flag)!r}")
        if self.wide_only and not self.booster_only:
            raise ValueError(f"feature {self.name!r}: wide_only needs booster_only true too "
                             "(only the booster's wide part reads it)")
        if self.dtype not in ID_DTYPES:
            raise ValueError(f"feature {self.name!r}: dtype must be one of {ID_DTYPES}, got {self.dtype!r}")
        if self.vocabulary is None and self.buckets < 1:
            raise ValueError(f"feature {self.name!r}: buckets must be >= 1, got {self.buckets}")
        if self.vocabulary is not None:
            object.__setattr__(self, "vocabulary", tuple(self.vocabulary))

    @property
    def num_rows(self) -> int:
        """Rows of the embedding table this feature needs."""
        return len(self.vocabulary) + 1 if self.vocabulary is not None else self.buckets
