"""History recency (``model.history_recency="position"``): a learned embedding of each history step's
position counted from the newest, added to the step's embedding in the embedding bank.

Histories are left-aligned (oldest first, the valid steps are the first ``hist_len``), so step t of
a row with ``n`` valid steps is ``n − 1 − t`` steps older than its newest; the position depends only
on the row's length, never on the padded width.
"""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.model.layers.attention import ValidSteps


def add_recency(history, lengths, width, table) -> tf.Tensor | ValidSteps:
    """``history`` with ``table[position from newest]`` added to each step.

    Args:
        history: [B, L, W] (padded: the padding steps get position 0's row, masked downstream) or
            :class:`ValidSteps`.
        lengths: [B] valid steps per row (clipped to the width L).
        width: L, the padded width of the history inputs.
        table: [P, W] variable, row p = p steps before the newest (positions past P − 1 read its last row).
    Returns:
        The history in the form it came in.
    """
    lengths = tf.minimum(tf.cast(lengths, tf.int64), tf.cast(width, tf.int64))
    last = tf.cast(tf.shape(table)[0] - 1, tf.int64)
    if isinstance(history, ValidSteps):
        rows, steps = history.index[:, 0], history.index[:, 1]
        positions = tf.clip_by_value(tf.gather(lengths, rows) - 1 - steps, 0, last)               # [V]
        return history._replace(values=history.values + _rows(table, positions, history.values.dtype))
    steps = tf.range(tf.cast(width, tf.int64), dtype=tf.int64)
    positions = tf.clip_by_value(lengths[:, None] - 1 - steps[None, :], 0, last)                   # [B, L]
    return history + _rows(table, positions, history.dtype)


def _rows(table, positions, dtype) -> tf.Tensor:
    rows = tf.gather(table.value, positions)  # ResourceGather: sparse gradient, only the rows read
    return rows if rows.dtype == dtype else tf.cast(rows, dtype)
