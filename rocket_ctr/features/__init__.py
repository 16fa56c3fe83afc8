"""What the columns of a click log are: the ``FeatureSpec`` (id, numeric, multi-hot, sequence and
booster-only features), their checks and fitting, the id -> embedding-row mapping, hashing and
the tensor signatures that the reader, the model and the export all share.

May import: ``rocket_ctr.errors``.
"""
