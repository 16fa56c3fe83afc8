"""Training loop: checkpoints with step-level resume, TensorBoard, per-epoch evaluation, metrics.json.

One loop serves every mode. Each step is ``RocketModel.train_step`` (eq. 1 lives only in the
model) inside one ``tf.function`` (optionally XLA-compiled: ``jit_compile``). Ids are mapped to embedding rows in
the input pipeline by the same ``IdMapper`` the exported model embeds. Re-running the same
command on the same run dir resumes from the last checkpoint, mid-epoch included: the reader is
deterministic per (seed, epoch), so the batches already trained on are skipped, not repeated.

Distributed (``strategy="multi-worker"``, ``TF_CONFIG``): the same loop runs the same step under
``strategy.run`` over a distributed dataset, each worker streaming its own shard; Keras 3's
optimizer sums the replicas' gradients and ``train_step`` divides the loss by the replica count,
so an update is the global batch's mean gradient. Every worker runs the same fixed number of
steps per epoch (collectives would hang otherwise); only the chief evaluates, and its results
reach the other workers by an all-reduce so that early stopping and the hint warm-up decide the
same everywhere. Only the chief writes into the run dir; the others save their checkpoints (a
collective) into a temporary folder and restore from the chief's.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from rocket_ctr.config import RocketConfig
from rocket_ctr.curves import plot_curves
from rocket_ctr.data import ClickLogReader, epochs_dataset, find_feature_spec, surfacing_input_errors, to_dataset
from rocket_ctr.distributed import broadcast_from_chief, make_strategy
from rocket_ctr.errors import InputError
from rocket_ctr.id_mapping import IdMapper
from rocket_ctr.metrics import StreamingEvaluator
from rocket_ctr.model import RocketModel
from rocket_ctr.optimizers import LazyAdam
from rocket_ctr.signatures import example_rows, row_signature
from rocket_ctr.spec import FeatureSpec

PARAMETER_SERVER_UNSUPPORTED = (
    "--strategy parameter-server is not supported by the trainer: Keras 3 variables cannot be "
    "differentiated once partitioned across ps tasks ('ShardedVariable' object has no attribute "
    "'handle') and Keras' Embedding pulls whole tables; see README 'Training on a cluster' and "
    "benchmarks/ps_keras3_probe.py. Use --strategy multi-worker")
RAMP_LEVELS = 100  # distinct values of the hint warm-up's ramp
CONFIG_FILE, SPEC_FILE, METRICS_FILE, HISTORY_FILE = "config.json", "feature_spec.json", "metrics.json", "history.json"


def model_inputs(spec: FeatureSpec, mapper: IdMapper):
    """tf.data map fn: raw (features, label) -> (row indices for the model, label, user ids)."""
    def prepare(features, label):
        rows = mapper(features)
        user_ids = rows.pop(spec.user_id) if spec.user_id not in spec.scalar_id_columns else features[spec.user_id]
        return rows, label, user_ids
    return prepare


def evaluate(model: RocketModel, paths, spec: FeatureSpec, batch_size: int = 4096, users=None) -> dict:
    """Exact AUC, GAUC and log loss of every tower of ``model`` on a Parquet log.

    Args:
        users: optional ``(fraction, part)`` split by user (see ClickLogReader), e.g. the
            validation users held out of a training input.
    Returns:
        ``{"light": {"auc", "gauc", "logloss", "count", "gauc_users"}, "booster": {...}}``.
    """
    dataset = to_dataset(ClickLogReader(paths, spec, batch_size=batch_size, users=users))
    dataset = dataset.map(model_inputs(spec, IdMapper(spec)), num_parallel_calls=tf.data.AUTOTUNE)
    predict = tf.function(lambda rows: {k: tf.sigmoid(v) for k, v in model(rows, training=False).items()},
                          input_signature=[row_signature(spec)])
    evaluator = StreamingEvaluator()
    with surfacing_input_errors():
        for rows, label, user_ids in dataset.prefetch(2):
            evaluator.update(user_ids.numpy(), label.numpy(), {k: v.numpy() for k, v in predict(rows).items()})
    return evaluator.result()


class Trainer:
    """Trains a RocketModel on Parquet logs into ``run_dir``.

    Args:
        run_dir: checkpoints/, tensorboard/, config.json, feature_spec.json, history.json,
            metrics.json and curves.png go here.
        train: training data (file, folder, glob or list); eval: evaluation data (optional).
        config: RocketConfig; spec: FeatureSpec (default: ``feature_spec.json`` beside the data,
            else the reference schema).
        verbose: 1 = progress bar, 0 = silent.
        strategy: ``default`` (this process), ``multi-worker`` (``MultiWorkerMirroredStrategy``
            over the cluster in ``TF_CONFIG``; ``config.batch_size`` is per worker, the global
            batch is that × workers) or a ``(tf.distribute.Strategy, TaskInfo)`` pair from
            :func:`rocket_ctr.distributed.make_strategy`.
    """

    def __init__(self, run_dir, train, eval=None, config: RocketConfig | None = None,
                 spec: FeatureSpec | None = None, verbose: int = 1, strategy="default"):
        # a multi-worker strategy must exist before any other TensorFlow op of the process
        self.strategy, self.task = make_strategy(strategy) if isinstance(strategy, str) else strategy
        if self.strategy is None or isinstance(self.strategy, tf.distribute.ParameterServerStrategy):
            raise InputError(PARAMETER_SERVER_UNSUPPORTED)
        self.distributed = self.task.num_workers > 1
        self.is_chief = self.task.is_chief
        self.run_dir = Path(run_dir)
        self.config = config or RocketConfig()
        self.spec = spec or find_feature_spec(train) or FeatureSpec()
        self.train_paths, self.eval_paths = train, eval
        self.verbose = verbose if self.is_chief else 0
        self._check_run_dir()
        cfg = self.config
        if cfg.jit_compile and self.distributed:
            raise InputError("jit_compile is not supported with a multi-worker strategy "
                             "(XLA does not compile its CPU collectives); drop --jit-compile")
        self.holdout = (cfg.validation_fraction, "validation") if cfg.validation_fraction else None
        self.reader = ClickLogReader(train, self.spec, batch_size=cfg.batch_size, shuffle=True,
                                     shuffle_buffer=cfg.shuffle_buffer, seed=cfg.seed, drop_remainder=True,
                                     num_shards=self.task.num_workers, shard_index=self.task.worker_index,
                                     users=(cfg.validation_fraction, "train") if self.holdout else None)
        self.steps_per_epoch = self._fixed_steps_per_epoch() if self.distributed else None
        if eval is not None:
            ClickLogReader(eval, self.spec)  # validate the eval schema before training starts
        keras.utils.set_random_seed(cfg.seed)
        self.mapper = IdMapper(self.spec)
        # the chief writes into the run dir; the other workers' (collective) saves go to a scratch dir
        self._scratch = None if self.is_chief else Path(tempfile.mkdtemp(prefix=f"rocket_ctr_worker{self.task.worker_index}_"))
        with self.strategy.scope():
            self.model = RocketModel(self.spec, cfg)
            stages = ("booster", "light") if cfg.mode == "two-stage" else ("joint",)
            self.optimizers = {stage: LazyAdam(cfg.learning_rate) for stage in stages}
            self._build()
        self.progress = tf.Variable([0, 0, 0], dtype=tf.int64, trainable=False)  # epoch, step in epoch, step
        self._steps, self._stream = {}, None
        self.checkpoint = tf.train.Checkpoint(model=self.model, progress=self.progress, **self.optimizers)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self._write_dir("checkpoints")), max_to_keep=3)
        self.best = tf.train.CheckpointManager(tf.train.Checkpoint(model=self.model), str(self._write_dir("best")),
                                               max_to_keep=1)
        if self.is_chief:
            self._record_run()
        latest = tf.train.latest_checkpoint(str(self.run_dir / "checkpoints"))  # the chief's, for every worker
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        self.history = self._load_history(latest)

    # ----- set-up -----------------------------------------------------------------------------
    def _check_run_dir(self):
        """A run dir that holds checkpoints resumes only with the same config and FeatureSpec."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if tf.train.latest_checkpoint(str(self.run_dir / "checkpoints")) is None:
            return
        for name, current in ((CONFIG_FILE, self.config.to_dict()), (SPEC_FILE, self.spec.to_dict())):
            path = self.run_dir / name
            previous = json.loads(path.read_text()) if path.exists() else None
            current = json.loads(json.dumps(current))  # tuples -> lists, as saved
            if previous is not None and previous != current:
                changed = sorted(k for k in previous if previous.get(k) != current.get(k))
                raise InputError(f"{self.run_dir} holds a run with another {name} (differs in {changed}); "
                                 "use a new --run-dir or the same settings to resume")

    def _record_run(self):
        """Writes config.json and feature_spec.json once everything they describe was built."""
        _write_atomic(self.run_dir / CONFIG_FILE, json.dumps(self.config.to_dict(), indent=2) + "\n")
        _write_atomic(self.run_dir / SPEC_FILE, json.dumps(self.spec.to_dict(), indent=2) + "\n")

    def _write_dir(self, name: str) -> Path:
        """Where this worker's checkpoints go: the run dir for the chief, scratch for the others."""
        return (self.run_dir if self.is_chief else self._scratch) / name

    def _fixed_steps_per_epoch(self) -> int:
        """Steps every worker runs per epoch: the smallest shard's full batches (each worker
        computes the same number from the files' metadata; a shard that runs out early wraps
        around into its next pass, so no worker waits in a collective for a missing step)."""
        keep = 1.0 - self.config.validation_fraction
        steps = min(int(rows * keep) // self.config.batch_size for rows in self.reader.shard_rows(self.task.num_workers))
        if steps < 1:
            raise InputError(f"{self.train_paths}: the smallest of {self.task.num_workers} shards holds no full "
                             f"batch of {self.config.batch_size} rows; lower --batch-size or add data")
        return steps

    def _build(self):
        """Creates every model and optimizer variable so a checkpoint restores into them."""
        first = next(iter(self.reader), None)
        if first is None:
            raise InputError(f"{self.train_paths}: no full batch of {self.config.batch_size} rows in any history "
                             "bucket (training drops partial batches); lower --batch-size or add data")
        features, label = first
        rows, _, _ = model_inputs(self.spec, self.mapper)({k: tf.constant(v) for k, v in features.items()},
                                                          tf.constant(label))
        self.model(rows, training=False)
        self.reader.epoch = 0
        if self.config.mode == "two-stage":
            self.optimizers["booster"].build(self.model.tower_variables("booster"))
            self.optimizers["light"].build(self.model.tower_variables("light"))
        else:
            self.optimizers["joint"].build(self.model.trainable_variables)

    def _load_history(self, latest) -> list:
        """The finished epochs' records (history.json is written before the checkpoint, so a kill
        in between leaves a record of an epoch the checkpoint does not count: dropped here)."""
        path = self.run_dir / HISTORY_FILE
        if not (path.exists() and latest):
            return []
        return json.loads(path.read_text())[:int(self.progress.numpy()[0])]

    # ----- training ---------------------------------------------------------------------------
    @property
    def _booster_epochs(self) -> int:
        cfg = self.config
        return cfg.epochs if cfg.booster_epochs is None else cfg.booster_epochs

    @property
    def total_epochs(self) -> int:
        cfg = self.config
        return cfg.epochs + (self._booster_epochs if cfg.mode == "two-stage" else 0)

    def _stage_for(self, epoch: int) -> str:
        cfg = self.config
        if cfg.mode != "two-stage":
            return "joint"
        return "booster" if epoch < self._booster_epochs else "light"

    def _step_function(self, stage: str, entering: bool, element_spec=None):
        """The compiled training step of a stage, built once (a new one would recompile every shape).

        ``entering``: this epoch starts the stage afresh (not a resume inside it).
        ``element_spec``: the distributed dataset's (rows, label, user) spec (multi-worker).
        """
        if stage != "joint":
            self.model.set_stage(stage, initialise=entering)
        self.model.optimizer = self.optimizers[stage]
        if stage not in self._steps:
            model = self.model
            if not self.distributed:
                # one trace for every batch size and history width (no retracing per bucket)
                signature = [row_signature(self.spec), tf.TensorSpec([None], tf.float32)]

                @tf.function(jit_compile=self.config.jit_compile, input_signature=signature)
                def step(rows, label):
                    return model.train_step((rows, label))
            else:
                strategy = self.strategy

                @tf.function(input_signature=list(element_spec[:2]))
                def step(rows, label):
                    logs = strategy.run(model.train_step, args=((rows, label),))
                    return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], logs)
            self._steps[stage] = step
        return self._steps[stage]

    def _epoch_dataset(self, epoch: int, skip: int):
        """This worker's batches of an epoch, resumed after ``skip`` steps: ``(rows, label, user)``.

        Multi-worker: a repeated stream cut at the fixed step count, handed out through the
        strategy's distributed dataset (one input pipeline per worker = one shard).
        """
        prepare = model_inputs(self.spec, self.mapper)

        def build(context=None):
            if context is not None and context.input_pipeline_id != self.task.worker_index:
                raise RuntimeError(f"input pipeline {context.input_pipeline_id} is not worker "
                                   f"{self.task.worker_index}'s shard")
            if self.steps_per_epoch is not None:
                dataset = epochs_dataset(self.reader, epoch, self.total_epochs - epoch, self.steps_per_epoch)
            else:
                self.reader.epoch = epoch
                dataset = to_dataset(self.reader)
            return dataset.skip(skip).map(prepare, num_parallel_calls=tf.data.AUTOTUNE).prefetch(4)

        if not self.distributed:
            return build()
        if self._stream is None:
            # One distributed iterator for the rest of the run: a new one per epoch stalls every
            # worker for ~20 s on this machine (measured), longer than an epoch of a small log.
            options = tf.distribute.InputOptions(experimental_fetch_to_device=False)
            dataset = self.strategy.distribute_datasets_from_function(build, options)
            self._stream = (dataset, iter(dataset))
        return self._stream[0]

    def _take_steps(self, dataset, skip: int):
        """The epoch's batches. Multi-worker: exactly the fixed step count, never asking the
        repeated distributed stream for one more (its end-of-input handshake stalls every worker
        for seconds)."""
        if not self.distributed:
            yield from dataset
            return
        iterator = self._stream[1]
        for _ in range(self.steps_per_epoch - skip):
            try:
                yield next(iterator)
            except StopIteration:
                return

    def fit(self) -> dict:
        """Trains the remaining epochs, evaluating after each; writes metrics.json and curves.png.

        Returns:
            The metrics dict written to ``metrics.json``.
        """
        epoch, skip, global_step = (int(v) for v in self.progress.numpy())
        cfg = self.config
        if self.verbose and self.is_chief and cfg.mode == "rocket" and cfg.hint_warmup and not cfg.warmup_active:
            print("note: no validation users (--validation-fraction 0): the hint warm-up and early stopping are "
                  "off, so the hint applies from the first step as in the paper, even if the booster is weaker")
        if global_step and (self.verbose or self.distributed):
            print(f"resuming from checkpoint: epoch {epoch + 1}, step {skip} of that epoch, global step {global_step}",
                  flush=True)
        steps_per_epoch = self.steps_per_epoch or max(1, self.reader_rows() // self.config.batch_size)
        train_seconds, train_examples = 0.0, 0
        writer = tf.summary.create_file_writer(str(self.run_dir / "tensorboard" / "train")) if self.is_chief \
            else tf.summary.create_noop_writer()
        while epoch < self.total_epochs:
            stage = self._stage_for(epoch)
            dataset = self._epoch_dataset(epoch, skip)
            step = self._step_function(stage, entering=skip == 0 and self._stage_for(epoch - 1) != stage,
                                       element_spec=dataset.element_spec)
            for tracker in self.model.metrics:
                tracker.reset_state()
            bar = keras.utils.Progbar(steps_per_epoch, verbose=(1 if sys.stdout.isatty() else 2) if self.verbose else 0,
                                      stateful_metrics=["loss", "light_ce", "booster_ce", "hint"])
            if self.verbose:
                print(f"epoch {epoch + 1}/{self.total_epochs}" + (f" (stage: {stage})" if stage != "joint" else ""))
            started, in_epoch, logs = time.perf_counter(), skip, {}
            with surfacing_input_errors():
                for rows, label, _ in self._take_steps(dataset, skip):
                    if self.config.warmup_active:
                        self._set_hint_scale(self._hint_scale(epoch, in_epoch))
                    logs = {k: float(v) for k, v in step(rows, label).items()}
                    in_epoch += 1
                    global_step += 1
                    bar.update(min(in_epoch, steps_per_epoch), list(logs.items()))
                    if global_step % 50 == 0:
                        with writer.as_default(step=global_step):
                            for name, value in logs.items():
                                tf.summary.scalar(name, value)
                    if global_step % self.config.checkpoint_every == 0:
                        self._save(epoch, in_epoch, global_step)
            train_seconds += time.perf_counter() - started
            train_examples += (in_epoch - skip) * self.config.batch_size * self.task.num_workers
            record = {"epoch": epoch + 1, "stage": stage, "steps": in_epoch, "train": logs}
            if self.config.warmup_active:
                record["hint_scale"] = float(self.model.hint_scale.numpy())
            if self.holdout and self.is_chief:
                record["validation"] = evaluate(self.model, self.train_paths, self.spec, users=self.holdout)
                self._log_eval(record["validation"], epoch + 1, "validation")
            if self.eval_paths is not None and self.is_chief:
                record["eval"] = evaluate(self.model, self.eval_paths, self.spec)
                self._log_eval(record["eval"], epoch + 1)
            if self.distributed:
                self._share_chief_results(record)
            if not math.isfinite(logs.get("loss", 0.0)):
                raise InputError(f"training diverged at step {global_step} (loss {logs['loss']}); "
                                 "lower --learning-rate")
            self.history.append(record)
            epoch, skip = epoch + 1, 0
            if self._is_best(record):
                self.best.save(checkpoint_number=epoch)
            if self._patience_exhausted():
                record["early_stopped"] = True
                if self.verbose:
                    print(f"  early stopping: no better validation GAUC for {self.config.early_stopping_patience} epoch(s)")
                epoch = self.total_epochs
            self._save(epoch, 0, global_step)
        if self.distributed:
            broadcast_from_chief(self.strategy, [0.0], self.is_chief)  # barrier: the chief's saves are done
        best = tf.train.latest_checkpoint(str(self.run_dir / "best"))  # the chief's, for every worker
        if self.config.early_stopping_active and best and train_seconds:
            self._restore_best(best, global_step)
        metrics = self._finish(train_examples / train_seconds if train_seconds else None)
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        return metrics

    def _share_chief_results(self, record: dict):
        """Puts the chief's training loss and validation metrics into every worker's ``record``.

        Each worker's local loss becomes the chief's; the validation numbers (which drive early
        stopping and the hint warm-up) are the chief's float64 values, exactly, on every worker.
        """
        keys, towers = ("auc", "gauc", "logloss", "count", "gauc_users"), self.config.towers
        values = [record["train"].get("loss", 0.0)]
        if self.holdout:
            values += [record.get("validation", {}).get(t, {}).get(k, 0.0) for t in towers for k in keys]
        shared = broadcast_from_chief(self.strategy, np.asarray(values, np.float64), self.is_chief)
        record["train"]["loss"] = float(shared[0])
        if self.holdout and not self.is_chief:
            it = iter(shared[1:])
            record["validation"] = {t: {k: (int(v) if k in ("count", "gauc_users") else float(v))
                                        for k, v in zip(keys, it)} for t in towers}

    # ----- validation, hint warm-up and early stopping ------------------------------------------------
    def _booster_leads(self, record: dict) -> bool:
        """Whether the booster beat the light tower on the validation users in an epoch, by the
        config's ``hint_launch_metric`` (lower log loss, or higher GAUC)."""
        validation = record.get("validation", {})
        if not {"light", "booster"} <= set(validation):
            return False
        booster, light = validation["booster"], validation["light"]
        if self.config.hint_launch_metric == "gauc":
            return booster["gauc"] is not None and light["gauc"] is not None and booster["gauc"] > light["gauc"]
        return booster["logloss"] < light["logloss"]

    def _launch_epoch(self) -> int | None:
        """The first epoch (1-based) that ended with the booster ahead, None while none did."""
        return next((r["epoch"] for r in self.history if self._booster_leads(r)), None)

    def _hint_scale(self, epoch: int, step: int) -> float:
        """Warm-up: 0 until an epoch ends with the booster ahead, then a linear ramp over one epoch.

        Args: epoch: 0-based epoch being trained; step: steps already taken in it.
        """
        launched = self._launch_epoch()
        if launched is None or epoch < launched:
            return 0.0
        ramp_steps = max(1, self.history[launched - 1].get("steps", 1))
        # in steps of 1/RAMP_LEVELS: the variable is written when the level changes, not every step
        return min(1.0, math.floor((epoch - launched + step / ramp_steps) * RAMP_LEVELS) / RAMP_LEVELS)

    def _set_hint_scale(self, value: float) -> None:
        """Writes the warm-up scale when it changes (under MultiWorkerMirroredStrategy a write from
        the loop costs about as much as a training step, so not once per step)."""
        if value != getattr(self, "_hint_scale_written", None):
            self.model.hint_scale.assign(value)
            self._hint_scale_written = value

    @property
    def monitored_tower(self) -> str:
        return "light" if "light" in self.config.towers else "booster"

    def _validation_gauc(self, record: dict) -> float:
        """The monitored tower's validation GAUC of an epoch (-inf where it does not count)."""
        value = record.get("validation", {}).get(self.monitored_tower, {}).get("gauc")
        counts = record["stage"] != "booster" or self.monitored_tower == "booster"
        return value if counts and value is not None and math.isfinite(value) else -math.inf

    def _is_best(self, record: dict) -> bool:
        scores = [self._validation_gauc(r) for r in self.history]
        return bool(self.holdout) and scores[-1] > -math.inf and scores[-1] >= max(scores)

    def _patience_exhausted(self) -> bool:
        patience = self.config.early_stopping_patience
        scores = [self._validation_gauc(r) for r in self.history]
        if not patience or max(scores) == -math.inf:
            return False
        return len(scores) - 1 - scores.index(max(scores)) >= patience

    def _restore_best(self, best: str, global_step: int):
        """Loads the best epoch's weights and makes them the run's latest checkpoint."""
        tf.train.Checkpoint(model=self.model).restore(best).expect_partial()
        self.manager.save(checkpoint_number=global_step + 1)

    def _weak_booster_warning(self, light: float, booster: float, launched) -> str:
        """Plain words for a booster that did not beat the light tower on the validation users."""
        text = (f"warning: the booster did not beat the light tower on the validation users (GAUC {booster:.4f} "
                f"vs {light:.4f}). Rocket launching helps only while the booster knows more than the light tower. ")
        if self.config.warmup_active and launched is None:
            return text + ("The hint warm-up never launched it, so the light tower trained as in --mode base: "
                           "--mode base gives the same light tower for less compute.")
        if self.config.warmup_active:
            return text + (f"It led after epoch {launched} and the hint was on since; compare with --mode base "
                           "on your data before serving this light tower.")
        return text + ("Without the warm-up the hint pulled the light tower toward a weaker teacher: keep the "
                       "defaults (--hint-warmup with --validation-fraction > 0) or use --mode base.")

    def reader_rows(self) -> int:
        """Rows in this worker's share of the training input (for the progress bar's epoch length)."""
        return self.reader.num_rows

    def _save(self, epoch: int, in_epoch: int, global_step: int):
        if self.is_chief:  # before the checkpoint: a kill in between leaves a record that resume drops
            _write_atomic(self.run_dir / HISTORY_FILE, to_json(self.history, indent=1) + "\n")
        self.progress.assign([epoch, in_epoch, global_step])
        self.manager.save(checkpoint_number=global_step)

    def _log_eval(self, results: dict, epoch: int, split: str = "eval"):
        writer = tf.summary.create_file_writer(str(self.run_dir / "tensorboard" / split))
        with writer.as_default(step=epoch):
            for tower, values in results.items():
                for name in ("auc", "gauc", "logloss"):
                    tf.summary.scalar(f"{tower}/{name}", values[name])
        writer.flush()
        if self.verbose:
            print(f"  {split}: " + "  ".join(f"{t} gauc {v['gauc']:.4f} auc {v['auc']:.4f} logloss {v['logloss']:.4f}"
                                         for t, v in results.items()))

    def _finish(self, examples_per_s) -> dict:
        last = self.history[-1] if self.history else {}
        if self.config.early_stopping_active and self.history:
            last = max(self.history, key=self._validation_gauc)  # the restored weights' epoch
        metrics = {"mode": self.config.mode, "epochs": self.total_epochs, "epochs_trained": len(self.history),
                   "train_examples_per_s": examples_per_s}
        for tower, values in last.get("eval", {}).items():
            metrics[tower] = {k: values[k] for k in ("auc", "gauc", "logloss")}
        if "validation" in last:
            metrics["validation"] = {t: {k: v[k] for k in ("auc", "gauc", "logloss")}
                                     for t, v in last["validation"].items()}
            metrics["best_epoch" if self.config.early_stopping_active else "epoch"] = last["epoch"]
        if {"light", "booster"} <= set(last.get("validation", {})):
            light, booster = (last["validation"][t]["gauc"] for t in ("light", "booster"))
            metrics["booster_beat_light_on_validation"] = bool(booster > light)
            if self.config.warmup_active:
                metrics["hint_launched_after_epoch"] = self._launch_epoch()
            if booster <= light and self.verbose:
                print(self._weak_booster_warning(light, booster, metrics.get("hint_launched_after_epoch")))
        metrics["config"] = self.config.to_dict()
        if self.distributed:
            metrics["workers"] = self.task.num_workers
            metrics["global_batch_size"] = self.config.batch_size * self.task.num_workers
        metrics["history"] = self.history
        if not self.is_chief:
            return metrics
        if examples_per_s is None and (self.run_dir / METRICS_FILE).exists():
            metrics["train_examples_per_s"] = json.loads((self.run_dir / METRICS_FILE).read_text()).get("train_examples_per_s")
        _write_atomic(self.run_dir / METRICS_FILE, to_json(metrics, indent=2) + "\n")
        plot_curves(self.history, self.run_dir / "curves.png")
        return metrics


def _write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a rename: readers (other workers) never see half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def to_json(value, indent: int = 2) -> str:
    """Strict JSON: numpy scalars as numbers, NaN (e.g. GAUC when no user has both classes) as null."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, (float, np.floating)):
            return float(v) if math.isfinite(v) else None
        return v.item() if isinstance(v, np.generic) else v
    return json.dumps(clean(value), indent=indent, allow_nan=False)


def restore_model(run_dir) -> tuple[RocketModel, FeatureSpec, RocketConfig]:
    """Rebuilds the trained model of a run dir from its config, spec and latest checkpoint."""
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, SPEC_FILE):
        if not (run_dir / name).exists():
            raise InputError(f"{run_dir}: not a training run dir (no {name}); train with --run-dir first")
    config = RocketConfig().replace(**json.loads((run_dir / CONFIG_FILE).read_text()))
    spec = FeatureSpec.load(run_dir / SPEC_FILE)
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if latest is None:
        raise InputError(f"{run_dir}: no checkpoint in {run_dir / 'checkpoints'}")
    model = RocketModel(spec, config)
    if config.mode == "two-stage":
        model.set_stage("light")
    model(example_rows(spec), training=False)
    tf.train.Checkpoint(model=model).restore(latest).expect_partial()
    return model, spec, config
