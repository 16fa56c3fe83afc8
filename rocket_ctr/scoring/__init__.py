"""Offline scoring: Parquet in, Parquet out (``batch_predict``, ``scorer``, ``prediction_output``)
and the replay of logged serving requests (``replay``).

May import: ``rocket_ctr.export``, ``rocket_ctr.io``, ``rocket_ctr.features``, ``rocket_ctr.errors``
(and ``rocket_ctr.train`` for scoring a run dir).
"""
