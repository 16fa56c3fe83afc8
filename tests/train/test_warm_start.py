"""Warm start: a new run from another run's weights; what may change is accepted, the rest refused."""
import dataclasses
import json

import numpy as np
import pytest

from conftest import tiny_run
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import FieldError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.pipelines.cli import main
from rocket_ctr.train.callbacks.hint_warmup import HintWarmup
from rocket_ctr.train.run_dir import restore_model
from rocket_ctr.train.trainer import Trainer
from rocket_ctr.train.warm_start import STATE_FILE, WarmStartSource, feature_set_difference, row_mapping

SMALL = dict(epochs=1, batch_size=64, embedding_dim=4, light_units=(8,), booster_units=(8, 8),
             validation_fraction=0.0, learning_rate=0.01)


def with_vocabulary(spec: FeatureSpec, name: str, vocabulary) -> FeatureSpec:
    return dataclasses.replace(spec, user_features=tuple(
        dataclasses.replace(f, vocabulary=tuple(vocabulary)) if f.name == name else f for f in spec.user_features))


def test_row_mapping_keeps_known_ids_by_id_and_gives_new_ids_fresh_rows():
    take, counts = row_mapping(("a", "b", "c"), ("c", "x", "a"))
    assert take.tolist() == [0, 3, -1, 1] and counts == {"kept": 2, "new": 1, "dropped": 1}


def test_feature_set_differences_are_named():
    spec = FeatureSpec()
    assert feature_set_difference(spec, with_vocabulary(spec, "user_gender", "FM")) == \
        "user_gender: hashing there and a vocabulary here"
    vocab = with_vocabulary(spec, "user_gender", "FM")
    assert feature_set_difference(vocab, with_vocabulary(spec, "user_gender", "FMU")) is None
    assert "item_id: 200000 hash buckets there and 7 here" in feature_set_difference(spec, spec.with_buckets(item_id=7))
    assert "user_features" in feature_set_difference(spec, dataclasses.replace(spec, user_features=()))
    assert feature_set_difference(spec, dataclasses.replace(spec, max_history=20, history_buckets=(4,))) is None


def test_a_launched_source_starts_the_hint_at_full_weight():
    assert HintWarmup(launched=True).hint_scale(0, 0) == 1.0
    assert HintWarmup().hint_scale(0, 0) == 0.0


def test_weights_and_optimizer_state_carry_over_the_learning_rate_does_not(tmp_path_factory, tmp_path):
    run, log = tiny_run(tmp_path_factory)
    source = WarmStartSource.open(run)
    config = source.config.replace(learning_rate=0.0123, epochs=2)
    trainer = Trainer(tmp_path / "day2", log / "train", None, config, verbose=0, warm_start=run)
    expected, _, _ = restore_model(run)
    for a, b in zip(expected.weights, trainer.model.weights):
        if b is not trainer.model.hint_scale:
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    optimizer = trainer.optimizers["joint"]
    assert int(optimizer.iterations.numpy()) > 0 and float(optimizer.learning_rate.numpy()) == pytest.approx(0.0123)
    carried = json.loads((tmp_path / "day2" / STATE_FILE).read_text())
    assert carried["source"] == str(run) and carried["optimizer_state"] and carried["vocabulary"] == {}

    fresh = Trainer(tmp_path / "other", log / "train", None, config, verbose=0, warm_start=run,
                    warm_start_optimizer=False)
    assert int(fresh.optimizers["joint"].iterations.numpy()) == 0
    assert all(not v.numpy().any() for v in fresh.optimizers["joint"]._momentums)


def test_a_vocabulary_grows_old_rows_keep_their_weights_and_training_goes_on(click_log, tmp_path):
    spec = FeatureSpec().with_buckets(item_id=512, cate_id=64, user_occupation=16)
    day1, day2 = click_log("day1.parquet", n=400, seed=1), click_log("day2.parquet", n=400, seed=2, start=400)
    old = with_vocabulary(spec, "user_gender", ("F", "M"))
    Trainer(tmp_path / "run1", day1, None, RocketConfig(**SMALL), old, verbose=0).fit()
    new = with_vocabulary(spec, "user_gender", ("M", "U", "F"))
    trainer = Trainer(tmp_path / "run2", day2, None, None, new, verbose=0, warm_start=tmp_path / "run1")
    source, _, _ = restore_model(tmp_path / "run1")
    before = source.bottom.embeddings["user_gender"].embeddings.numpy()
    after = trainer.model.bottom.embeddings["user_gender"].embeddings.numpy()
    assert after.shape == (4, 4)
    np.testing.assert_array_equal(after[[0, 1, 3]], before[[0, 2, 1]])  # OOV, M, F: by id
    assert not np.isin(after[2], before).all()  # U: a fresh row
    optimizer = trainer.optimizers["joint"]
    table = trainer.model.bottom.embeddings["user_gender"].embeddings
    velocity = optimizer._velocities[optimizer._get_variable_index(table)].numpy()
    assert velocity[[1, 3]].any() and not velocity[2].any()  # U has no history in Adam either
    assert trainer.warm_started["vocabulary"]["user_gender"] == {"kept": 2, "new": 1, "dropped": 0}
    assert trainer.fit()["epochs"] == 1


def test_a_vocabulary_change_remaps_the_wide_parts_ids_and_restarts_its_crosses_over_that_feature(click_log, tmp_path):
    spec = FeatureSpec().with_buckets(item_id=512, cate_id=64, user_occupation=16)
    day1, day2 = click_log("day1.parquet", n=400, seed=1), click_log("day2.parquet", n=400, seed=2, start=400)
    crosses = "user_gender*cate_id,user_occupation*cate_id"
    config = RocketConfig(**SMALL, booster_wide=True, booster_wide_crosses=crosses)
    Trainer(tmp_path / "run1", day1, None, config, with_vocabulary(spec, "user_gender", ("F", "M")), verbose=0).fit()
    new = with_vocabulary(spec, "user_gender", ("M", "U", "F"))
    trainer = Trainer(tmp_path / "run2", day2, None, None, new, verbose=0, warm_start=tmp_path / "run1")
    source, _, _ = restore_model(tmp_path / "run1")
    wide_before, wide_after = source.booster_wide, trainer.model.booster_wide
    before = wide_before.embeddings["user_gender"].embeddings.numpy()
    after = wide_after.embeddings["user_gender"].embeddings.numpy()
    np.testing.assert_array_equal(after[[0, 1, 3]], before[[0, 2, 1]])  # OOV, M, F: by id, as the bottom's
    assert after[2] == 0  # U: a fresh scalar starts at zero
    gender_x_cate, occupation_x_cate = wide_after.cross_tables
    assert wide_before.cross_tables[0].embeddings.numpy().any() and not gender_x_cate.embeddings.numpy().any()
    np.testing.assert_array_equal(occupation_x_cate.embeddings.numpy(), wide_before.cross_tables[1].embeddings.numpy())
    assert trainer.fit()["epochs"] == 1


def test_cli_refuses_a_missing_or_incompatible_source_in_one_line(tmp_path_factory, tmp_path, capsys):
    run, log = tiny_run(tmp_path_factory)
    common = ["train", "--train", str(log / "train"), "--run-dir", str(tmp_path / "day2")]
    assert main([*common, "--warm-start", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--warm-start" in err[0] and "not a training run dir" in err[0]
    assert main([*common, "--warm-start", str(run), "--embedding-dim", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--embedding-dim is 8 there and 5 here" in err[0], err
    assert main([*common, "--warm-start", str(run), "--run-dir", str(run)]) == 2
    assert "is the run dir itself" in capsys.readouterr().err
    assert not (tmp_path / "day2").exists()
    with pytest.raises(FieldError, match="model.light.units"):
        WarmStartSource.open(run).check_compatible(RocketConfig(embedding_dim=8, booster_units=(32, 16),
                                                                light_units=(64, 32)), FeatureSpec())
