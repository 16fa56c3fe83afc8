"""rocket_ctr.model.layers.interest on small tensors: dot and mean extractors, their serving forms, newest_steps."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import FLOAT64_CLOSE, assert_valid_step_form_equals_the_padded_form, compute_dtype
from rocket_ctr.model.layers.attention import DinAttention
from rocket_ctr.model.layers.interest import DotAttention, MeanPooling, make_extractor, newest_steps

D, L = 4, 6
LENGTHS = (2, 6, 0, 4)
EXTRACTORS = {
    "din": lambda: make_extractor("din", units=(6, 3)),
    "dot": lambda: make_extractor("dot", projection=3),
    "dot raw": lambda: make_extractor("dot", projection=0),
    "mean": lambda: make_extractor("mean"),
}


def inputs(seed=0, lengths=LENGTHS):
    rng = np.random.default_rng(seed)
    query = tf.constant(rng.normal(size=(len(lengths), D)), compute_dtype())
    keys = tf.constant(rng.normal(size=(len(lengths), L, D)), compute_dtype())
    return query, keys, tf.sequence_mask(lengths, L)


def built(kind):
    keras.utils.set_random_seed(0)
    layer = EXTRACTORS[kind]()
    layer(*inputs())
    return layer


@pytest.mark.parametrize("kind", EXTRACTORS)
def test_one_history_against_n_candidates_equals_the_per_row_form(kind, float64):
    layer = built(kind)
    query, keys, _ = inputs(seed=1)
    mask = tf.sequence_mask([4], L)
    served = layer(query, keys[:1], mask).numpy()                          # serving: history batch 1
    per_row = layer(query, tf.repeat(keys[:1], 4, axis=0), tf.repeat(mask, 4, axis=0)).numpy()
    assert served.shape == (4, D) and served.dtype == np.float64
    np.testing.assert_allclose(served, per_row, **FLOAT64_CLOSE)


@pytest.mark.parametrize("kind", EXTRACTORS)
def test_padding_is_ignored_and_an_empty_history_pools_to_zero(kind):
    layer = built(kind)
    query, keys, mask = inputs()
    before = layer(query, keys, mask).numpy()
    noise = tf.constant(np.random.default_rng(5).normal(size=keys.shape) * 100, tf.float32)
    np.testing.assert_allclose(layer(query, tf.where(mask[..., None], keys, noise), mask).numpy(), before,
                               rtol=1e-6, atol=1e-6)
    assert np.all(before[2] == 0)
    assert not np.allclose(layer(query, tf.where(mask[..., None], noise, keys), mask).numpy()[[0, 1, 3]],
                           before[[0, 1, 3]])


@pytest.mark.parametrize("kind", ["dot", "dot raw"])
def test_dot_valid_step_form_equals_the_padded_form_in_values_and_gradients(kind, float64):
    layer = built(kind)
    query, keys, mask = inputs(seed=2)

    assert_valid_step_form_equals_the_padded_form(layer, query, keys, mask)


def test_dot_attention_is_the_softmax_of_scaled_projected_scores(float64):
    layer = built("dot")
    query, keys, mask = inputs(seed=3)
    q, k, h = query.numpy() @ layer.w_query.numpy(), keys.numpy() @ layer.w_key.numpy(), keys.numpy()
    pooled = layer(query, keys, mask).numpy()
    assert pooled.dtype == np.float64
    for row, n in enumerate(LENGTHS):
        scores = k[row, :n] @ q[row] / np.sqrt(3)
        w = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum() if n else np.zeros(0)
        np.testing.assert_allclose(pooled[row], w @ h[row, :n] if n else 0, **FLOAT64_CLOSE)


def test_mean_pooling_is_the_mean_of_the_valid_steps(float64):
    query, keys, mask = inputs(seed=4)
    out = MeanPooling()(query, keys, mask).numpy()
    assert out.dtype == np.float64
    for row, n in enumerate(LENGTHS):
        np.testing.assert_allclose(out[row], keys.numpy()[row, :n].mean(0) if n else 0, **FLOAT64_CLOSE)


def test_newest_steps_keeps_each_rows_newest_valid_steps_left_aligned():
    history = tf.reshape(tf.range(4 * L, dtype=tf.float32), [4, L, 1])
    cut, lengths = newest_steps(history, tf.constant(LENGTHS), 3)
    assert cut.shape == (4, 3, 1) and lengths.numpy().tolist() == [2, 3, 0, 3]
    for row, (n, keep) in enumerate(zip(LENGTHS, lengths.numpy())):
        np.testing.assert_array_equal(cut.numpy()[row, :keep, 0], history.numpy()[row, n - keep:n, 0])
    one, one_len = newest_steps(history[:1], tf.constant([L]), 2)                   # a serving request
    assert one.numpy()[0, :, 0].tolist() == [4.0, 5.0] and one_len.numpy().tolist() == [2]
    same, _ = newest_steps(history, tf.constant(LENGTHS), None)
    assert same is history
    empty, empty_len = newest_steps(tf.zeros([1, 0, 1]), tf.constant([0]), 2)       # a user without history
    assert empty.shape == (1, 0, 1) and empty_len.numpy().tolist() == [0]


@pytest.mark.parametrize("make", [lambda: DotAttention(5, name="dot"), lambda: DotAttention(0),
                                  lambda: MeanPooling(name="mean")])
def test_get_config_round_trips(make):
    layer = make()
    config = json.loads(json.dumps(layer.get_config()))
    rebuilt = type(layer).from_config(config)
    assert rebuilt.get_config() == layer.get_config()


def test_make_extractor_names():
    assert isinstance(make_extractor("din", units=(4,)), DinAttention)
    assert make_extractor("dot", projection=7).projection == 7
    with pytest.raises(ValueError, match="unknown interest extractor"):
        make_extractor("attention")
