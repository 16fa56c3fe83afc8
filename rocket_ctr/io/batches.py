"""Record batches as numpy columns: scalars [n] (multi-hot lists [n, max_len]), histories as flat values + offsets.

The reader's working unit: the newest ``max_history`` steps of each history are kept, rows can
be taken, concatenated and padded to a bucket's width without a Python loop per row.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.parquet_schema import is_string
from rocket_ctr.io.sample_weights import row_weights


def column_to_numpy(array: pa.Array) -> np.ndarray:
    """A pyarrow id column as numpy: int64, or an object array of UTF-8 bytes for strings."""
    if is_string(array.type):
        # object array of UTF-8 bytes: tf.data converts bytes ~5x faster than str (no re-encoding)
        binary = pa.large_binary() if pa.types.is_large_string(array.type) else pa.binary()
        return array.cast(binary).to_numpy(zero_copy_only=False)
    return array.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def dense_lists(array: pa.Array, width: int, pad) -> np.ndarray:
    """A list column as [n, width]: each row's first ``width`` elements, then ``pad`` (null lists
    and null elements read as padding). int64 or float32 for numbers, an object array of bytes for
    strings."""
    n = len(array)
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False).astype(np.int64)
    starts = array.offsets.to_numpy().astype(np.int64)[:-1] if n else np.zeros(0, np.int64)
    base = int(starts[0]) if n else 0
    values = array.values.slice(base, int(starts[-1] + lengths[-1] - base) if n else 0)
    values = pc.fill_null(values, pa.scalar(pad, values.type)) if values.null_count else values
    if pa.types.is_floating(values.type):
        flat = values.to_numpy(zero_copy_only=False).astype(np.float32)
        out = np.full((n, width), pad, np.float32)
    else:
        flat = column_to_numpy(values)
        out = np.full((n, width), pad, dtype=object) if flat.dtype == object else np.full((n, width), pad, np.int64)
    keep = np.minimum(lengths, width)
    rows = np.repeat(np.arange(n), keep)
    cols = np.arange(int(keep.sum())) - np.repeat(np.cumsum(keep) - keep, keep)
    out[rows, cols] = flat[starts[rows] - base + cols]
    return out


def extra_arrays(batch: pa.RecordBatch, spec: FeatureSpec) -> dict:
    """The numeric ([n] float32, NaN where null) and multi-hot ([n, max_len], padded; weights
    [n, max_len] float32, 0-padded) columns of a record batch."""
    out = {}
    for f in spec.numeric_features:
        column = batch.column(f.name)
        out[f.name] = column.to_numpy(zero_copy_only=False).astype(np.float32)  # nulls -> NaN
    for f in spec.multi_hot_features:
        ids = batch.column(f.name)
        if f.dtype == "int64" and ids.type.value_type != pa.int64():
            ids = ids.cast(pa.list_(pa.int64()))
        out[f.name] = dense_lists(ids, f.max_len, f.pad)
        if f.weights:
            weights = batch.column(f.weights).cast(pa.list_(pa.float32()))
            out[f.weights] = dense_lists(weights, f.max_len, 0.0)
    return out


class Chunk:
    """One validated record batch as numpy: scalars [n], label and weight [n] float32, histories
    as flat values + offsets, one kept-length array per behaviour sequence (sequence group)."""

    def __init__(self, batch: pa.RecordBatch, spec: FeatureSpec):
        self.n = batch.num_rows
        self.scalars = {c: column_to_numpy(batch.column(c)) for c in (spec.user_id, *spec.scalar_id_columns)}
        self.scalars.update(extra_arrays(batch, spec))  # numeric [n] and multi-hot [n, max_len]: taken row-wise too
        self.label = batch.column(spec.label).to_numpy(zero_copy_only=False).astype(np.float32)
        self.weight = row_weights(batch, spec.weight)
        self.histories, self.group = {}, {}
        self.group_lengths, self.trimmed = [], False
        for g, group in enumerate(spec.groups):
            lengths = np.zeros(self.n, dtype=np.int64)
            for column in spec.group_columns(group):
                lists = batch.column(column)
                offsets = lists.offsets.to_numpy().astype(np.int64)
                # a sliced batch's .values is its parent's whole child array: keep only this slice's
                values = lists.values.slice(offsets[0], offsets[-1] - offsets[0])
                self.histories[column] = (column_to_numpy(values), offsets - offsets[0])
                self.group[column] = g
                lengths = np.diff(offsets)
            self.group_lengths.append(np.minimum(lengths, spec.max_history))
            self.trimmed |= bool(len(lengths)) and int(lengths.max()) > spec.max_history  # steps to drop

    @property
    def lengths(self) -> np.ndarray:
        """The first sequence group's kept history lengths [n] (the only group without ``sequence_groups``)."""
        return self.group_lengths[0]

    @property
    def longest(self) -> np.ndarray:
        """Each row's longest kept history over the sequence groups [n] (its length bucket)."""
        return self.group_lengths[0] if len(self.group_lengths) == 1 else np.max(self.group_lengths, axis=0)

    def length_features(self, rows: np.ndarray, spec: FeatureSpec) -> dict:
        """{length input (``hist_len``, ``hist_len_<group>``...): [len(rows)] int32} of ``rows``."""
        return {name: lengths[rows].astype(np.int32) for name, lengths in zip(spec.length_columns, self.group_lengths)}

    @classmethod
    def _make(cls, n, scalars, label, weight, group_lengths, histories, group) -> "Chunk":
        chunk = object.__new__(cls)
        chunk.n, chunk.scalars, chunk.label, chunk.histories = n, scalars, label, histories
        chunk.weight, chunk.group_lengths, chunk.group = weight, group_lengths, group
        chunk.trimmed = False  # built from packed histories
        return chunk

    def packed(self, column: str) -> tuple[np.ndarray, np.ndarray]:
        """(values, offsets) of one history column holding only the kept (newest) steps."""
        values, offsets = self.histories[column]
        if not self.trimmed:  # offsets start at 0 and every step is kept: already packed
            return values, offsets
        lengths = self.group_lengths[self.group[column]]
        starts = offsets[1:] - lengths
        new_offsets = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        index = np.repeat(starts - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
        return values[index], new_offsets

    def take(self, rows: np.ndarray) -> "Chunk":
        """A new chunk holding only ``rows``."""
        histories = {}
        for column, (values, offsets) in self.histories.items():
            lengths = self.group_lengths[self.group[column]][rows]
            new_offsets = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum(lengths, out=new_offsets[1:])
            index = np.repeat(offsets[rows + 1] - lengths - new_offsets[:-1], lengths) + np.arange(new_offsets[-1])
            histories[column] = (values[index], new_offsets)
        return self._make(len(rows), {k: v[rows] for k, v in self.scalars.items()}, self.label[rows],
                          self.weight[rows], [lengths[rows] for lengths in self.group_lengths], histories, self.group)

    @classmethod
    def concat(cls, chunks: list) -> "Chunk":
        """One chunk holding the rows of all ``chunks`` in order."""
        histories = {}
        for column in chunks[0].histories:
            parts = [c.packed(column) for c in chunks]
            shifts = np.cumsum([0] + [offsets[-1] for _, offsets in parts[:-1]])
            offsets = np.concatenate([[0]] + [o[1:] + s for (_, o), s in zip(parts, shifts)]).astype(np.int64)
            histories[column] = (np.concatenate([v for v, _ in parts]), offsets)
        groups = len(chunks[0].group_lengths)
        return cls._make(sum(c.n for c in chunks),
                         {k: np.concatenate([c.scalars[k] for c in chunks]) for k in chunks[0].scalars},
                         np.concatenate([c.label for c in chunks]),
                         np.concatenate([c.weight for c in chunks]),
                         [np.concatenate([c.group_lengths[g] for c in chunks]) for g in range(groups)],
                         histories, chunks[0].group)

    def padded(self, rows: np.ndarray, width) -> dict[str, np.ndarray]:
        """{history column: [len(rows), width]}: the newest steps, left-aligned, zero/empty padded.

        ``width``: one for every group, or a sequence of one per sequence group. One gather/scatter
        index over the kept steps only per group, shared by its columns (their lists have equal
        lengths, checked on reading, so their offsets are equal too).
        """
        widths = [int(width)] * len(self.group_lengths) if np.ndim(width) == 0 else [int(w) for w in width]
        n = len(rows)
        indices = {}
        out = {}
        for column, (values, offsets) in self.histories.items():
            g = self.group[column]
            keep = self.group_lengths[g][rows]
            if g not in indices:  # the last `keep` steps of each list
                before = np.cumsum(keep) - keep  # exclusive prefix sum: each row's first step in the flat run
                steps = np.arange(before[-1] + keep[-1] if n else 0)
                dst = np.repeat(np.arange(n) * widths[g] - before, keep) + steps
                src = np.repeat(offsets[rows + 1] - keep - before, keep) + steps
                indices[g] = (dst, src)
            dst, src = indices[g]
            size = n * widths[g]
            flat = np.full(size, b"", dtype=object) if values.dtype == object else np.zeros(size, np.int64)
            flat[dst] = values[src]
            out[column] = flat.reshape(n, widths[g])
        return out
