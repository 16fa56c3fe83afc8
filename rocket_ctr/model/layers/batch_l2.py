"""Mini-batch aware L2 (DIN, Zhou et al. 2018): the squared norm of the embedding rows a batch looks up.

A whole-table L2 decays every row every step: with millions of ids that costs a dense update of
the table per step, and it shrinks rows the batch says nothing about. DIN's regulariser penalises
only the rows a mini-batch reads. Each row counts once per batch however often the batch reads it
(DIN also divides by the id's frequency in the whole log, which a streaming trainer does not have:
counted once per batch, a frequent id is decayed in every batch it appears in, as its gradient is).
"""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.features.spec import FeatureSpec


def looked_up_ids(spec: FeatureSpec, rows: dict) -> dict:
    """The ids each table reads for a batch: ``{column name: [id tensors]}``: candidate, profile and
    item columns whole, history and side columns at their valid steps only (padding is not read as
    a row of the behaviour sequence)."""
    ids = {f.name: [rows[f.name]] for f in spec.id_features}
    for group, length in zip(spec.groups, spec.length_columns):
        columns = [(f.name, rows[f.history]) for f in spec.group_features(group)]
        columns += [(f.name, rows[f.name]) for f in group.side_features]
        valid = tf.sequence_mask(rows[length], tf.shape(columns[0][1])[1])  # a group's columns share one width
        for name, history in columns:
            ids.setdefault(name, []).append(tf.boolean_mask(history, valid))
    return ids


def mini_batch_l2(tables: dict, ids: dict, weight: float) -> tf.Tensor:
    """``weight`` × Σ over tables of Σ ‖w_j‖² over the distinct rows j the batch reads.

    Args:
        tables: ``{column name: RowEmbedding}``.
        ids: ``{column name: [id tensors]}`` (:func:`looked_up_ids`); rows as the lookup reads them
            (``RowEmbedding.row_indices``: a negative id counts from the table's end).
        weight: the penalty's weight.

    Returns:
        The scalar penalty; its gradient reaches only those rows (sparse, as the lookups').
    """
    total = []
    for name, parts in ids.items():
        table = tables[name]
        flat = tf.concat([tf.reshape(tf.cast(table.row_indices(p), tf.int64), [-1]) for p in parts], 0)
        distinct, _ = tf.unique(flat)
        total.append(tf.reduce_sum(tf.square(tf.gather(table.embeddings.value, distinct))))
    return weight * tf.add_n(total)
