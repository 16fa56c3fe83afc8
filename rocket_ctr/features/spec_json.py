"""The JSON form of a FeatureSpec (``feature_spec.json``): to and from dicts, saving and loading.

A mixin of :class:`rocket_ctr.features.spec.FeatureSpec`, so the methods stay ``FeatureSpec.load``,
``FeatureSpec.from_dict``, ... Pure Python: no TensorFlow.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Self

from rocket_ctr.errors import InputError
from rocket_ctr.features.id_feature import ID_HASH_BEFORE_FIELD_EXISTED


class SpecJson:
    """JSON (de)serialisation of a dataclass spec."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form; ``numeric_features`` / ``multi_hot_features`` / ``sequence_groups`` only when there are
        some."""
        data = dataclasses.asdict(self)
        for group in ("numeric_features", "multi_hot_features", "sequence_groups"):
            if not data[group]:
                del data[group]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict):
            raise ValueError(f"a FeatureSpec is a JSON object, got {type(data).__name__}")
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown FeatureSpec keys {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> Self:
        """A spec a run dir or an export saved: one without an ``id_hash`` key keeps the id
        mapping its weights were trained with (``"string"``), not today's default."""
        if isinstance(data, dict) and "id_hash" not in data:
            data = {**data, "id_hash": ID_HASH_BEFORE_FIELD_EXISTED}
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        """Writes the spec as JSON (e.g. ``feature_spec.json`` beside a data set)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, saved: bool = False) -> Self:
        """Reads a spec written by :meth:`save` (``saved``: by a run dir, see :meth:`from_saved`);
        raises InputError (a ValueError) naming the file."""
        try:
            data = json.loads(Path(path).read_text())
            return cls.from_saved(data) if saved else cls.from_dict(data)
        except (OSError, json.JSONDecodeError, TypeError, ValueError) as err:
            raise InputError(f"{path}: not a valid FeatureSpec JSON ({err})") from None
