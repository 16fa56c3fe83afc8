"""Run configuration: the dataclasses (model, hint, training) and their field machinery.

Holds: ``schema`` (the dataclasses and choices; the hint section in ``hint``), ``fields`` (flags,
coercion, validation, dotted names), ``compat`` (defaults for run dirs written before a field existed).
May import: ``rocket_ctr.errors`` only.
"""
from rocket_ctr.config.hint import HintConfig  # noqa: F401 - the room's public names
from rocket_ctr.config.schema import (  # noqa: F401
    AttentionConfig,
    ModelConfig,
    RocketConfig,
    TowerConfig,
    TrainingConfig,
)
