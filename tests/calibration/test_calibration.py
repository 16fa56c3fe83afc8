"""Calibration: the downsampling correction, PCOC/ECE/RelaImpr on known inputs, corrected
probabilities from the model, evaluate and the exported graph."""
import dataclasses
import math

import numpy as np
import pytest
import tensorflow as tf

from conftest import FLOAT32_PROBABILITY_ATOL
from rocket_ctr.calibration.measures import (
    check_rate,
    corrected_probability,
    ece,
    logit_offset,
    pcoc,
    relaimpr,
    reliability_bins,
)
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.export.rows import sample_rows
from rocket_ctr.export.serving_module import tower_logit
from rocket_ctr.export.writer import export_light
from rocket_ctr.features.signatures import SCORE_ROWS, example_rows
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.rocket import RocketModel
from rocket_ctr.train.evaluation import evaluate

TINY = dict(embedding_dim=4, light_units=(8,), booster_units=(8,), jit_compile=False)
SPEC = FeatureSpec().with_buckets(item_id=500, cate_id=50)


def test_correction_formula_and_its_logit_form():
    q = np.array([0.0, 0.01, 0.3, 0.5, 0.9, 1.0])
    r = 0.1
    p = corrected_probability(q, r)
    np.testing.assert_allclose(p, q / (q + (1 - q) / r))
    # p / (1 - p) = r * q / (1 - q): the correction is log(r) added to the logit
    inner = q[1:-1]
    np.testing.assert_allclose(1 / (1 + np.exp(-(np.log(inner / (1 - inner)) + logit_offset(r)))), p[1:-1])
    assert p[0] == 0 and p[-1] == 1 and np.all(p[1:-1] < inner)
    np.testing.assert_allclose(corrected_probability(q, 1.0), q)
    for bad in (0, -0.5, 1.5, float("nan"), "x"):
        with pytest.raises(ValueError, match="negative_rate"):
            check_rate(bad)


def test_pcoc_and_ece_on_known_inputs():
    labels = [0, 0, 0, 1] * 5
    assert pcoc(labels, [0.25] * 20) == pytest.approx(1.0)
    assert ece(labels, [0.25] * 20) == pytest.approx(0.0)
    assert pcoc(labels, [0.5] * 20) == pytest.approx(2.0)
    assert ece(labels, [0.5] * 20) == pytest.approx(0.25)
    # two equal-mass bins: 0.1 predicted where 1 of 5 clicks (gap 0.1), 0.6 where 3 of 5 (gap 0)
    probs, clicks = [0.1] * 5 + [0.6] * 5, [1, 0, 0, 0, 0] + [1, 1, 1, 0, 0]
    table = reliability_bins(clicks, probs, bins=2)
    assert table["share"] == pytest.approx([0.5, 0.5])
    assert table["predicted"] == pytest.approx([0.1, 0.6]) and table["observed"] == pytest.approx([0.2, 0.6])
    assert ece(clicks, probs, bins=2) == pytest.approx(0.05)
    assert pcoc(clicks, probs) == pytest.approx(3.5 / 4)
    assert math.isnan(pcoc([0, 0], [0.1, 0.2]))


def test_weighted_calibration_equals_duplicated_rows():
    rng = np.random.default_rng(0)
    labels, probs = rng.integers(0, 2, 40), rng.random(40)
    weights = rng.integers(0, 4, 40)
    dup = np.repeat(np.arange(40), weights)
    assert pcoc(labels, probs, weights) == pytest.approx(pcoc(labels[dup], probs[dup]))
    # equal-mass bins over whole duplicated rows: use bin counts that cut between rows in both
    assert ece(labels, probs, weights, bins=1) == pytest.approx(ece(labels[dup], probs[dup], bins=1))


def test_relaimpr():
    assert relaimpr(0.7, 0.6) == pytest.approx(100.0)
    assert relaimpr(0.6, 0.6) == pytest.approx(0.0)
    assert relaimpr(0.55, 0.6) == pytest.approx(-50.0)
    assert math.isnan(relaimpr(0.7, 0.5)) and math.isnan(relaimpr(float("nan"), 0.6))


def _model(negative_rate=None, spec=SPEC):
    config = RocketConfig(**TINY)
    model = RocketModel(spec, config, negative_rate=negative_rate)
    model(example_rows(spec), training=False)
    return model


def test_model_rate_comes_from_the_spec_and_the_training_config():
    spec = dataclasses.replace(SPEC, negative_rate=0.5)
    model = RocketModel(spec, RocketConfig(**TINY, negative_rate=0.2))
    assert model.negative_rate == pytest.approx(0.1) and model.logit_offset == pytest.approx(math.log(0.1))
    assert RocketModel(SPEC, RocketConfig(**TINY)).logit_offset == 0.0


def test_evaluate_returns_corrected_probabilities(click_log):
    log = click_log(n=300, seed=1)
    full, sampled = _model(), _model(negative_rate=0.25)
    sampled.set_weights(full.get_weights())  # same logits: only the correction differs
    plain, corrected = evaluate(full, log, SPEC), evaluate(sampled, log, SPEC)
    for tower in ("light", "booster"):
        assert "pcoc_uncorrected" not in plain[tower]
        assert corrected[tower]["pcoc_uncorrected"] == pytest.approx(plain[tower]["pcoc"], rel=1e-5)
        assert corrected[tower]["pcoc"] < plain[tower]["pcoc"]
        # a monotone map: the same ranking, up to float32 ties σ(l + log r) makes or breaks among
        # an untrained model's near-equal logits
        assert corrected[tower]["auc"] == pytest.approx(plain[tower]["auc"], abs=1e-3)


def test_exported_graph_returns_corrected_probabilities(tmp_path):
    rate = 0.1
    model = _model(negative_rate=rate)
    result = export_light(model, SPEC, tmp_path / "base", jit_compile=False, sample_size=16)
    rows = sample_rows(SPEC, None, 16)
    loaded = tf.saved_model.load(str(result.path))
    served = loaded.signatures[SCORE_ROWS](**{k: tf.constant(v) for k, v in rows.items()})["probabilities"].numpy()
    # the in-memory sample probability q, mapped and truncated as the export verification does
    from rocket_ctr.export.verify import _truncated
    from rocket_ctr.features.id_mapping import IdMapper
    truncated = _truncated(SPEC, rows)
    mapped = IdMapper(SPEC)({c: tf.constant(v) for c, v in truncated.items() if c != "hist_len"})
    mapped["hist_len"] = tf.constant(truncated["hist_len"])
    q = tf.sigmoid(tower_logit(model, "light", mapped)).numpy()
    np.testing.assert_allclose(served, corrected_probability(q, rate), atol=FLOAT32_PROBABILITY_ATOL)
    assert np.all(served < q)
