"""History recency (``model.history_recency="position"``): a learned position-from-newest table added to
every history step's embedding in the bank, in training, scoring, serving, XLA and the light export."""
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import FLOAT32_PROBABILITY_ATOL, FLOAT64_CLOSE, LOGIT_CLOSE, model_rows, own_tables_for
from rocket_ctr.config.fields import flag_table
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.errors import FieldError
from rocket_ctr.export.rows import sample_rows
from rocket_ctr.export.verify import reference_probabilities
from rocket_ctr.export.writer import export_light
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.signatures import SCORE_ROWS, example_rows
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.layers.attention import ValidSteps, padded_history, use_padded_attention
from rocket_ctr.model.layers.interest import DotAttention
from rocket_ctr.model.rocket import RocketModel
from rocket_ctr.train.warm_start import WarmStartSource

SPEC = FeatureSpec(
    sequence_features=(IdFeature("item_id", history="hist_item_id", buckets=50),
                       IdFeature("cate_id", history="hist_cate_id", buckets=10)),
    user_features=(IdFeature("user_gender", dtype="string", buckets=4),),
    max_history=8, history_buckets=(4, 8))
SMALL = dict(embedding_dim=4, attention_units=(8, 4), light_units=(8,), booster_units=(16, 8), light_attention=(4,),
             light_projection=3, hint_warmup=False, hint_weight=1.0, history_recency="position")
USER = ("user_gender", "hist_item_id", "hist_cate_id", "hist_len")


def rows(batch=8, steps=8, seed=0, longest=None):
    x = model_rows(batch, steps, seed)
    if longest is not None:
        x["hist_len"] = tf.minimum(x["hist_len"], longest)
    return x


def tables(model) -> list:
    """The recency tables of the model's banks (one bank, or one per tower with separate bottoms)."""
    banks = {id(model.bottom_of(t)): model.bottom_of(t) for t in model.towers}.values()
    return [v for bank in banks for v in bank.weights if "recency" in v.path]


def build(seed=0, **overrides):
    """A built model whose recency tables hold random values (zeros would hide a misplaced row)."""
    keras.utils.set_random_seed(seed)
    model = RocketModel(SPEC, RocketConfig(**{**SMALL, **overrides}))
    model(rows(), training=False)
    rng = np.random.default_rng(seed + 1)
    for table in tables(model):
        table.assign(rng.normal(0.0, 0.5, table.shape))
    return model


def dense(keys, width) -> np.ndarray:
    return padded_history(keys, width).numpy() if isinstance(keys, ValidSteps) else keys.numpy()


@pytest.mark.parametrize("form", ["valid steps", "padded (XLA)", "served (batch 1)"])
def test_the_attention_sees_each_steps_embedding_plus_its_position_from_the_newest(form, float64, monkeypatch):
    seen, call = [], DotAttention.call

    def spy(self, query, keys, mask, training=False):
        seen.append(keys)
        return call(self, query, keys, mask, training=training)

    monkeypatch.setattr(DotAttention, "call", spy)
    model = build(mode="base")
    (table,) = tables(model)
    x = rows(longest=6)
    if form == "served (batch 1)":
        x = {k: (v[:1] if k in USER else v) for k, v in x.items()}
        x["hist_len"] = tf.constant([5], tf.int32)
    if form == "padded (XLA)":
        use_padded_attention(model, True)
    seen.clear()
    model(x, training=form != "served (batch 1)")
    (keys,) = seen
    assert isinstance(keys, ValidSteps) == (form == "valid steps")
    got = dense(keys, 8)
    emb = model.bottom.embeddings
    steps = np.concatenate([emb["item_id"](x["hist_item_id"]).numpy(), emb["cate_id"](x["hist_cate_id"]).numpy()], -1)
    for b, length in enumerate(x["hist_len"].numpy()):
        expected = steps[b, :length] + table.numpy()[length - 1 - np.arange(length)]
        np.testing.assert_allclose(got[b, :length], expected, **FLOAT64_CLOSE)
        assert length == 0 or not np.allclose(got[b, :length], steps[b, :length])


@pytest.mark.parametrize("xla", [False, True])
def test_the_padded_width_changes_nothing(xla, float64):
    """The same rows padded to 8 or to 5 steps (a bucket): the same interest and logits, per-row, under
    XLA's padded form and as served (batch 1)."""
    model = build()
    if xla:
        use_padded_attention(model, True)
    wide = rows(longest=5)
    narrow = {k: (v[:, :5] if k.startswith("hist_") and k != "hist_len" else v) for k, v in wide.items()}

    def outputs(x):
        embedded = model.bottom(x, training=False)
        return {"interest": model._interest("light", embedded), **model(x, training=False)}

    run = tf.function(outputs, jit_compile=True) if xla else outputs
    got = [{k: v.numpy() for k, v in run(x).items()} for x in (wide, narrow)]
    np.testing.assert_allclose(got[0]["interest"], got[1]["interest"], **FLOAT64_CLOSE)
    for tower in ("light", "booster"):
        np.testing.assert_allclose(got[0][tower], got[1][tower], **LOGIT_CLOSE)
    served = [model.light_logit({k: (v[:1] if k in USER else v) for k, v in x.items()}).numpy() for x in (wide, narrow)]
    np.testing.assert_allclose(served[0], served[1], **LOGIT_CLOSE)


@pytest.mark.parametrize("light", ["dot", "din", "mean", "shared"])
def test_the_served_form_equals_the_training_form(light, float64):
    model = build(light_interest=light, **own_tables_for(light))
    x = rows()
    x["hist_len"] = tf.fill([8], 5)
    single = {k: (v[:1] if k in USER else v) for k, v in x.items()}
    repeated = {k: (tf.repeat(v[:1], 8, axis=0) if k in USER else v) for k, v in x.items()}
    served = model.light_logit(single).numpy()
    np.testing.assert_allclose(served, model.light_logit(repeated).numpy(), **LOGIT_CLOSE)
    np.testing.assert_allclose(served, model(repeated, training=True)["light"].numpy(), **LOGIT_CLOSE)


@pytest.mark.parametrize("padded", [False, True])
def test_gradients_reach_the_positions_the_histories_hold(padded):
    model = build()
    use_padded_attention(model, padded)
    (table,) = tables(model)
    x = rows(batch=16, longest=5)
    y = tf.constant(np.random.default_rng(1).integers(0, 2, 16), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.add_n(list(model.loss_terms(y, model(x, training=True)).values()))
    grad = tf.convert_to_tensor(tape.gradient(loss, table.value)).numpy()
    longest = int(x["hist_len"].numpy().max())
    assert longest == 5 and np.all(np.abs(grad[:longest]).sum(axis=1) > 0)
    assert not grad[longest:].any()  # no history reaches that far back


def test_none_builds_no_table_and_the_same_variables_as_before():
    keras.backend.clear_session()  # the same auto-generated layer names in both models
    none = build(history_recency="none")
    assert not any("recency" in v.path for v in none.weights)
    keras.backend.clear_session()
    position = build()
    (table,) = tables(position)
    assert table.shape == (SPEC.max_history, 2 * 4) and table.path.endswith("/shared_bottom/recency_0")
    # the booster's own tables (booster_embeddings) have a recency table of their own
    names = [[v.path.split("/", 1)[1] for v in m.weights if "recency" not in v.path] for m in (position, none)]
    assert names[0] == names[1]
    fresh = RocketModel(SPEC, RocketConfig(**SMALL))
    fresh(rows(), training=False)
    assert not tables(fresh)[0].numpy().any()  # starts at zero: today's model until trained
    separate = build(share=False)
    assert [t.path.split("/", 1)[1] for t in tables(separate)] == ["light_bottom/recency_0", "booster_bottom/recency_0"]


def test_one_table_per_sequence_group_of_its_width():
    spec = FeatureSpec(sequence_groups=({"name": "items", "features": ["item_id"],
                                         "side_features": [{"name": "hist_btag", "vocabulary": [1, 2, 3, 4]}]},
                                        {"name": "cates", "features": ["cate_id"]})).with_buckets(item_id=500,
                                                                                                  cate_id=20)
    model = RocketModel(spec, RocketConfig(**SMALL))
    model(example_rows(spec), training=True)
    assert [(t.path.split("/", 1)[1], t.shape) for t in tables(model)] == [
        ("shared_bottom/recency_0", (spec.max_history, 8)), ("shared_bottom/recency_1", (spec.max_history, 4))]


@pytest.mark.parametrize("xla", [False, True])
def test_the_light_export_holds_the_table_and_serves_the_in_memory_probabilities(xla, tmp_path):
    model = build()
    result = export_light(model, SPEC, tmp_path / "export", jit_compile=xla, sample_size=24, warmup_candidates=64,
                          progress=False)
    assert result.max_abs_diff <= 1e-5
    saved = dict(tf.train.list_variables(str(result.path / "variables" / "variables")))
    assert any("recency_0" in k for k in saved)
    loaded = tf.saved_model.load(str(result.path))
    sample = sample_rows(SPEC, None, 32)
    served = loaded.signatures[SCORE_ROWS](**{k: tf.constant(v) for k, v in sample.items()})["probabilities"].numpy()
    reference = reference_probabilities(model, "light", sample)
    np.testing.assert_allclose(served, reference, atol=FLOAT32_PROBABILITY_ATOL)
    (table,) = tables(model)
    table.assign(tf.zeros_like(table))
    assert np.abs(reference_probabilities(model, "light", sample) - served).max() > 10 * FLOAT32_PROBABILITY_ATOL


def test_config_flag_old_run_dirs_and_warm_start():
    assert flag_table(RocketConfig)["model.history_recency"] == "--history-recency"
    saved = RocketConfig().to_dict()
    del saved["model"]["history_recency"]
    assert RocketConfig.from_saved(saved).model.history_recency == "none"  # a run dir written without the field
    source = WarmStartSource(Path("yesterday"), RocketConfig(), SPEC, "checkpoint")
    with pytest.raises(FieldError, match="history_recency"):
        source.check_compatible(RocketConfig(history_recency="position"), SPEC)
    source.check_compatible(RocketConfig(), SPEC)


def test_a_checkpoint_holds_the_table_and_restores_it(tmp_path):
    model = build()
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    assert any("recency_0" in name for name, _ in tf.train.list_variables(path))
    restored = RocketModel(SPEC, RocketConfig(**SMALL))
    restored(rows(), training=False)
    tf.train.Checkpoint(model=restored).restore(path).assert_existing_objects_matched()
    np.testing.assert_array_equal(tables(restored)[0].numpy(), tables(model)[0].numpy())
