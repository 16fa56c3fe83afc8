"""The residual booster (``booster_residual``): its logit is its MLP's output plus the gradient-stopped light
logit, in training, in one-tower scoring and in the booster's export path."""
import numpy as np
import pytest
import tensorflow as tf
from test_model import SPEC, build, is_zero, labels, rows

from rocket_ctr.config.schema import ModelConfig, RocketConfig
from rocket_ctr.errors import FieldError
from rocket_ctr.model.rocket import RocketModel

# one float32 forward pass each way, the same ops on the same inputs in a different grouping: ~1e-7 relative
LOGIT_TOLERANCE = 1e-5


def test_the_booster_logit_is_its_mlp_output_plus_the_light_logit():
    residual, plain = build(booster_residual=True), build()
    x = rows()
    out, own = residual(x), plain(x)  # same seed: the same weights, only the residual differs
    np.testing.assert_allclose(out["booster"], own["booster"] + own["light"], atol=LOGIT_TOLERANCE)
    np.testing.assert_allclose(out["light"], own["light"], atol=LOGIT_TOLERANCE)


def test_scoring_one_tower_gives_the_training_logits():
    model, x = build(booster_residual=True, booster_interest="din+dot", booster_cross=1), rows()
    out = model(x)
    for tower in ("light", "booster"):
        np.testing.assert_allclose(model.tower_logit(tower, x), out[tower], atol=LOGIT_TOLERANCE)


def test_the_boosters_cross_entropy_never_trains_the_light_tower():
    model = build(booster_residual=True)
    light_own = model.light.trainable_variables
    with tf.GradientTape() as tape:
        terms = model.loss_terms(labels(), model(rows(), training=True))
    gradients = tape.gradient(terms["booster_ce"], [v.value for v in light_own],
                              unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert light_own and all(is_zero(g) for g in gradients)


def test_the_boosters_export_path_reads_the_light_tower():
    model = build(booster_residual=True)
    layers = model.serving_layers("booster")
    assert model.light in layers and model.booster in layers
    assert model.booster not in model.serving_layers("light")


def test_base_mode_builds_no_booster_and_ignores_the_residual():
    model = RocketModel(SPEC, RocketConfig(mode="base", booster_residual=True))
    assert model.towers == ("light",) and not hasattr(model, "booster")


@pytest.mark.parametrize("mode", ["booster", "two-stage"])
def test_a_residual_booster_needs_rocket_mode(mode):
    with pytest.raises(FieldError, match="booster_residual.*rocket"):
        RocketConfig(mode=mode, booster_residual=True)  # the run's config, before any log is read
    with pytest.raises(FieldError, match="booster_residual.*rocket"):
        RocketModel(SPEC, ModelConfig(mode=mode, booster_residual=True))  # a bare ModelConfig
