"""The model: ``layers/`` (embedding bank, interest extractors, MLP towers, feature encoders,
booster blocks), ``rocket`` (``RocketModel``: the towers and ``call``), the loss of the paper's
eq. (1) with its hints, the calibration head each tower serves through and the training stages.

May import: ``rocket_ctr.features``, ``rocket_ctr.config``, ``rocket_ctr.calibration``,
``rocket_ctr.errors``.
"""
