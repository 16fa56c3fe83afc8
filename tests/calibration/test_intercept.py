"""Intercept and slope refit: the 1-D fit, the model variables, training's refit, the export, old run dirs."""
import json
import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import FLOAT32_PROBABILITY_ATOL
from rocket_ctr.calibration.intercept import fit_intercept
from rocket_ctr.calibration.isotonic import apply_knots, fit_knots, identity_knots
from rocket_ctr.calibration.measures import pcoc
from rocket_ctr.calibration.platt import fit_platt
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.datagen.synthetic import generate
from rocket_ctr.export.rows import sample_rows
from rocket_ctr.export.verify import reference_probabilities
from rocket_ctr.export.writer import export_light, read_export_info
from rocket_ctr.features.signatures import SCORE_ROWS, example_rows
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.rocket import RocketModel
from rocket_ctr.train.evaluation import evaluate, validation_logits
from rocket_ctr.train.run_dir import CONFIG_FILE, restore_model
from rocket_ctr.train.trainer import Trainer
from rocket_ctr.train.warm_start import read_state

TINY = dict(epochs=1, batch_size=256, learning_rate=5e-3, embedding_dim=4, light_units=(8,), booster_units=(8,),
            validation_fraction=0.2, jit_compile=False)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _assert_same_knots(got: dict, expected: dict, atol: float = 1e-6):
    """``{tower: {"x": [...], "y": [...]}}`` equal to ``atol``."""
    assert set(got) == set(expected)
    for tower, knots in expected.items():
        for axis in ("x", "y"):
            np.testing.assert_allclose(got[tower][axis], knots[axis], atol=atol)


def test_fit_recovers_a_known_offset():
    rng = np.random.default_rng(0)
    z = rng.normal(-2.0, 1.0, 400_000)
    labels = rng.random(len(z)) < _sigmoid(z + 0.7)
    b = fit_intercept(z, labels)
    assert b == pytest.approx(0.7, abs=0.02)
    # its first-order condition: the fitted probabilities sum to the clicks (PCOC 1)
    assert pcoc(labels, _sigmoid(z + b)) == pytest.approx(1.0, abs=1e-9)
    # negatives kept at r = 0.1 and weighted 1/r estimate the same b
    kept = labels | (rng.random(len(z)) < 0.1)
    weights = np.where(labels[kept], 1.0, 10.0)
    assert fit_intercept(z[kept], labels[kept], weights) == pytest.approx(0.7, abs=0.03)
    # weight k is k copies of the row
    small = slice(0, 500)
    counts = rng.integers(0, 4, 500)
    copies = np.repeat(np.arange(500), counts)
    assert fit_intercept(z[small], labels[small], counts) == pytest.approx(fit_intercept(z[copies], labels[copies]),
                                                                             abs=1e-9)


def test_fit_without_a_finite_minimum_gives_none():
    z = np.zeros(10)
    assert fit_intercept(z, np.zeros(10)) is None and fit_intercept(z, np.ones(10)) is None
    assert fit_intercept([], []) is None
    with pytest.raises(ValueError, match="length"):
        fit_intercept(z, np.zeros(9))


def test_flag_off_and_old_configs_build_no_intercept():
    spec = FeatureSpec()
    model = RocketModel(spec, RocketConfig(**TINY))
    assert set(model.intercepts) == set(model.slopes) == {"light", "booster"}
    assert model.slope_values() == {"light": 1.0, "booster": 1.0}  # until fitted
    k = RocketConfig().training.calibration_knots
    identity = {"x": identity_knots(k), "y": identity_knots(k)}
    _assert_same_knots(model.knot_values(), {"light": identity, "booster": identity})  # until fitted
    assert model.knot_values()["light"]["x"] == model.knot_values()["light"]["y"]
    assert RocketModel(spec, RocketConfig(**TINY, calibrate_intercept=False)).knots == {}  # knots: with b only
    assert RocketModel(spec, RocketConfig(**TINY, calibration_knots=0)).knots == {}
    # a config.json written before the knots existed: none, the variables of before (checkpoint order too)
    saved = {k: v for k, v in RocketConfig(**TINY).flat().items() if k != "training.calibration_knots"}
    old = RocketConfig.from_saved(saved)
    assert old.training.calibration_knots == 0
    model = RocketModel(spec, old)
    assert model.knots == {} and set(model.slopes) == {"light", "booster"}
    without = RocketModel(spec, RocketConfig(**TINY, calibration_knots=0))
    assert [v.name for v in model.weights] == [v.name for v in without.weights]
    assert RocketModel(spec, RocketConfig(**TINY, calibrate_intercept=False)).intercepts == {}
    assert RocketModel(spec, RocketConfig(**TINY, calibrate_intercept=False)).slopes == {}  # slope: with b only
    only = RocketModel(spec, RocketConfig(**TINY, calibrate_slope=False))
    assert set(only.intercepts) == {"light", "booster"} and only.slopes == {}
    # a config.json written before the field existed: no intercept, offset log r alone
    old = RocketConfig.from_saved({k: v for k, v in RocketConfig(**TINY).flat().items()
                                   if k != "training.calibrate_intercept"})
    assert old.training.calibrate_intercept is False
    model = RocketModel(spec, old, negative_rate=0.5)
    assert model.intercepts == {} and model.slopes == {} and model.offset("light") == math.log(0.5)
    # one written after the intercept refit, before the slope: intercepts, no slope
    saved = {k: v for k, v in RocketConfig(**TINY).flat().items()
             if k not in ("training.calibrate_slope", "training.calibration_knots")}
    old = RocketConfig.from_saved(saved)
    assert old.training.calibrate_intercept is True and old.training.calibrate_slope is False
    model = RocketModel(spec, old, negative_rate=0.5)
    assert set(model.intercepts) == {"light", "booster"} and model.slopes == {} and model.knots == {}
    model.intercepts["light"].assign(0.25)
    logit = tf.constant([-1.0, 0.5])
    np.testing.assert_allclose(model.probabilities({"light": logit})["light"], _sigmoid(logit + math.log(0.5) + 0.25),
                               rtol=1e-6)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """A small generated log with 10 % of the negatives kept upstream (its test split at the full rate)."""
    out = tmp_path_factory.mktemp("log")
    generate(out, n_rows=24_000, n_users=800, n_items=300, n_cates=20, seed=5, negative_rate=0.1,
             row_group_size=8_192)
    return out


REFITS = {True: {}, "intercept": {"calibrate_slope": False}, False: {"calibrate_intercept": False}}


@pytest.fixture(scope="module")
def runs(log, tmp_path_factory):
    """The same training with the refit on (slope and intercept), intercept only and off:
    ``{True: (run_dir, metrics, trainer), "intercept": ..., False: ...}``."""
    out = {}
    for refit, flags in REFITS.items():
        run_dir = tmp_path_factory.mktemp(f"refit_{refit}")
        trainer = Trainer(run_dir, log / "train", log / "test", RocketConfig(**TINY, **flags), verbose=0)
        out[refit] = run_dir, trainer.fit(), trainer
    return out


def _split_total_loss(history: list) -> tuple[list, list]:
    """(the history without each epoch's total training loss, those losses)."""
    import copy

    rest = copy.deepcopy(history)
    return rest, [record["train"].pop("loss") for record in rest]


def test_training_refits_on_the_validation_rows_without_changing_what_training_decides(log, runs):
    run_dir, metrics, trainer = runs[True]
    _, plain, _ = runs[False]
    _, only, _ = runs["intercept"]
    assert metrics["intercept"]["fitted_on"] == "validation rows" and metrics["intercept"]["rows"] > 0
    # per-epoch metrics (early stopping, warm-up) are the model's without the intercept: the same as without the refit
    histories = [_split_total_loss(m["history"]) for m in (metrics, plain, only)]
    assert histories[0][0] == histories[1][0] == histories[2][0]
    # the step's total loss (the sum of the exactly equal terms) has been seen one float32 ulp apart
    # between identical runs: TensorFlow does not fix the order of that sum
    for _, losses in histories[1:]:
        assert losses == pytest.approx(histories[0][1], rel=4 * 2.0**-24)
    assert "intercept" not in plain and "eval_without_intercept" not in plain and "slope" not in plain
    assert "slope" not in only
    model, offset = trainer.model, trainer.model.logit_offset
    logits, labels, weights = validation_logits(model, log / "train", trainer.spec,
                                                (trainer.holdout, "validation"), trainer.spec.negative_rate)
    for tower in ("light", "booster"):
        a, b = metrics["slope"][tower], metrics["intercept"][tower]
        assert (a, b) == pytest.approx(fit_platt(logits[tower] - offset, labels, weights, offset), abs=1e-5)
        assert only["intercept"][tower] == pytest.approx(fit_intercept(logits[tower], labels, weights), abs=1e-6)
        # the validation rows' PCOC after the refit is 1 (a first-order condition of both fits)
        refitted = _sigmoid(a * (logits[tower] - offset) + offset + b)
        assert pcoc(labels, refitted, weights) == pytest.approx(1.0, abs=1e-4)
        # the reported test metrics are the refitted model's; the ranking is the same
        before = metrics["eval_without_intercept"][tower]
        # (a shift keeps the ranking; float32 probabilities can round near-tied logits differently)
        assert metrics[tower]["gauc"] == pytest.approx(before["gauc"], abs=2e-3)
        assert metrics[tower]["auc"] == pytest.approx(before["auc"], abs=2e-3)
        assert metrics[tower]["pcoc"] != pytest.approx(before["pcoc"], abs=1e-6)
        assert before == {k: plain[tower][k] for k in before}
        # the isotonic map: fitted after Platt on the same rows
        served = a * (logits[tower] - offset) + offset + b
        x, y = fit_knots(served, labels, weights, len(metrics["knots"][tower]["x"]))
        _assert_same_knots({tower: metrics["knots"][tower]}, {tower: {"x": x, "y": y}}, atol=1e-4)
        assert pcoc(labels, _sigmoid(apply_knots(served, x, y)), weights) == pytest.approx(1.0, abs=1e-4)
    assert "knots" not in plain
    # the checkpoint carries it: restore_model and evaluate apply it
    restored, spec, _ = restore_model(run_dir)
    assert restored.intercept_values() == pytest.approx({t: metrics["intercept"][t] for t in ("light", "booster")})
    assert restored.slope_values() == pytest.approx(metrics["slope"])
    assert restored.knot_values() == metrics["knots"]
    again = evaluate(restored, log / "test", spec)
    assert again["light"]["pcoc"] == pytest.approx(metrics["light"]["pcoc"], rel=1e-6)


def test_exported_graph_applies_the_intercept(runs, tmp_path):
    run_dir, metrics, _ = runs[True]
    model, spec, _ = restore_model(run_dir)
    result = export_light(model, spec, tmp_path / "base", jit_compile=False, sample_size=32)
    info = read_export_info(result.path)
    a, b = metrics["slope"]["light"], metrics["intercept"]["light"]
    assert (info["slope"], info["intercept"]) == pytest.approx((a, b))
    rows = sample_rows(spec, None, 32)
    loaded = tf.saved_model.load(str(result.path))
    served = loaded.signatures[SCORE_ROWS](**{k: tf.constant(v) for k, v in rows.items()})["probabilities"].numpy()
    expected = reference_probabilities(model, "light", rows)  # σ(a·logit + log r + b), in memory
    np.testing.assert_allclose(served, expected, atol=FLOAT32_PROBABILITY_ATOL)
    logit = np.log(expected / (1 - expected))
    without = reference_probabilities(_without(model), "light", rows)  # σ(logit + log r)
    raw = np.log(without / (1 - without)) - model.logit_offset
    knots = info["knots"]
    assert knots == model.knot_values()["light"]
    # the model holds its knots in float32: within 2**-24·|knot| (< 1e-6 for |knot| < 16) of the fitted float64 ones
    _assert_same_knots({"light": knots}, {"light": metrics["knots"]["light"]})
    np.testing.assert_allclose(logit, apply_knots(a * raw + model.logit_offset + b, np.array(knots["x"]),
                                                  np.array(knots["y"])), atol=1e-3)


def _without(model):
    """The same weights with the slopes at 1, the intercepts at 0 and the identity knots."""
    copy = RocketModel(model.spec, RocketConfig(**TINY))
    copy(example_rows(model.spec), training=False)
    copy.set_weights(model.get_weights())
    for variable in copy.intercepts.values():
        variable.assign(0.0)
    for variable in copy.slopes.values():
        variable.assign(1.0)
    for x, y in copy.knots.values():
        x.assign(identity_knots(x.shape[0]))
        y.assign(identity_knots(x.shape[0]))
    return copy


def test_old_run_dir_restores_and_exports_as_before(runs, tmp_path):
    run_dir, _, _ = runs[False]
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    config["training"].pop("calibrate_intercept")  # as written before the field existed
    (run_dir / CONFIG_FILE).write_text(json.dumps(config))
    model, spec, restored_config = restore_model(run_dir)
    assert model.intercepts == {} and restored_config.training.calibrate_intercept is False
    result = export_light(model, spec, tmp_path / "base", jit_compile=False, sample_size=16)
    assert "intercept" not in read_export_info(result.path)


def test_run_dir_from_before_the_slope_restores_and_exports_as_before(runs, tmp_path):
    run_dir, metrics, _ = runs["intercept"]
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    config["training"].pop("calibrate_slope")  # as written before the field existed
    (run_dir / CONFIG_FILE).write_text(json.dumps(config))
    model, spec, restored_config = restore_model(run_dir)
    assert model.slopes == {} and restored_config.training.calibrate_slope is False
    assert model.intercept_values() == pytest.approx({t: metrics["intercept"][t] for t in ("light", "booster")})
    result = export_light(model, spec, tmp_path / "base", jit_compile=False, sample_size=16)
    info = read_export_info(result.path)
    assert "slope" not in info and info["intercept"] == pytest.approx(metrics["intercept"]["light"])


def test_warm_start_carries_the_intercept(log, runs, tmp_path):
    source, metrics, _ = runs[True]
    config = RocketConfig(**{**TINY, "validation_fraction": 0.0})  # nothing to refit on: it stays the source's
    trainer = Trainer(tmp_path / "run", log / "train", None, config, verbose=0, warm_start=source)
    assert read_state(tmp_path / "run")["intercept"] == pytest.approx(
        {t: metrics["intercept"][t] for t in ("light", "booster")})
    assert read_state(tmp_path / "run")["slope"] == pytest.approx(metrics["slope"])
    _assert_same_knots(read_state(tmp_path / "run")["knots"], metrics["knots"])
    again = trainer.fit()
    _assert_same_knots(again["knots"], metrics["knots"])
    assert again["intercept"] == {**read_state(tmp_path / "run")["intercept"], "fitted_on": None, "rows": 0}
    assert again["slope"] == read_state(tmp_path / "run")["slope"]
    # from an intercept-only run: its intercepts, slope 1 (the function it served)
    only, only_metrics, _ = runs["intercept"]
    trainer = Trainer(tmp_path / "from_only", log / "train", None, config, verbose=0, warm_start=only)
    assert trainer.model.slope_values() == {"light": 1.0, "booster": 1.0}
    assert trainer.model.intercept_values() == pytest.approx(
        {t: only_metrics["intercept"][t] for t in ("light", "booster")})
    # a run without intercepts warm-starts from one with them (and the other way round)
    Trainer(tmp_path / "off", log / "train", None, RocketConfig(**{**TINY, "calibrate_intercept": False}),
            verbose=0, warm_start=source)
