"""Training end to end on a generated log: learning, outputs, resume after a kill, evaluate."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow.parquet as pq
import pytest

from rocket_ctr.config.fields import flag_table
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.datagen.synthetic import generate
from rocket_ctr.errors import InputError
from rocket_ctr.metrics.ranking import auc
from rocket_ctr.model.parts import embeds_user_id
from rocket_ctr.pipelines.cli import main
from rocket_ctr.train.callbacks.hint_warmup import HintWarmup
from rocket_ctr.train.evaluation import evaluate
from rocket_ctr.train.trainer import Trainer

FAST = dict(epochs=2, batch_size=256, learning_rate=5e-3, embedding_dim=8, booster_units=(64, 48, 32, 32, 16, 16, 16))


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    out = tmp_path_factory.mktemp("log")
    generate(out, n_rows=60_000, n_users=2_000, n_items=400, n_cates=20, seed=3, with_oracle=True,
             row_group_size=8_192)
    return out


@pytest.fixture(scope="module")
def trained(log, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    metrics = Trainer(run_dir, log / "train", log / "test", RocketConfig(**FAST), verbose=0).fit()
    return run_dir, metrics


def test_training_learns_but_stays_below_the_oracle(log, trained):
    _, metrics = trained
    test = pq.read_table(log / "test", columns=["label", "click_prob"])
    oracle = auc(test["label"].to_numpy(), test["click_prob"].to_numpy())
    assert 0.6 < metrics["light"]["auc"] < oracle
    # metrics.json holds the best validation epoch's; the booster, not launched yet, starts slower
    assert 0.55 < metrics["history"][-1]["eval"]["booster"]["auc"] < oracle
    assert metrics["light"]["gauc"] > 0.55
    history = metrics["history"]
    assert history[-1]["train"]["light_ce"] < history[0]["train"]["light_ce"] or \
        history[-1]["eval"]["light"]["logloss"] <= history[0]["eval"]["light"]["logloss"]


def test_run_dir_outputs(trained):
    run_dir, metrics = trained
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert {"mode", "epochs", "train_examples_per_s", "light", "booster", "config"} <= set(saved)
    assert set(saved["light"]) == {"auc", "gauc", "logloss", "pcoc", "ece"}
    assert all((run_dir / f"reliability_{t}.png").stat().st_size > 1000 for t in ("light", "booster"))
    assert saved["mode"] == "rocket" and saved["epochs"] == 2 and saved["train_examples_per_s"] > 0
    assert saved["config"]["hint"]["loss"] == "mimic"
    assert (run_dir / "curves.png").stat().st_size > 1000
    assert list((run_dir / "tensorboard" / "eval").iterdir())
    assert list((run_dir / "checkpoints").glob("ckpt-*.index"))


def test_rerun_of_a_finished_run_trains_nothing_more(log, trained):
    run_dir, metrics = trained
    again = Trainer(run_dir, log / "train", log / "test", RocketConfig(**FAST), verbose=0)
    before = int(again.progress.numpy()[2])
    assert before > 0
    assert again.fit()["light"] == metrics["light"]
    assert int(again.progress.numpy()[2]) == before
    # the restored weights (BatchNorm statistics included) reproduce the run's eval metrics
    restored = evaluate(again.model, log / "test", again.spec)
    assert restored["light"]["auc"] == pytest.approx(metrics["light"]["auc"], abs=1e-6)
    assert restored["booster"]["logloss"] == pytest.approx(metrics["booster"]["logloss"], abs=1e-6)


def test_run_dir_with_other_config_is_refused(log, trained):
    run_dir, _ = trained
    with pytest.raises(InputError, match="another config"):
        Trainer(run_dir, log / "train", None, RocketConfig(**{**FAST, "hint_weight": 0.5}), verbose=0)


def test_evaluate_cli_prints_metrics_json(log, trained, capsys):
    run_dir, metrics = trained
    assert main(["evaluate", "--run-dir", str(run_dir), "--data", str(log / "test")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["light"]["auc"] == pytest.approx(metrics["light"]["auc"], abs=1e-6)


@pytest.mark.parametrize("mode", ["base", "booster", "two-stage"])
def test_other_modes_train(log, tmp_path, mode):
    config = RocketConfig(**{**FAST, "epochs": 1, "mode": mode, "booster_epochs": 1})
    metrics = Trainer(tmp_path, log / "train", log / "test", config, verbose=0).fit()
    expected = {"base": {"light"}, "booster": {"booster"}, "two-stage": {"light", "booster"}}[mode]
    assert expected <= set(metrics) and not ({"light", "booster"} - expected) & set(metrics)
    assert metrics["epochs"] == (2 if mode == "two-stage" else 1)


def test_killed_training_resumes_from_its_checkpoint(log, tmp_path):
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "rocket_ctr.pipelines.cli", "train", "--train", str(log / "train"),
               "--run-dir", str(run_dir), "--epochs", "2", "--batch-size", "256", "--embedding-dim", "8",
               "--booster-units", "32,16", "--checkpoint-every", "40", "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while not list((run_dir / "checkpoints").glob("ckpt-*.index")) and time.time() < deadline:
        if process.poll() is not None:
            pytest.fail("training finished before it could be killed: " + process.stdout.read().decode()[-2000:])
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = subprocess.run(command[:-1], env=env, capture_output=True, text=True, timeout=400)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    match = [line for line in resumed.stdout.splitlines() if line.startswith("resuming from checkpoint")]
    assert match, resumed.stdout[-2000:]
    steps_per_epoch = 54_000 // 256  # rows in train split // batch (the reader drops remainders per bucket)
    final = json.loads((run_dir / "history.json").read_text())
    assert len(final) == 2
    from rocket_ctr.train.run_dir import restore_model  # noqa: F401 (the finished run restores)
    progress = [int(p) for p in open(run_dir / "checkpoints" / "checkpoint").read().split('"')[1].split("-")[1:]]
    assert progress[0] <= 2 * steps_per_epoch


def test_a_failed_first_attempt_does_not_lock_the_run_dir(log, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(InputError, match="no full batch"):
        Trainer(run_dir, log / "test", None, RocketConfig(**{**FAST, "batch_size": 8192}), verbose=0)
    config = RocketConfig(**{**FAST, "epochs": 1, "booster_units": (16,)})
    trainer = Trainer(run_dir, log / "test", None, config, verbose=0)
    assert trainer.fit()["epochs"] == 1


def test_resuming_with_another_feature_spec_is_refused(log, trained):
    import dataclasses

    from rocket_ctr.features.spec import FeatureSpec
    run_dir, _ = trained
    spec = FeatureSpec.load(run_dir / "feature_spec.json")
    other = dataclasses.replace(spec, max_history=spec.max_history - 1)
    before = (run_dir / "feature_spec.json").read_text()
    with pytest.raises(InputError, match="another feature_spec.json"):
        Trainer(run_dir, log / "train", None, RocketConfig(**FAST), other, verbose=0)
    assert (run_dir / "feature_spec.json").read_text() == before


def test_validation_split_by_user_and_early_stopping_restore_the_best_epoch(log, tmp_path):
    config = RocketConfig(**{**FAST, "epochs": 3, "validation_fraction": 0.2, "early_stopping_patience": 1,
                             "learning_rate": 0.05})  # a high rate so that validation GAUC turns down
    trainer = Trainer(tmp_path, log / "train", log / "test", config, verbose=0)
    metrics = trainer.fit()
    history = metrics["history"]
    scores = [r["validation"]["light"]["gauc"] for r in history]
    tolerance = config.training.early_stopping_min_delta    # the last epoch as good as the best, within it
    best = max(i for i, score in enumerate(scores) if score >= max(scores) - tolerance)
    assert metrics["best_epoch"] == best + 1
    # the test metrics are the refitted model's (training.calibrate_intercept); before the refit, the kept epoch's
    kept = {k: history[best]["eval"]["light"][k] for k in ("auc", "gauc", "logloss", "pcoc", "ece")}
    assert metrics["eval_without_intercept"]["light"] == kept
    assert metrics["light"]["gauc"] == pytest.approx(kept["gauc"], abs=2e-3)
    if len(history) < 3:  # stopped early: the last `patience` epochs did not improve
        assert history[-1].get("early_stopped") and best == len(history) - 2
    # the run's latest checkpoint holds the best epoch's weights
    restored = evaluate(trainer.model, log / "test", trainer.spec)
    assert restored["light"]["auc"] == pytest.approx(metrics["light"]["auc"], abs=1e-6)
    assert (tmp_path / "tensorboard" / "validation").exists()


def test_without_validation_users_training_says_the_protections_are_off(log, tmp_path, capsys):
    config = RocketConfig(**{**FAST, "epochs": 1, "validation_fraction": 0.0, "hint_weight": 1.0})
    metrics = Trainer(tmp_path, log / "train", None, config, verbose=1).fit()
    assert "hint warm-up and early stopping are off" in capsys.readouterr().out
    assert "hint_launched_after_epoch" not in metrics and metrics["history"][0]["train"]["hint"] > 0
    assert metrics["hint_weight"] == 1.0  # metrics.json records λ as trained


def test_validation_users_never_reach_training(log):
    from rocket_ctr.features.hashing import user_unit_hash
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.io.holdout import plan_holdout
    from rocket_ctr.io.log_gate import resolve_paths
    from rocket_ctr.io.reader import ClickLogReader
    users = plan_holdout(resolve_paths(log / "train"), FeatureSpec(), "users", 0.2)
    train = ClickLogReader(log / "train", holdout=(users, "train"))
    held = ClickLogReader(log / "train", holdout=(users, "validation"))
    train_users = np.concatenate([f["user_id"] for f, _ in train])
    held_users = np.concatenate([f["user_id"] for f, _ in held])
    assert not set(train_users) & set(held_users)
    assert len(train_users) + len(held_users) == 54_000
    assert (user_unit_hash(held_users) < 0.2).all()


def test_hint_warmup_keeps_the_hint_off_until_the_booster_leads_on_validation(log, tmp_path):
    config = RocketConfig(**{**FAST, "epochs": 1, "validation_fraction": 0.2, "hint_warmup": True,
                             "booster_bottom": "after-launch"})
    # printed notes name config fields as the front end calls them: here the CLI's flags
    trainer = Trainer(tmp_path, log / "train", None, config, verbose=0, field_names=flag_table(RocketConfig))
    metrics = trainer.fit()
    first = metrics["history"][0]
    assert first["hint_scale"] == 0.0 and first["train"]["hint"] == 0.0  # nothing known before epoch 1 ends
    assert isinstance(metrics["booster_beat_light_on_validation"], bool)
    assert metrics["hint_launched_after_epoch"] in (None, 1)
    # hint weight auto, resolved on the run's FeatureSpec: 0.5 where the user id is embedded for both towers
    assert metrics["hint_weight"] == trainer.model.hint_weight == (0.5 if embeds_user_id(trainer.model.spec) else 0.0)
    never = trainer.recorder.weak_booster_warning(0.70, 0.65, None)
    assert "0.6500 vs 0.7000" in never and "never launched" in never and "--mode base" in never
    assert "after epoch 2" in trainer.recorder.weak_booster_warning(0.70, 0.65, 2)
    trainer.recorder.field_names = None  # a Python caller: the config's own field names
    assert "model.mode base" in trainer.recorder.weak_booster_warning(0.70, 0.65, None)
    trainer.recorder.config = trainer.config.replace(booster_bottom="from-start")  # the booster trained the bottom
    from_start = trainer.recorder.weak_booster_warning(0.70, 0.65, None)
    assert "second task" in from_start and "hint.booster_bottom from-start" in from_start
    assert "never launched" not in from_start

    def record(epoch, booster_loss):
        return {"epoch": epoch, "stage": "joint", "steps": 100,
                "validation": {"light": {"logloss": 0.2}, "booster": {"logloss": booster_loss}}}
    warmup = HintWarmup("logloss", history=[record(1, 0.3), record(2, 0.1)])  # the booster leads from epoch 2's end
    assert warmup.hint_scale(1, 50) == 0.0
    assert warmup.hint_scale(2, 0) == 0.0 and warmup.hint_scale(2, 50) == 0.5
    assert warmup.hint_scale(3, 0) == 1.0
    # a booster that ranks better but is not yet calibrated leads only when launching on GAUC
    ranks_better = {"epoch": 1, "stage": "joint", "steps": 100,
                    "validation": {"light": {"logloss": 0.2, "gauc": 0.70}, "booster": {"logloss": 0.3, "gauc": 0.72}}}
    assert not warmup.booster_leads(ranks_better)
    warmup = HintWarmup.for_config(trainer.config.replace(hint_launch_metric="gauc"))
    assert warmup.booster_leads(ranks_better)
    with pytest.raises(InputError, match="hint.launch_metric must be logloss or gauc"):
        RocketConfig(hint_launch_metric="auc")
    # without validation users there is nothing to compare: the warm-up and early stopping stand down
    assert not RocketConfig(validation_fraction=0).warmup_active
    assert not RocketConfig(validation_fraction=0).early_stopping_active
    assert RocketConfig().warmup_active and not RocketConfig(mode="base").warmup_active


def test_base_mode_ignores_booster_only_columns_and_says_so(click_log, tmp_path, capsys):
    from rocket_ctr.features.id_feature import IdFeature
    from rocket_ctr.features.spec import FeatureSpec
    from rocket_ctr.train.run_dir import restore_model

    spec = FeatureSpec(item_features=(IdFeature("slot", buckets=5, booster_only=True),)).with_buckets(
        item_id=500, cate_id=20)
    config = RocketConfig(mode="base", epochs=1, batch_size=32, embedding_dim=4, light_units=(8,),
                          validation_fraction=0.0)
    log = click_log(n=100, max_len=10)  # no slot column: nothing reads it
    Trainer(tmp_path, log, None, config, spec, verbose=1).fit()
    assert "mode base: the booster-only columns ['slot'] are ignored" in capsys.readouterr().out
    model, recorded, _ = restore_model(tmp_path)
    assert recorded == spec.served() and model.booster_columns is None


@pytest.mark.parametrize("mode", ["rocket", "two-stage"])
def test_the_booster_learning_rate_steps_the_boosters_own_variables_only(log, tmp_path, mode):
    config = RocketConfig(**{**FAST, "mode": mode, "learning_rate": 1e-3, "booster_learning_rate": 4e-3})
    trainer = Trainer(tmp_path, log / "train", None, config, verbose=0)
    model, optimizers = trainer.model, trainer.optimizers
    if mode == "two-stage":  # one optimizer per stage: the booster's runs at its own rate
        assert float(optimizers["booster"].learning_rate) == pytest.approx(4e-3)
        assert float(optimizers["light"].learning_rate) == pytest.approx(1e-3)
        return
    joint = optimizers["joint"]
    booster = {joint._var_key(v) for v in model.tower_variables("booster") if v.trainable}
    scales = {joint._var_key(v): joint._rate_scales.get(joint._var_key(v), 1.0) for v in model.trainable_variables}
    assert booster and {scales[k] for k in booster} == {4.0}
    assert {s for k, s in scales.items() if k not in booster} == {1.0}  # light tower and shared embeddings


@pytest.mark.parametrize("mode", ["rocket", "two-stage"])
def test_the_wide_part_steps_at_its_multiple_of_the_boosters_rate(log, tmp_path, mode):
    config = RocketConfig(**{**FAST, "mode": mode, "learning_rate": 1e-3, "booster_learning_rate": 2e-3,
                             "booster_wide": True, "booster_wide_crosses": "user_gender*cate_id",
                             "booster_wide_rate": 5.0})
    trainer = Trainer(tmp_path, log / "train", None, config, verbose=0)
    model = trainer.model
    optimizer = trainer.optimizers["booster" if mode == "two-stage" else "joint"]
    wide = {optimizer._var_key(v) for v in model.booster_wide.weights}
    assert len(wide) == len(model.booster_wide.embeddings) + 1 >= 4  # one per id feature; the gender × category pairs
    scales = {optimizer._var_key(v): optimizer._rate_scales.get(optimizer._var_key(v), 1.0)
              for v in model.tower_variables("booster") if v.trainable}
    # two-stage: the booster's optimizer already runs at its rate; rocket: the joint one scales it
    booster_scale = 1.0 if mode == "two-stage" else 2.0
    assert {scales[k] for k in wide} == {5.0 * booster_scale}
    assert {s for k, s in scales.items() if k not in wide} == {booster_scale}
