"""Batch scoring: a Parquet log streamed through a model's towers in bounded memory, in row order.

Record batches of this process's row-range shard (see :mod:`rocket_ctr.io.row_ranges`), validated
and joined into windows of ~WINDOW_ROWS rows, become numpy (:class:`rocket_ctr.io.batches.Chunk`);
a window's rows are sorted by history length and cut into fixed-size scoring batches padded only
to their rows' history bucket, scored by the towers' ``score_rows`` functions (one trace; with XLA
a handful of compiled shapes) and put back into the window's row order next to its key columns.
``tf.data`` builds the next batches in a background thread while the model scores the current one.

Scorers (``{tower: score_rows function}``): :func:`model_scorer` (a model in memory, e.g. a run
dir's: light and booster) and :func:`saved_model_scorer` (an exported SavedModel: its tower).
"""
from __future__ import annotations

import itertools
from typing import Iterator

import numpy as np
import pyarrow as pa
import tensorflow as tf

from rocket_ctr.errors import InputError
from rocket_ctr.features.signatures import OUTPUT, SCORE_ROWS, rows_signature
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.batches import Chunk
from rocket_ctr.io.log_gate import find_feature_spec
from rocket_ctr.io.parquet_schema import check_batch
from rocket_ctr.io.reader import surfacing_input_errors
from rocket_ctr.io.row_ranges import RowRange

READ_ROWS = 65_536  # rows per record batch read
WINDOW_ROWS = 131_072  # record batches are scored in windows of at least this many rows (memory bound)
PAD_ROWS = 1_024  # a window's last, partial scoring batch is padded to a power of two >= this

Scorer = dict  # {tower name: callable(**score_rows inputs) -> {"probabilities": [N]}}


# ----- scorers -----------------------------------------------------------------------------------
def model_scorer(model, spec: FeatureSpec, towers=("light", "booster"), jit_compile: bool = True) -> Scorer:
    """``{tower: score_rows}`` of a model in memory (the exported graph's row-wise path)."""
    from rocket_ctr.export.serving_module import ServingModule

    def rows_function(module):
        return lambda **features: module.score_rows(features)

    return {tower: rows_function(ServingModule(model, tower, jit_compile, spec)) for tower in towers
            if tower in model.towers}


def load_saved_model(path) -> tuple[object, dict]:
    """An exported SavedModel (``BASE`` -> its highest version, or ``BASE/V``) and its export info.

    Raises:
        InputError: no SavedModel there.
    """
    from rocket_ctr.export.writer import read_export_info, resolve_export

    folder = resolve_export(path)
    try:
        loaded = tf.saved_model.load(str(folder))
    except (OSError, ValueError, tf.errors.OpError) as err:
        raise InputError(f"{folder}: cannot load the SavedModel ({str(err).splitlines()[0]})") from None
    info = dict(read_export_info(folder))
    info["path"] = str(folder)
    return loaded, info


def saved_model_scorer(loaded, info: dict) -> Scorer:
    """``{tower: the SavedModel's score_rows signature}``.

    Raises:
        InputError: the SavedModel has no ``score_rows`` signature (not exported by rocket_ctr).
    """
    if SCORE_ROWS not in loaded.signatures:
        raise InputError(f"{info.get('path')}: the SavedModel has no '{SCORE_ROWS}' signature "
                         f"(signatures: {sorted(loaded.signatures)}); export it with rocket-ctr export")
    return {info.get("tower", "light"): _Signature(loaded, SCORE_ROWS)}


class _Signature:
    """A SavedModel signature that keeps its loaded object (variables, tables) alive."""

    def __init__(self, loaded, name: str):
        self.loaded, self.function = loaded, loaded.signatures[name]

    def __call__(self, **inputs) -> dict:
        return self.function(**inputs)


def export_spec(info: dict, data=None) -> FeatureSpec:
    """The FeatureSpec of an export (its rocket_ctr_export.json), else the one beside ``data``;
    for a light export without booster-only columns (the export never reads them).

    Raises:
        InputError: neither is there.
    """
    tower = info.get("tower") or "light"
    if info.get("feature_spec"):
        return FeatureSpec.from_saved(info["feature_spec"]).for_tower(tower)
    spec = find_feature_spec(data) if data is not None else None
    if spec is None:
        raise InputError(f"{info.get('path')}: no feature spec in the export (assets.extra) nor a "
                         "feature_spec.json beside the data")
    return spec.for_tower(tower)


# ----- features ------------------------------------------------------------------------------------
def row_features(chunk: Chunk, spec: FeatureSpec, rows: np.ndarray, width: int,
                 user_rows: np.ndarray | None = None) -> dict:
    """``score_rows`` inputs of ``rows`` of ``chunk``: candidate columns from ``rows``, user-side
    columns (profile, histories) from ``user_rows`` (default: the same rows)."""
    user_rows = rows if user_rows is None else user_rows
    user_columns = set(spec.user_columns)
    features = {c: chunk.scalars[c][user_rows if c in user_columns else rows]
                for c in (*spec.scalar_id_columns, *spec.extra_columns)}
    features.update(chunk.padded(user_rows, width))  # every sequence group to ``width``
    features.update(chunk.length_features(user_rows, spec))
    return features


def scoring_batches(chunk: Chunk, widths: tuple, batch_size: int) -> list[tuple[np.ndarray, int, int]]:
    """``(rows, width, real)`` slices covering the chunk: rows sorted by history length, cut into
    ``batch_size`` rows padded to the bucket of their longest history; the last slice is padded
    (repeating its first row) to a power of two >= PAD_ROWS (or ``batch_size``), of which the first
    ``real`` rows count: compiled (XLA) scorers see a handful of shapes, not one per window."""
    longest = chunk.longest  # over the sequence groups
    order = np.argsort(longest, kind="stable")
    bucket_widths = np.asarray(widths)[np.searchsorted(np.asarray(widths), longest[order], side="left")]
    slices = []
    for start in range(0, chunk.n, batch_size):
        rows = order[start:start + batch_size]
        real = len(rows)
        if real < batch_size:
            padded = min(max(PAD_ROWS, 1 << (real - 1).bit_length()), batch_size)
            rows = np.concatenate([rows, np.full(padded - real, rows[0])])
        slices.append((rows, int(bucket_widths[min(start + real, chunk.n) - 1]), real))
    return slices


def score_chunk(chunk: Chunk, spec: FeatureSpec, scorer: Scorer, batch_size: int = 8_192) -> dict:
    """``{tower: probabilities [chunk.n]}`` of every row of ``chunk``, in its order (synchronous)."""
    scores = {tower: np.empty(chunk.n, np.float32) for tower in scorer}
    for rows, width, real in scoring_batches(chunk, spec.history_buckets, batch_size):
        features = {k: tf.constant(v) for k, v in row_features(chunk, spec, rows, width).items()}
        for tower, score in scorer.items():
            scores[tower][rows[:real]] = score(**features)[OUTPUT].numpy()[:real]
    return scores


def feature_signature(spec: FeatureSpec) -> dict:
    """TensorSpecs of :func:`row_features` (= the ``score_rows`` inputs)."""
    return {name: tf.TensorSpec(s.shape, s.dtype, name=name) for name, s in rows_signature(spec).items()}


# ----- the stream ----------------------------------------------------------------------------------
def score_ranges(pieces: list[RowRange], spec: FeatureSpec, scorer: Scorer, *, key_columns: list[str],
                 batch_size: int = 8_192) -> Iterator[tuple[pa.RecordBatch, dict]]:
    """Scores every row of ``pieces`` (in order); yields ``(keys, {tower: probabilities})`` per
    window of record batches, ``keys`` being the window's ``key_columns``.

    Raises:
        InputError: bad values (nulls, bad labels, misaligned histories), naming file and row.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    columns = list(dict.fromkeys([*spec.columns, *key_columns]))
    pending: dict[int, pa.RecordBatch] = {}  # keys of the windows whose scoring batches are in flight
    counter = itertools.count()

    def windows():  # validated record batches, concatenated into windows of >= WINDOW_ROWS rows
        held, rows = [], 0
        for piece in pieces:
            try:
                for first_row, batch in piece.batches(columns, READ_ROWS):
                    check_batch(batch, spec, piece.path, first_row)
                    held.append(batch)
                    rows += batch.num_rows
                    if rows >= WINDOW_ROWS:
                        yield pa.concat_batches(held)
                        held, rows = [], 0
            except (pa.ArrowException, OSError) as err:
                raise InputError(f"{piece.name}: cannot read Parquet data ({str(err).splitlines()[0]})") from None
        if held:
            yield pa.concat_batches(held)

    def produce():
        for window in windows():
            chunk, tag = Chunk(window, spec), next(counter)
            pending[tag] = window.select(key_columns)
            for rows, width, real in scoring_batches(chunk, spec.history_buckets, batch_size):
                yield row_features(chunk, spec, rows, width), rows[:real], tag

    signature = (feature_signature(spec), tf.TensorSpec([None], tf.int64), tf.TensorSpec([], tf.int64))
    dataset = tf.data.Dataset.from_generator(produce, output_signature=signature).prefetch(2)
    current, scores = None, {}
    with surfacing_input_errors():
        for features, rows, tag in dataset:
            tag = int(tag)
            if tag != current:
                if current is not None:
                    yield pending.pop(current), scores
                current = tag
                n = pending[tag].num_rows
                scores = {tower: np.empty(n, np.float32) for tower in scorer}
            rows = rows.numpy()
            for tower, score in scorer.items():
                scores[tower][rows] = score(**features)[OUTPUT].numpy()[:len(rows)]
        if current is not None:
            yield pending.pop(current), scores


def count_rows(pieces: list[RowRange]) -> int:
    """Rows of ``pieces`` (metadata only)."""
    return sum(piece.num_rows for piece in pieces)


def tower_columns(scorer: Scorer) -> dict[str, str]:
    """Output column of each tower's probabilities: ``p_<tower>``."""
    return {tower: f"p_{tower}" for tower in scorer}

