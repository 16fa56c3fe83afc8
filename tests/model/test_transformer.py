"""The booster's BST extractor (booster_interest transformer, transformer+din): the layer on small tensors,
its gradients in RocketModel, and a run dir with it (restore, resume, warm start)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import FLOAT64_CLOSE, TINY, compute_dtype, model_rows
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.layers.attention import DinAttention, ValidSteps
from rocket_ctr.model.layers.interest import ConcatenatedExtractors, make_extractor
from rocket_ctr.model.layers.transformer import BehaviorTransformer, token_positions
from rocket_ctr.model.rocket import RocketModel

D, L = 4, 6
LENGTHS = (2, 6, 0, 4, 1)
SPEC = FeatureSpec(
    sequence_features=(IdFeature("item_id", history="hist_item_id", buckets=50),
                       IdFeature("cate_id", history="hist_cate_id", buckets=10)),
    user_features=(IdFeature("user_gender", dtype="string", buckets=4),),
    max_history=8, history_buckets=(4, 8))
SMALL = dict(embedding_dim=4, attention_units=(8, 4), light_units=(8,), booster_units=(16, 8), hint_warmup=False,
             hint_weight=1.0, booster_transformer_layers=2, booster_embedding_dim=0)


def inputs(seed=0, lengths=LENGTHS, width=L):
    rng = np.random.default_rng(seed)
    query = tf.constant(rng.normal(size=(len(lengths), D)), compute_dtype())
    keys = tf.constant(rng.normal(size=(len(lengths), width, D)), compute_dtype())
    return query, keys, tf.sequence_mask(lengths, width)


def built(**kwargs):
    keras.utils.set_random_seed(0)
    layer = make_extractor("transformer", transformer={"num_layers": 2, "heads": 2, "dropout": 0.1, "max_history": L,
                                                       **kwargs})
    layer(*inputs())
    return layer


def test_padded_steps_change_nothing_and_every_form_agrees(float64):
    layer = built()
    assert isinstance(layer, BehaviorTransformer)
    query, keys, mask = inputs()
    out = layer(query, keys, mask).numpy()
    assert out.shape == (len(LENGTHS), D) and out.dtype == np.float64
    # other values in the padded steps, and more padding
    noise = tf.constant(np.random.default_rng(5).normal(size=keys.shape) * 100, keys.dtype)
    np.testing.assert_allclose(layer(query, tf.where(mask[..., None], keys, noise), mask).numpy(), out,
                               **FLOAT64_CLOSE)
    wider = tf.pad(keys, [[0, 0], [0, 3], [0, 0]], constant_values=7.0)
    np.testing.assert_allclose(layer(query, wider, tf.sequence_mask(LENGTHS, L + 3)).numpy(), out, **FLOAT64_CLOSE)
    # the valid steps alone (ValidSteps), inside tf.function and XLA
    where = tf.where(mask)
    valid = ValidSteps(where, tf.gather_nd(keys, where), tf.constant(len(LENGTHS), tf.int64))
    np.testing.assert_allclose(layer(query, valid, mask).numpy(), out, **FLOAT64_CLOSE)
    for jit in (False, True):
        traced = tf.function(lambda q, k, m: layer(q, k, m, training=False), jit_compile=jit)
        np.testing.assert_allclose(traced(query, keys, mask).numpy(), out, **FLOAT64_CLOSE)
    # the valid steps do matter, and dropout acts only in training
    assert not np.allclose(layer(query, tf.where(mask[..., None], noise, keys), mask).numpy()[[0, 1, 3, 4]],
                           out[[0, 1, 3, 4]])
    assert not np.allclose(layer(query, keys, mask, training=True).numpy(), out)


def test_one_history_against_n_candidates_equals_the_per_row_form(float64):
    layer = built()
    query, keys, _ = inputs(seed=1)
    mask = tf.sequence_mask([4], L)
    served = layer(query, keys[:1], mask).numpy()
    per_row = layer(query, tf.repeat(keys[:1], len(LENGTHS), axis=0), tf.repeat(mask, len(LENGTHS), axis=0))
    np.testing.assert_allclose(served, per_row.numpy(), **FLOAT64_CLOSE)


def test_positions_count_from_the_newest_step():
    positions = token_positions(tf.sequence_mask([2, 0, 4, 3], 4), max_history=3).numpy()
    np.testing.assert_array_equal(positions, [[0, 2, 1, 0, 0], [0, 0, 0, 0, 0], [0, 3, 3, 2, 1], [0, 3, 2, 1, 0]])
    assert built().positions.shape == (L + 1, D)


def test_layer_count_is_checked_and_the_config_round_trips():
    with pytest.raises(ValueError, match="at least one layer"):
        BehaviorTransformer(num_layers=0)
    config = built().get_config()
    assert (config["num_layers"], config["heads"], config["max_history"]) == (2, 2, L)


def rows(batch=8, steps=8, seed=0):
    return model_rows(batch, steps, seed)


def build(**overrides):
    keras.utils.set_random_seed(0)
    model = RocketModel(SPEC, RocketConfig(**{**SMALL, **overrides}))
    model(rows(), training=False)
    return model


def transformer_of(model):
    extractor = model.interest_of("booster")
    if isinstance(extractor, ConcatenatedExtractors):
        assert [type(e) for e in extractor.extractors] == [BehaviorTransformer, DinAttention]
        return extractor.extractors[0]
    return extractor


def gradients(model, term, variables):
    x = rows()
    y = tf.constant(np.random.default_rng(1).integers(0, 2, len(x["hist_len"])), tf.float32)
    with tf.GradientTape() as tape:
        loss = model.loss_terms(y, model(x, training=True))[term]
    grads = tape.gradient(loss, [v.value for v in variables], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [bool(tf.reduce_any(tf.convert_to_tensor(g) != 0)) for g in grads]


@pytest.mark.parametrize("kind", ["transformer", "transformer+din"])
def test_the_booster_trains_every_transformer_variable_and_the_shared_embeddings(kind):
    model = build(booster_interest=kind)
    transformer = transformer_of(model)
    assert transformer.max_history == SPEC.max_history and len(transformer.encoders) == 2
    booster_ids = {id(v) for v in model.tower_variables("booster")}
    assert len(transformer.weights) == 1 + 2 * 16 + 2 and {id(v) for v in transformer.weights} <= booster_ids
    assert all(gradients(model, "booster_ce", transformer.weights))
    assert any(gradients(model, "booster_ce", model.shared_variables()))
    assert not any(gradients(model, "light_ce", transformer.weights))
    with tf.GradientTape() as tape:  # the served path reads none of it
        model.light_logit(rows())
    assert not {id(v) for v in tape.watched_variables()} & booster_ids
    # the booster's x is as wide as with DIN: the pooled vector is projected back to D
    din = build(booster_interest="din")
    width = model.booster.hidden[0].kernel.shape[0]
    assert width == din.booster.hidden[0].kernel.shape[0] + (SMALL["embedding_dim"] * 2 if "+" in kind else 0)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    from rocket_ctr.datagen.synthetic import generate

    out = tmp_path_factory.mktemp("bst_log")
    generate(out, n_rows=3_000, n_users=300, n_items=200, n_cates=10, seed=0)
    return out


@pytest.fixture(scope="module")
def run(log, tmp_path_factory):
    from rocket_ctr.train.trainer import Trainer

    run_dir = tmp_path_factory.mktemp("bst_run")
    config = RocketConfig(**{**TINY, "batch_size": 128, "booster_interest": "transformer+din"})
    metrics = Trainer(run_dir, log / "train", log / "test", config, verbose=0).fit()
    return run_dir, config, metrics


def probabilities(model, log):
    from rocket_ctr.export.rows import sample_rows
    from rocket_ctr.export.verify import reference_probabilities

    sample = sample_rows(model.spec, log / "test", n=48)
    return {tower: reference_probabilities(model, tower, sample) for tower in ("light", "booster")}


def test_a_run_dir_with_it_restores_and_resumes_to_the_same_predictions(log, run):
    from rocket_ctr.train.run_dir import restore_model
    from rocket_ctr.train.trainer import Trainer

    run_dir, config, metrics = run
    restored, _, saved = restore_model(run_dir)
    assert saved.model.booster_interest == "transformer+din" and saved.model.booster_transformer_layers == 1
    assert isinstance(transformer_of(restored), BehaviorTransformer)
    again = Trainer(run_dir, log / "train", log / "test", config, verbose=0)
    assert again.fit()["booster"] == metrics["booster"]   # a finished run: nothing more trained
    expected, resumed = probabilities(restored, log), probabilities(again.model, log)
    for tower in ("light", "booster"):
        np.testing.assert_array_equal(resumed[tower], expected[tower])


def test_a_warm_start_from_it_carries_the_transformer_over(log, run, tmp_path):
    from rocket_ctr.train.run_dir import restore_model
    from rocket_ctr.train.trainer import Trainer

    run_dir, _, _ = run
    trainer = Trainer(tmp_path / "day2", log / "train", None, None, verbose=0, warm_start=run_dir)
    source, _, _ = restore_model(run_dir)
    assert trainer.config.model.booster_interest == "transformer+din"
    weights = transformer_of(trainer.model).weights
    assert len(weights) == len(transformer_of(source).weights) > 10
    for a, b in zip(transformer_of(source).weights, weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
