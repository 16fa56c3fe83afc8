"""rocket_ctr.model.hints: each hint against a value computed by hand, and its gradient w.r.t. the light logit."""
import math

import numpy as np
import pytest
import tensorflow as tf

from rocket_ctr.model.hints import HINTS, get_hint, knowledge_distillation, mimic, probability_mse

L = [0.5, -2.0, 3.0, 0.0]   # light logits
Z = [1.5, -1.0, -1.0, 0.0]  # booster logits
# The hints are float32 element-wise ops (no sums, no cancellation at these logits) checked against float64 math:
# a few eps32 = 2**-24 apart, hence rtol=1e-5; atol=1e-7 only for the gradient at l = z = 0, which is exactly 0.


def sigmoid(v):
    return 1 / (1 + math.exp(-v))


def value_and_grad(fn, *args):
    light = tf.Variable(L)
    with tf.GradientTape() as tape:
        loss = fn(light, tf.constant(Z), *args)
    return loss.numpy(), tape.gradient(loss, light).numpy()


def test_mimic_is_the_squared_logit_difference():
    loss, grad = value_and_grad(mimic)
    np.testing.assert_allclose(loss, [1.0, 1.0, 16.0, 0.0])
    np.testing.assert_allclose(grad, [2 * (l - z) for l, z in zip(L, Z)])  # d/dl (l − z)² = 2(l − z)
    assert loss.shape == (4,)                                              # per example, not averaged


def test_mse_compares_probabilities():
    loss, grad = value_and_grad(probability_mse)
    expected = [(sigmoid(l) - sigmoid(z)) ** 2 for l, z in zip(L, Z)]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    dloss = [2 * (sigmoid(l) - sigmoid(z)) * sigmoid(l) * (1 - sigmoid(l)) for l, z in zip(L, Z)]
    np.testing.assert_allclose(grad, dloss, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_kd_is_t_squared_cross_entropy_against_the_softened_booster(temperature):
    loss, grad = value_and_grad(knowledge_distillation, temperature)
    t = temperature
    expected = [t * t * -(sigmoid(z / t) * math.log(sigmoid(l / t))
                          + (1 - sigmoid(z / t)) * math.log(1 - sigmoid(l / t)))
                for l, z in zip(L, Z)]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    # d/dl T²·CE(σ(z/T), σ(l/T)) = T·(σ(l/T) − σ(z/T)): the T² keeps gradients comparable across T
    np.testing.assert_allclose(grad, [t * (sigmoid(l / t) - sigmoid(z / t)) for l, z in zip(L, Z)],
                               rtol=1e-5, atol=1e-7)


def test_kd_at_temperature_one_is_the_plain_cross_entropy_and_differs_at_higher_temperatures():
    light, booster = tf.constant(L), tf.constant(Z)
    plain = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.sigmoid(booster), logits=light)
    np.testing.assert_allclose(knowledge_distillation(light, booster).numpy(), plain.numpy(), rtol=1e-6)
    assert not np.allclose(knowledge_distillation(light, booster, 3.0).numpy(), plain.numpy())


def test_mimic_and_mse_ignore_the_temperature():
    light, booster = tf.constant(L), tf.constant(Z)
    for fn in (mimic, probability_mse):
        np.testing.assert_array_equal(fn(light, booster, 5.0).numpy(), fn(light, booster).numpy())


def test_gradients_flow_to_the_booster_logit_unless_the_caller_stops_them():
    light, booster = tf.constant(L), tf.Variable(Z)
    for fn in HINTS.values():
        with tf.GradientTape(persistent=True) as tape:
            free = tf.reduce_sum(fn(light, booster))
            blocked = tf.reduce_sum(fn(light, tf.stop_gradient(booster)))
        assert np.any(tape.gradient(free, booster).numpy() != 0)
        assert tape.gradient(blocked, booster) is None


def test_get_hint_by_name_and_unknown_names():
    assert (get_hint("mimic") is mimic and get_hint("mse") is probability_mse
            and get_hint("kd") is knowledge_distillation)
    for bad in ("MIMIC", "l2", ""):
        with pytest.raises(ValueError, match=r"unknown hint .*'kd', 'mimic', 'mse'"):
            get_hint(bad)
