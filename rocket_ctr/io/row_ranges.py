"""Row-range shards of a Parquet input: any input (one file, one row group) split into N contiguous,
near-equal shares of its rows, streamed back with bounded memory.

The files of an input are one sequence of rows, in the order :func:`rocket_ctr.io.log_gate.resolve_paths`
gives. Shard ``i`` of ``N`` takes rows ``[i*T//N, (i+1)*T//N)`` of it, so shard sizes differ by at
most one row, whatever the files and row groups, and every worker derives every shard's size from
the files' metadata alone (equal steps per worker without a collective). A shard is a list of
:class:`RowRange` pieces, one per file it touches; reading a piece decodes only the row groups that
overlap it, one record batch at a time, and slices off the rows outside it.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from rocket_ctr.errors import InputError


@dataclasses.dataclass(frozen=True)
class RowRange:
    """Rows ``[start, stop)`` of one Parquet file (row numbers count from the file's first row)."""

    fragment: pads.ParquetFileFragment
    start: int
    stop: int
    file_rows: int

    @property
    def path(self) -> str:
        return self.fragment.path

    @property
    def num_rows(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        """The file, plus the rows when the range is not the whole file (for messages)."""
        if self.start == 0 and self.stop == self.file_rows:
            return self.path
        return f"{self.path} (rows {self.start}-{self.stop - 1})"

    def batches(self, columns: list[str], batch_size: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        """``(first row in the file, record batch)`` pairs covering exactly this range, in order.

        Only the row groups overlapping the range are decoded; at most ``batch_size`` rows (one
        record batch) are held at a time.
        """
        if self.num_rows <= 0:
            return
        metadata = self.fragment.metadata
        sizes = np.array([metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)], dtype=np.int64)
        ends = np.cumsum(sizes)
        first = int(np.searchsorted(ends, self.start, side="right"))  # the group holding row `start`
        last = int(np.searchsorted(ends, self.stop - 1, side="right"))
        position = int(ends[first] - sizes[first])
        whole = first == 0 and last == len(sizes) - 1
        source = self.fragment if whole else self.fragment.subset(row_group_ids=list(range(first, last + 1)))
        for batch in source.to_batches(columns=columns, batch_size=batch_size, use_threads=True):
            lo, hi = max(self.start - position, 0), min(self.stop - position, batch.num_rows)
            if hi > lo:
                yield position + lo, batch.slice(lo, hi - lo) if (lo, hi) != (0, batch.num_rows) else batch
            position += batch.num_rows
            if position >= self.stop:
                return


def file_fragments(files: list[str]) -> list[pads.ParquetFileFragment]:
    """One fragment per file, in the order of ``files``."""
    fragments = {f.path: f for f in pads.dataset(files, format="parquet").get_fragments()}
    return [fragments[path] for path in files]


def shard_bounds(total_rows: int, num_shards: int, shard_index: int) -> tuple[int, int]:
    """``[lo, hi)``: shard ``shard_index``'s rows of ``total_rows`` split into ``num_shards`` contiguous shares.

    Raises:
        InputError: ``num_shards < 1`` or ``shard_index`` outside ``[0, num_shards)``.
    """
    if num_shards < 1:
        raise InputError(f"num_shards must be >= 1, got {num_shards}")
    if not 0 <= shard_index < num_shards:
        raise InputError(f"shard_index must be in [0, {num_shards}), got {shard_index}")
    return total_rows * shard_index // num_shards, total_rows * (shard_index + 1) // num_shards


def shard_sizes(total_rows: int, num_shards: int) -> list[int]:
    """Rows in each of ``num_shards`` shards (the same list on every worker)."""
    return [hi - lo for lo, hi in (shard_bounds(total_rows, num_shards, i) for i in range(num_shards))]


def plan_shard(fragments: list[pads.ParquetFileFragment], num_shards: int = 1, shard_index: int = 0) -> list[RowRange]:
    """Shard ``shard_index`` of ``num_shards`` of the rows of ``fragments`` (in order) as file pieces."""
    rows = [f.metadata.num_rows for f in fragments]
    lo, hi = shard_bounds(sum(rows), num_shards, shard_index)
    pieces, offset = [], 0
    for fragment, n in zip(fragments, rows):
        start, stop = max(lo - offset, 0), min(hi - offset, n)
        if stop > start:
            pieces.append(RowRange(fragment, start, stop, n))
        offset += n
    return pieces
