"""``predict_log``: score a Parquet log (or one row-range shard of it) into a folder of Parquet parts.

Output rows are the input rows in order: the row keys (user id, candidate id, timestamp when the
log has one), the label, and ``p_<tower>`` (float32) per scored tower. Memory is bounded by a few
record batches whatever the log's size (see :mod:`rocket_ctr.scoring.scorer`).
"""
from __future__ import annotations

import time
from typing import Callable

import pyarrow as pa

from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.log_gate import check_log
from rocket_ctr.io.row_ranges import file_fragments, plan_shard
from rocket_ctr.scoring.prediction_output import PredictionWriter
from rocket_ctr.scoring.scorer import Scorer, count_rows, score_ranges, tower_columns


def key_columns(spec: FeatureSpec, schema: pa.Schema) -> list[str]:
    """The row keys written next to the scores: user id, candidate id, timestamp (if any), label."""
    keys = [spec.user_id, spec.sequence_features[0].name]
    if spec.timestamp and spec.timestamp in schema.names:
        keys.append(spec.timestamp)
    return list(dict.fromkeys(keys + [spec.label]))


def predict_log(scorer: Scorer, spec: FeatureSpec, data, out_dir, *, num_shards: int = 1, shard_index: int = 0,
                batch_size: int = 8_192, rows_per_file: int = 1_000_000, overwrite: bool = False,
                source: str | None = None, on_start: Callable[[int], None] | None = None,
                on_progress: Callable[[int], None] | None = None) -> dict:
    """Scores shard ``shard_index`` of ``num_shards`` (row ranges) of ``data`` into ``out_dir``.

    Args:
        scorer: ``{tower: score_rows}`` (:func:`rocket_ctr.scoring.scorer.model_scorer` / ``saved_model_scorer``).
        spec: the model's FeatureSpec.
        data: Parquet file, folder, glob or list.
        out_dir: output folder (see :mod:`rocket_ctr.scoring.prediction_output`).
        source: what scored (run dir or export), recorded in the shard's ``_predict-*.json``.
        on_start: called once with the shard's row count; on_progress: with rows done since the last call.
    Returns:
        ``{"rows", "seconds", "rows_per_second", "files", ...}`` (as in the shard's JSON).
    Raises:
        InputError / FieldError: bad input or an output folder holding results (nothing is lost).
    """
    checked = check_log(data, spec)
    files, schema = checked.files, checked.schema
    pieces = plan_shard(file_fragments(files), num_shards, shard_index)
    total = count_rows(pieces)
    if on_start:
        on_start(total)
    writer = PredictionWriter(out_dir, shard_index, num_shards, rows_per_file=rows_per_file, overwrite=overwrite)
    names = tower_columns(scorer)
    start = time.perf_counter()
    try:
        for keys, scores in score_ranges(pieces, spec, scorer, key_columns=key_columns(spec, schema),
                                         batch_size=batch_size):
            columns = dict(zip(keys.schema.names, keys.columns))
            columns.update({names[tower]: pa.array(values) for tower, values in scores.items()})
            writer.write(pa.record_batch(columns))
            if on_progress:
                on_progress(keys.num_rows)
        seconds = time.perf_counter() - start
        summary = {"source": source, "data": [str(f) for f in files], "shard_index": shard_index,
                   "num_shards": num_shards, "towers": list(scorer), "seconds": round(seconds, 3),
                   "rows_per_second": round(writer.rows / seconds, 1) if seconds > 0 else None}
        paths = writer.commit(summary)
    except BaseException:
        writer.abort()
        raise
    return {**summary, "rows": writer.rows, "files": [str(p) for p in paths]}
