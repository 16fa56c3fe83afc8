"""The validation rows folded into the model after training (``training.fold_in_validation``)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import log_columns, write_log
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.io.reader import ClickLogReader
from rocket_ctr.train.evaluation import evaluate
from rocket_ctr.train.trainer import RUN_FINISHED, Trainer

TINY = dict(mode="base", epochs=2, batch_size=64, learning_rate=5e-3, embedding_dim=8, light_units=(16,),
            validation_fraction=0.2, jit_compile=False)


def leave_last_out_log(path, users=120, seed=0):
    """Every user has 4..9 events, ts = the event's position in the user's sequence; each event
    is a click and a non-click sharing ts (the shape of the shared Amazon/Yelp logs)."""
    rng = np.random.default_rng(seed)
    rows = [(user, position, label) for user in range(users)
            for position in range(1, int(rng.integers(4, 10)) + 1) for label in (1, 0)]
    columns = log_columns(len(rows), seed=seed, max_len=6)
    columns["user_id"] = [u for u, _, _ in rows]
    columns["ts"] = [t for _, t, _ in rows]
    columns["label"] = [y for _, _, y in rows]
    columns["item_id"] = [int(i) % 50 for i in range(len(rows))]
    return write_log(path, columns)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fold_in")
    train = leave_last_out_log(folder / "train.parquet")
    test = leave_last_out_log(folder / "test.parquet", users=60, seed=1)
    trainer = Trainer(folder / "run", train, test, RocketConfig(**TINY), verbose=0)
    return trainer, trainer.fit(), train, test


def _weights(model):
    return [v.numpy().copy() for v in model.trainable_variables]


def spy_parts(monkeypatch) -> tuple[list, list]:
    """Records, in order, the validation-split part every training reader reads and every
    ``validation_logits`` call scores."""
    from rocket_ctr.train import assembly

    read, scored = [], []
    real_reader, real_logits = assembly.training_reader, assembly.validation_logits
    monkeypatch.setattr(assembly, "training_reader",
                        lambda trainer, part, seed, **kw: read.append(part) or real_reader(trainer, part, seed, **kw))
    monkeypatch.setattr(assembly, "validation_logits",
                        lambda model, paths, spec, holdout, *a, **k: scored.append(holdout[1]) or
                        real_logits(model, paths, spec, holdout, *a, **k))
    return read, scored


def test_a_last_event_split_is_folded_in_and_the_final_model_is_what_metrics_report(finished):
    trainer, metrics, train, test = finished
    assert trainer.holdout.kind == "last-event"
    held = sum(len(label) for _, label in ClickLogReader(train, trainer.spec, holdout=(trainer.holdout, "validation")))
    fold_in = dict(metrics["fold_in"])
    assert set(fold_in.pop("cross_fit_level_shift")) == {"light"}
    assert fold_in == {"rows": held, "steps": math.ceil(held / TINY["batch_size"])}
    final = evaluate(trainer.model, test, trainer.spec)["light"]
    assert final["auc"] == pytest.approx(metrics["light"]["auc"], abs=1e-6)
    # the kept epoch's own eval (history.json) is the model before the fold-in
    assert metrics["eval_without_intercept"]["light"]["logloss"] != pytest.approx(final["logloss"], abs=1e-6)
    progress = tf.train.load_variable(trainer.manager.latest_checkpoint, "progress/.ATTRIBUTES/VARIABLE_VALUE")
    assert progress.tolist() == [TINY["epochs"], RUN_FINISHED, progress[2]]


def test_a_finished_run_is_not_folded_in_again(finished, tmp_path):
    trainer, metrics, train, test = finished
    again = Trainer(trainer.run_dir, train, test, RocketConfig(**TINY), verbose=0)
    before = _weights(again.model)
    assert again.fit() == metrics
    assert all(np.array_equal(a, b) for a, b in zip(before, _weights(again.model)))


def test_a_kill_inside_the_after_training_steps_folds_in_again(finished):
    trainer, metrics, train, test = finished
    # what a kill between the last epoch's checkpoint and the finished one leaves: progress not finished
    trainer.progress.assign([TINY["epochs"], 0, int(trainer.progress.numpy()[2])])
    trainer.manager.save(checkpoint_number=int(trainer.progress.numpy()[2]) + 5)
    again = Trainer(trainer.run_dir, train, test, RocketConfig(**TINY), verbose=0)
    redone = again.fit()
    counts = ("rows", "steps")
    assert {k: redone["fold_in"][k] for k in counts} == {k: metrics["fold_in"][k] for k in counts}
    assert redone["best_epoch"] == metrics["best_epoch"]


@pytest.mark.parametrize("setting,folds", [("auto", False), ("yes", True), ("no", False)])
def test_auto_folds_in_a_last_event_split_only(setting, folds, click_log, tmp_path):
    log = click_log(n=600)  # ts on a clock shared by all rows: a time split
    config = RocketConfig(**{**TINY, "epochs": 1, "fold_in_validation": setting})
    trainer = Trainer(tmp_path / "run", log, None, config, verbose=0)
    metrics = trainer.fit()
    assert trainer.holdout.kind == "time"
    assert ("fold_in" in metrics) == folds
    if folds:
        assert metrics["fold_in"]["rows"] > 0


def test_run_dirs_from_before_the_field_do_not_fold_in():
    assert RocketConfig.from_saved({"training": {"epochs": 1}}).training.fold_in_validation == "no"
    assert RocketConfig().training.fold_in_validation == "auto"


def test_the_calibration_is_fitted_on_rows_the_final_model_never_trained_on(tmp_path, monkeypatch):
    log = leave_last_out_log(tmp_path / "train.parquet")
    table = __import__("pyarrow.parquet", fromlist=["read_table"]).read_table(log)
    # every row its own item id: the rows each part reads are told apart by it
    log = write_log(tmp_path / "unique.parquet", {**table.to_pydict(), "item_id": list(range(table.num_rows))})
    read, fitted = spy_parts(monkeypatch)
    test = leave_last_out_log(tmp_path / "test.parquet", users=60, seed=1)
    config = RocketConfig(**TINY, fold_in_calibration="slice", calibration_share=0.4)
    trainer = Trainer(tmp_path / "run", log, test, config, verbose=0)
    metrics = trainer.fit()
    assert read == ["train", "fold"] and fitted == ["calibration"]

    def items(part):
        reader = ClickLogReader(log, trainer.spec, holdout=(trainer.holdout, part))
        return {int(i) for features, _ in reader for i in features["item_id"].reshape(-1)}

    train, fold, calibration, validation = (items(p) for p in ("train", "fold", "calibration", "validation"))
    assert calibration and fold and not calibration & (train | fold)  # never trained on, in training or after
    assert calibration | fold == validation and train | validation == set(range(table.num_rows))
    assert metrics["intercept"]["rows"] == len(calibration) and metrics["fold_in"]["rows"] == len(fold)
    assert metrics["intercept"]["fitted_on"].startswith("calibration slice")
    # what metrics.json reports is the served model: folded in, then calibrated
    final = evaluate(trainer.model, test, trainer.spec)["light"]
    assert metrics["light"]["auc"] == pytest.approx(final["auc"], abs=1e-6)
    assert metrics["light"]["logloss"] == pytest.approx(final["logloss"], abs=1e-5)


def test_calibrating_before_the_fold_in_the_refit_fits_every_validation_row_before_the_fold_in(tmp_path, monkeypatch):
    log = leave_last_out_log(tmp_path / "train.parquet")
    _, fitted = spy_parts(monkeypatch)
    trainer = Trainer(tmp_path / "run", log, None, RocketConfig(**TINY, fold_in_calibration="before"), verbose=0)
    metrics = trainer.fit()
    assert fitted == ["validation"] and metrics["intercept"]["fitted_on"] == "validation rows"
    names = [type(c).__name__ for c in trainer.callbacks]
    assert names.index("InterceptRefit") < names.index("ValidationFoldIn")


def test_cross_fitting_fits_out_of_fold_logits_and_serves_the_model_folded_in_on_every_row(tmp_path, monkeypatch):
    log = leave_last_out_log(tmp_path / "train.parquet")
    test = leave_last_out_log(tmp_path / "test.parquet", users=60, seed=1)
    read, scored = spy_parts(monkeypatch)
    crossed = Trainer(tmp_path / "crossed", log, test, RocketConfig(**TINY), verbose=0)
    metrics = crossed.fit()
    # each half is scored right after a pass over the other half only, from the same restored state; each
    # half-model's level is read on both halves (the half it scored and the half it trained on), the served
    # model's on every validation row
    assert read == ["train", "fold", "calibration", "validation"]
    assert scored == ["calibration", "fold", "fold", "calibration", "validation"]
    shifts = metrics["fold_in"]["cross_fit_level_shift"]["light"]
    assert len(shifts) == 2 and all(math.isfinite(s) and s != 0.0 for s in shifts)
    assert crossed.holdout.calibration_share == 0.5
    assert metrics["intercept"]["fitted_on"].startswith("out-of-fold")
    validation = sum(len(label) for _, label in ClickLogReader(log, crossed.spec, holdout=(crossed.holdout,
                                                                                              "validation")))
    assert metrics["intercept"]["rows"] == validation == metrics["fold_in"]["rows"]
    # the served model is the one folded in on every validation row: the same weights as calibrating
    # before the pass (the restores leave no trace), only the calibration differs
    before = Trainer(tmp_path / "before", log, test, RocketConfig(**TINY, fold_in_calibration="before"), verbose=0)
    before.fit()
    pairs = [(a, b) for a, b in zip(crossed.model.trainable_variables, before.model.trainable_variables)
             if not any(word in a.path for word in ("intercept", "slope"))]
    assert len(pairs) > 4 and all(np.array_equal(a.numpy(), b.numpy()) for a, b in pairs)
    final = evaluate(crossed.model, test, crossed.spec)["light"]
    assert metrics["light"]["auc"] == pytest.approx(final["auc"], abs=1e-6)
