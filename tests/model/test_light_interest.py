"""Per-tower interest extractors in RocketModel: the light tower's choice, histories, gradients, checkpoints."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import LOGIT_CLOSE, model_rows
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import FieldError
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.layers.attention import DinAttention
from rocket_ctr.model.layers.interest import DotAttention, MeanPooling
from rocket_ctr.model.rocket import RocketModel

SPEC = FeatureSpec(
    sequence_features=(IdFeature("item_id", history="hist_item_id", buckets=50),
                       IdFeature("cate_id", history="hist_cate_id", buckets=10)),
    user_features=(IdFeature("user_gender", dtype="string", buckets=4),),
    max_history=8, history_buckets=(4, 8))
SMALL = dict(light_interest="shared", embedding_dim=4, attention_units=(8, 4), light_units=(8,), booster_units=(16, 8),
             light_attention=(4,), light_projection=3, hint_warmup=False, hint_weight=1.0,
             booster_bottom="after-launch", booster_interest="din", booster_cross=0, booster_embedding_dim=0,
             booster_batch_norm=True)  # the DIN booster whose attention --light-interest shared reads
USER = ("user_gender", "hist_item_id", "hist_cate_id", "hist_len")


def rows(batch=8, steps=8, seed=0):
    return model_rows(batch, steps, seed)


def build(seed=0, **overrides):
    keras.utils.set_random_seed(seed)
    model = RocketModel(SPEC, RocketConfig(**{**SMALL, **overrides}))
    model(rows(), training=False)
    return model


def gradients(model, term, variables, x=None):
    x = rows() if x is None else x
    y = tf.constant(np.random.default_rng(1).integers(0, 2, len(x["hist_len"])), tf.float32)
    with tf.GradientTape() as tape:
        loss = model.loss_terms(y, model(x, training=True))[term]
    grads = tape.gradient(loss, [v.value for v in variables], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [bool(tf.reduce_any(tf.convert_to_tensor(g) != 0)) for g in grads]


@pytest.mark.parametrize("light,history", [("shared", None), ("din", None), ("dot", 3), ("mean", 3)])
def test_the_served_form_equals_the_training_form(light, history, float64):
    """One user's history (batch 1) against N candidates, as served, equals that user's rows in a batch
    (in float64: the served form sums in another order)."""
    model = build(light_interest=light, light_history=history)
    assert model.light.logit.kernel.dtype == "float64"
    x = rows()
    x["hist_len"] = tf.fill([8], 6)
    single = {k: (v[:1] if k in USER else v) for k, v in x.items()}
    repeated = {k: (tf.repeat(v[:1], 8, axis=0) if k in USER else v) for k, v in x.items()}
    served = model.light_logit(single).numpy()
    np.testing.assert_allclose(served, model.light_logit(repeated).numpy(), **LOGIT_CLOSE)
    np.testing.assert_allclose(served, model(repeated, training=False)["light"].numpy(), **LOGIT_CLOSE)


@pytest.mark.parametrize("light,kind", [("din", DinAttention), ("dot", DotAttention), ("mean", MeanPooling)])
def test_an_own_extractor_belongs_to_the_light_tower_and_the_light_path_reads_no_booster_variable(light, kind):
    model = build(light_interest=light)
    assert isinstance(model.interest_of("light"), kind) and isinstance(model.interest_of("booster"), DinAttention)
    assert model.shared_variables() == model.bottom.weights                       # the embeddings only
    light_ids = {id(v) for v in model.tower_variables("light")}
    booster_ids = {id(v) for v in model.tower_variables("booster")}
    assert {id(v) for v in model.interest_of("light").weights} <= light_ids and not light_ids & booster_ids
    assert {id(v) for v in model.booster_interest.weights} <= booster_ids
    with tf.GradientTape() as tape:
        model.light_logit(rows())
    assert not {id(v) for v in tape.watched_variables()} & booster_ids
    assert all(v.path.split("/")[-2] != "din_attention" for v in model.weights)   # no name implies sharing


def test_the_shared_attention_is_one_layer_counted_in_the_bottom():
    model = build()
    assert model.interest_of("light") is model.interest_of("booster")
    assert not hasattr(model, "light_interest")
    shared = {id(v) for v in model.shared_variables()}
    assert {id(v) for v in model.booster_interest.weights} <= shared
    assert not shared & {id(v) for v in model.tower_variables("booster") + model.tower_variables("light")}


@pytest.mark.parametrize("light", ["dot", "mean", "shared"])
def test_base_mode_builds_only_the_light_extractor(light):
    model = build(mode="base", light_interest=light)
    assert not hasattr(model, "booster_interest") and not hasattr(model, "booster")
    layers = {id(layer) for layer in model.serving_layers("light")}
    calibration = (*model.intercepts.values(), *model.slopes.values(), *(v for p in model.knots.values() for v in p))
    scalars = {id(model.hint_scale)} | {id(v) for v in calibration}  # not layers' weights
    assert {id(v) for v in model.weights} - scalars == {
        id(v) for layer in model.serving_layers("light") for v in layer.weights}
    assert len(layers) == 3


def test_gradients_with_an_own_light_extractor():
    model = build(light_interest="din", hint_trains_bottom=False)
    bank, light_ext, booster_ext = (model.bottom.weights, model.interest_of("light").trainable_weights,
                                    model.booster_interest.trainable_weights)
    # the hint trains the light tower and its own extractor, never the embeddings or the booster
    hint = gradients(model, "hint", bank + light_ext + booster_ext)
    assert not any(hint[:len(bank)]) and any(hint[len(bank):len(bank) + len(light_ext)])
    assert not any(hint[len(bank) + len(light_ext):])
    # before the launch the booster trains its own attention fully but not the embeddings
    model.hint_scale.assign(0.0)
    booster = gradients(model, "booster_ce", bank + booster_ext)
    assert not any(booster[:len(bank)]) and all(booster[len(bank):])
    model.hint_scale.assign(1.0)
    assert any(gradients(model, "booster_ce", bank)[:len(bank)])
    light = gradients(model, "light_ce", bank + light_ext + booster_ext)           # the light tower trains both
    assert any(light[:len(bank)]) and all(light[len(bank):len(bank) + len(light_ext)])
    assert not any(light[len(bank) + len(light_ext):])
    detached = build(light_interest="dot", detach_light=True)
    light = gradients(detached, "light_ce", detached.bottom.weights + detached.interest_of("light").weights)
    assert not any(light[:3]) and all(light[3:])


def test_each_tower_reads_its_newest_history_steps(float64):
    model = build(light_interest="mean", light_history=2, booster_history=5)
    assert model.light.logit.kernel.dtype == "float64"  # the cut histories are summed over other widths
    x = rows(seed=3)

    def cut(steps):
        lengths = x["hist_len"].numpy()
        out = {k: v for k, v in x.items()}
        for column in ("hist_item_id", "hist_cate_id"):
            history = x[column].numpy()
            out[column] = tf.constant(np.stack([np.pad(h[max(n - steps, 0):n], (0, 8 - min(n, steps)))
                                                for h, n in zip(history, lengths)]))
        out["hist_len"] = tf.constant(np.minimum(lengths, steps), tf.int32)
        return out

    logits = model(x, training=False)
    plain = build(light_interest="mean")
    np.testing.assert_allclose(logits["light"].numpy(), plain(cut(2), training=False)["light"].numpy(), **LOGIT_CLOSE)
    np.testing.assert_allclose(logits["booster"].numpy(), plain(cut(5), training=False)["booster"].numpy(),
                               **LOGIT_CLOSE)
    with pytest.raises(FieldError, match="model.booster_history"):
        build(booster_history=9)


def test_a_checkpoint_of_the_layout_before_per_tower_extractors_restores(tmp_path):
    """Runs saved the shared attention inside the bottom (bottom/attention): they restore, optimizer included."""
    old = build()
    layout = tf.Module()
    layout.bottom = tf.Module()
    for i, table in enumerate(old.bottom.embeddings.values()):
        setattr(layout.bottom, f"_ckpt_emb_{i}", table)
    layout.bottom.attention = old.booster_interest
    layout.light, layout.booster, layout.hint_scale = old.light, old.booster, old.hint_scale
    path = tf.train.Checkpoint(model=layout).save(str(tmp_path / "ckpt"))
    new = build(seed=1, calibrate_intercept=False)  # as an old run restores (config without the field)
    assert not np.allclose(new.light_logit(rows()).numpy(), old.light_logit(rows()).numpy())
    tf.train.Checkpoint(model=new).restore(path).assert_existing_objects_matched()
    for tower in ("light", "booster"):
        np.testing.assert_allclose(new(rows(), training=False)[tower].numpy(),
                                   old(rows(), training=False)[tower].numpy(), rtol=1e-6)
    assert new.bottom.weights == [table.embeddings for table in new.bottom.embeddings.values()]


def test_a_booster_reading_din_and_dot_attention_trains_both_and_the_light_path_reads_neither():
    from rocket_ctr.model.layers.interest import ConcatenatedExtractors
    model = build(light_interest="dot", booster_interest="din+dot")
    extractor = model.interest_of("booster")
    assert isinstance(extractor, ConcatenatedExtractors)
    assert [type(e) for e in extractor.extractors] == [DinAttention, DotAttention]
    booster_ids = {id(v) for v in model.tower_variables("booster")}
    assert {id(v) for v in extractor.weights} <= booster_ids and len(extractor.weights) > 2
    assert all(gradients(model, "booster_ce", extractor.weights))               # both parts are trained
    with tf.GradientTape() as tape:
        model.light_logit(rows())
    assert not {id(v) for v in tape.watched_variables()} & booster_ids


def test_a_booster_reading_din_and_dot_attention_scores_one_request_as_its_tiled_rows(float64):
    model = build(light_interest="dot", booster_interest="din+dot")
    x = rows()
    x["hist_len"] = tf.fill([8], 6)
    single = {k: (v[:1] if k in USER else v) for k, v in x.items()}
    repeated = {k: (tf.repeat(v[:1], 8, axis=0) if k in USER else v) for k, v in x.items()}
    assert model.booster.logit.kernel.dtype == "float64"  # one request or tiled rows: another summation order
    np.testing.assert_allclose(model.tower_logit("booster", single).numpy(),
                               model.tower_logit("booster", repeated).numpy(), **LOGIT_CLOSE)
