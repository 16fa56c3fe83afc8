"""Shared pieces of the click-log converters: stable ids, input checks, history lists, output.

Every converter writes ``DIR/train/part-*.parquet``, ``DIR/test/part-*.parquet``,
``DIR/feature_spec.json`` and ``DIR/convert_summary.json`` into a hidden staging folder beside
``DIR`` and renames it into place only when everything succeeded.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import itertools
import json
import os
import secrets
import shutil
import zlib
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rocket_ctr.errors import InputError
from rocket_ctr.features.spec import FeatureSpec

ROWS_PER_PART = 1_000_000  # rows per Parquet part file (several files let workers shard by file)
ROW_GROUP_ROWS = 131_072  # small row groups keep the streaming reader's memory low
VOCAB_LIMIT = 1_000  # features with at most this many distinct values get an exact vocabulary
SUMMARY = "convert_summary.json"


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


# ----- writing outputs ---------------------------------------------------------------------
class SplitWriter:
    """Writes one split as ``folder/part-00000.parquet, ...``, starting a new part every ``rows_per_part``."""

    def __init__(self, folder: Path, rows_per_part: int = ROWS_PER_PART):
        self.folder, self.rows_per_part = folder, rows_per_part
        folder.mkdir(parents=True, exist_ok=True)
        self.rows = self.positives = self._part_rows = 0
        self._parts = 0
        self._writer = None

    def write(self, table: pa.Table) -> None:
        """Appends ``table``'s rows (every call must have the same schema)."""
        self.rows += table.num_rows
        self.positives += int(np.asarray(table.column("label")).sum())
        start = 0
        while start < table.num_rows:
            if self._writer is None:
                path = self.folder / f"part-{self._parts:05d}.parquet"
                self._writer = pq.ParquetWriter(str(path), table.schema)
                self._parts += 1
            take = min(self.rows_per_part - self._part_rows, table.num_rows - start)
            self._writer.write_table(table.slice(start, take), row_group_size=ROW_GROUP_ROWS)
            start += take
            self._part_rows += take
            if self._part_rows >= self.rows_per_part:
                self._close_part()

    def _close_part(self) -> None:
        self._writer.close()
        self._writer, self._part_rows = None, 0

    def close(self, schema: pa.Schema) -> dict:
        """Finishes the split (an empty split still gets one empty part with ``schema``).

        Returns:
            ``{"rows", "ctr", "files"}`` for the summary.
        """
        if self._writer is not None:
            self._close_part()
        if self._parts == 0:
            pq.write_table(schema.empty_table(), str(self.folder / "part-00000.parquet"))
            self._parts = 1
        ctr = self.positives / self.rows if self.rows else None
        return {"rows": self.rows, "ctr": ctr, "files": self._parts}


def check_out_dir(out: Path) -> None:
    """Refuses an ``--out`` that exists and is neither empty nor an earlier conversion's output.

    Checked before the (long) conversion starts, so a typo such as ``--out .`` fails fast.
    """
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / SUMMARY).exists())):
        raise InputError(f"--out {out}: exists and is not an earlier `rocket-ctr convert` output; "
                         f"choose a new or empty folder")


def _sibling(out: Path, role: str) -> Path:
    """A new hidden folder beside ``out`` (made with the umask's permissions, unlike mkdtemp's 0700)."""
    while True:
        path = out.parent / f".{out.name}.{role}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yields a staging folder beside ``out``; on success it replaces ``out``, on error it is deleted.

    An existing ``out`` is moved aside, the staging folder renamed in, then the old one removed,
    so a failed conversion never leaves half an output or destroys an existing one.
    """
    out = Path(out)
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = _sibling(out, "staging")
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = _sibling(out, "old")
        os.replace(out, old / out.name)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_spec(path: Path, **spec: object) -> None:
    """Validates ``FeatureSpec(**spec)`` and saves it as JSON."""
    FeatureSpec.from_dict(spec).save(path)


def write_summary(path: Path, summary: dict) -> None:
    """Writes the conversion summary (rows per split, CTR, source files, counts) as JSON."""
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
