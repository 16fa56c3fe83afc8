"""rocket_ctr.model.layers on small tensors made here: DIN attention, MLP towers, Dice, embedding bank, configs."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import FLOAT64_CLOSE, LOGIT_CLOSE, assert_valid_step_form_equals_the_padded_form, compute_dtype
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.spec import HIST_LEN, FeatureSpec
from rocket_ctr.model.layers.attention import DinAttention, ValidSteps, padded_history, segment_pool
from rocket_ctr.model.layers.bank import EmbeddingBank
from rocket_ctr.model.layers.mlp import MLP, Dice, activation_layer
from rocket_ctr.model.layers.tower_input import tower_input

D, L = 4, 5


def din_inputs(batch=3, seed=0, lengths=(2, 5, 0)):
    rng = np.random.default_rng(seed)
    query = tf.constant(rng.normal(size=(batch, D)), compute_dtype())
    keys = tf.constant(rng.normal(size=(batch, L, D)), compute_dtype())
    return query, keys, tf.sequence_mask(lengths[:batch], L)


def built_attention(softmax=False, units=(6, 3), activation="sigmoid"):
    keras.utils.set_random_seed(0)
    layer = DinAttention(units, activation, softmax)
    layer(*din_inputs())
    return layer


def naive_attention(layer, query, keys, mask):
    """DIN as written in the paper: MLP([h, c, h − c, h ⊙ c]) per step, masked weights, weighted sum."""
    q = tf.broadcast_to(query[:, None, :], tf.shape(keys))
    concat = tf.concat([keys, q, keys - q, keys * q], axis=-1)                  # [B, L, 4D]
    w_first = tf.concat([layer.w_key, layer.w_query, layer.w_diff, layer.w_prod], axis=0)  # [4D, units[0]]
    hidden = layer.first_act(tf.einsum("blk,ku->blu", concat, w_first) + layer.bias)
    for dense, act in zip(layer.rest, layer.rest_act):
        hidden = act(dense(hidden))
    weights = tf.squeeze(layer.score(hidden), -1)
    if layer.softmax:
        weights = tf.nn.softmax(tf.where(mask, weights, -1e9), axis=-1)
    weights = tf.where(mask, weights, 0.0)
    return tf.einsum("bl,bld->bd", weights, keys)


@pytest.mark.parametrize("softmax", [False, True])
def test_split_first_layer_equals_the_concatenated_din_formulation(softmax, float64):
    layer = built_attention(softmax)
    query, keys, mask = din_inputs(seed=1)
    split = layer(query, keys, mask)
    assert split.dtype == tf.float64
    np.testing.assert_allclose(split.numpy(), naive_attention(layer, query, keys, mask).numpy(), **FLOAT64_CLOSE)


def test_one_history_broadcasts_against_many_candidates(float64):
    layer = built_attention()
    query, keys, mask = din_inputs(batch=3, lengths=(4, 4, 4))
    one = layer(query, keys[:1], mask[:1]).numpy()                                # history batch 1, 3 candidates
    tiled = layer(query, tf.repeat(keys[:1], 3, axis=0), tf.repeat(mask[:1], 3, axis=0)).numpy()
    assert one.dtype == np.float64
    np.testing.assert_allclose(one, tiled, **FLOAT64_CLOSE)


@pytest.mark.parametrize("softmax", [False, True])
def test_padded_steps_do_not_change_the_output(softmax):
    layer = built_attention(softmax)
    query, keys, mask = din_inputs()
    before = layer(query, keys, mask).numpy()
    noise = tf.constant(np.random.default_rng(5).normal(size=keys.shape) * 100, tf.float32)
    after = layer(query, tf.where(mask[..., None], keys, noise), mask).numpy()   # only padded steps change
    np.testing.assert_allclose(after, before, rtol=1e-6, atol=1e-6)
    assert np.all(before[2] == 0)                                                  # no valid step: zero interest
    changed = layer(query, tf.where(mask[..., None], noise, keys), mask).numpy()  # valid steps change
    assert not np.allclose(changed[:2], before[:2])


@pytest.mark.parametrize("softmax", [False, True])
def test_valid_step_form_equals_the_padded_form_in_values_and_gradients(softmax, float64):
    layer = built_attention(softmax)
    query, keys, mask = din_inputs(seed=2)

    assert_valid_step_form_equals_the_padded_form(layer, query, keys, mask)


def attention_weights(layer, lengths):
    """The per-step weights: with one-hot keys e_t the pooled output is the weight vector itself."""
    query, _, _ = din_inputs(batch=len(lengths), lengths=lengths)
    query = tf.pad(query, [[0, 0], [0, L - D]])                                   # D = L here
    keys = tf.broadcast_to(tf.eye(L), [len(lengths), L, L])
    return layer(query, keys, tf.sequence_mask(lengths, L)).numpy()


def test_softmax_weights_sum_to_one_over_valid_steps_and_raw_weights_do_not():
    lengths = (2, 5, 1)
    keras.utils.set_random_seed(0)
    soft, raw = DinAttention((6, 3), softmax=True), DinAttention((6, 3), softmax=False)
    w_soft, w_raw = attention_weights(soft, lengths), attention_weights(raw, lengths)
    # float32 exp, a segment sum of <= 5 terms, a division, numpy's sum of 5: <= ~12·eps32 ≈ 7e-7 from 1
    np.testing.assert_allclose(w_soft.sum(axis=1), 1.0, rtol=1e-5)
    for weights in (w_soft, w_raw):
        for row, n in zip(weights, lengths):
            assert np.all(row[n:] == 0)
    assert w_soft[2, 0] == pytest.approx(1.0)                                      # one valid step takes it all
    assert not np.allclose(w_raw.sum(axis=1), 1.0)                                # DIN's default: not normalised


def test_mlp_shapes_layers_and_dtype():
    x = tf.random.stateless_normal([7, 12], seed=[0, 1])
    mlp = MLP((8, 4), batch_norm=True, dropout=0.5)
    out = mlp(x)
    assert out.shape == (7,) and out.dtype == tf.float32
    kinds = [type(layer).__name__ for layer in mlp.hidden]
    assert kinds == ["Dense", "BatchNormalization", "Activation", "Dropout"] * 2
    assert [layer.units for layer in mlp.hidden if isinstance(layer, keras.layers.Dense)] == [8, 4]
    assert not mlp.hidden[0].use_bias and MLP((3,)).hidden[0].use_bias             # BN's shift replaces the bias
    regularized = MLP((3,), l2=0.1)
    assert regularized(x).shape == (7,) and len(regularized.losses) == 2           # one L2 term per Dense kernel


def test_mlp_batch_norm_differs_between_training_and_inference_and_plain_mlp_does_not():
    x = tf.random.stateless_normal([32, 6], seed=[1, 2]) * 3 + 2
    keras.utils.set_random_seed(0)
    normed, plain = MLP((8, 4), batch_norm=True), MLP((8, 4))
    assert not np.allclose(normed(x, training=True).numpy(), normed(x, training=False).numpy(), atol=1e-3)
    np.testing.assert_allclose(plain(x, training=True).numpy(), plain(x, training=False).numpy())
    bn = normed.hidden[1]
    moving = bn.moving_mean.numpy().copy()
    normed(x, training=True)
    assert not np.allclose(bn.moving_mean.numpy(), moving)                          # training updates the statistics
    moving = bn.moving_mean.numpy().copy()
    normed(x, training=False)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), moving)                  # inference does not


def test_mlp_weights_are_in_its_checkpoint(tmp_path):
    x = tf.random.stateless_normal([4, 5], seed=[3, 4])
    keras.utils.set_random_seed(0)
    first = MLP((6, 3), batch_norm=True)
    expected = first(x).numpy()
    path = tf.train.Checkpoint(mlp=first).write(str(tmp_path / "ckpt"))
    keras.utils.set_random_seed(1)
    second = MLP((6, 3), batch_norm=True)
    second(x)
    assert not np.allclose(second(x).numpy(), expected)
    tf.train.Checkpoint(mlp=second).read(path).assert_consumed()
    np.testing.assert_allclose(second(x).numpy(), expected, rtol=1e-6)


def test_dice_is_the_data_adaptive_activation():
    x = tf.constant([[-2.0, 0.0, 1.0], [3.0, -1.0, 0.5]])
    dice = Dice()
    out = dice(x, training=False).numpy()
    p = 1 / (1 + np.exp(-x.numpy() / np.sqrt(1 + dice.bn.epsilon)))               # fresh BN: mean 0, variance 1
    # float32 element-wise ops, no sums and no cancellation (p, 1 − p, α >= 0): a few eps32 (~1e-7) each
    np.testing.assert_allclose(out, p * x.numpy(), rtol=1e-5)                       # alpha starts at 0
    dice.alpha.assign([0.5, 0.25, 1.0])
    alpha = dice.alpha.numpy()
    np.testing.assert_allclose(dice(x).numpy(), p * x.numpy() + (1 - p) * alpha * x.numpy(), rtol=1e-5)
    mean, var = x.numpy().mean(0), x.numpy().var(0)                                 # training: batch statistics
    # the batch statistics of 2 rows add a few eps32 more; |x − mean| >= |x| / 4 here: cancellation costs <= 4x
    p_batch = 1 / (1 + np.exp(-(x.numpy() - mean) / np.sqrt(var + dice.bn.epsilon)))
    np.testing.assert_allclose(dice(x, training=True).numpy(),
                               p_batch * x.numpy() + (1 - p_batch) * alpha * x.numpy(), rtol=1e-4, atol=1e-6)


def test_activation_layer_names():
    assert isinstance(activation_layer("dice"), Dice)
    prelu = activation_layer("prelu")
    assert isinstance(prelu, keras.layers.PReLU)
    np.testing.assert_allclose(prelu(tf.constant([[-2.0, 3.0]])).numpy(), [[0.0, 3.0]])  # alpha starts at 0
    np.testing.assert_allclose(activation_layer("relu")(tf.constant([-1.0, 2.0])).numpy(), [0.0, 2.0])
    with pytest.raises(ValueError):
        activation_layer("no-such-activation")


SPEC = FeatureSpec(
    sequence_features=(IdFeature("item_id", history="hist_item_id", buckets=30),
                       IdFeature("cate_id", history="hist_cate_id", buckets=7)),
    user_features=(IdFeature("user_gender", dtype="string", buckets=3),),
    max_history=6, history_buckets=(6,))


def bottom_rows(batch=4):
    rng = np.random.default_rng(0)
    return {"item_id": tf.constant(rng.integers(0, 30, batch)), "cate_id": tf.constant(rng.integers(0, 7, batch)),
            "user_gender": tf.constant(rng.integers(0, 3, batch)),
            "hist_item_id": tf.constant(rng.integers(0, 30, (batch, 6))),
            "hist_cate_id": tf.constant(rng.integers(0, 7, (batch, 6))),
            HIST_LEN: tf.constant(rng.integers(0, 7, batch), tf.int32)}


def test_tower_input_width_matches_the_bank_and_broadcasts_user_inputs():
    bank = EmbeddingBank(SPEC, embedding_dim=3)
    embedded = bank(bottom_rows())
    (sequence,) = embedded["sequences"]  # no sequence groups declared: one
    history = padded_history(sequence["history"], sequence["width"])  # per-row: only the valid steps
    assert embedded["candidate"].shape == (4, 6) and history.shape == (4, 6, 6)
    assert isinstance(sequence["history"], ValidSteps) and sequence["query"].shape == (4, 6)
    lengths = bottom_rows()[HIST_LEN].numpy()
    np.testing.assert_array_equal(np.abs(history.numpy()).sum(-1) > 0, np.arange(6)[None, :] < lengths[:, None])
    bank.skip_padding = False  # the padded lookup (XLA) holds the same values in the valid steps
    dense = bank(bottom_rows())["sequences"][0]["history"].numpy()
    np.testing.assert_allclose(np.where((np.arange(6)[None, :] < lengths[:, None])[..., None], dense, 0), history)
    bank.skip_padding = True
    x = tower_input(embedded, tf.zeros([4, 6]))
    assert x.shape == (4, bank.output_width) and bank.output_width == 3 * (1 + 2 * 2)
    one_user = {k: (v[:1] if k in ("user_gender", "hist_item_id", "hist_cate_id", HIST_LEN) else v)
                for k, v in bottom_rows().items()}
    assert tower_input(bank(one_user), tf.zeros([4, 6])).shape == (4, bank.output_width)


def test_embedding_init_std_and_whole_table_l2():
    bank = EmbeddingBank(SPEC, embedding_dim=4, init_std=1e-3, l2=0.5)
    bank(bottom_rows())
    tables = [t.embeddings for t in bank.embeddings.values()]
    values = np.concatenate([t.numpy().ravel() for t in tables])
    assert 0.5e-3 < values.std() < 2e-3                                     # Keras' default would be ~0.029
    expected = 0.5 * np.sum(values.astype(np.float64) ** 2)                   # every row, not only the looked-up
    # a float32 sum of n positive squares is within (n + 3)·eps32 of the exact one (3: l2 ×, add_n of 3 tables)
    np.testing.assert_allclose(float(tf.add_n(bank.losses)), expected, rtol=(values.size + 3) * 2.0**-24)
    assert EmbeddingBank(SPEC, embedding_dim=4).losses == []


@pytest.mark.parametrize("make", [
    lambda: Dice(epsilon=1e-3, name="dice"),
    lambda: MLP((8, 4), activation="prelu", batch_norm=True, dropout=0.1, l2=1e-4, name="tower"),
    lambda: DinAttention((6, 3), activation="dice", softmax=True, name="att"),
    lambda: EmbeddingBank(SPEC, embedding_dim=3, name="bottom"),
    lambda: EmbeddingBank(SPEC, embedding_dim=3, init_std=1e-4, l2=1e-6, name="bottom"),
])
def test_get_config_round_trips(make):
    layer = make()
    config = layer.get_config()
    rebuilt = type(layer).from_config(config)
    assert rebuilt.get_config() == config and rebuilt.name == layer.name
    as_json = json.loads(json.dumps(config))                                       # as a saved model stores it
    assert json.loads(json.dumps(type(layer).from_config(as_json).get_config())) == as_json
    if isinstance(layer, EmbeddingBank):
        assert rebuilt.spec == SPEC and rebuilt.embedding_dim == 3
        history = [b(bottom_rows())["sequences"][0]["history"].values for b in (rebuilt, layer)]
        assert history[0].shape == history[1].shape


def test_rebuilt_mlp_with_the_same_weights_gives_the_same_output():
    x = tf.random.stateless_normal([5, 6], seed=[5, 6])
    mlp = MLP((4, 2), activation="dice", batch_norm=True)
    expected = mlp(x).numpy()
    rebuilt = MLP.from_config(mlp.get_config())
    rebuilt(x)
    rebuilt.set_weights(mlp.get_weights())
    np.testing.assert_allclose(rebuilt(x).numpy(), expected, rtol=1e-6)


def test_a_history_of_unknown_batch_one_against_many_candidates_is_refused_not_misread():
    layer = built_attention()
    query, keys, mask = din_inputs(batch=3, lengths=(4, 4, 4))
    traced = tf.function(layer.call, input_signature=[tf.TensorSpec([None, D]), tf.TensorSpec([None, None, D]),
                                                      tf.TensorSpec([None, None], tf.bool)])
    with pytest.raises(tf.errors.InvalidArgumentError, match="one history per candidate"):
        traced(query, keys[:1], mask[:1])


@pytest.mark.parametrize("light_interest", ["dot", "din", "mean"])
def test_training_lookup_of_valid_steps_only_equals_the_padded_lookup(light_interest, float64):
    """Training looks up only the valid history steps (a ragged history); the padded lookup
    (XLA's form) gives the same outputs and the same gradients for every variable.

    In float64: the two forms sum in another order, and the booster's batch norm over 5 rows
    magnifies float32's rounding differences to ~1e-4 relative (CPU-dependent)."""
    from rocket_ctr.config.schema import RocketConfig
    from rocket_ctr.features.signatures import example_rows
    from rocket_ctr.model.layers.attention import use_padded_attention
    from rocket_ctr.model.rocket import RocketModel

    spec = FeatureSpec()
    model = RocketModel(spec, RocketConfig(mode="rocket", light_interest=light_interest, hint_warmup=False))
    model(example_rows(spec), training=False)
    assert {v.dtype for v in model.trainable_variables} == {"float64"}
    rng = np.random.default_rng(0)
    rows = {f.history: tf.constant(rng.integers(0, f.num_rows, (5, 7)), tf.int64) for f in spec.sequence_features}
    rows.update({f.name: tf.constant(rng.integers(0, f.num_rows, 5), tf.int64) for f in spec.id_features})
    rows[HIST_LEN] = tf.constant([0, 1, 7, 3, 5], tf.int32)
    results = []
    for padded in (False, True):
        use_padded_attention(model, padded)
        with tf.GradientTape() as tape:
            outputs = model(rows, training=True)
            # linear in the (float32) logits: the backward pass starts from the same values on both forms
            loss = tf.reduce_sum(outputs["light"] * tf.range(1.0, 6.0)) + tf.reduce_sum(outputs["booster"])
        grads = [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_variables)]
        results.append(({k: v.numpy() for k, v in outputs.items()}, grads))
    use_padded_attention(model, False)
    for name in results[0][0]:
        np.testing.assert_allclose(results[0][0][name], results[1][0][name], **LOGIT_CLOSE)
    for ragged, dense in zip(results[0][1], results[1][1]):
        np.testing.assert_allclose(ragged, dense, **FLOAT64_CLOSE)


def test_segment_pool_sums_each_rows_steps_and_gives_zeros_to_rows_without_any():
    values = tf.constant(np.arange(12.0).reshape(6, 2), tf.float32)
    rows = tf.constant([0, 0, 2, 2, 2, 3], tf.int64)                  # row 1 and the last row 4: no steps
    expected = tf.math.unsorted_segment_sum(values, rows, 5).numpy()
    np.testing.assert_array_equal(segment_pool(values, rows, tf.constant(5, tf.int64)).numpy(), expected)
    empty = segment_pool(tf.zeros([0, 2]), tf.zeros([0], tf.int64), tf.constant(3, tf.int64))
    np.testing.assert_array_equal(empty.numpy(), np.zeros((3, 2)))
    with pytest.raises(tf.errors.InvalidArgumentError):                # unsorted rows are refused, never misread
        segment_pool(values, tf.constant([0, 2, 0, 2, 2, 3], tf.int64), tf.constant(5, tf.int64))
    # sums of small integers are exact in float32 in any order: the kernels must agree exactly
    xla = tf.function(segment_pool, jit_compile=True)  # XLA has no sorted segment kernels: the unsorted ones
    np.testing.assert_array_equal(xla(values, rows, tf.constant(5, tf.int64)).numpy(), expected)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_call_parts_equals_the_mlp_on_the_whole_x_for_one_user_and_for_one_user_per_row(batch_norm, float64):
    rng = np.random.default_rng(0)
    mlp = MLP((8, 4), batch_norm=batch_norm)
    user, rest = rng.normal(size=(1, 3)), rng.normal(size=(5, 6))
    mlp(np.concatenate([np.repeat(user, 5, 0), rest], 1), training=True)  # built, BN statistics moved
    whole = mlp(np.concatenate([np.repeat(user, 5, 0), rest], 1)).numpy()
    assert mlp.hidden[0].kernel.dtype == "float64"
    np.testing.assert_allclose(mlp.call_parts(tf.constant(user), tf.constant(rest)).numpy(), whole, **LOGIT_CLOSE)
    users = rng.normal(size=(5, 3))  # per-row users (batch scoring): same FLOPs, no concat
    np.testing.assert_allclose(mlp.call_parts(tf.constant(users), tf.constant(rest)).numpy(),
                               mlp(np.concatenate([users, rest], 1)).numpy(), **LOGIT_CLOSE)
