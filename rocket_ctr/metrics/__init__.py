"""Ranking and calibration metrics: AUC, GAUC (impression-weighted per-user AUC), log loss, and a
streaming evaluator that adds PCOC and ECE. Exact and vectorised.

May import: ``rocket_ctr.calibration``, ``rocket_ctr.errors``.
"""
from rocket_ctr.metrics.ranking import auc, gauc, gauc_and_users, logloss  # noqa: F401 (the room's public names)
from rocket_ctr.metrics.streaming import StreamingEvaluator  # noqa: F401 (the room's public names)
