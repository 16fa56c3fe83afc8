"""Shared input side of the click-log converters: stable ids, input files, CSV reading, grouping.

What they write (parts, spec, summary, the staging folder) is :mod:`rocket_ctr.datasets.output`.
"""
from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from rocket_ctr.errors import InputError

VOCAB_LIMIT = 1_000  # features with at most this many distinct values get an exact vocabulary


# ----- ids ---------------------------------------------------------------------------------
def stable_id(text: str) -> int:
    """A deterministic non-negative 62-bit id for a string id (same on every machine and run)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


def id_feature(name: str, values: np.ndarray | Sequence, *, history: str | None = None,
               dtype: str = "int64") -> dict:
    """An ``IdFeature`` (as a dict) sized from the distinct ids observed in the data.

    Args:
        name: column name; ``history`` the list column sharing its table, if any.
        values: every distinct id observed (candidate and history side together).
        dtype: ``"int64"`` or ``"string"``.
    Returns:
        A vocabulary of the observed ids when there are at most ``VOCAB_LIMIT`` of them (no
        collisions, unseen ids go to the OOV row), else hash buckets = 2x the distinct count.
    """
    ids = distinct(np.asarray(values, dtype=object if dtype == "string" else np.int64))
    feature = {"name": name, "history": history, "dtype": dtype}
    if len(ids) <= VOCAB_LIMIT:
        cast = str if dtype == "string" else int
        feature.update(buckets=len(ids) + 1, vocabulary=[cast(v) for v in ids])
    else:
        feature.update(buckets=2 * len(ids), vocabulary=None)
    return feature


# ----- reading inputs ----------------------------------------------------------------------
def expand_inputs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given plus the (non-hidden) files inside any folder given.

    Raises:
        InputError: a path does not exist.
    """
    files: list[Path] = []
    for item in map(Path, paths):
        if item.is_dir():
            files += sorted(p for p in item.iterdir() if p.is_file() and not p.name.startswith("."))
        elif item.is_file():
            files.append(item)
        else:
            raise InputError(f"{item}: no such file or folder")
    return files


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as probe:
        return probe.read(2) == b"\x1f\x8b"


def _open_binary(path: Path):
    """Opens ``path`` for reading bytes, transparently un-gzipping ``.gz`` downloads."""
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def read_lines(path: Path, encoding: str, expected: str) -> Iterator[tuple[int, str]]:
    """Yields ``(line_number, text)`` for each non-empty line, newline stripped.

    Args:
        path: a text file (optionally gzip-compressed).
        encoding: the file's published encoding (``utf-8`` or ``latin-1``).
        expected: what a line should look like, for error messages.
    Raises:
        InputError: the file cannot be decoded with ``encoding`` (naming the line).
    """
    number = 0
    try:
        with _open_binary(path) as handle:
            for number, raw in enumerate(handle, 1):
                if b"\x00" in raw:
                    raise InputError(f"{path} line {number}: NUL bytes (UTF-16 or binary?); expected "
                                     f"{encoding} text with {expected}")
                try:
                    text = raw.decode(encoding).rstrip("\r\n")
                except UnicodeDecodeError as err:
                    raise InputError(f"{path} line {number}: not {encoding} text ({err.reason} at byte "
                                     f"{err.start}); expected {expected}") from None
                if text.strip():
                    yield number, text
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path} line {number + 1}: cannot read ({err})") from None


def check_csv_header(path: Path, columns: Sequence[str]) -> None:
    """Checks the first line of a comma-separated file names ``columns`` (surrounding blanks allowed).

    Raises:
        InputError: wrong delimiter, wrong or missing columns, undecodable header.
    """
    want = ",".join(columns)
    try:
        with _open_binary(path) as handle:
            raw = handle.readline()
    except (OSError, EOFError, zlib.error) as err:
        raise InputError(f"{path}: cannot read ({err}); expected a CSV file with header {want}") from None
    if b"\x00" in raw:
        raise InputError(f"{path}: NUL bytes in the header (UTF-16 or binary?); expected UTF-8 CSV with header {want}")
    try:
        header = raw.decode("utf-8-sig").strip()
    except UnicodeDecodeError:
        raise InputError(f"{path} line 1: not UTF-8 text; expected the CSV header {want}") from None
    found = [name.strip().strip('"') for name in header.split(",")]
    if found == list(columns):
        return
    if len(found) == 1 and any(d in header for d in "\t;|"):
        raise InputError(f"{path} line 1: not comma-separated; expected the header {want}, got {header[:120]!r}")
    raise InputError(f"{path} line 1: expected the CSV header {want}, got {header[:120]!r}")


def iter_csv(path: Path, columns: dict[str, pa.DataType], *, block_size: int = 2 << 20,
             null_values: Sequence[str] = ("", "NULL")) -> Iterator[pa.RecordBatch]:
    """Streams a headed, comma-separated file as record batches of typed ``columns``.

    pyarrow's streaming reader reads ahead some 40 blocks, so memory is about 40 x ``block_size``
    (80 MB by default).

    Raises:
        InputError: bad header, wrong column count, unparseable value (file, text and position).
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    names = list(columns)
    check_csv_header(path, names)
    rows_read = 0
    try:
        reader = pacsv.open_csv(
            pa.input_stream(str(path), compression="gzip" if _is_gzip(path) else None),
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1, block_size=block_size),
            convert_options=pacsv.ConvertOptions(column_types=columns, null_values=list(null_values),
                                                 strings_can_be_null=True),
        )
        for batch in reader:
            rows_read += batch.num_rows
            yield batch
    except (pa.ArrowException, OSError) as err:
        located = _locate_bad_line(path, columns, null_values, first_line=rows_read + 2)
        if located is not None:
            number, reason = located
            raise InputError(f"{path} line {number}: {reason}; expected {len(names)} comma-separated "
                             f"columns {','.join(names)}") from None
        reason = str(err).splitlines()[0].replace("CSV parse error: ", "")
        raise InputError(f"{path} after line {rows_read + 1}: {reason}; expected {len(names)} "
                         f"comma-separated columns {','.join(names)}") from None


def _locate_bad_line(path: Path, columns: dict[str, pa.DataType], null_values: Sequence[str],
                     first_line: int, max_lines: int = 2_000_000) -> tuple[int, str] | None:
    """Finds the first line from ``first_line`` on that does not parse (pyarrow does not say which).

    Only runs on the error path; skipping the lines already read is a fast C-level scan.

    Returns:
        ``(line number, reason)``, or None if no bad line is found within ``max_lines``.
    """
    names = list(columns)
    with _open_binary(path) as handle:
        for _ in itertools.islice(handle, first_line - 1):
            pass
        for number, raw in enumerate(itertools.islice(handle, max_lines), first_line):
            try:
                fields = raw.decode("utf-8").rstrip("\r\n").split(",")
            except UnicodeDecodeError:
                return number, "not UTF-8 text"
            if fields == [""]:
                continue
            if len(fields) != len(names):
                return number, f"{len(fields)} field(s)"
            for name, value in zip(names, fields):
                if value in null_values or pa.types.is_string(columns[name]):
                    continue
                try:
                    int(value) if pa.types.is_integer(columns[name]) else float(value)
                except ValueError:
                    kind = "an integer" if pa.types.is_integer(columns[name]) else "a number"
                    return number, f"column {name!r} is {value!r}, expected {kind}"
    return None


def int_column(batch: pa.RecordBatch, name: str, fill: int = 0) -> np.ndarray:
    """A nullable integer column as int64 numpy, nulls (``""``/``NULL`` in the CSV) as ``fill``."""
    column = batch.column(name)
    if column.null_count:
        column = column.fill_null(fill)
    return column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


# ----- building rows -----------------------------------------------------------------------
def distinct(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (sort-based: much faster than ``np.unique`` on large int arrays)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def group_bounds(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each element of a sorted key array: index of its group's first and one-past-last element."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    first = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    sizes = np.diff(np.r_[first, n])
    return np.repeat(first, sizes), np.repeat(first + sizes, sizes)


def sorted_lookup(keys: np.ndarray, table_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each key in the sorted ``table_keys`` (0 where absent) and a found-mask."""
    if not len(table_keys):
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(table_keys, keys), len(table_keys) - 1)
    return at, table_keys[at] == keys


def history_lists(values: dict[str, np.ndarray], starts: np.ndarray, ends: np.ndarray,
                  max_history: int) -> dict[str, pa.ListArray]:
    """List columns holding ``values[name][max(start, end - max_history):end]`` per row.

    Args:
        values: name -> one array per sequence, rows' slices taken oldest -> newest.
        starts, ends: per output row, the slice of ``values`` that is its whole history.
    Returns:
        name -> ``list<int64>`` array, all of equal lengths, at most ``max_history`` long.
    """
    starts = np.maximum(starts, ends - max_history)
    lengths = ends - starts
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
    offsets_arrow = pa.array(offsets.astype(np.int32))
    return {name: pa.ListArray.from_arrays(offsets_arrow, pa.array(array[index], pa.int64()),
                                           type=pa.list_(pa.int64()))
            for name, array in values.items()}
