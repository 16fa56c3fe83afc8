"""Mini-batch aware L2 on the booster's own tables (``booster_embedding_l2``): the rows a batch reads,
each once, and nothing else."""
import numpy as np
import pytest
import tensorflow as tf
from test_model import SPEC, build, is_zero, labels, rows

from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import FieldError
from rocket_ctr.model.layers.bank import EmbeddingBank
from rocket_ctr.model.layers.batch_l2 import looked_up_ids, mini_batch_l2

WEIGHT = 0.01


def expected_penalty(bank, x) -> float:
    """The penalty from numpy: each table's rows read by the candidate, the profile and the valid
    history steps, deduplicated, their squared entries summed, times WEIGHT."""
    total = 0.0
    valid = np.arange(x["hist_item_id"].shape[1])[None, :] < x["hist_len"].numpy()[:, None]
    for f in SPEC.id_features:
        ids = [x[f.name].numpy().ravel()]
        if f.history:
            ids.append(x[f.history].numpy()[valid])
        table = bank.embeddings[f.name].embeddings.numpy().astype(np.float64)
        total += np.square(table[np.unique(np.concatenate(ids))]).sum()
    return WEIGHT * total


def test_the_penalty_is_the_squared_norm_of_each_row_read_once():
    bank = EmbeddingBank(SPEC, 4, batch_l2=WEIGHT)
    x = rows(batch=16, steps=6)
    bank(x, training=True)
    assert len(bank.losses) == 1
    # float32 sums of a few hundred squares of ~0.05: relative error well under 1e-5
    np.testing.assert_allclose(float(bank.losses[0]), expected_penalty(bank, x), rtol=1e-5)


def test_padding_steps_are_not_read():
    x = {**rows(batch=4, steps=6), "hist_len": tf.zeros([4], tf.int32)}
    ids = looked_up_ids(SPEC, x)
    assert [int(tf.size(t)) for t in ids["item_id"]] == [4, 0]


def test_negative_ids_count_from_the_end_as_the_lookup_does():
    bank = EmbeddingBank(SPEC, 4)
    bank(rows(), training=False)
    table = bank.embeddings["cate_id"]
    last = table.embeddings.numpy()[-1].astype(np.float64)
    penalty = mini_batch_l2({"cate_id": table}, {"cate_id": [tf.constant([-1, table.input_dim - 1])]}, 1.0)
    np.testing.assert_allclose(float(penalty), np.square(last).sum(), rtol=1e-6)  # one row, counted once


def test_only_the_rows_read_get_a_gradient():
    bank = EmbeddingBank(SPEC, 4)
    x = rows(batch=8, steps=6)
    bank(x, training=False)
    table = bank.embeddings["item_id"]
    ids = looked_up_ids(SPEC, x)
    with tf.GradientTape() as tape:
        penalty = mini_batch_l2({"item_id": table}, {"item_id": ids["item_id"]}, WEIGHT)
    gradient = tf.convert_to_tensor(tape.gradient(penalty, table.embeddings.value)).numpy()
    read = np.unique(np.concatenate([t.numpy().ravel() for t in ids["item_id"]]))
    untouched = np.setdiff1d(np.arange(table.input_dim), read)
    assert np.all(gradient[untouched] == 0)
    # d/dw of WEIGHT·‖w‖² is 2·WEIGHT·w, once per row however often the batch reads it
    np.testing.assert_allclose(gradient[read], 2 * WEIGHT * table.embeddings.numpy()[read], rtol=1e-6)


def test_in_the_model_it_regularises_the_boosters_own_tables_alone_and_only_in_training():
    model = build(booster_embedding_dim=6, booster_embedding_l2=WEIGHT)
    x, y = rows(), labels()
    model(x, training=False)
    assert not model.losses
    with tf.GradientTape() as tape:
        predictions = model(x, training=True)
        penalty = tf.add_n(model.losses)
    np.testing.assert_allclose(float(penalty), expected_penalty(model.booster_embeddings, x), rtol=1e-5)
    own = {id(v) for v in model.booster_embeddings.trainable_variables}
    others = [v for v in model.trainable_variables if id(v) not in own]
    gradients = tape.gradient(penalty, [v.value for v in others], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert all(is_zero(g) for g in gradients)
    terms = model.loss_terms(y, predictions)
    # compute_loss adds the penalty to eq. (1): float32 sums of a few terms of order 1
    with tf.GradientTape():
        total = model.compute_loss(x, y, model(x, training=True))
    np.testing.assert_allclose(float(total), float(tf.add_n(list(terms.values())) + penalty), rtol=1e-5)


def test_it_round_trips_and_needs_own_tables():
    bank = EmbeddingBank(SPEC, 4, batch_l2=WEIGHT)
    assert EmbeddingBank.from_config(bank.get_config()).batch_l2 == WEIGHT
    with pytest.raises(FieldError, match="booster_embedding_l2.*booster_embedding_dim"):
        RocketConfig(booster_embedding_l2=WEIGHT, booster_embedding_dim=0)
    RocketConfig(booster_embedding_l2=WEIGHT, booster_embedding_dim=0, mode="base")  # base builds no booster
