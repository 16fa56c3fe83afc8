"""The training loop: steps, strategy, the input stream and checkpoints; the policies are callbacks.

One loop serves every mode. Each step is ``RocketModel.train_step`` (eq. 1 lives only in the
model) inside one ``tf.function`` (optionally XLA-compiled: ``jit_compile``). Ids are mapped to
embedding rows in the input pipeline by the same ``IdMapper`` the exported model embeds.
``Trainer.__init__`` assembles the run step by step (``rocket_ctr.train.assembly``). Re-running the
same command on the same run dir resumes from the last checkpoint, mid-epoch included: the reader
is deterministic per (seed, epoch), so the batches already trained on are skipped, not repeated.

After each epoch the loop evaluates (validation users, eval data: ``rocket_ctr.train.epoch_metrics``)
into the epoch's record and hands it to the callbacks (``rocket_ctr.train.callbacks``), in this
order: the hint warm-up, TensorBoard, early stopping, the intercept refit, the validation fold-in,
the run recorder. Keras' ``Callback`` hooks, called by this loop, not by ``fit``. Per-epoch metrics
leave the towers' intercepts out: the refit after training (``rocket_ctr.calibration.intercept``)
never changes what training decides.

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
import time
from pathlib import Path
from typing import Mapping

import keras
import tensorflow as tf

from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.config.validation import fold_in_wanted
from rocket_ctr.errors import FieldError, render_fields
from rocket_ctr.features.id_mapping import IdMapper
from rocket_ctr.features.signatures import row_signature
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.reader import epochs_dataset, surfacing_input_errors, to_dataset
from rocket_ctr.model.layers.attention import use_padded_attention
from rocket_ctr.train import assembly, epoch_metrics
from rocket_ctr.train import run_dir as layout
from rocket_ctr.train.callbacks.hint_warmup import HintWarmup
from rocket_ctr.train.callbacks.recorder import load_history
from rocket_ctr.train.distributed import broadcast_from_chief
from rocket_ctr.train.epoch_progress import EpochProgress
from rocket_ctr.train.evaluation import model_inputs
from rocket_ctr.train.run_spec import run_spec

RUN_FINISHED = 1  # progress [total epochs, RUN_FINISHED, step]: the after-training steps are done too


class Trainer:
    """Trains a RocketModel on Parquet logs into ``run_dir``.

    Args:
        run_dir: checkpoints/, tensorboard/, config.json, feature_spec.json, history.json,
            metrics.json and curves.png go here (see ``rocket_ctr.train.run_dir``).
        train: training data (file, folder, glob or list); eval: evaluation data (optional).
        config: RocketConfig; spec: FeatureSpec (default: ``feature_spec.json`` beside the data,
            else the reference schema).
        verbose: 1 = progress (the Keras bar on a terminal, lines on stderr otherwise), 0 = silent.
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
        self.strategy, self.task = assembly.open_strategy(strategy)
        self.distributed, self.is_chief = self.task.num_workers > 1, self.task.is_chief
        self.run_dir, self.field_names = Path(run_dir), dict(field_names or {})
        source = assembly.open_warm_start(warm_start, self.run_dir)
        self.config = config or (source.config if source else RocketConfig())
        self.spec, self.spec_note = run_spec(spec, train, source, self.config)
        self.train_paths, self.eval_paths = train, eval
        self.verbose = verbose if self.is_chief else 0
        self.train_log, self.eval_log = assembly.check_logs(train, eval, self.spec)
        self.spec, self.spec_note, self.train_log, self.eval_log = assembly.embed_user_id(self, train, eval, source)
        assembly.check_run(self.run_dir, self.config, self.spec, source, self.distributed)
        self.holdout = assembly.plan_validation(self.train_log, self.eval_log, self.spec, self.config, self.distributed)
        self.reader = assembly.training_reader(self, "train", self.config.training.seed, drop_remainder=True,
                                               num_shards=self.task.num_workers, shard_index=self.task.worker_index)
        self.steps_per_epoch = assembly.fixed_steps_per_epoch(self) if self.distributed else None
        keras.utils.set_random_seed(self.config.training.seed)
        self.mapper = IdMapper(self.spec)
        self._scratch = assembly.scratch_dir(self.task)
        self.model, self.optimizers = assembly.build_model(self)
        self.progress = tf.Variable([0, 0, 0], dtype=tf.int64, trainable=False)  # epoch, step in epoch, step
        self._steps, self._stream = {}, None
        self.checkpoint, self.manager = assembly.checkpointing(self)
        if self.is_chief:
            layout.record_run(self.run_dir, self.config, self.spec)
        latest = assembly.restore(self.checkpoint, self.run_dir)
        self.warm_started = assembly.warm_start_into(self, source, bool(latest), warm_start_optimizer)
        self.history = load_history(self.run_dir, int(self.progress.numpy()[0]) if latest else None)
        (self.warmup, self.tensorboard, self.early_stopping, self.refit, self.fold_in,
         self.recorder) = policies = assembly.make_callbacks(self)
        self.callbacks = [c for c in policies if c]  # in the order the loop calls them
        for callback in self.callbacks:
            callback.set_model(self.model)

    @property
    def fold_in_wanted(self) -> str | None:
        """Whether the run folds its validation rows in at the end: None (no) or ``"yes"`` or why not."""
        return fold_in_wanted(self.config.training.fold_in_validation, self.holdout and self.holdout.kind,
                              self.distributed)

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
            note = self.holdout.protocol_note
            print(f"test protocol: {note}\n" * bool(note) + f"validation: {self.holdout.reason}")
        if global_step and (self.verbose or self.distributed):
            print(f"resuming from checkpoint: epoch {epoch + 1}, step {skip} of that epoch, global step {global_step}",
                  flush=True)
        steps_per_epoch = self.steps_per_epoch or max(1, self.reader.num_rows // self.config.training.batch_size)
        rows_per_step = self.config.training.batch_size * self.task.num_workers
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
            shown = EpochProgress(f"epoch {epoch + 1}/{self.total_epochs}", steps_per_epoch, rows_per_step, skip,
                                  self.verbose)
            if self.verbose:
                print(f"epoch {epoch + 1}/{self.total_epochs}" + (f" (stage: {stage})" if stage != "joint" else ""),
                      flush=True)  # before the progress lines on stderr
            self._call("on_epoch_begin", epoch)
            started, in_epoch, logs = time.perf_counter(), skip, {}
            with surfacing_input_errors():
                for rows, label, _, weight in self._take_steps(dataset, skip):
                    self._call("on_train_batch_begin", in_epoch)
                    logs = {k: float(v) for k, v in step(rows, label, weight).items()}
                    in_epoch += 1
                    global_step += 1
                    shown.step(in_epoch, logs)
                    self._call("on_train_batch_end", in_epoch - 1, logs)
                    if global_step % self.config.training.checkpoint_every == 0:
                        self._save(epoch, in_epoch, global_step)
            shown.close(in_epoch, logs)
            train_seconds += time.perf_counter() - started
            train_examples += (in_epoch - skip) * rows_per_step
            record = epoch_metrics.evaluated(self, {"epoch": epoch + 1, "stage": stage, "steps": in_epoch,
                                                    "train": logs})
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

    def _save(self, epoch: int, in_epoch: int, global_step: int):
        self.recorder.write_history()  # before the checkpoint: a kill in between leaves a record that resume drops
        self.progress.assign([epoch, in_epoch, global_step])
        self.manager.save(checkpoint_number=global_step)
