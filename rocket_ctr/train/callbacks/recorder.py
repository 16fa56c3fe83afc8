"""The run's record: history.json (one record per epoch), metrics.json, curves.png, a reliability
diagram per tower (reliability_<tower>.png, on the eval data, else the validation rows), and a
plain warning when the booster never beat the light tower.

metrics.json's tower metrics are the eval data's with the towers' fitted intercepts
(``intercept``: their values and how they were fitted; ``slope``: the towers' fitted slopes, a
model with them; ``eval_without_intercept``: the kept epoch's without either, as in history.json)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import keras

from rocket_ctr.calibration.reliability_plot import plot_towers
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import render_fields
from rocket_ctr.train.callbacks.early_stopping import EarlyStopping
from rocket_ctr.train.callbacks.hint_warmup import HintWarmup
from rocket_ctr.train.curves import plot_curves
from rocket_ctr.train.run_dir import CURVES_FILE, HISTORY_FILE, METRICS_FILE, to_json, write_atomic

# an epoch's record in history.json, in this key order whichever callback added a key
RECORD_KEYS = ("epoch", "stage", "steps", "train", "hint_scale", "validation", "eval", "early_stopped")
SUMMARY = ("auc", "gauc", "logloss", "pcoc", "ece", "pcoc_uncorrected")  # those an evaluation has


def load_history(run_dir, epochs_done: int | None) -> list:
    """The finished epochs' records of a resumed run ([] for a new one: ``epochs_done`` None).

    history.json is written before each checkpoint, so a kill in between leaves a record of an
    epoch the checkpoint does not count: only the checkpoint's ``epochs_done`` are kept.
    """
    path = Path(run_dir) / HISTORY_FILE
    if epochs_done is None or not path.exists():
        return []
    return json.loads(path.read_text())[:epochs_done]


class RunRecorder(keras.callbacks.Callback):
    """Keeps the history and writes the run's summary files (on the chief only).

    Args:
        run_dir: the run folder.
        config: the run's RocketConfig (saved in metrics.json).
        history: the finished epochs' records (:func:`load_history`); epochs are appended to it.
        total_epochs: epochs the run was asked for (both stages of a two-stage run).
        num_workers: data-parallel workers (metrics.json names them when > 1).
        write: whether this process writes files (the chief).
        verbose: print the weak-booster warning.
        warmup, early_stopping: the run's policies, or None (they say when the hint launched and
            which epoch's weights the run ends with).
        validation_split: what the validation rows are (``Holdout.record()``: kind, reason, the eval
            log's test protocol, k, the calibration slice's share), for metrics.json.
        field_names: what the warning calls config fields (the CLI: its flags).
        hint_weight: λ of eq. (1) as the model resolved it (``RocketModel.hint_weight``; default:
            ``config.hint.weight``), for metrics.json and the warning.
    """

    name = "recorder"

    def __init__(self, run_dir, config: RocketConfig, history: list, total_epochs: int, num_workers: int = 1,
                 write: bool = True, verbose: int = 0, warmup: HintWarmup | None = None,
                 early_stopping: EarlyStopping | None = None, validation_split: dict | None = None,
                 field_names: Mapping[str, str] | None = None, hint_weight: float | None = None):
        super().__init__()
        self.hint_weight = config.hint.weight if hint_weight is None else hint_weight
        self.run_dir, self.config, self.history = Path(run_dir), config, history
        self.total_epochs, self.num_workers, self.write, self.verbose = total_epochs, num_workers, write, verbose
        self.warmup, self.early_stopping = warmup, early_stopping
        self.validation_split, self.field_names = validation_split, field_names
        self.metrics: dict = {}

    def on_epoch_end(self, epoch, logs=None):
        ordered = sorted(logs.items(), key=lambda item: RECORD_KEYS.index(item[0]) if item[0] in RECORD_KEYS
                         else len(RECORD_KEYS))
        logs.clear()
        logs.update(ordered)
        self.history.append(logs)

    def write_history(self) -> None:
        """Writes history.json (the loop calls it before every checkpoint)."""
        if self.write:
            write_atomic(self.run_dir / HISTORY_FILE, to_json(self.history, indent=1) + "\n")

    def on_train_end(self, logs=None):
        """Builds metrics.json from the history (``logs["train_examples_per_s"]``: this call's
        throughput, None when it trained nothing) and writes it with curves.png."""
        self.metrics = self._summary(logs.get("train_examples_per_s"), logs.get("intercept"),
                                     logs.get("eval_with_intercept"), logs.get("slope"))
        if logs.get("knots"):
            self.metrics["knots"] = logs["knots"]  # the isotonic maps (rocket_ctr.calibration.isotonic)
        if logs.get("fold_in"):
            self.metrics["fold_in"] = logs["fold_in"]  # eval_without_intercept: the kept epoch, before it
        if not self.write:
            return
        metrics_file = self.run_dir / METRICS_FILE
        if self.metrics["train_examples_per_s"] is None and metrics_file.exists():
            self.metrics["train_examples_per_s"] = json.loads(metrics_file.read_text()).get("train_examples_per_s")
        write_atomic(metrics_file, to_json(self.metrics, indent=2) + "\n")
        plot_curves(self.history, self.run_dir / CURVES_FILE)
        last = self._final_record()
        plot_towers(logs.get("eval_with_intercept") or last.get("eval") or last.get("validation") or {}, self.run_dir)

    def _final_record(self) -> dict:
        """The record of the epoch whose weights the run ends with ({} before any)."""
        if not self.history:
            return {}
        if self.early_stopping is not None and self.early_stopping.restores:
            return self.history[self.early_stopping.best_index]  # the restored weights' epoch
        return self.history[-1]

    def _summary(self, examples_per_s, intercept: dict | None = None, eval_with_intercept: dict | None = None,
                 slope: dict | None = None) -> dict:
        cfg, history = self.config, self.history
        restored = self.early_stopping is not None and self.early_stopping.restores
        last = self._final_record()
        metrics = {"mode": cfg.model.mode, "epochs": self.total_epochs, "epochs_trained": len(history),
                   "train_examples_per_s": examples_per_s}
        for tower, values in (eval_with_intercept or last.get("eval", {})).items():
            metrics[tower] = {k: values[k] for k in SUMMARY if k in values}
        if intercept is not None:
            metrics["intercept"] = intercept
        if slope is not None:
            metrics["slope"] = slope
        if eval_with_intercept:
            metrics["eval_without_intercept"] = {t: {k: v[k] for k in SUMMARY if k in v}
                                                 for t, v in last.get("eval", {}).items()}
        if "validation" in last:
            metrics["validation"] = {t: {k: v[k] for k in SUMMARY if k in v} for t, v in last["validation"].items()}
            metrics["best_epoch" if restored else "epoch"] = last["epoch"]
        if len(cfg.model.towers) == 2:
            metrics["hint_weight"] = self.hint_weight
        if {"light", "booster"} <= set(last.get("validation", {})):
            light, booster = (last["validation"][t]["gauc"] for t in ("light", "booster"))
            metrics["booster_beat_light_on_validation"] = bool(booster > light)
            if self.warmup is not None:
                metrics["hint_launched_after_epoch"] = self.warmup.launched_epoch
            if booster <= light and self.verbose:
                print(self.weak_booster_warning(light, booster, metrics.get("hint_launched_after_epoch")))
        if self.validation_split:
            metrics["validation_split"] = self.validation_split
        metrics["config"] = cfg.to_dict()
        if self.num_workers > 1:
            metrics["workers"] = self.num_workers
            metrics["global_batch_size"] = cfg.training.batch_size * self.num_workers
        metrics["history"] = history
        return metrics

    def weak_booster_warning(self, light: float, booster: float, launched) -> str:
        """Plain words for a booster that did not beat the light tower on the validation rows."""
        text = (f"warning: the booster did not beat the light tower on the validation rows (GAUC {booster:.4f} "
                f"vs {light:.4f}). Rocket launching helps only while the booster knows more than the light tower. ")
        from_start = self.config.hint.booster_bottom == "from-start"
        if from_start and (launched is None or not self.hint_weight):
            text += ("Its cross-entropy still trained the shared embeddings from the first step "
                     "({hint.booster_bottom} from-start), a second task for them; the hint stayed off. Compare with "
                     "{model.mode} base on your data before serving this light tower.")
        elif self.config.warmup_active and launched is None:
            text += ("The hint warm-up never launched it, so the light tower trained as in {model.mode} base: "
                     "{model.mode} base gives the same light tower for less compute.")
        elif self.config.warmup_active:
            text += (f"It led after epoch {launched} and the hint was on since; compare with {{model.mode}} base "
                     "on your data before serving this light tower.")
        else:
            text += ("Without the warm-up the hint pulled the light tower toward a weaker teacher: keep the "
                     "defaults ({hint.warmup} with {training.validation_fraction} > 0) or use {model.mode} base.")
        return render_fields(text, self.field_names)
