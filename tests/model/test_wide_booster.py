"""The booster's wide part (``booster_wide``, ``booster_wide_crosses``): scalars per id and per crossed pair
added to its logit, in training, in one-tower scoring and for one user's request; its refusals."""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf
from test_model import SMALL, SPEC, build, rows

from rocket_ctr.config.schema import ModelConfig, RocketConfig
from rocket_ctr.errors import FieldError
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.model.layers.booster import CROSS_ROWS
from rocket_ctr.model.rocket import RocketModel

# one float32 forward pass each way, the same ops on the same inputs in a different grouping: ~1e-7 relative
LOGIT_TOLERANCE = 1e-5
WIDE = dict(booster_wide=True, booster_wide_crosses="user_gender*cate_id")


def pair_row(model, gender, cate):
    return (int(gender) * model.booster_wide.rows_of["cate_id"] + int(cate)) % CROSS_ROWS


def test_the_wide_part_starts_at_zero_and_adds_its_scalars_to_the_booster_logit_only():
    wide, plain, x = build(**WIDE), build(), rows()
    start = wide(x)  # same seed: the same MLP weights; the wide scalars start at zero
    np.testing.assert_allclose(start["booster"], plain(x)["booster"], atol=LOGIT_TOLERANCE)
    item = np.zeros(wide.booster_wide.embeddings["item_id"].embeddings.shape, np.float32)
    item[int(x["item_id"][0])] = 0.5
    wide.booster_wide.embeddings["item_id"].embeddings.assign(item)
    pairs = np.zeros((CROSS_ROWS, 1), np.float32)
    pairs[pair_row(wide, x["user_gender"][0], x["cate_id"][0])] = 0.25
    wide.booster_wide.cross_tables[0].embeddings.assign(pairs)
    out = wide(x)
    expected = np.array([0.5 * (int(i) == int(x["item_id"][0])) for i in x["item_id"]]) \
        + np.array([0.25 * ((int(g), int(c)) == (int(x["user_gender"][0]), int(x["cate_id"][0])))
                    for g, c in zip(x["user_gender"], x["cate_id"])])
    np.testing.assert_allclose(out["booster"] - start["booster"], expected, atol=LOGIT_TOLERANCE)
    np.testing.assert_allclose(out["light"], start["light"], atol=LOGIT_TOLERANCE)
    np.testing.assert_allclose(wide.tower_logit("booster", x), out["booster"], atol=LOGIT_TOLERANCE)


def test_one_users_request_scores_as_its_rows_repeated():
    model, x = build(**WIDE), rows(batch=5)
    for table in [*model.booster_wide.embeddings.values(), *model.booster_wide.cross_tables]:
        table.embeddings.assign(tf.random.stateless_normal(table.embeddings.shape, seed=(1, 2)))
    user_side = ("user_gender", "hist_item_id", "hist_cate_id", "hist_len")
    single = {k: v[:1] if k in user_side else v for k, v in x.items()}
    repeated = {k: tf.repeat(v[:1], 5, axis=0) if k in user_side else v for k, v in x.items()}
    np.testing.assert_allclose(model.tower_logit("booster", single), model.tower_logit("booster", repeated),
                               atol=LOGIT_TOLERANCE)


def test_the_wide_part_is_the_boosters_and_never_on_the_light_path():
    model = build(**WIDE)
    assert model.booster_wide in model.serving_layers("booster")
    assert model.booster_wide not in model.serving_layers("light")
    wide_ids = {id(v) for v in model.booster_wide.weights}
    assert wide_ids <= {id(v) for v in model.tower_variables("booster")}
    assert not wide_ids & {id(v) for v in model.tower_variables("light")}


def test_base_mode_builds_no_wide_part():
    assert RocketModel(SPEC, RocketConfig(mode="base", **WIDE)).booster_wide is None


@pytest.mark.parametrize("crosses, message", [
    ("user_gender", "USER\\*CANDIDATE"),
    ("user_gender*", "USER\\*CANDIDATE"),
])
def test_a_cross_not_written_user_times_candidate_is_refused_with_the_config(crosses, message):
    with pytest.raises(FieldError, match=message):
        RocketConfig(booster_wide=True, booster_wide_crosses=crosses)


def test_crosses_alone_build_only_the_pair_scalars():
    model = build(booster_wide_crosses="user_gender*cate_id")
    assert model.booster_wide.embeddings == {} and len(model.booster_wide.cross_tables) == 1
    x = rows()
    np.testing.assert_allclose(model.tower_logit("booster", x), model(x)["booster"], atol=LOGIT_TOLERANCE)


@pytest.mark.parametrize("crosses", ["user_id*cate_id", "cate_id*user_gender", "user_gender*user_gender"])
def test_a_cross_of_features_the_spec_does_not_serve_on_that_side_is_refused(crosses):
    with pytest.raises(FieldError, match="crosses a user-side id feature"):
        RocketModel(SPEC, ModelConfig(booster_wide=True, booster_wide_crosses=crosses))


def test_a_booster_only_user_id_can_be_crossed_and_the_light_tower_never_reads_it():
    spec = dataclasses.replace(SPEC, user_features=(*SPEC.user_features,
                                                    IdFeature("user_id", buckets=20, booster_only=True)))
    model = RocketModel(spec, RocketConfig(**SMALL, booster_wide_crosses="user_id*cate_id"))
    x = {**rows(), "user_id": tf.constant(np.arange(16) % 20)}
    out = model(x)
    light_only = {k: v for k, v in x.items() if k != "user_id"}
    np.testing.assert_allclose(model.light_logit(light_only), out["light"], atol=LOGIT_TOLERANCE)
    np.testing.assert_allclose(model.tower_logit("booster", x), out["booster"], atol=LOGIT_TOLERANCE)
    assert model.booster_wide.crosses == (("user_id", "cate_id"),)


def test_a_wide_only_user_id_has_no_table_in_the_boosters_mlp_input_and_moves_its_logit_through_the_cross_only():
    wide_only = IdFeature("user_id", buckets=20, booster_only=True, wide_only=True)
    spec = dataclasses.replace(SPEC, user_features=(*SPEC.user_features, wide_only))
    model = RocketModel(spec, RocketConfig(**SMALL, booster_wide_crosses="user_id*cate_id"))
    x = {**rows(), "user_id": tf.constant(np.arange(16) % 20)}
    start = model(x)
    assert model.booster_columns is None  # no embedding of it appended to the booster's x
    other_users = {**x, "user_id": tf.constant((np.arange(16) + 7) % 20)}
    np.testing.assert_allclose(model(other_users)["booster"], start["booster"], atol=LOGIT_TOLERANCE)
    pairs = np.zeros((CROSS_ROWS, 1), np.float32)
    user, cate = int(x["user_id"][0]), int(x["cate_id"][0])
    pairs[(user * model.booster_wide.rows_of["cate_id"] + cate) % CROSS_ROWS] = 0.5
    model.booster_wide.cross_tables[0].embeddings.assign(pairs)
    hit = np.array([0.5 * ((int(u), int(c)) == (user, cate)) for u, c in zip(x["user_id"], x["cate_id"])])
    np.testing.assert_allclose(model(x)["booster"] - start["booster"], hit, atol=LOGIT_TOLERANCE)


def test_a_wide_only_feature_no_cross_reads_is_refused_and_wide_only_needs_booster_only():
    wide_only = IdFeature("user_id", buckets=20, booster_only=True, wide_only=True)
    spec = dataclasses.replace(SPEC, user_features=(*SPEC.user_features, wide_only))
    with pytest.raises(FieldError, match=r"names none of the wide_only features \['user_id'\]"):
        RocketModel(spec, RocketConfig(**SMALL, booster_wide_crosses="user_gender*cate_id"))
    RocketModel(spec, RocketConfig(**{**SMALL, "mode": "base"}))  # no booster: nothing reads it, nothing to refuse
    with pytest.raises(ValueError, match="wide_only needs booster_only"):
        IdFeature("user_id", wide_only=True)


def test_auto_crosses_an_embedded_user_id_with_the_candidates_category_and_builds_no_wide_part_without_it():
    embedded = dataclasses.replace(SPEC, user_features=(*SPEC.user_features, IdFeature("user_id", buckets=20)))
    model = RocketModel(embedded, RocketConfig(**SMALL, booster_wide_crosses="auto"))
    assert model.booster_wide.crosses == (("user_id", "cate_id"),) and model.booster_wide.ids
    x = {**rows(), "user_id": tf.constant(np.arange(16) % 20)}
    np.testing.assert_allclose(model.tower_logit("booster", x), model(x)["booster"], atol=LOGIT_TOLERANCE)
    assert RocketModel(SPEC, RocketConfig(**SMALL, booster_wide_crosses="auto")).booster_wide is None
    scalars = RocketModel(SPEC, RocketConfig(**SMALL, booster_wide=True, booster_wide_crosses="auto")).booster_wide
    assert scalars.ids and scalars.crosses == ()  # --booster-wide asks for the per-id scalars everywhere
