"""The hint warm-up: the booster teaches only once it leads the light tower on the validation users.

``--hint-warmup`` in one place: whether it applies (:meth:`HintWarmup.for_config`), the launch
test (:meth:`HintWarmup.booster_leads`), and the scale it writes into the model's ``hint_scale``
before each step (:meth:`HintWarmup.hint_scale`). The model only reads that scale: it multiplies
λ in eq. (1) and lets the booster's gradient into the shared bottom (0 = the light tower trains as
in ``--mode base``; 1 = the paper's joint training).
"""
from __future__ import annotations

import math

import keras

from rocket_ctr.config.schema import RocketConfig

RAMP_LEVELS = 100  # distinct values of the ramp: the variable is written when the level changes


class HintWarmup(keras.callbacks.Callback):
    """Keeps the hint off until an epoch ends with the booster ahead, then ramps it up over one epoch.

    Args:
        launch_metric: what the booster must beat the light tower on: lower ``logloss`` or higher ``gauc``.
        history: the run's finished epoch records (``history.json``), when resuming.
        launched: the hint was already on before this run (a warm start from a launched run):
            full weight from the first step.
    """

    name = "hint_warmup"

    def __init__(self, launch_metric: str = "logloss", history=(), launched: bool = False):
        super().__init__()
        self.launch_metric = launch_metric
        self.launched_epoch, self.ramp_steps = (-1, 1) if launched else (None, 1)
        for record in history:
            self._observe(record)
        self.epoch, self._written = 0, None

    @classmethod
    def for_config(cls, config: RocketConfig, history=(), launched: bool = False) -> HintWarmup | None:
        """The policy when the config asks for it and can run it (validation users, rocket mode), else None."""
        return cls(config.hint.launch_metric, history, launched) if config.warmup_active else None

    @staticmethod
    def off_note(config: RocketConfig) -> str | None:
        """What to tell the user when the warm-up was asked for but has no validation rows to run on."""
        if config.model.mode == "rocket" and config.hint.warmup and not config.warmup_active:
            return ("note: no validation rows ({training.validation_fraction} 0): the hint warm-up and early "
                    "stopping are off, so the hint applies from the first step as in the paper, even if the "
                    "booster is weaker")
        return None

    # ----- the launch test and the ramp -------------------------------------------------------
    def booster_leads(self, record: dict) -> bool:
        """Whether the booster beat the light tower on the validation users in an epoch's record."""
        validation = record.get("validation", {})
        if not {"light", "booster"} <= set(validation):
            return False
        booster, light = validation["booster"], validation["light"]
        if self.launch_metric == "gauc":
            return booster["gauc"] is not None and light["gauc"] is not None and booster["gauc"] > light["gauc"]
        return booster["logloss"] < light["logloss"]

    def hint_scale(self, epoch: int, step: int) -> float:
        """0 until an epoch ended with the booster ahead, then a linear ramp over one epoch's steps.

        Args:
            epoch: 0-based epoch being trained; step: steps already taken in it.
        """
        launched = self.launched_epoch
        if launched is None or epoch < launched:
            return 0.0
        return min(1.0, math.floor((epoch - launched + step / self.ramp_steps) * RAMP_LEVELS) / RAMP_LEVELS)

    def _observe(self, record: dict) -> None:
        """Launches after the first epoch (1-based ``record["epoch"]``) that ended with the booster ahead."""
        if self.launched_epoch is None and self.booster_leads(record):
            self.launched_epoch, self.ramp_steps = record["epoch"], max(1, record.get("steps", 1))

    def _set_hint_scale(self, value: float) -> None:
        """Writes the scale when it changes (under MultiWorkerMirroredStrategy a write from the loop
        costs about as much as a training step, so not once per step)."""
        if value != self._written:
            self.model.hint_scale.assign(value)
            self._written = value

    # ----- Keras callback hooks ---------------------------------------------------------------
    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._set_hint_scale(self.hint_scale(self.epoch, batch))

    def on_epoch_end(self, epoch, logs=None):
        """Records the scale the epoch ended with, then checks the epoch's validation for a launch."""
        logs["hint_scale"] = float(self.model.hint_scale.numpy())
        self._observe(logs)
