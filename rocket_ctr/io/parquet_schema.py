"""The Parquet side of a FeatureSpec: the schema a log in it has, and the checks a reader applies.

Writers (the generator, converters, test fixtures) build their Arrow schema with
:func:`arrow_schema`; readers check files with :func:`validate_schema` and every record batch with
:func:`check_batch`, so a bad log fails with a message naming the file, the column and what was
expected. pyarrow only, no TensorFlow.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rocket_ctr.errors import InputError
from rocket_ctr.features.checks import check_extra_batch, check_numeric_files, extra_expected_types
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.sample_weights import EXPECTED as WEIGHTS_EXPECTED
from rocket_ctr.io.sample_weights import check_weight_files, is_weight_type


def arrow_schema(spec: FeatureSpec, user_id: pa.DataType = pa.int64()) -> pa.Schema:
    """The Arrow schema of a click log in ``spec`` (``arrow_schema(FeatureSpec())`` = the reference log).

    Args:
        spec: the log's FeatureSpec.
        user_id: type of the user id column when it is not itself one of the features.
    Returns:
        Columns in the order: user id, candidate ids, their histories, side columns, user profile, extra
        candidate columns, numeric (float64) and multi-hot (list; weights list<float64>) columns,
        timestamp (int64, if any), label (int64), weight (float64, if any).
    """
    def arrow(dtype: str) -> pa.DataType:
        return pa.string() if dtype == "string" else pa.int64()

    fields = {spec.user_id: user_id}
    fields.update((f.name, arrow(f.dtype)) for f in spec.sequence_features)
    fields.update((f.history, pa.list_(arrow(f.dtype))) for f in spec.sequence_features)
    fields.update((f.name, pa.list_(arrow(f.dtype))) for f in spec.side_features)
    fields.update((f.name, arrow(f.dtype)) for f in spec.user_features + spec.item_features)
    fields.update((f.name, pa.float64()) for f in spec.numeric_features)
    for f in spec.multi_hot_features:
        fields[f.name] = pa.list_(arrow(f.dtype))
        if f.weights:
            fields[f.weights] = pa.list_(pa.float64())
    if spec.timestamp:
        fields[spec.timestamp] = pa.int64()
    fields[spec.label] = pa.int64()
    if spec.weight:
        fields[spec.weight] = pa.float64()
    return pa.schema(list(fields.items()))


def _describe(arrow_type: pa.DataType) -> str:
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return "list<" + str(arrow_type.value_type) + ">"
    return str(arrow_type)


def _is_int(t) -> bool:
    return pa.types.is_integer(t)


def is_string(t) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _expected_types(spec: FeatureSpec) -> dict[str, tuple[str, callable]]:
    """column -> (description of what is expected, predicate on the arrow type)."""
    is_list = lambda t: pa.types.is_list(t) or pa.types.is_large_list(t)  # noqa: E731
    expected = {
        spec.label: ("integer 0/1 labels (int64)", lambda t: _is_int(t) or pa.types.is_boolean(t)),
        spec.user_id: ("int64 or string user ids", lambda t: _is_int(t) or is_string(t)),
    }
    if spec.weight:
        expected[spec.weight] = (WEIGHTS_EXPECTED, is_weight_type)
    for f in spec.id_features:
        scalar = _is_int if f.dtype == "int64" else is_string
        expected[f.name] = (f"{f.dtype} scalar ids", scalar)
        if f.history:
            expected[f.history] = (f"list<{f.dtype}> history", lambda t, s=scalar: is_list(t) and s(t.value_type))
    for f in spec.side_features:
        scalar = _is_int if f.dtype == "int64" else is_string
        expected[f.name] = (f"list<{f.dtype}> side column of a behaviour sequence",
                            lambda t, s=scalar: is_list(t) and s(t.value_type))
    expected.update(extra_expected_types(spec))
    return expected


def open_parquet(path: str) -> pq.ParquetFile:
    """Opens one file's footer (schema, row groups, statistics), turning corrupt/truncated/non-Parquet
    files into InputError."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as err:
        raise InputError(f"{path}: not a readable Parquet file ({str(err).splitlines()[0]})") from None


def validate_schema(files: list[str], spec: FeatureSpec) -> tuple[pa.Schema, int]:
    """Checks every file has the spec's columns with the expected types, that rows exist and that
    the footers' statistics show labels of 0 and 1 only (one footer read per file).

    Columns the spec does not use are allowed and ignored (logs carry extra columns).

    Returns:
        ``(schema of the first file, rows over all files)``.
    Raises:
        InputError: naming the file, the column and what was expected.
    """
    expected = _expected_types(spec)
    first, total_rows, user_id_type, footers = None, 0, None, []
    for path in files:
        parquet = open_parquet(path)
        schema = parquet.schema_arrow
        for column, (what, ok) in expected.items():
            if column not in schema.names:
                raise InputError(f"{path}: missing column {column!r} (expected {what}); file has {schema.names}")
            arrow_type = schema.field(column).type
            if not ok(arrow_type):
                raise InputError(f"{path}: column {column!r} has type {_describe(arrow_type)}, expected {what}")
        this_user_type = "string" if is_string(schema.field(spec.user_id).type) else "int"
        if user_id_type and this_user_type != user_id_type:
            raise InputError(f"{path}: column {spec.user_id!r} is {this_user_type} here "
                             f"but {user_id_type} in {files[0]}")
        user_id_type = this_user_type
        total_rows += parquet.metadata.num_rows
        footers.append((path, parquet.metadata))
        first = first or schema
    if total_rows == 0:
        raise InputError(f"empty dataset: {len(files)} file(s) hold no rows ({files[0]} ...)")
    if spec.weight:
        check_weight_files(files, spec.weight)
    check_numeric_files(files, spec)
    for path, metadata in footers:
        _check_label_statistics(path, metadata, spec.label)
    return first, total_rows


def _check_label_statistics(path: str, metadata: pq.FileMetaData, label: str) -> None:
    """Nulls and out-of-range labels seen in the row groups' footer statistics (no data read);
    row groups written without statistics are left to the reader's batch checks."""
    if label not in metadata.schema.names:  # Parquet leaf names: a label of another nesting is left alone
        return
    index = metadata.schema.names.index(label)
    for group in range(metadata.num_row_groups):
        stats = metadata.row_group(group).column(index).statistics
        if stats is None:
            continue
        if stats.has_null_count and stats.null_count:
            raise InputError(f"{path}: column {label!r} has {stats.null_count} null label(s) in row group "
                             f"{group}; labels must be 0 or 1")
        if stats.has_min_max and isinstance(stats.min, (int, float)) and (stats.min < 0 or stats.max > 1):
            bad = stats.min if stats.min < 0 else stats.max
            raise InputError(f"{path}: column {label!r} holds {bad}; labels must be 0 or 1")


def check_batch(batch: pa.RecordBatch, spec: FeatureSpec, where: str, first_row: int = 0) -> None:
    """Raises InputError for nulls, labels outside {0,1} and misaligned histories.

    ``first_row`` is the batch's first row number within ``where`` (for the message).
    """
    for column in (spec.label, spec.user_id, *spec.scalar_id_columns, *spec.history_columns):
        nulls = batch.column(column).null_count
        if nulls:
            raise InputError(f"{where}: column {column!r} has {nulls} null value(s); expected none")
    for column in spec.history_columns:
        nulls = pc.list_flatten(batch.column(column)).null_count
        if nulls:
            raise InputError(f"{where}: column {column!r} has {nulls} null id(s) inside its lists; expected none")
    label = batch.column(spec.label)
    if pa.types.is_integer(label.type):
        bounds = pc.min_max(label)
        low, high = bounds["min"].as_py(), bounds["max"].as_py()
        if low < 0 or high > 1:
            bad = low if low < 0 else high
            raise InputError(f"{where}: column {spec.label!r} holds {bad}; labels must be 0 or 1")
    for group in spec.groups:  # each group's lists aligned step by step (groups may differ)
        columns = spec.group_columns(group)
        lengths = pc.list_value_length(batch.column(columns[0]))
        for column in columns[1:]:
            this = pc.list_value_length(batch.column(column))
            if not pc.all(pc.equal(lengths, this)).as_py():
                row = int(np.flatnonzero(lengths.to_numpy() != this.to_numpy())[0])
                which = f"the lists of sequence group {group.name!r}" if spec.sequence_groups else "history lists"
                raise InputError(f"{where}: {columns[0]!r} and {column!r} have different lengths in row "
                                 f"{first_row + row} ({lengths[row].as_py()} and {this[row].as_py()} steps); "
                                 f"{which} must be aligned step by step")
    check_extra_batch(batch, spec, where, first_row)
