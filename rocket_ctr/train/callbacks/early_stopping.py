"""Early stopping on the validation users, with the best epoch's weights restored at the end."""
from __future__ import annotations

import math
from pathlib import Path

import keras
import tensorflow as tf

from rocket_ctr.config.schema import RocketConfig


class EarlyStopping(keras.callbacks.Callback):
    """Keeps the best validation epoch's weights in ``best/``; stops after ``patience`` epochs
    without a better one; at the end makes the best weights the run's latest checkpoint.

    The monitored score is the validation GAUC of the light tower (the booster's in ``booster``
    mode); a booster-only stage of a two-stage run never counts for the light tower.

    An epoch within ``min_delta`` of the best score so far counts as the best: the validation
    GAUC of a few thousand users moves by ~0.002 between equally good epochs (measured on the
    real logs), and the later epoch has seen more data.

    Args:
        patience: epochs without a better score before stopping (0: never stop, never restore,
            but the best epoch is still saved).
        min_delta: tolerance of "as good as the best".
        monitored_tower: ``light`` or ``booster``.
        best_dir: where this worker saves the best weights (``<run_dir>/best`` on the chief).
        chief_best_dir: the chief's ``best/``, which every worker restores from.
        checkpoints: the run's CheckpointManager (the restored weights become its latest).
        history: the run's finished epoch records, when resuming.
        verbose: print when stopping.
    """

    name = "early_stopping"

    def __init__(self, patience: int, monitored_tower: str, best_dir, chief_best_dir,
                 checkpoints: tf.train.CheckpointManager, history=(), verbose: int = 0, min_delta: float = 0.0):
        super().__init__()
        self.patience, self.monitored_tower, self.verbose = patience, monitored_tower, verbose
        self.min_delta = min_delta
        self.best_dir, self.chief_best_dir, self.checkpoints = Path(best_dir), Path(chief_best_dir), checkpoints
        self.scores = [self.validation_gauc(r) for r in history]
        self._best = None

    @classmethod
    def for_config(cls, config: RocketConfig, **kwargs) -> EarlyStopping | None:
        """The policy when the run has validation users (else None); ``kwargs`` as in the constructor."""
        if not config.training.holds_out:
            return None
        tower = "light" if "light" in config.model.towers else "booster"
        return cls(config.training.early_stopping_patience, tower,
                   min_delta=config.training.early_stopping_min_delta, **kwargs)

    @property
    def restores(self) -> bool:
        """Whether the best epoch's weights are restored at the end (early stopping is on)."""
        return self.patience > 0

    @property
    def best_index(self) -> int:
        """Index in the history of the best epoch: the last within ``min_delta`` of the top score."""
        return max((i for i, score in enumerate(self.scores) if self._as_good_as_best(score)), default=0)

    def _as_good_as_best(self, score: float) -> bool:
        top = max(self.scores)
        return score > -math.inf and score >= top - self.min_delta

    def validation_gauc(self, record: dict) -> float:
        """The monitored tower's validation GAUC of an epoch (-inf where it does not count)."""
        value = record.get("validation", {}).get(self.monitored_tower, {}).get("gauc")
        counts = record["stage"] != "booster" or self.monitored_tower == "booster"
        return value if counts and value is not None and math.isfinite(value) else -math.inf

    def _is_best(self) -> bool:
        return self._as_good_as_best(self.scores[-1])

    def _patience_exhausted(self) -> bool:
        if not self.patience or max(self.scores) == -math.inf:
            return False
        return len(self.scores) - 1 - self.best_index >= self.patience

    def _best_manager(self) -> tf.train.CheckpointManager:
        if self._best is None:
            self._best = tf.train.CheckpointManager(tf.train.Checkpoint(model=self.model), str(self.best_dir),
                                                    max_to_keep=1)
        return self._best

    # ----- Keras callback hooks ---------------------------------------------------------------
    def on_epoch_end(self, epoch, logs=None):
        self.scores.append(self.validation_gauc(logs))
        if self._is_best():
            self._best_manager().save(checkpoint_number=epoch + 1)
        if self._patience_exhausted():
            logs["early_stopped"] = True
            if self.verbose:
                print(f"  early stopping: no better validation GAUC for {self.patience} epoch(s)")
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        """Loads the best epoch's weights and saves them as the run's latest checkpoint (after
        ``logs["global_step"]``), when this call finishes the run (``logs["finishing"]``)."""
        best = tf.train.latest_checkpoint(str(self.chief_best_dir))  # the chief's, for every worker
        if self.restores and best and logs.get("finishing"):
            tf.train.Checkpoint(model=self.model).restore(best).expect_partial()
            self.checkpoints.save(checkpoint_number=logs["global_step"] + 1)
