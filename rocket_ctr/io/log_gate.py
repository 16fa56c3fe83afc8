"""The one gate a click log passes before anything reads it: paths, Parquet, schema, types, rows.

Every entry that reads a log (training and its validation planner, evaluation, batch scoring,
replay, inspection, export verification, local clusters, warm starts) calls :func:`check_log` first,
so a bad file stops the command with one line naming the file and the problem, before a run
folder, an output folder or a worker process exists. What only a full read can see (a null id in
row 7 million) is still checked batch by batch as the reader streams (``parquet_schema.check_batch``).
pyarrow only, no TensorFlow.
"""
from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from rocket_ctr.errors import InputError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.parquet_schema import validate_schema


@dataclass(frozen=True)
class CheckedLog:
    """A log that passed :func:`check_log`.

    Attributes:
        files: its Parquet files, sorted, each once.
        schema: the first file's schema.
        num_rows: rows over all files (from the Parquet footers).
    """
    files: list
    schema: pa.Schema
    num_rows: int


def resolve_paths(paths: str | os.PathLike | list) -> list[str]:
    """Expands files, folders (all ``*.parquet`` below them) and globs into a sorted file list.

    Raises:
        InputError: a path matches nothing, or nothing Parquet-like is found.
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InputError("no input path given")
    files: list[str] = []
    for item in items:
        item = str(item)
        if os.path.isdir(item):
            found = sorted(str(p) for p in Path(item).rglob("*.parquet"))
            if not found:
                raise InputError(f"{item}: folder holds no *.parquet files")
            files += found
        elif os.path.isfile(item):
            files.append(item)
        else:
            found = sorted(f for f in globlib.glob(item, recursive=True) if os.path.isfile(f))
            if not found:
                raise InputError(f"{item}: no such file, folder or matching glob")
            files += found
    return list(dict.fromkeys(files))


def find_feature_spec_path(paths) -> Path | None:
    """Where the ``feature_spec.json`` written beside a data set is: the first data file's
    folder or up to 2 folders above (generators and converters write it at the data set's root)."""
    first = Path(resolve_paths(paths)[0]).resolve()
    for folder in first.parents[:3]:
        candidate = folder / "feature_spec.json"
        if candidate.is_file():
            return candidate
    return None


def find_feature_spec(paths) -> FeatureSpec | None:
    """The FeatureSpec written beside a data set (see :func:`find_feature_spec_path`), or None."""
    path = find_feature_spec_path(paths)
    return FeatureSpec.load(path) if path else None


def check_log(paths, spec: FeatureSpec) -> CheckedLog:
    """Checks a log before anything else reads it.

    Args:
        paths: a Parquet file, a folder (searched recursively), a glob, or a list of them.
        spec: the FeatureSpec the log must follow.
    Returns:
        A :class:`CheckedLog`.
    Raises:
        InputError: one line naming the file and what is wrong: a path that matches nothing, a file
            that is not readable Parquet (text, truncated, corrupt), a missing column, a column of
            the wrong type (a list where a scalar belongs, a float label), no rows at all, or labels
            whose footer statistics show nulls or values other than 0 and 1.
    """
    files = resolve_paths(paths)
    schema, num_rows = validate_schema(files, spec)
    return CheckedLog(files, schema, num_rows)
