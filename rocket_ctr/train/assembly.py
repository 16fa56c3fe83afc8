"""Assembling a training run: the steps ``Trainer.__init__`` takes, one function each, in its order.

The order matters: the multi-worker strategy exists before any other TensorFlow op of the
process; the logs pass the log gate before anything reads them; the warm-start source is checked
before the run dir is touched, and the run dir (created only by ``run_dir.record_run``) before
anything is written into it; every variable exists before a checkpoint restores into it; the
callbacks come last (they read the restored progress and history).
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.config.validation import calibration_share
from rocket_ctr.errors import FieldError, InputError, render_fields
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.holdout import plan_holdout
from rocket_ctr.io.log_gate import CheckedLog, check_log
from rocket_ctr.io.reader import ClickLogReader, surfacing_input_errors, to_dataset
from rocket_ctr.io.test_protocol import PROTOCOL_UNRECOGNISED, detect_protocol
from rocket_ctr.model.rocket import RocketModel
from rocket_ctr.train import run_dir as layout
from rocket_ctr.train.callbacks.early_stopping import EarlyStopping
from rocket_ctr.train.callbacks.fold_in import ValidationFoldIn
from rocket_ctr.train.callbacks.hint_warmup import HintWarmup
from rocket_ctr.train.callbacks.intercept_refit import InterceptRefit
from rocket_ctr.train.callbacks.recorder import RunRecorder
from rocket_ctr.train.callbacks.tensorboard_logs import TensorBoardLogs
from rocket_ctr.train.checkpoints import candidates
from rocket_ctr.train.cross_fit import CrossFit
from rocket_ctr.train.distributed import PARAMETER_SERVER_UNSUPPORTED, broadcast_from_chief, make_strategy
from rocket_ctr.train.evaluation import evaluate, model_inputs, validation_logits
from rocket_ctr.train.optimizers import make_optimizer
from rocket_ctr.train.run_spec import with_user_id_embedding
from rocket_ctr.train.warm_start import STATE_FILE as WARM_START_FILE
from rocket_ctr.train.warm_start import WarmStartSource
from rocket_ctr.train.warm_start import read_state as read_warm_start


# ----- the run's checks and inputs ----------------------------------------------------------------
def open_strategy(strategy) -> tuple:
    """``(tf.distribute.Strategy, TaskInfo)`` of a strategy name or pair (InputError: parameter server)."""
    strategy, task = make_strategy(strategy) if isinstance(strategy, str) else strategy
    if isinstance(strategy, tf.distribute.ParameterServerStrategy):
        raise InputError(PARAMETER_SERVER_UNSUPPORTED)
    return strategy, task


def open_warm_start(warm_start, run_dir: Path) -> WarmStartSource | None:
    """The warm-start source of a run dir path (a source or None is taken as it is)."""
    if isinstance(warm_start, WarmStartSource) or warm_start is None:
        return warm_start
    return WarmStartSource.open(warm_start, run_dir)


def check_run(run_dir: Path, config: RocketConfig, spec: FeatureSpec, source: WarmStartSource | None,
              distributed: bool) -> None:
    """Refuses what the run cannot do: weights the source cannot give (before the run dir is
    touched), a run dir that resumes with another config or spec, XLA with several workers."""
    if source is not None:
        source.check_compatible(config, spec)
    layout.check_run_dir(run_dir, config, spec)
    if config.training.jit_compile and distributed:
        raise FieldError("{training.jit_compile} is not supported with a multi-worker strategy "
                         "(XLA does not compile its CPU collectives)")


def check_logs(train, eval, spec: FeatureSpec) -> tuple[CheckedLog, CheckedLog | None]:
    """The training and eval logs through the log gate, before anything reads them or a run dir exists."""
    return check_log(train, spec), (None if eval is None else check_log(eval, spec))


def embed_user_id(trainer, train, eval, source: WarmStartSource | None) -> tuple:
    """``(spec, spec note, train log, eval log)`` once the (checked) training log decided whether the run
    embeds the user id (``run_spec.with_user_id_embedding``; a run dir that resumes, else the warm-start
    source, keeps its choice); a changed spec passes the log gate again."""
    recorded = trainer.run_dir / layout.SPEC_FILE
    resumed = recorded.is_file() and bool(candidates(trainer.run_dir / layout.CHECKPOINTS))
    earlier = FeatureSpec.load(recorded, saved=True) if resumed else (source.spec if source else None)
    spec, note = with_user_id_embedding(trainer.spec, trainer.train_log, trainer.config, earlier)
    notes = "\n".join(render_fields(n, trainer.field_names) for n in (trainer.spec_note, note) if n) or None
    if spec == trainer.spec:
        return spec, notes, trainer.train_log, trainer.eval_log
    return spec, notes, *check_logs(train, eval, spec)


def plan_validation(train_log: CheckedLog, eval_log: CheckedLog | None, spec: FeatureSpec, config: RocketConfig,
                    distributed: bool):
    """The hold-out plan of the (checked) training log, shaped like the eval log's test protocol where
    one is detected (None: no validation rows)."""
    training = config.training
    if not training.holds_out:
        return None
    protocol = eval_log and detect_protocol(train_log.files, eval_log.files, spec)
    folds_in = training.fold_in_validation != "no" and not distributed
    holdout = plan_holdout(train_log.files, spec, training.validation_split, training.validation_fractions(folds_in),
                           protocol, training.validation_tail_events)
    note = protocol.reason if protocol else eval_log and PROTOCOL_UNRECOGNISED
    return dataclasses.replace(holdout, protocol_note=note,
                               calibration_share=calibration_share(training, holdout.kind, distributed))


def training_reader(trainer, part: str, seed: int, **sharding) -> ClickLogReader:
    """A shuffled reader of one side (``part``) of the training log's validation split, as training reads."""
    training = trainer.config.training
    # XLA compiles one step per padded width: it needs the padded attention and few widths
    return ClickLogReader(trainer.train_paths, trainer.spec, batch_size=training.batch_size, shuffle=True,
                          shuffle_buffer=training.shuffle_buffer, seed=seed,
                          bucket_by_length=training.length_buckets or training.jit_compile,
                          holdout=(trainer.holdout, part) if trainer.holdout else None,
                          negative_rate=training.negative_rate, **sharding)


def fixed_steps_per_epoch(trainer) -> int:
    """Steps every worker runs per epoch: the smallest shard's full batches (each worker
    computes the same number from the files' metadata; a shard that runs out early wraps
    around into its next pass, so no worker waits in a collective for a missing step)."""
    keep = 1.0 - (trainer.holdout.fraction if trainer.holdout else 0.0)
    batch_size, workers = trainer.config.training.batch_size, trainer.task.num_workers
    steps = min(int(rows * keep) // batch_size for rows in trainer.reader.shard_rows(workers))
    if steps < 1:
        raise FieldError(f"{trainer.train_paths}: the smallest of {workers} shards holds no full "
                         f"batch of {batch_size} rows; lower {{training.batch_size}} or add data")
    return steps


def scratch_dir(task) -> Path | None:
    """Where a worker other than the chief saves its (collective) checkpoints; None for the chief,
    which writes into the run dir."""
    return None if task.is_chief else Path(tempfile.mkdtemp(prefix=f"rocket_ctr_worker{task.worker_index}_"))


def write_dir(trainer, name: str) -> Path:
    """Where this worker's checkpoints go: the run dir for the chief, scratch for the others."""
    return (trainer.run_dir if trainer.is_chief else trainer._scratch) / name


# ----- the model and its state ------------------------------------------------------------------
def build_model(trainer) -> tuple[RocketModel, dict]:
    """The model and one optimizer per stage, under the strategy's scope, every variable created
    (so that a checkpoint restores into them)."""
    cfg, training = trainer.config, trainer.config.training
    with trainer.strategy.scope():
        model = RocketModel(trainer.spec, cfg)
        stages = ("booster", "light") if cfg.model.mode == "two-stage" else ("joint",)
        booster_rate = training.booster_learning_rate or training.learning_rate
        optimizers = {stage: make_optimizer(training.optimizer, booster_rate if stage == "booster"
                                            else training.learning_rate) for stage in stages}
        first = next(iter(trainer.reader), None)
        if first is None:
            raise FieldError(f"{trainer.train_paths}: no full batch of {training.batch_size} rows in any history "
                             "bucket (training drops partial batches); lower {training.batch_size} or add data")
        features, label = first
        rows = model_inputs(trainer.spec, trainer.mapper)({k: tf.constant(v) for k, v in features.items()},
                                                          tf.constant(label))[0]
        model(rows, training=False)
        trainer.reader.epoch = 0
        if cfg.model.mode == "two-stage":
            optimizers["booster"].build(model.tower_variables("booster"))
            optimizers["light"].build(model.tower_variables("light"))
        else:
            optimizers["joint"].build(model.trainable_variables)
            if "booster" in model.towers:
                optimizers["joint"].scale_rates(model.tower_variables("booster"), booster_rate / training.learning_rate)
        if model.booster_wide is not None:  # a multiple of the booster's rate, in the optimizer that trains it
            two_stage, joint_scale = "booster" in optimizers, booster_rate / training.learning_rate
            optimizers["booster" if two_stage else "joint"].scale_rates(
                model.booster_wide.weights, training.booster_wide_rate * (1.0 if two_stage else joint_scale))
    return model, optimizers


def checkpointing(trainer) -> tuple[tf.train.Checkpoint, tf.train.CheckpointManager]:
    """The checkpoint of the model, progress and optimizers, and its manager (the newest 3)."""
    checkpoint = tf.train.Checkpoint(model=trainer.model, progress=trainer.progress, **trainer.optimizers)
    return checkpoint, tf.train.CheckpointManager(checkpoint, str(write_dir(trainer, layout.CHECKPOINTS)),
                                                  max_to_keep=3)


def restore(checkpoint: tf.train.Checkpoint, run_dir: Path) -> str | None:
    """Restores the chief's newest checkpoint (for every worker); returns its prefix (None: a new run)."""
    latest = layout.latest_checkpoint(run_dir)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
    return latest


def warm_start_into(trainer, source: WarmStartSource | None, resumed: bool, carry_optimizer: bool) -> dict | None:
    """Loads the source's weights into a new run and records what was carried (None: nothing was)."""
    if source is None or resumed:
        return None
    carried = source.load_into(trainer.model, trainer.optimizers, carry_optimizer)
    if trainer.is_chief:
        layout.write_atomic(trainer.run_dir / WARM_START_FILE, layout.to_json(carried) + "\n")
    return carried


# ----- the policies -----------------------------------------------------------------------------
def make_callbacks(trainer) -> tuple:
    """The run's policies, in the order the loop calls them: hint warm-up, TensorBoard, early
    stopping, then the intercept refit and the validation fold-in (the fold-in first when the
    calibration is fitted after it), recorder (None where off)."""
    cfg = trainer.config
    launched = (trainer.warm_started or read_warm_start(trainer.run_dir)).get("hint_launched", False)  # warm start
    warmup = HintWarmup.for_config(cfg, trainer.history, launched)
    tensorboard = TensorBoardLogs(trainer.run_dir / layout.TENSORBOARD, enabled=trainer.is_chief)
    early_stopping = EarlyStopping.for_config(
        cfg, best_dir=write_dir(trainer, layout.BEST), chief_best_dir=trainer.run_dir / layout.BEST,
        checkpoints=trainer.manager, history=trainer.history, verbose=trainer.verbose)
    fold_in = _validation_fold_in(trainer)
    refit = _intercept_refit(trainer, fold_in)
    holdout = trainer.holdout
    recorder = RunRecorder(trainer.run_dir, cfg, trainer.history, trainer.total_epochs, trainer.task.num_workers,
                           write=trainer.is_chief, verbose=trainer.verbose, warmup=warmup,
                           early_stopping=early_stopping, field_names=trainer.field_names,
                           validation_split=holdout and holdout.record(), hint_weight=trainer.model.hint_weight)
    after_training = (fold_in, refit) if calibrates_after_fold_in(trainer) else (refit, fold_in)
    return (warmup, tensorboard, early_stopping, *after_training, recorder)


def calibrates_after_fold_in(trainer) -> str | None:
    """How the refit avoids the folded-in rows when it runs after the fold-in: ``"cross-fit"``
    (out-of-fold logits), ``"slice"`` (users kept out of the fold-in); None: it runs before."""
    if not trainer.holdout or not trainer.holdout.calibration_share:  # a share only where a fold-in runs
        return None
    return trainer.config.training.fold_in_calibration


def _intercept_refit(trainer, fold_in: ValidationFoldIn | None) -> InterceptRefit | None:
    """The refit of the towers' intercepts after training (None: the model has none)."""
    if not trainer.model.intercepts:
        return None
    spec, train = trainer.spec, trainer.train_paths
    after = calibrates_after_fold_in(trainer)

    def logits():
        if after == "cross-fit":
            return fold_in.out_of_fold
        part = "calibration" if after == "slice" else "validation"
        return validation_logits(trainer.model, train, spec, (trainer.holdout, part), spec.negative_rate)

    def share(values):
        if not trainer.distributed:
            return values
        return list(broadcast_from_chief(trainer.strategy, np.asarray(values, np.float64), trainer.is_chief))

    fitted_on = {"cross-fit": "out-of-fold logits of the validation rows (cross-fitting over two halves of users)",
                 "slice": "calibration slice (validation rows kept out of the fold-in)"}.get(after, "validation rows")
    # the last of the refit and the fold-in evaluates
    evaluate_eval = _evaluate_eval(trainer) if after or trainer.fold_in_wanted != "yes" else None
    return InterceptRefit(logits if trainer.holdout else None, evaluate_eval, share, trainer.manager,
                          is_chief=trainer.is_chief, verbose=trainer.verbose, fitted_on=fitted_on,
                          evaluate_always=bool(after), checkpoint_offset=3 if after else 2)


def _validation_fold_in(trainer) -> ValidationFoldIn | None:
    """The pass over the validation rows after training (None: not wanted), with cross-fitting
    around it (:mod:`rocket_ctr.train.cross_fit`) where the calibration is fitted after it."""
    wanted = trainer.fold_in_wanted
    if wanted is None:
        return None
    holdout, spec, after = trainer.holdout, trainer.spec, calibrates_after_fold_in(trainer)

    def validation_pass(part: str) -> tuple[int, int]:
        """One shuffled pass over a part of the validation rows with the last stage's training step: (rows, steps)."""
        reader = training_reader(trainer, part, trainer.config.training.seed + trainer.total_epochs)
        prepare = model_inputs(spec, trainer.mapper)
        step = trainer._step_function(trainer._stage_for(trainer.total_epochs - 1), entering=False)
        rows = steps = 0
        with surfacing_input_errors():
            for batch, label, _, weight in to_dataset(reader).map(prepare, num_parallel_calls=tf.data.AUTOTUNE) \
                    .prefetch(4):
                step(batch, label, weight)
                rows, steps = rows + int(label.shape[0]), steps + 1
        return rows, steps

    def score(part: str) -> tuple:
        return validation_logits(trainer.model, trainer.train_paths, spec, (holdout, part), spec.negative_rate)

    def state() -> list:
        return list(trainer.model.variables) + [v for o in trainer.optimizers.values() for v in o.variables]

    evaluate_eval = None if after and trainer.model.intercepts else _evaluate_eval(trainer)  # else the refit does
    final_part = "fold" if after == "slice" else "validation"
    return ValidationFoldIn((lambda: validation_pass(final_part)) if wanted == "yes" else None, evaluate_eval,
                            trainer.manager, skipped=None if wanted == "yes" else wanted, verbose=trainer.verbose,
                            checkpoint_offset=2 if after else 3,
                            cross_fit=CrossFit(validation_pass, score, state) if after == "cross-fit" else None)


def _evaluate_eval(trainer):
    """``() -> eval metrics`` of the model as it is (None: no eval data, or not the chief)."""
    if trainer.eval_paths is None or not trainer.is_chief:
        return None
    return lambda: evaluate(trainer.model, trainer.eval_paths, trainer.spec)
