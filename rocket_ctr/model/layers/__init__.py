"""Keras layers the towers are built from: embeddings, DIN / dot / mean interest extractors,
MLPs, feature encoders of numeric and multi-hot columns, and the booster's extra blocks.

May import: ``rocket_ctr.features``, ``rocket_ctr.errors``.
"""
