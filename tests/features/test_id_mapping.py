"""IdMapper: raw ids -> embedding rows, hashing and vocabularies, inside tf.function."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from rocket_ctr.features.hashing import splitmix64
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.id_mapping import IdMapper
from rocket_ctr.features.spec import FeatureSpec

HUGE = 2**62


def test_hashing_maps_any_int64_into_range():
    spec = FeatureSpec()
    mapper = IdMapper(spec)
    feature = spec.feature("item_id")
    ids = tf.constant([0, 1, -1, -(2**63), 2**63 - 1, HUGE, HUGE + 1, 123456789], tf.int64)
    rows = mapper.rows(feature, ids).numpy()
    assert rows.dtype == np.int64
    assert ((rows >= 0) & (rows < feature.buckets)).all()
    again = mapper.rows(feature, ids).numpy()
    np.testing.assert_array_equal(rows, again)  # deterministic
    # an unseen id in a new mapper (e.g. the exported one) gets the same row
    np.testing.assert_array_equal(IdMapper(spec).rows(feature, ids).numpy(), rows)


def test_hashing_strings_and_history_shapes():
    spec = FeatureSpec()
    mapper = IdMapper(spec)
    occupation = spec.feature("user_occupation")
    rows = mapper.rows(occupation, tf.constant(["doctor", "", "never seen", "ü"])).numpy()
    assert ((rows >= 0) & (rows < occupation.buckets)).all()
    hist = tf.constant([[1, -5, HUGE], [7, 0, 0]], tf.int64)
    rows = mapper.rows(spec.feature("hist_cate_id"), hist).numpy()
    assert rows.shape == (2, 3) and ((rows >= 0) & (rows < 10_000)).all()


def test_vocabulary_known_ids_then_oov_zero():
    spec = FeatureSpec(
        sequence_features=(IdFeature("item_id", history="hist_item_id", vocabulary=(HUGE, -7, 42)),),
        user_features=(IdFeature("user_gender", dtype="string", vocabulary=("F", "M")),))
    mapper = IdMapper(spec)
    item = spec.feature("item_id")
    rows = mapper.rows(item, tf.constant([HUGE, -7, 42, 0, 43, -(2**63)], tf.int64)).numpy()
    np.testing.assert_array_equal(rows, [1, 2, 3, 0, 0, 0])
    gender = spec.feature("user_gender")
    np.testing.assert_array_equal(mapper.rows(gender, tf.constant(["M", "F", "X", ""])).numpy(), [2, 1, 0, 0])
    assert item.num_rows == 4 and gender.num_rows == 3


def test_mapper_call_maps_id_columns_inside_tf_function():
    spec = FeatureSpec(
        sequence_features=(IdFeature("item_id", history="hist_item_id", vocabulary=(10, 20)),
                           IdFeature("cate_id", history="hist_cate_id", buckets=5)))
    mapper = IdMapper(spec)

    @tf.function
    def mapped(features):
        return mapper(features)

    features = {
        "item_id": tf.constant([10, 30], tf.int64),
        "hist_item_id": tf.constant([[20, 10, 0], [99, 0, 0]], tf.int64),
        "cate_id": tf.constant([-1, HUGE], tf.int64),
        "hist_cate_id": tf.constant([[HUGE, -3, 0], [1, 0, 0]], tf.int64),
        "ts": tf.constant([5, 6], tf.int64),
        "hist_len": tf.constant([2, 1], tf.int32),
    }
    out = {k: v.numpy() for k, v in mapped(features).items()}
    np.testing.assert_array_equal(out["item_id"], [1, 0])
    np.testing.assert_array_equal(out["hist_item_id"], [[2, 1, 0], [0, 0, 0]])
    assert ((out["cate_id"] >= 0) & (out["cate_id"] < 5)).all()
    assert ((out["hist_cate_id"] >= 0) & (out["hist_cate_id"] < 5)).all()
    # entries the spec does not map pass through unchanged
    np.testing.assert_array_equal(out["ts"], [5, 6])
    np.testing.assert_array_equal(out["hist_len"], [2, 1])
    # same result as eager
    np.testing.assert_array_equal(mapper(features)["cate_id"].numpy(), out["cate_id"])


def test_int_ids_hash_by_splitmix64_and_old_specs_keep_the_text_hash():
    ids = np.array([0, 1, -1, -(2**63), 2**63 - 1, HUGE, 123456789], np.int64)
    spec = FeatureSpec()
    assert spec.id_hash == "splitmix64"
    feature = spec.feature("item_id")
    rows = IdMapper(spec).rows(feature, tf.constant(ids)).numpy()
    np.testing.assert_array_equal(rows, (splitmix64(ids) % np.uint64(feature.buckets)).astype(np.int64))
    # the same under XLA (the compiled serving path maps ids too)
    compiled = tf.function(lambda x: IdMapper(spec).rows(feature, x), jit_compile=True)
    np.testing.assert_array_equal(compiled(tf.constant(ids)).numpy(), rows)
    # a spec saved before id_hash existed (a run dir's, an export's) keeps hashing the ids' text
    saved = spec.to_dict()
    del saved["id_hash"]
    old = FeatureSpec.from_saved(saved)
    assert old.id_hash == "string" and FeatureSpec.from_dict(saved).id_hash == "splitmix64"
    text = tf.strings.to_hash_bucket_fast([str(i) for i in ids], feature.buckets).numpy()
    np.testing.assert_array_equal(IdMapper(old).rows(old.feature("item_id"), tf.constant(ids)).numpy(), text)
    # string ids hash the same way under both
    gender = spec.feature("user_gender")
    words = tf.constant(["f", "m", ""])
    np.testing.assert_array_equal(IdMapper(spec).rows(gender, words).numpy(), IdMapper(old).rows(gender, words).numpy())


def test_unknown_id_hash_is_refused():
    import pytest

    with pytest.raises(ValueError, match="id_hash must be one of"):
        FeatureSpec(id_hash="md5")
