"""Parquet click logs -> ``tf.data`` of (feature dict, label) batches, streamed with bounded memory.

Files are read through ``pyarrow.dataset`` one record batch at a time; nothing holds a whole file.
Each batch is validated (nulls, labels outside {0,1}, history lists of different lengths) and its
histories are truncated to their newest ``max_history`` steps. Rows are grouped by history length
into the FeatureSpec's ``history_buckets`` (e.g. 8/16/32/50) and every output batch is padded only
to its bucket's length: real logs are mostly short histories, so this skips most of the padding
and gives compiled (XLA) steps a handful of shapes instead of one per batch.

A batch is ``(features, label)``: ``features`` holds the user id, every id column of the spec
(raw ids, [B]), every history column ([B, L], left-aligned, zero-padded) and ``hist_len``
([B] int32, the true length; with several sequence groups each group has its own L and length
input ``hist_len_<group>``, and a batch is bucketed by its rows' longest history) and
``sample_weight`` ([B] float32: the spec's weight column, else 1); ``label`` is float32 [B].
"""
from __future__ import annotations

import contextlib
import copy
import re
from typing import Iterator

import numpy as np
import pyarrow as pa
import tensorflow as tf

from rocket_ctr.errors import InputError
from rocket_ctr.features.signatures import output_signature
from rocket_ctr.features.spec import WEIGHT, FeatureSpec
from rocket_ctr.io.batches import Chunk
from rocket_ctr.io.downsampling import keep_rows
from rocket_ctr.io.holdout import PARTS, Holdout
from rocket_ctr.io.log_gate import check_log
from rocket_ctr.io.parquet_schema import check_batch, is_string
from rocket_ctr.io.row_ranges import file_fragments, plan_shard, shard_sizes

READ_BATCH_ROWS = 32_768  # rows per pyarrow record batch (bounded memory, amortised overhead)
GROUP_BATCHES = 8  # batches handed to tf.data per Python call


# ----- the streaming reader ---------------------------------------------------------------
class ClickLogReader:
    """Streams validated, bucketed, padded numpy batches from Parquet click logs.

    Args:
        paths: file, folder, glob or list of them.
        spec: the FeatureSpec (default: the reference schema).
        batch_size: rows per output batch.
        shuffle: shuffle file order and rows within a window of ``shuffle_buffer`` rows.
        shuffle_buffer: rows held for shuffling and bucketing (bounds memory).
        seed: shuffling seed; epoch ``e`` uses ``seed + e``.
        num_shards, shard_index: this worker's share: a contiguous ~1/num_shards of the rows (by
            row range, see :mod:`rocket_ctr.io.row_ranges`: any file count and row groups).
        drop_remainder: drop the last partial batch of every bucket (fixed shapes for training).
        bucket_by_length: group rows into the spec's history buckets; off: rows of every length
            are batched together, each group of batches padded to its longest history.
        holdout: ``(Holdout, part)`` keeps only one side of a validation split (see
            :mod:`rocket_ctr.io.holdout`): ``"validation"`` = the held-out rows, ``"train"`` = the
            others; ``"fold"`` and ``"calibration"`` = the held-out rows outside and inside the
            calibration slice. None = all rows.
        negative_rate: keep every click and this share of the negatives, chosen by a hash of
            each row and ``seed`` (the same rows every epoch; see :mod:`rocket_ctr.io.downsampling`).
            1 = every row.
    """

    def __init__(self, paths, spec: FeatureSpec | None = None, *, batch_size: int = 1024,
                 shuffle: bool = False, shuffle_buffer: int = 65_536, seed: int = 0,
                 num_shards: int = 1, shard_index: int = 0, drop_remainder: bool = False,
                 bucket_by_length: bool = True, holdout: tuple[Holdout, str] | None = None,
                 negative_rate: float = 1.0):
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.spec = spec or FeatureSpec()
        checked = check_log(paths, self.spec)
        self.files, self.schema = checked.files, checked.schema
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.window = max(shuffle_buffer, batch_size)
        self.drop_remainder = drop_remainder
        self.bucket_by_length = bucket_by_length
        self.widths = self.spec.history_buckets if bucket_by_length else (self.spec.max_history,)
        self.user_id_string = is_string(self.schema.field(self.spec.user_id).type)
        self.fragments = file_fragments(self.files)
        self.units = plan_shard(self.fragments, num_shards, shard_index)  # RowRange pieces, in order
        if holdout is not None and holdout[1] not in PARTS:
            raise InputError(f"holdout part must be one of {PARTS}, got {holdout[1]!r}")
        self.holdout = holdout
        if not 0.0 < negative_rate <= 1.0:
            raise InputError(f"negative_rate must be in (0, 1], got {negative_rate}")
        self.negative_rate = negative_rate
        self.epoch = 0

    @property
    def num_rows(self) -> int:
        """Rows in this reader's share of the input (before any split by user)."""
        return sum(unit.num_rows for unit in self.units)

    def shard_rows(self, num_shards: int) -> list[int]:
        """Rows in each of ``num_shards`` shards of this input (the same list on every worker,
        from the files' metadata; sizes differ by at most one row)."""
        return shard_sizes(sum(f.metadata.num_rows for f in self.fragments), num_shards)

    def _chunks(self, rng: np.random.Generator) -> Iterator[Chunk]:
        order = rng.permutation(len(self.units)) if self.shuffle else range(len(self.units))
        columns = list(dict.fromkeys(self.spec.columns + (self.holdout[0].columns(self.spec) if self.holdout else ())))
        for i in order:
            unit = self.units[i]
            try:
                for first_row, batch in unit.batches(columns, READ_BATCH_ROWS):
                    check_batch(batch, self.spec, unit.path, first_row)  # row numbers count from the file's start
                    chunk = Chunk(batch, self.spec)
                    if self.holdout is not None:
                        chunk = chunk.take(np.flatnonzero(self.holdout[0].rows(batch, self.spec, self.holdout[1])))
                    if self.negative_rate < 1.0:
                        chunk = chunk.take(keep_rows(chunk, self.spec, self.negative_rate, self.seed))
                    if chunk.n:
                        yield chunk
            except (pa.ArrowException, OSError) as err:
                raise InputError(f"{unit.name}: cannot read Parquet data ({str(err).splitlines()[0]})") from None

    def _gather(self, chunk: Chunk, rows: np.ndarray, width) -> tuple[dict, np.ndarray]:
        """Features and labels of ``rows`` (shape [k, B]) as arrays of shape [k, B, ...]; ``width``:
        the padded history length, one for every sequence group or one per group."""
        features = {name: values[rows] for name, values in chunk.scalars.items()}
        for column, padded in chunk.padded(rows.reshape(-1), width).items():
            features[column] = padded.reshape(rows.shape + padded.shape[1:])
        for name, lengths in zip(self.spec.length_columns, chunk.group_lengths):
            features[name] = lengths[rows].astype(np.int32)
        features[WEIGHT] = chunk.weight[rows]
        return features, chunk.label[rows]

    def groups(self) -> Iterator[tuple[dict, np.ndarray]]:
        """One epoch as groups of up to ``GROUP_BATCHES`` same-shape batches: arrays [k, B, ...].

        Grouping amortises the Python -> tf.data hand-over over several batches.
        """
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        pending: list[Chunk] = []
        pending_rows = 0
        for chunk in self._chunks(rng):
            pending.append(chunk)
            pending_rows += chunk.n
            if pending_rows >= self.window:
                yield from self._flush(pending, rng, final=False)
                pending_rows = sum(c.n for c in pending)
        yield from self._flush(pending, rng, final=True)

    def __iter__(self) -> Iterator[tuple[dict, np.ndarray]]:
        """One epoch of single batches: ``(features, label)`` numpy arrays."""
        for features, label in self.groups():
            for i in range(len(label)):
                yield {name: values[i] for name, values in features.items()}, label[i]

    def _flush(self, pending: list, rng: np.random.Generator, final: bool):
        """Emits the window's full batches per bucket; keeps the remainder rows unless final."""
        window = Chunk.concat(pending) if len(pending) > 1 else pending[0] if pending else None
        pending.clear()
        if window is None or window.n == 0:
            return
        rows = rng.permutation(window.n) if self.shuffle else np.arange(window.n)
        bucket = np.searchsorted(np.asarray(self.widths), window.longest[rows], side="left")
        groups, leftover = [], []
        size, per_group = self.batch_size, self.batch_size * GROUP_BATCHES
        for b, width in enumerate(self.widths):
            members = rows[bucket == b]
            full = len(members) // size * size
            groups += [(members[s:min(s + per_group, full)].reshape(-1, size), width)
                       for s in range(0, full, per_group)]
            rest = members[full:]
            if final and len(rest) and not self.drop_remainder:
                groups.append((rest.reshape(1, -1), width))
            elif not final:
                leftover.append(rest)
        if self.shuffle:
            groups = [groups[i] for i in rng.permutation(len(groups))]
        for members, width in groups:
            if not self.bucket_by_length:  # mixed lengths: each group padded only to its longest history here
                width = [max(1, int(lengths[members].max())) for lengths in window.group_lengths]
            yield self._gather(window, members, width)
        if leftover:
            pending.append(window.take(np.sort(np.concatenate(leftover))))


@contextlib.contextmanager
def surfacing_input_errors():
    """Re-raises an InputError that crossed a ``tf.data`` boundary (as an OpError) as InputError."""
    try:
        yield
    except tf.errors.OpError as err:
        match = re.search(r"InputError: ([^\n]*)", err.message or "")
        if match:
            raise InputError(match.group(1)) from None
        raise


# ----- tf.data -----------------------------------------------------------------------------------
def make_dataset(paths, spec: FeatureSpec | None = None, *, batch_size: int = 1024,
                 shuffle: bool = False, shuffle_buffer: int = 65_536, seed: int = 0,
                 repeat: bool = False, num_shards: int = 1, shard_index: int = 0,
                 drop_remainder: bool = False, bucket_by_length: bool = True) -> tf.data.Dataset:
    """Parquet click log -> ``tf.data.Dataset`` of ``(features, label)`` batches.

    Args: as :class:`ClickLogReader`, plus ``repeat`` (endless, reshuffled every epoch).
    Returns:
        A prefetched dataset; the schema has been validated before this returns, value errors
        (nulls, bad labels, misaligned histories) raise InputError at the offending batch.
    """
    reader = ClickLogReader(paths, spec, batch_size=batch_size, shuffle=shuffle,
                            shuffle_buffer=shuffle_buffer, seed=seed, num_shards=num_shards,
                            shard_index=shard_index, drop_remainder=drop_remainder,
                            bucket_by_length=bucket_by_length)
    dataset = to_dataset(reader)
    if repeat:
        dataset = dataset.repeat()
    return dataset.prefetch(tf.data.AUTOTUNE)


def to_dataset(reader: ClickLogReader) -> tf.data.Dataset:
    """One epoch of ``reader`` (its next epoch each time it is iterated) as a ``tf.data.Dataset``."""
    features, label = output_signature(reader.spec, reader.user_id_string)
    grouped = ({k: tf.TensorSpec([None, *s.shape], s.dtype) for k, s in features.items()},
               tf.TensorSpec([None, *label.shape], label.dtype))
    return tf.data.Dataset.from_generator(reader.groups, output_signature=grouped).unbatch()


def epochs_dataset(reader: ClickLogReader, first_epoch: int, epochs: int, steps_per_epoch: int) -> tf.data.Dataset:
    """``steps_per_epoch`` batches of each of ``epochs`` epochs from ``first_epoch`` on, as one stream.

    Epoch ``e`` reads the reader's deterministic pass ``e`` and, when it needs more batches than a
    pass holds, wraps into passes ``e + 1``, ``e + 2``... — so every epoch is the same whether the
    stream started at it or before it (resume), and one iterator serves the whole run.
    """
    features, label = output_signature(reader.spec, reader.user_id_string)
    grouped = ({k: tf.TensorSpec([None, *s.shape], s.dtype) for k, s in features.items()},
               tf.TensorSpec([None, *label.shape], label.dtype))

    def passes(epoch):
        own = copy.copy(reader)
        own.epoch = int(epoch)
        while True:
            produced = False
            for group in own.groups():
                produced = True
                yield group
            if not produced:
                return

    def one_epoch(epoch):
        stream = tf.data.Dataset.from_generator(passes, args=(epoch,), output_signature=grouped)
        return stream.unbatch().take(steps_per_epoch)

    return tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(one_epoch)
