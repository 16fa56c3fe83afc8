"""Training: the strategy-aware loop (``trainer``) and its assembly, ``callbacks/`` (hint warm-up,
early stopping, calibration refit, last pass, recorder, TensorBoard), optimizers, checkpoints,
run dirs, warm starts, evaluation, distribution and the training curves.

May import: ``rocket_ctr.model``, ``rocket_ctr.io``, ``rocket_ctr.features``, ``rocket_ctr.config``,
``rocket_ctr.calibration``, ``rocket_ctr.metrics``, ``rocket_ctr.errors``.
"""
