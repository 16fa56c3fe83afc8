"""RocketModel mechanisms: gradient block, sharing, tower separation, modes, eq. (1)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import LOGIT_CLOSE, model_rows, own_tables_for
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.rocket import RocketModel
from rocket_ctr.train.optimizers import LazyAdam

SPEC = FeatureSpec(
    sequence_features=(IdFeature("item_id", history="hist_item_id", buckets=50),
                       IdFeature("cate_id", history="hist_cate_id", buckets=10)),
    user_features=(IdFeature("user_gender", dtype="string", buckets=4),),
    max_history=8, history_buckets=(4, 8))
SMALL = dict(embedding_dim=4, attention_units=(8, 4), light_units=(8, 4), booster_units=(16, 8, 8),
             hint_trains_bottom=True, hint_warmup=False, hint_weight=1.0)  # the paper's eq. (1); protections alone


def rows(batch=16, steps=6, seed=0):
    return model_rows(batch, steps, seed)


def labels(batch=16, seed=0):
    return tf.constant(np.random.default_rng(seed + 1).integers(0, 2, batch), tf.float32)


def build(**overrides):
    keras.utils.set_random_seed(0)
    model = RocketModel(SPEC, RocketConfig(**{**SMALL, **overrides}))
    model(rows(), training=False)
    return model


def hint_gradients(model, variables):
    x, y = rows(), labels()
    with tf.GradientTape() as tape:
        hint = model.loss_terms(y, model(x, training=True))["hint"]
    return tape.gradient(hint, [v.value for v in variables], unconnected_gradients=tf.UnconnectedGradients.ZERO)


def is_zero(g):
    g = tf.convert_to_tensor(g)
    return bool(tf.reduce_all(g == 0))


@pytest.mark.parametrize("booster_interest", ["din", "transformer", "transformer+din"])
def test_gradient_block_hint_never_reaches_booster_but_reaches_light_and_bottom(booster_interest):
    model = build(booster_interest=booster_interest)
    extractor = {id(v) for v in model.interest_of("booster").weights}
    assert len(extractor) > 2 and extractor <= {id(v) for v in model.tower_variables("booster")}
    booster_grads = hint_gradients(model, model.tower_variables("booster"))
    assert booster_grads and all(is_zero(g) for g in booster_grads)
    light_grads = hint_gradients(model, model.tower_variables("light"))
    assert any(not is_zero(g) for g in light_grads)
    bottom_grads = hint_gradients(model, model.shared_variables())
    assert any(not is_zero(g) for g in bottom_grads)


def test_hint_kept_out_of_the_bottom_trains_the_light_tower_only():
    model = build(hint_trains_bottom=False)
    assert all(is_zero(g) for g in hint_gradients(model, model.shared_variables()))
    assert all(is_zero(g) for g in hint_gradients(model, model.tower_variables("booster")))
    assert any(not is_zero(g) for g in hint_gradients(model, model.tower_variables("light")))
    x, y = rows(), labels()
    with tf.GradientTape() as tape:  # the light tower's cross-entropy still trains the bottom
        light_ce = model.loss_terms(y, model(x, training=True))["light_ce"]
    grads = tape.gradient(light_ce, [v.value for v in model.shared_variables()],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert any(not is_zero(g) for g in grads)
    # the hint's light logit is the light logit itself, only detached from the bottom
    logits = model(x, training=True)
    np.testing.assert_allclose(logits["light_for_hint"].numpy(), logits["light"].numpy(), rtol=1e-6)
    assert set(model(x, training=False)) == {"light", "booster"}


def test_before_launch_the_booster_does_not_train_the_shared_bottom():
    model = build(hint_warmup=True, validation_fraction=0.1, booster_bottom="after-launch")
    x, y = rows(), labels()

    def booster_ce_gradients():
        with tf.GradientTape() as tape:
            booster_ce = model.loss_terms(y, model(x, training=True))["booster_ce"]
        return tape.gradient(booster_ce, [v.value for v in model.shared_variables() + model.tower_variables("booster")],
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)

    model.hint_scale.assign(0.0)  # not launched: the bottom learns from the light tower alone
    grads = booster_ce_gradients()
    n_shared = len(model.shared_variables())
    assert all(is_zero(g) for g in grads[:n_shared]) and any(not is_zero(g) for g in grads[n_shared:])
    model.hint_scale.assign(1.0)  # launched: the paper's shared training
    assert any(not is_zero(g) for g in booster_ce_gradients()[:n_shared])


@pytest.mark.parametrize("light_interest", ["shared", "dot"])
def test_booster_bottom_from_start_trains_the_shared_bottom_while_the_hint_waits(light_interest):
    model = build(hint_warmup=True, validation_fraction=0.1, booster_bottom="from-start", light_interest=light_interest,
                  **own_tables_for(light_interest))
    model.hint_scale.assign(0.0)  # not launched
    x, y = rows(), labels()
    with tf.GradientTape() as tape:
        terms = model.loss_terms(y, model(x, training=True))
    shared = [v.value for v in model.shared_variables()]
    booster_grads = tape.gradient(terms["booster_ce"], shared,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert any(not is_zero(g) for g in booster_grads)  # the booster's cross-entropy reaches the bottom
    assert float(terms["hint"]) == 0.0  # while λ·hint_scale is still 0
    gated = build(hint_warmup=True, validation_fraction=0.1, light_interest=light_interest,
                  booster_bottom="after-launch", **own_tables_for(light_interest))
    gated.hint_scale.assign(0.0)
    with tf.GradientTape() as tape:
        booster_ce = gated.loss_terms(y, gated(x, training=True))["booster_ce"]
    grads = tape.gradient(booster_ce, [v.value for v in gated.shared_variables()],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert all(is_zero(g) for g in grads)


def test_without_gradient_block_hint_updates_booster():
    model = build(gradient_block=False)
    grads = hint_gradients(model, model.tower_variables("booster"))
    assert any(not is_zero(g) for g in grads)


def test_towers_share_the_very_same_embedding_variables():
    model = build()
    light_emb = model.bottom_of("light").embeddings["item_id"].embeddings
    booster_emb = model.bottom_of("booster").embeddings["item_id"].embeddings
    assert light_emb is booster_emb
    # candidate and history read one table: ids seen only in histories and ids seen only as
    # candidates both get gradient rows in that single variable
    x = rows()
    x["item_id"] = x["item_id"] % 10
    x["hist_item_id"] = 40 + x["hist_item_id"] % 10
    x["hist_len"] = tf.fill([16], 6)
    with tf.GradientTape() as tape:
        out = model(x, training=True)["light"]
    grad = tf.convert_to_tensor(tape.gradient(out, light_emb.value))
    touched = set(np.flatnonzero(np.any(grad.numpy() != 0, axis=1)))
    assert touched & set(range(10)) and touched & set(range(40, 50))


def test_no_share_gives_separate_embeddings():
    model = build(share=False)
    light_vars = {id(v) for v in model.tower_variables("light")}
    booster_vars = {id(v) for v in model.tower_variables("booster")}
    assert not light_vars & booster_vars
    assert model.bottom_of("light").embeddings["item_id"].embeddings is not \
        model.bottom_of("booster").embeddings["item_id"].embeddings
    assert model.shared_variables() == []


def test_light_path_holds_no_booster_variable(float64):
    model = build()
    x = rows()
    with tf.GradientTape(persistent=True) as tape:
        light = model.light_logit(x)
    booster_ids = {id(v) for v in model.tower_variables("booster")}
    watched = {id(v) for v in tape.watched_variables()}
    assert watched and not watched & booster_ids
    # the served path splits the first layer (the user's share once): equal up to float rounding
    assert model.light.logit.kernel.dtype == "float64"
    np.testing.assert_allclose(light.numpy(), model(x, training=False)["light"].numpy(), **LOGIT_CLOSE)


@pytest.mark.parametrize("mode,terms", [("rocket", {"light_ce", "booster_ce", "hint"}),
                                        ("base", {"light_ce"}), ("booster", {"booster_ce"})])
def test_modes_build_their_towers_and_loss_terms(mode, terms):
    model = build(mode=mode)
    out = model(rows(), training=False)
    assert set(model.loss_terms(labels(), out)) == terms
    assert set(out) == {"light", "booster"} & {
        t.split("_")[0] for t in terms | ({"light_ce", "booster_ce"} if mode == "rocket" else set())}


def test_eq1_is_the_sum_of_cross_entropies_and_weighted_hint():
    model = build(hint_weight=0.7)
    x, y = rows(), labels()
    out = model(x, training=False)
    l, z = out["light"].numpy(), out["booster"].numpy()
    ce = lambda p: float(np.mean(np.maximum(p, 0) - p * y.numpy() + np.log1p(np.exp(-np.abs(p)))))  # noqa: E731
    expected = ce(l) + ce(z) + 0.7 * float(np.mean((l - z) ** 2))
    # float32 means of 16 non-negative terms (and exp/log1p to an ulp or two): within ~20·eps32 ≈ 1.2e-6
    assert float(model.compute_loss(x, y, out)) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("hint", ["mimic", "mse", "kd"])
def test_hint_scaled_to_the_label_has_the_light_cross_entropys_gradient_size(hint):
    model = build(hint=hint, hint_weight=1.0, hint_scale_to_label=True, hint_trains_bottom=False)
    x, y = rows(), labels()
    out = model(x, training=False)
    light = tf.Variable(out["light"])
    with tf.GradientTape() as tape:
        term = model.loss_terms(y, {"light": light, "booster": out["booster"]})["hint"]
    batch = int(y.shape[0])
    per_row = tape.gradient(term, light).numpy() * batch                  # d(batch mean)/dl_i = g_i / B
    label_gradient = tf.sigmoid(out["light"]).numpy() - y.numpy()
    # equal up to the float32 rounding of the ratio's two means of 16 terms and the products: < 1e-5
    np.testing.assert_allclose(np.mean(np.abs(per_row)), np.mean(np.abs(label_gradient)), rtol=1e-4)
    unscaled = build(hint=hint, hint_weight=1.0, hint_trains_bottom=False)
    plain = float(unscaled.loss_terms(y, unscaled(x, training=False))["hint"])
    assert float(term) != pytest.approx(plain, rel=1e-3)                    # the switch changes the term
    # the ratio is a constant of the step: the booster still gets no gradient (gradient block)
    booster = tf.Variable(out["booster"])
    with tf.GradientTape() as tape:
        term = model.loss_terms(y, {"light": out["light"], "booster": booster})["hint"]
    assert is_zero(tape.gradient(term, booster, unconnected_gradients=tf.UnconnectedGradients.ZERO))


@pytest.mark.parametrize("hint", ["mimic", "mse", "kd"])
def test_hints_are_zero_when_logits_agree_and_positive_otherwise(hint):
    from rocket_ctr.model.hints import get_hint
    fn = get_hint(hint)
    a = tf.constant([0.5, -2.0, 3.0])
    if hint != "kd":
        assert float(tf.reduce_max(tf.abs(fn(a, a)))) == pytest.approx(0.0)
    # KD's minimum over l is at l = z: moving l away raises the loss
    assert float(tf.reduce_sum(fn(a + 1.0, a, 2.0))) > float(tf.reduce_sum(fn(a, a, 2.0)))


def test_train_step_fits_both_towers_on_a_fixed_batch():
    # no cross stack: a booster with one that memorises a single batch reaches logits in the hundreds,
    # which the logit-MSE hint at λ = 1 then forces on the light tower (eq. (1)'s terms are under test here)
    model = build(booster_cross=0)
    model.compile(optimizer=LazyAdam(1e-2))
    x, y = rows(64), labels(64)
    first = model.loss_terms(y, model(x, training=True))
    step = tf.function(model.train_step)
    for _ in range(60):
        step((x, y))
    last = model.loss_terms(y, model(x, training=True))
    assert float(last["light_ce"]) < 0.5 * float(first["light_ce"])
    assert float(last["booster_ce"]) < 0.5 * float(first["booster_ce"])


def test_two_stage_freezes_booster_and_copies_its_bottom():
    model = build(mode="two-stage")
    model.compile(optimizer=LazyAdam(1e-2))
    step = tf.function(model.train_step)
    for _ in range(5):
        step((rows(), labels()))
    assert set(model.loss_terms(labels(), model(rows()))) == {"booster_ce"}
    model.set_stage("light")
    for a, b in zip(model.light_bottom.weights, model.booster_bottom.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    frozen = [v.numpy().copy() for v in model.tower_variables("booster")]
    model.compile(optimizer=LazyAdam(1e-2))
    step = tf.function(model.train_step)
    for _ in range(5):
        step((rows(), labels()))
    assert set(model.loss_terms(labels(), model(rows()))) == {"light_ce", "hint"}
    for before, v in zip(frozen, model.tower_variables("booster")):
        np.testing.assert_array_equal(before, v.numpy())


def test_keras_fit_uses_the_custom_steps():
    keras.utils.set_random_seed(0)
    model = RocketModel(SPEC, RocketConfig(**SMALL))
    model.compile(optimizer=LazyAdam(3e-3))
    data = tf.data.Dataset.from_tensors((rows(64), labels(64))).repeat(10)
    history = model.fit(data, epochs=4, verbose=0)
    assert {"loss", "light_ce", "booster_ce", "hint"} <= set(history.history)
    assert history.history["light_ce"][-1] < history.history["light_ce"][0]
    assert set(model.evaluate(data, verbose=0, return_dict=True)) >= {"loss", "hint"}


def test_user_side_inputs_broadcast_against_candidates(float64):
    """One user's history (batch 1) against N candidates equals the same rows repeated N times."""
    model = build()
    x = rows(batch=5)
    single = {k: (v[:1] if k in ("user_gender", "hist_item_id", "hist_cate_id", "hist_len") else v)
              for k, v in x.items()}
    repeated = {k: (tf.repeat(v[:1], 5, axis=0) if k in single and v.shape[0] == 5 and single[k].shape[0] == 1 else v)
                for k, v in x.items()}
    assert model.light.logit.kernel.dtype == "float64"  # the padded and the valid-step form: another summation order
    np.testing.assert_allclose(model.light_logit(single).numpy(), model.light_logit(repeated).numpy(), **LOGIT_CLOSE)


def test_gated_hint_applies_only_where_the_booster_is_the_better_model():
    model = build(hint_gate=True, hint_weight=2.0)
    labels = tf.constant([1.0, 1.0])
    logits = {"light": tf.constant([2.0, -2.0]), "booster": tf.constant([-1.0, 1.0])}
    # example 0: light fits the label better (no hint); example 1: booster does (hint (−2 − 1)² = 9)
    assert float(model.loss_terms(labels, logits)["hint"]) == pytest.approx(2.0 * 9.0 / 2)
    ungated = build(hint_weight=2.0)
    assert float(ungated.loss_terms(labels, logits)["hint"]) == pytest.approx(2.0 * 9.0)


def test_confidence_weighted_hint_weighs_each_row_by_the_boosters_probability_of_its_label():
    model = build(hint_confidence=True, hint_weight=2.0)
    labels = tf.constant([1.0, 0.0])
    logits = {"light": tf.constant([0.0, 0.0]), "booster": tf.constant([2.0, 2.0])}
    # row 0: a click the booster gives σ(2); row 1: a non-click it gives 1 − σ(2); hint (0 − 2)² = 4 each
    p = 1.0 / (1.0 + np.exp(-2.0))
    assert float(model.loss_terms(labels, logits)["hint"]) == pytest.approx(2.0 * (p * 4 + (1 - p) * 4) / 2)


def test_confidence_weighted_hint_never_updates_the_booster():
    model = build(hint_confidence=True, hint_weight=1.0, hint_warmup=False)
    booster_own = model.tower_variables("booster")
    with tf.GradientTape() as tape:
        hint = model.loss_terms(labels(), model(rows(), training=True))["hint"]
    gradients = tape.gradient(hint, [v.value for v in booster_own], unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert float(hint) > 0 and all(is_zero(g) for g in gradients)


# ----- booster capacity the light tower does not pay for: cross stack, booster-only columns -------------------
SPEC_SLOT = FeatureSpec(sequence_features=SPEC.sequence_features, user_features=SPEC.user_features,
                        item_features=(IdFeature("slot", buckets=6, booster_only=True),), max_history=8,
                        history_buckets=(4, 8))


def slot_rows(batch=16, seed=0, slot=None):
    x = rows(batch, seed=seed)
    x["slot"] = tf.constant(np.arange(batch) % 6 if slot is None else slot, tf.int64)
    return x


def build_slot(**overrides):
    keras.utils.set_random_seed(0)
    model = RocketModel(SPEC_SLOT, RocketConfig(**{**SMALL, **overrides}))
    model(slot_rows(), training=False)
    return model


def test_booster_cross_trains_and_the_light_path_holds_no_cross_variable():
    model, plain = build(booster_cross=2), build(booster_cross=0)
    cross = model.booster_cross.weights
    assert len(cross) == 4 and plain.booster_cross is None
    assert {id(v) for v in cross} <= {id(v) for v in model.tower_variables("booster")}
    x, y = rows(), labels()
    # the light path is built and initialised before the booster's: the same light tower as without crosses
    np.testing.assert_array_equal(model.light_logit(x).numpy(), plain.light_logit(x).numpy())
    with tf.GradientTape() as tape:
        model.light_logit(x)
    assert not {id(v) for v in tape.watched_variables()} & {id(v) for v in cross}
    before = [v.numpy().copy() for v in cross]
    model.compile(optimizer=LazyAdam(1e-2))
    model.train_step((x, y))
    assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before, cross))


def test_booster_only_column_moves_the_booster_logit_and_never_the_light_one(float64):
    model = build_slot()
    assert "slot" not in model.bottom.embeddings and "slot" in model.booster_columns.embeddings
    a, b = model(slot_rows(slot=[0] * 16)), model(slot_rows(slot=[5] * 16))
    assert not np.allclose(a["booster"].numpy(), b["booster"].numpy())
    np.testing.assert_array_equal(a["light"].numpy(), b["light"].numpy())
    without = {k: v for k, v in slot_rows().items() if k != "slot"}
    assert model.light.logit.kernel.dtype == "float64"  # the served path splits the first layer
    np.testing.assert_allclose(model.light_logit(without).numpy(), a["light"].numpy(), **LOGIT_CLOSE)
    np.testing.assert_allclose(model.tower_logit("booster", slot_rows(slot=[0] * 16)).numpy(), a["booster"].numpy(),
                               **LOGIT_CLOSE)
    with pytest.raises(ValueError, match=r"booster-only columns \['slot'\]"):
        model.tower_logit("booster", without)
    light_ids = {id(v) for layer in model.serving_layers("light") for v in layer.weights}
    assert not {id(v) for v in model.booster_columns.weights} & light_ids


def test_booster_only_tables_train_even_while_the_warmup_keeps_the_booster_off_the_shared_bottom():
    model = build_slot(light_interest="din", booster_bottom="after-launch")
    model.hint_scale.assign(0.0)
    with tf.GradientTape() as tape:
        booster_ce = model.loss_terms(labels(), model(slot_rows(), training=True))["booster_ce"]
    slot_table, shared = model.booster_columns.weights[0], model.shared_variables()
    grads = tape.gradient(booster_ce, [slot_table.value, *(v.value for v in shared)],
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    assert not is_zero(grads[0]) and all(is_zero(g) for g in grads[1:])


def test_base_mode_ignores_booster_only_columns():
    keras.utils.set_random_seed(0)
    model = RocketModel(SPEC_SLOT, RocketConfig(**{**SMALL, "mode": "base", "booster_cross": 2}))
    out = model({k: v for k, v in slot_rows().items() if k != "slot"})
    assert set(out) == {"light"} and model.booster_columns is None and model.booster_cross is None
