"""TensorBoard summaries of a run: ``tensorboard/train`` (loss terms), ``validation`` and ``eval``."""
from __future__ import annotations

from pathlib import Path

import keras
import tensorflow as tf

EVAL_METRICS = ("auc", "gauc", "logloss", "pcoc", "ece")


class TensorBoardLogs(keras.callbacks.Callback):
    """Writes the training loss terms every ``every`` global steps and, per epoch, each tower's
    validation and eval AUC, GAUC, log loss, PCOC and ECE.

    Args:
        log_dir: ``<run_dir>/tensorboard``.
        enabled: False on the workers that are not the chief (nothing is written).
        every: global steps between training scalars.
    """

    name = "tensorboard"

    def __init__(self, log_dir, enabled: bool = True, every: int = 50):
        super().__init__()
        self.log_dir, self.enabled, self.every = Path(log_dir), enabled, every
        self.global_step, self._writer = 0, None

    def on_train_begin(self, logs=None):
        """``logs["global_step"]``: the steps taken before this call (a resumed run's)."""
        self.global_step = logs["global_step"]
        self._writer = tf.summary.create_file_writer(str(self.log_dir / "train")) if self.enabled \
            else tf.summary.create_noop_writer()

    def on_train_batch_end(self, batch, logs=None):
        self.global_step += 1
        if self.global_step % self.every == 0:
            with self._writer.as_default(step=self.global_step):
                for name, value in logs.items():
                    tf.summary.scalar(name, value)

    def on_epoch_end(self, epoch, logs=None):
        for split in ("validation", "eval"):
            if self.enabled and split in logs:
                self._log_eval(logs[split], epoch + 1, split)

    def _log_eval(self, results: dict, epoch: int, split: str) -> None:
        writer = tf.summary.create_file_writer(str(self.log_dir / split))
        with writer.as_default(step=epoch):
            for tower, values in results.items():
                for name in (m for m in EVAL_METRICS if m in values):
                    tf.summary.scalar(f"{tower}/{name}", values[name])
        writer.flush()
