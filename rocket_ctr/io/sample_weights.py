"""The optional per-row weight column of a click log (``FeatureSpec.weight``): its checks and values.

A weight must be a finite number >= 0 on every row. Logs are checked whole, one column read
in record batches, before anything trains or is written, so a bad weight deep in a log is
refused up front rather than after hours of training. pyarrow and numpy only.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from rocket_ctr.errors import InputError

EXPECTED = "finite numbers >= 0 (row weights)"


def is_weight_type(arrow_type: pa.DataType) -> bool:
    """Whether a column of this Arrow type can hold weights (integers or floats)."""
    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type)


def check_weights(array: pa.Array, column: str, where: str, first_row: int = 0) -> None:
    """Raises InputError naming ``where``, the column and the first bad row: null, NaN, ±inf or < 0."""
    values = array.to_numpy(zero_copy_only=False).astype(np.float64) if array.null_count == 0 else None
    if values is None:
        row = int(np.flatnonzero(pc.is_null(array).to_numpy(zero_copy_only=False))[0])
        raise InputError(f"{where}: column {column!r} is missing (null) in row {first_row + row}; expected {EXPECTED}")
    bad = ~(np.isfinite(values) & (values >= 0))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"{where}: column {column!r} holds {float(values[row])} in row {first_row + row}; "
                         f"expected {EXPECTED}")


def check_weight_files(files: list[str], column: str) -> None:
    """Reads only ``column`` of every file and checks every value (see :func:`check_weights`)."""
    for path in files:
        first_row = 0
        try:
            for batch in pads.dataset(path, format="parquet").to_batches(columns=[column]):
                check_weights(batch.column(0), column, path, first_row)
                first_row += batch.num_rows
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{path}: cannot read column {column!r} ({str(err).splitlines()[0]})") from None


def row_weights(batch: pa.RecordBatch, column: str | None) -> np.ndarray:
    """float32 weights of a record batch's rows: 1 each without a weight column, or when the
    batch was read without it (e.g. for scoring; readers check that the column exists)."""
    if column is None or column not in batch.schema.names:
        return np.ones(batch.num_rows, np.float32)
    return batch.column(column).to_numpy(zero_copy_only=False).astype(np.float32)
