"""The training loop: steps, strategy, the input stream and checkpoints; the policies are callbacks.

One loop serves every mode. Each step is ``RocketModel.train_step`` (eq. 1 lives only in the
model) inside one ``tf.function`` (optionally XLA-compiled: ``jit_compile``). Ids are mapped to
embedding rows in the input pipeline by the same ``IdMapper`` the exported model embeds.
Re-running the same command on the same run dir resumes from the last checkpoint, mid-epoch
included: the reader is deterministic per (seed, epoch), so the batches already trained on are
skipped, not repeated.

After each epoch the loop evaluates (validation users, eval data) into the epoch's record and
hands it to the callbacks (``rocket_ctr.train.callbacks``), in this order: the hint warm-up, TensorBoard,
early stopping, the intercept refit, the validation fold-in, the run recorder. Keras' ``Callback``
hooks, called by this loop, not by ``fit``. Per-epoch metrics leave the towers' intercepts out:
the refit after training (``rocket_ctr.calibration.intercept``) never changes what training decides.

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
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping

import keras
import numpy as np
import tensorflow as tf

from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import FieldError, InputError, render_fields
from rocket_ctr.features.id_mapping import IdMapper
from rocket_ctr.features.signatures import row_signature
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.holdout import plan_holdout
from rocket_ctr.io.reader import (
    ClickLogReader,
    epochs_dataset,
    find_feature_spec,
    resolve_paths,
    surfacing_input_errors,
    to_dataset,
)
from rocket_ctr.model.layers.core import use_padded_attention
from rocket_ctr.model.rocket import LOSS_TERMS, RocketModel
from rocket_ctr.train import run_dir as layout
from rocket_ctr.train.callbacks.early_stopping import EarlyStopping
from rocket_ctr.train.callbacks.fold_in import ValidationFoldIn
from rocket_ctr.train.callbacks.hint_warmup import HintWarmup
from rocket_ctr.train.callbacks.intercept_refit import InterceptRefit
from rocket_ctr.train.callbacks.recorder import RunRecorder, load_history
from rocket_ctr.train.callbacks.tensorboard_logs import TensorBoardLogs
from rocket_ctr.train.distributed import PARAMETER_SERVER_UNSUPPORTED, broadcast_from_chief, make_strategy
from rocket_ctr.train.evaluation import evaluate, model_inputs, validation_logits
from rocket_ctr.train.optimizers import make_optimizer
from rocket_ctr.train.warm_start import STATE_FILE as WARM_START_FILE
from rocket_ctr.train.warm_start import WarmStartSource
from rocket_ctr.train.warm_start import read_state as read_warm_start

EVAL_KEYS = ("auc", "gauc", "logloss", "count", "gauc_users")
RUN_FINISHED = 1  # progress [total epochs, RUN_FINISHED, step]: the after-training steps are done too


class Trainer:
    """Trains a RocketModel on Parquet logs into ``run_dir``.

    Args:
        run_dir: checkpoints/, tensorboard/, config.json, feature_spec.json, history.json,
            metrics.json and curves.png go here (see ``rocket_ctr.train.run_dir``).
        train: training data (file, folder, glob or list); eval: evaluation data (optional).
        config: RocketConfig; spec: FeatureSpec (default: ``feature_spec.json`` beside the data,
            else the reference schema).
        verbose: 1 = progress bar, 0 = silent.
        strategy: ``default`` (this process), ``multi-worker`` (``MultiWorkerMirroredStrategy``
            over the cluster in ``TF_CONFIG``; ``config.training.batch_size`` is per worker, the global
            batch is that × workers) or a ``(tf.distribute.Strategy, TaskInfo)`` pair from
            :func:`rocket_ctr.train.distributed.make_strategy`.
        field_names: what printed notes call config fields (the CLI: its flags); default: the
            dotted field names (``training.learning_rate``).
        warm_start: another run dir (or a :class:`rocket_ctr.train.warm_start.WarmStartSource`) whose
            weights a fresh ``run_dir`` starts from (see ``rocket_ctr.train.warm_start``; its config and
            spec are the defaults of ``config`` and ``spec``); ignored when ``run_dir`` resumes.
        warm_start_optimizer: also carry the source's optimizer state.
    """

    def __init__(self, run_dir, train, eval=None, config: RocketConfig | None = None,
                 spec: FeatureSpec | None = None, verbose: int = 1, strategy="default",
                 field_names: Mapping[str, str] | None = None, warm_start=None, warm_start_optimizer: bool = True):
        # a multi-worker strategy must exist before any other TensorFlow op of the process
        self.strategy, self.task = make_strategy(strategy) if isinstance(strategy, str) else strategy
        if isinstance(self.strategy, tf.distribute.ParameterServerStrategy):
            raise InputError(PARAMETER_SERVER_UNSUPPORTED)
        self.distributed = self.task.num_workers > 1
        self.is_chief = self.task.is_chief
        self.run_dir = Path(run_dir)
        self.field_names = dict(field_names or {})
        source = warm_start if isinstance(warm_start, WarmStartSource) or warm_start is None else \
            WarmStartSource.open(warm_start, self.run_dir)
        self.config = cfg = config or (source.config if source else RocketConfig())
        self.spec = spec or find_feature_spec(train) or (source.spec if source else FeatureSpec())
        self.spec_note = None
        if "booster" not in cfg.model.towers and self.spec.booster_only_columns:
            # nothing would read them: the run (its data, run dir and exports) goes without them
            self.spec_note = (f"mode {cfg.model.mode}: the booster-only columns {list(self.spec.booster_only_columns)} "
                              "are ignored (only a booster reads them; the logs need not hold them)")
            self.spec = self.spec.served()
        if source is not None:
            source.check_compatible(cfg, self.spec)  # before the run dir is touched
        self.train_paths, self.eval_paths = train, eval
        self.verbose = verbose if self.is_chief else 0
        layout.check_run_dir(self.run_dir, cfg, self.spec)
        if cfg.training.jit_compile and self.distributed:
            raise FieldError("{training.jit_compile} is not supported with a multi-worker strategy "
                             "(XLA does not compile its CPU collectives)")
        training = cfg.training
        folds_in = training.fold_in_validation != "no" and not self.distributed
        self.holdout = plan_holdout(resolve_paths(train), self.spec, training.validation_split,
                                    training.validation_fractions(folds_in)) if training.holds_out else None
        self.reader = self._training_reader("train", training.seed, drop_remainder=True,
                                            num_shards=self.task.num_workers, shard_index=self.task.worker_index)
        self.steps_per_epoch = self._fixed_steps_per_epoch() if self.distributed else None
        if eval is not None:
            ClickLogReader(eval, self.spec)  # validate the eval schema before training starts
        keras.utils.set_random_seed(cfg.training.seed)
        self.mapper = IdMapper(self.spec)
        # the chief writes into the run dir; the other workers' (collective) saves go to a scratch dir
        self._scratch = None if self.is_chief else \
            Path(tempfile.mkdtemp(prefix=f"rocket_ctr_worker{self.task.worker_index}_"))
        with self.strategy.scope():
            self.model = RocketModel(self.spec, cfg)
            stages = ("booster", "light") if cfg.model.mode == "two-stage" else ("joint",)
            self.optimizers = {stage: make_optimizer(training.optimizer, training.learning_rate) for stage in stages}
            self._build()
        self.progress = tf.Variable([0, 0, 0], dtype=tf.int64, trainable=False)  # epoch, step in epoch, step
        self._steps, self._stream = {}, None
        self.checkpoint = tf.train.Checkpoint(model=self.model, progress=self.progress, **self.optimizers)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self._write_dir(layout.CHECKPOINTS)),
                                                  max_to_keep=3)
        if self.is_chief:
            layout.record_run(self.run_dir, cfg, self.spec)
        latest = layout.latest_checkpoint(self.run_dir)  # the chief's, for every worker
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        self.warm_started = None
        if source is not None and not latest:
            self.warm_started = source.load_into(self.model, self.optimizers, warm_start_optimizer)
            if self.is_chief:
                layout.write_atomic(self.run_dir / WARM_START_FILE, layout.to_json(self.warm_started) + "\n")
        self.history = load_history(self.run_dir, int(self.progress.numpy()[0]) if latest else None)
        self._make_callbacks()

    # ----- set-up -----------------------------------------------------------------------------
    def _make_callbacks(self) -> None:
        """The run's policies, in the order the loop calls them."""
        cfg = self.config
        launched = (self.warm_started or read_warm_start(self.run_dir)).get("hint_launched", False)  # warm start
        self.warmup = HintWarmup.for_config(cfg, self.history, launched)
        self.tensorboard = TensorBoardLogs(self.run_dir / layout.TENSORBOARD, enabled=self.is_chief)
        self.early_stopping = EarlyStopping.for_config(
            cfg, best_dir=self._write_dir(layout.BEST), chief_best_dir=self.run_dir / layout.BEST,
            checkpoints=self.manager, history=self.history, verbose=self.verbose)
        self.refit = self._intercept_refit()
        self.fold_in = self._validation_fold_in()
        self.recorder = RunRecorder(self.run_dir, cfg, self.history, self.total_epochs, self.task.num_workers,
                                    write=self.is_chief, verbose=self.verbose, warmup=self.warmup,
                                    early_stopping=self.early_stopping, field_names=self.field_names,
                                    validation_split=self.holdout and {"kind": self.holdout.kind,
                                                                       "reason": self.holdout.reason})
        self.callbacks = [c for c in (self.warmup, self.tensorboard, self.early_stopping, self.refit, self.fold_in,
                                      self.recorder) if c]
        for callback in self.callbacks:
            callback.set_model(self.model)

    def _intercept_refit(self) -> InterceptRefit | None:
        """The refit of the towers' intercepts after training (None: the model has none)."""
        if not self.model.intercepts:
            return None
        spec, train = self.spec, self.train_paths

        def logits():
            return validation_logits(self.model, train, spec, (self.holdout, "validation"), spec.negative_rate)

        def share(values):
            if not self.distributed:
                return values
            return list(broadcast_from_chief(self.strategy, np.asarray(values, np.float64), self.is_chief))

        evaluate_eval = None if self.fold_in_wanted == "yes" else self._evaluate_eval()  # else the fold-in does
        return InterceptRefit(logits if self.holdout else None, evaluate_eval, share, self.manager,
                              is_chief=self.is_chief, verbose=self.verbose)

    def _evaluate_eval(self):
        """``() -> eval metrics`` of the model as it is (None: no eval data, or not the chief)."""
        if self.eval_paths is None or not self.is_chief:
            return None
        return lambda: evaluate(self.model, self.eval_paths, self.spec)

    @property
    def fold_in_wanted(self) -> str | None:
        """Whether the run folds its validation rows in at the end: None (no) or ``"yes"`` or why not."""
        wanted = self.config.training.fold_in_validation
        if not self.holdout or wanted == "no" or (wanted == "auto" and self.holdout.kind != "last-event"):
            return None
        if self.distributed:
            return "not done in a multi-worker run (every worker would need the same step count)"
        return "yes"

    def _validation_fold_in(self) -> ValidationFoldIn | None:
        """The pass over the validation rows after the intercept refit (None: not wanted)."""
        wanted = self.fold_in_wanted
        if wanted is None:
            return None
        return ValidationFoldIn(self._validation_pass if wanted == "yes" else None, self._evaluate_eval(),
                                self.manager, skipped=None if wanted == "yes" else wanted, verbose=self.verbose)

    def _validation_pass(self) -> tuple[int, int]:
        """One shuffled pass over the validation rows with the last stage's training step.

        Returns:
            (rows, steps) trained on.
        """
        reader = self._training_reader("validation", self.config.training.seed + self.total_epochs)
        prepare = model_inputs(self.spec, self.mapper)
        stage = self._stage_for(self.total_epochs - 1)
        step = self._step_function(stage, entering=False)
        rows = steps = 0
        with surfacing_input_errors():
            for batch, label, _, weight in to_dataset(reader).map(prepare, num_parallel_calls=tf.data.AUTOTUNE) \
                    .prefetch(4):
                step(batch, label, weight)
                rows, steps = rows + int(label.shape[0]), steps + 1
        return rows, steps

    def _training_reader(self, part: str, seed: int, **sharding) -> ClickLogReader:
        """A shuffled reader of one side (``part``) of the training log's validation split, as training reads."""
        training = self.config.training
        # XLA compiles one step per padded width: it needs the padded attention and few widths
        return ClickLogReader(self.train_paths, self.spec, batch_size=training.batch_size, shuffle=True,
                              shuffle_buffer=training.shuffle_buffer, seed=seed,
                              bucket_by_length=training.length_buckets or training.jit_compile,
                              holdout=(self.holdout, part) if self.holdout else None,
                              negative_rate=training.negative_rate, **sharding)

    def _write_dir(self, name: str) -> Path:
        """Where this worker's checkpoints go: the run dir for the chief, scratch for the others."""
        return (self.run_dir if self.is_chief else self._scratch) / name

    def _fixed_steps_per_epoch(self) -> int:
        """Steps every worker runs per epoch: the smallest shard's full batches (each worker
        computes the same number from the files' metadata; a shard that runs out early wraps
        around into its next pass, so no worker waits in a collective for a missing step)."""
        keep = 1.0 - (self.holdout.fraction if self.holdout else 0.0)
        shards = self.reader.shard_rows(self.task.num_workers)
        steps = min(int(rows * keep) // self.config.training.batch_size for rows in shards)
        if steps < 1:
            raise FieldError(f"{self.train_paths}: the smallest of {self.task.num_workers} shards holds no full "
                             f"batch of {self.config.training.batch_size} rows; "
                             "lower {training.batch_size} or add data")
        return steps

    def _build(self):
        """Creates every model and optimizer variable so a checkpoint restores into them."""
        first = next(iter(self.reader), None)
        if first is None:
            raise FieldError(f"{self.train_paths}: no full batch of {self.config.training.batch_size} rows in any "
                             "history bucket (training drops partial batches); lower {training.batch_size} or add data")
        features, label = first
        rows = model_inputs(self.spec, self.mapper)({k: tf.constant(v) for k, v in features.items()},
                                                    tf.constant(label))[0]
        self.model(rows, training=False)
        self.reader.epoch = 0
        if self.config.model.mode == "two-stage":
            self.optimizers["booster"].build(self.model.tower_variables("booster"))
            self.optimizers["light"].build(self.model.tower_variables("light"))
        else:
            self.optimizers["joint"].build(self.model.trainable_variables)

    # ----- stages, steps and the input stream ---------------------------------------------------
    @property
    def _booster_epochs(self) -> int:
        cfg = self.config
        return cfg.training.epochs if cfg.training.booster_epochs is None else cfg.training.booster_epochs

    @property
    def total_epochs(self) -> int:
        cfg = self.config
        return cfg.training.epochs + (self._booster_epochs if cfg.model.mode == "two-stage" else 0)

    def _stage_for(self, epoch: int) -> str:
        if self.config.model.mode != "two-stage":
            return "joint"
        return "booster" if epoch < self._booster_epochs else "light"

    def _step_function(self, stage: str, entering: bool, element_spec=None):
        """The compiled training step of a stage, built once (a new one would recompile every shape).

        ``entering``: this epoch starts the stage afresh (not a resume inside it).
        ``element_spec``: the distributed dataset's (rows, label, user, weight) spec (multi-worker).
        """
        if stage != "joint":
            self.model.set_stage(stage, initialise=entering)
        self.model.optimizer = self.optimizers[stage]
        if stage not in self._steps:
            model = self.model
            use_padded_attention(model, padded=self.config.training.jit_compile)
            if not self.distributed:
                # one trace for every batch size and history width (no retracing per bucket)
                signature = [row_signature(self.spec), tf.TensorSpec([None], tf.float32),
                             tf.TensorSpec([None], tf.float32)]

                @tf.function(jit_compile=self.config.training.jit_compile, input_signature=signature)
                def step(rows, label, weight):
                    return model.train_step((rows, label, weight))
            else:
                strategy = self.strategy

                @tf.function(input_signature=[element_spec[0], element_spec[1], element_spec[3]])
                def step(rows, label, weight):
                    logs = strategy.run(model.train_step, args=((rows, label, weight),))
                    return tf.nest.map_structure(lambda v: strategy.experimental_local_results(v)[0], logs)
            self._steps[stage] = step
        return self._steps[stage]

    def _epoch_dataset(self, epoch: int, skip: int):
        """This worker's batches of an epoch, resumed after ``skip`` steps: ``(rows, label, user, weight)``.

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

    # ----- the loop ---------------------------------------------------------------------------
    def fit(self) -> dict:
        """Trains the remaining epochs, evaluating after each; writes metrics.json and curves.png.

        Returns:
            The metrics dict written to ``metrics.json``.
        """
        epoch, skip, global_step = (int(v) for v in self.progress.numpy())
        # what runs once after the last epoch (restoring the best epoch, the refit, the fold-in) runs
        # again after a kill in the middle of it, but not on a run that finished
        finishing = not (epoch >= self.total_epochs and skip == RUN_FINISHED)
        if not finishing and (self.run_dir / layout.METRICS_FILE).exists():
            if self.verbose:
                print(f"{self.run_dir} finished training earlier: nothing to do (its metrics.json stays)")
            return json.loads((self.run_dir / layout.METRICS_FILE).read_text())
        note = HintWarmup.off_note(self.config)
        if self.verbose and note:
            print(render_fields(note, self.field_names))
        if self.verbose and self.spec_note:
            print(self.spec_note)
        if self.verbose and self.holdout and not global_step:
            print(f"validation: {self.holdout.reason}")
        if global_step and (self.verbose or self.distributed):
            print(f"resuming from checkpoint: epoch {epoch + 1}, step {skip} of that epoch, global step {global_step}",
                  flush=True)
        steps_per_epoch = self.steps_per_epoch or max(1, self.reader.num_rows // self.config.training.batch_size)
        train_seconds, train_examples = 0.0, 0
        self.model.stop_training = False  # a callback sets it to end the run after this epoch (as in Keras' fit)
        self._call("on_train_begin", {"global_step": global_step})
        while epoch < self.total_epochs:
            stage = self._stage_for(epoch)
            dataset = self._epoch_dataset(epoch, skip)
            step = self._step_function(stage, entering=skip == 0 and self._stage_for(epoch - 1) != stage,
                                       element_spec=dataset.element_spec)
            for tracker in self.model.metrics:
                tracker.reset_state()
            bar = keras.utils.Progbar(steps_per_epoch, verbose=(1 if sys.stdout.isatty() else 2) if self.verbose else 0,
                                      stateful_metrics=list(LOSS_TERMS))
            if self.verbose:
                print(f"epoch {epoch + 1}/{self.total_epochs}" + (f" (stage: {stage})" if stage != "joint" else ""))
            self._call("on_epoch_begin", epoch)
            started, in_epoch, logs = time.perf_counter(), skip, {}
            with surfacing_input_errors():
                for rows, label, _, weight in self._take_steps(dataset, skip):
                    self._call("on_train_batch_begin", in_epoch)
                    logs = {k: float(v) for k, v in step(rows, label, weight).items()}
                    in_epoch += 1
                    global_step += 1
                    bar.update(min(in_epoch, steps_per_epoch), list(logs.items()))
                    self._call("on_train_batch_end", in_epoch - 1, logs)
                    if global_step % self.config.training.checkpoint_every == 0:
                        self._save(epoch, in_epoch, global_step)
            train_seconds += time.perf_counter() - started
            train_examples += (in_epoch - skip) * self.config.training.batch_size * self.task.num_workers
            record = self._evaluated({"epoch": epoch + 1, "stage": stage, "steps": in_epoch, "train": logs})
            if not math.isfinite(logs.get("loss", 0.0)):
                raise FieldError(f"training diverged at step {global_step} (loss {logs['loss']}); "
                                 "lower {training.learning_rate}")
            self._call("on_epoch_end", epoch, record)
            epoch, skip = (self.total_epochs if self.model.stop_training else epoch + 1), 0
            self._save(epoch, 0, global_step)
        if self.distributed:
            broadcast_from_chief(self.strategy, [0.0], self.is_chief)  # barrier: the chief's saves are done
        self._call("on_train_end", {"global_step": global_step, "finishing": finishing,
                                    "train_examples_per_s": train_examples / train_seconds if train_seconds else None})
        if finishing:
            self.progress.assign([self.total_epochs, RUN_FINISHED, global_step])
            self.manager.save(checkpoint_number=global_step + 4)  # after the +1..+3 of the callbacks
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
        return self.recorder.metrics

    def _call(self, hook: str, *args) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(*args)

    def _evaluated(self, record: dict) -> dict:
        """The epoch's record with the chief's validation and eval metrics (shared with every worker)."""
        if self.holdout and self.is_chief:
            record["validation"] = evaluate(self.model, self.train_paths, self.spec,
                                            holdout=(self.holdout, "validation"),
                                            negative_rate=self.spec.negative_rate, intercept=False)
            self._print_eval(record["validation"], "validation")
        if self.eval_paths is not None and self.is_chief:
            record["eval"] = evaluate(self.model, self.eval_paths, self.spec, intercept=False)
            self._print_eval(record["eval"], "eval")
        if self.distributed:
            self._share_chief_results(record)
        return record

    def _print_eval(self, results: dict, split: str) -> None:
        if self.verbose:
            print(f"  {split}: " + "  ".join(f"{t} gauc {v['gauc']:.4f} auc {v['auc']:.4f} logloss {v['logloss']:.4f}"
                                         for t, v in results.items()))

    def _share_chief_results(self, record: dict):
        """Puts the chief's training loss and validation metrics into every worker's ``record``.

        Each worker's local loss becomes the chief's; the validation numbers (which drive early
        stopping and the hint warm-up) are the chief's float64 values, exactly, on every worker.
        """
        towers = self.config.model.towers
        values = [record["train"].get("loss", 0.0)]
        if self.holdout:
            values += [record.get("validation", {}).get(t, {}).get(k, 0.0) for t in towers for k in EVAL_KEYS]
        shared = broadcast_from_chief(self.strategy, np.asarray(values, np.float64), self.is_chief)
        record["train"]["loss"] = float(shared[0])
        if self.holdout and not self.is_chief:
            it = iter(shared[1:])
            record["validation"] = {t: {k: (int(v) if k in ("count", "gauc_users") else float(v))
                                        for k, v in zip(EVAL_KEYS, it)} for t in towers}

    def _save(self, epoch: int, in_epoch: int, global_step: int):
        self.recorder.write_history()  # before the checkpoint: a kill in between leaves a record that resume drops
        self.progress.assign([epoch, in_epoch, global_step])
        self.manager.save(checkpoint_number=global_step)
