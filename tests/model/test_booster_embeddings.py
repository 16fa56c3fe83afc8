"""The booster's own embedding tables (``booster_embedding_dim``): read beside the shared ones by the booster
alone, trained by its cross-entropy alone."""
import pytest
import tensorflow as tf
from test_model import SPEC, build, is_zero, labels, rows

from rocket_ctr.config.schema import ModelConfig, RocketConfig
from rocket_ctr.errors import FieldError
from rocket_ctr.model.rocket import RocketModel


def gradients(model, term):
    variables = model.booster_embeddings.trainable_variables
    with tf.GradientTape() as tape:
        terms = model.loss_terms(labels(), model(rows(), training=True))
    return tape.gradient(terms[term], [v.value for v in variables], unconnected_gradients=tf.UnconnectedGradients.ZERO)


def test_the_booster_reads_its_own_tables_beside_the_shared_ones():
    wide, plain = build(booster_embedding_dim=6), build(booster_embedding_dim=0)
    first_dense = [v for v in wide.booster.weights if v.path.endswith("kernel")][0]
    plain_dense = [v for v in plain.booster.weights if v.path.endswith("kernel")][0]
    # every embedding the booster's x holds (candidate, profile, pooled history) is 6 wider per id feature
    assert first_dense.shape[0] > plain_dense.shape[0]
    assert [v.embeddings.shape[1] for v in wide.booster_embeddings.embeddings.values()] == [6] * len(SPEC.id_features)
    assert wide.booster_embeddings not in wide.serving_layers("light")


def test_only_the_boosters_cross_entropy_trains_its_tables():
    model = build(booster_embedding_dim=6)
    assert not any(is_zero(g) for g in gradients(model, "booster_ce")[:1])
    assert all(is_zero(g) for g in gradients(model, "light_ce"))
    assert all(is_zero(g) for g in gradients(model, "hint"))  # gradient block: the hint stops at z


def test_own_tables_need_a_light_tower_with_its_own_extractor():
    with pytest.raises(FieldError, match="booster_embedding_dim.*light_interest"):
        RocketConfig(booster_embedding_dim=6, light_interest="shared")
    with pytest.raises(FieldError, match="booster_embedding_dim.*light_interest"):
        RocketModel(SPEC, ModelConfig(booster_embedding_dim=6, light_interest="shared"))
