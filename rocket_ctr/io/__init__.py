"""Parquet click logs -> ``tf.data``: the schema checks, the streaming reader and its batches,
row ranges (shards per worker), the validation hold-out planner, negative downsampling and row
weights.

May import: ``rocket_ctr.features``, ``rocket_ctr.config``, ``rocket_ctr.errors``.
"""
