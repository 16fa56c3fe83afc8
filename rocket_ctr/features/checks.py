"""The Parquet checks of numeric and multi-hot columns (``rocket_ctr.features.types``).

A numeric column must hold numbers (int or float; null and NaN mean missing and become the
feature's default), never strings or ±inf, and at least one real number in the whole log. Numeric
columns are checked whole, one column read in record batches, before anything trains or is written
(as the weight column is). A multi-hot column is a list of int64 or string ids; its optional
weight column a parallel list of finite numbers, as long as the ids on every row. pyarrow and
numpy only.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from rocket_ctr.errors import InputError

NUMERIC_EXPECTED = "numbers (float or int; null/NaN = missing, replaced by the feature's default)"


def _is_list(t) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _is_number(t) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _is_id(dtype: str):
    if dtype == "string":
        return lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
    return pa.types.is_integer


def extra_expected_types(spec) -> dict:
    """column -> (what is expected, predicate on its Arrow type) for numeric and multi-hot columns."""
    expected = {f.name: (NUMERIC_EXPECTED, _is_number) for f in spec.numeric_features}
    for f in spec.multi_hot_features:
        element = _is_id(f.dtype)
        expected[f.name] = (f"list<{f.dtype}> ids (multi-hot)", lambda t, e=element: _is_list(t) and e(t.value_type))
        if f.weights:
            expected[f.weights] = (f"list<float> weights of {f.name!r}'s elements",
                                   lambda t: _is_list(t) and _is_number(t.value_type))
    return expected


def check_numeric_files(files: list[str], spec) -> None:
    """Reads only the numeric columns of every file: no ±inf anywhere, some number in each column.

    Raises:
        InputError: naming the file, the column, the row and what was expected.
    """
    columns = [f.name for f in spec.numeric_features]
    if not columns:
        return
    seen = dict.fromkeys(columns, False)
    for path in files:
        first_row = 0
        try:
            for batch in pads.dataset(path, format="parquet").to_batches(columns=columns):
                for column, array in zip(columns, batch.columns):
                    values = array.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls -> NaN
                    infinite = np.isinf(values)
                    if infinite.any():
                        row = int(np.flatnonzero(infinite)[0])
                        raise InputError(f"{path}: column {column!r} holds {values[row]} in row {first_row + row}; "
                                         f"expected finite {NUMERIC_EXPECTED}")
                    seen[column] = seen[column] or bool(np.isfinite(values).any())
                first_row += batch.num_rows
        except (pa.ArrowException, OSError) as err:
            raise InputError(f"{path}: cannot read columns {columns} ({str(err).splitlines()[0]})") from None
    empty = [c for c, any_value in seen.items() if not any_value]
    if empty:
        raise InputError(f"{files[0]}{' ...' if len(files) > 1 else ''}: column {empty[0]!r} holds no number "
                         f"(every row is null or NaN); expected {NUMERIC_EXPECTED}")


def check_extra_batch(batch: pa.RecordBatch, spec, where: str, first_row: int = 0) -> None:
    """Per record batch: multi-hot weight lists as long as their id lists, every weight finite."""
    for f in spec.multi_hot_features:
        if not f.weights or f.weights not in batch.schema.names:
            continue
        ids, weights = batch.column(f.name), batch.column(f.weights)
        id_lengths = pc.fill_null(pc.list_value_length(ids), 0).to_numpy(zero_copy_only=False)
        weight_lengths = pc.fill_null(pc.list_value_length(weights), 0).to_numpy(zero_copy_only=False)
        differ = np.flatnonzero(id_lengths != weight_lengths)
        if len(differ):
            row = int(differ[0])
            raise InputError(f"{where}: column {f.weights!r} holds {weight_lengths[row]} weight(s) but {f.name!r} "
                             f"{id_lengths[row]} id(s) in row {first_row + row}; expected one weight per element")
        flat = pc.list_flatten(weights).to_numpy(zero_copy_only=False).astype(np.float64)
        bad = ~np.isfinite(flat)
        if bad.any():
            raise InputError(f"{where}: column {f.weights!r} holds {flat[np.flatnonzero(bad)[0]]} (null, NaN or "
                             f"inf); expected finite weights of {f.name!r}'s elements")
