"""The light tower for TF Serving: the serving module and its signatures' rows, atomic versioned
SavedModels (staging, verification, warmup records) and ``gate/`` (export only what is no worse
than the version being served).

May import: ``rocket_ctr.model``, ``rocket_ctr.io``, ``rocket_ctr.features``, ``rocket_ctr.metrics``,
``rocket_ctr.errors``.
"""
