"""FeatureSpec (reference defaults, JSON round trip, validation) and IdMapper (ids -> rows)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from rocket_ctr.errors import InputError
from rocket_ctr.features import FeatureSpec, IdFeature, IdMapper


# ----- FeatureSpec --------------------------------------------------------------------------
def test_defaults_are_the_reference_schema():
    spec = FeatureSpec()
    assert spec.columns == ("user_id", "item_id", "cate_id", "user_gender", "user_occupation",
                            "hist_item_id", "hist_cate_id", "label")
    assert spec.history_columns == ("hist_item_id", "hist_cate_id")
    assert spec.scalar_id_columns == ("item_id", "cate_id", "user_gender", "user_occupation")
    assert spec.timestamp == "ts" and spec.label == "label" and spec.user_id == "user_id"
    assert spec.max_history == 50 and spec.history_buckets == (8, 16, 32, 50)
    assert [f.dtype for f in spec.id_features] == ["int64", "int64", "string", "string"]
    # candidate and history share one embedding table
    assert spec.feature("hist_item_id") is spec.feature("item_id")
    with pytest.raises(KeyError):
        spec.feature("nope")


def test_json_round_trip(tmp_path):
    spec = FeatureSpec(
        sequence_features=(IdFeature("item_id", history="hist_item_id", buckets=1000),
                           IdFeature("cate_id", history="hist_cate_id", vocabulary=(3, 1, 2))),
        user_features=(IdFeature("user_gender", dtype="string", vocabulary=("F", "M")),),
        item_features=(IdFeature("brand", buckets=7),),
        timestamp=None, max_history=20, history_buckets=(4, 10))
    path = tmp_path / "feature_spec.json"
    spec.save(path)
    json.loads(path.read_text())  # plain JSON
    loaded = FeatureSpec.load(path)
    assert loaded == spec
    assert loaded.feature("cate_id").vocabulary == (3, 1, 2)
    assert loaded.feature("cate_id").num_rows == 4  # 3 known ids + OOV row 0
    assert loaded.feature("brand").num_rows == 7
    assert FeatureSpec.load(_save(tmp_path, FeatureSpec().to_dict())) == FeatureSpec()


def _save(tmp_path, data) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_unknown_keys_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"unknown FeatureSpec keys \['max_histroy'\]"):
        FeatureSpec.from_dict({"max_histroy": 10})
    with pytest.raises(ValueError, match=r"unknown IdFeature keys \['bukets'\]"):
        FeatureSpec.from_dict({"sequence_features": [{"name": "item_id", "bukets": 3}]})
    path = _save(tmp_path, {"max_histroy": 10})
    with pytest.raises(InputError, match=r"spec\.json: not a valid FeatureSpec JSON.*max_histroy"):
        FeatureSpec.load(path)


def test_bad_dtype_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"feature 'item_id': dtype must be one of .*'float32'"):
        IdFeature("item_id", dtype="float32")
    data = FeatureSpec().to_dict()
    data["sequence_features"][0]["dtype"] = "float32"
    with pytest.raises(InputError, match=r"spec\.json: .*'item_id'.*dtype.*float32"):
        FeatureSpec.load(_save(tmp_path, data))


def test_bad_files_and_values_rejected(tmp_path):
    with pytest.raises(InputError, match="missing.json: not a valid FeatureSpec JSON"):
        FeatureSpec.load(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(InputError, match="broken.json"):
        FeatureSpec.load(tmp_path / "broken.json")
    with pytest.raises(InputError, match="JSON object"):
        FeatureSpec.load(_save(tmp_path, [1, 2]))
    with pytest.raises(ValueError, match="buckets must be >= 1"):
        IdFeature("item_id", buckets=0)
    with pytest.raises(ValueError, match="max_history must be >= 1"):
        FeatureSpec(max_history=0)
    with pytest.raises(ValueError, match="at least one sequence feature"):
        FeatureSpec(sequence_features=())


def test_duplicate_columns_rejected():
    with pytest.raises(ValueError, match=r"names these columns twice: \['item_id'\]"):
        FeatureSpec(item_features=(IdFeature("item_id"),))
    with pytest.raises(ValueError, match=r"twice: \['hist_item_id'\]"):
        FeatureSpec(sequence_features=(IdFeature("item_id", history="hist_item_id"),
                                       IdFeature("cate_id", history="hist_item_id")))
    with pytest.raises(ValueError, match=r"twice: \['label'\]"):
        FeatureSpec(user_features=(IdFeature("label"),))
    # the user id may also be a feature
    assert FeatureSpec(user_features=(IdFeature("user_id"),)).columns[0] == "user_id"


@pytest.mark.parametrize("given, max_history, expected", [
    ((8, 16, 32, 50), 50, (8, 16, 32, 50)),
    ((32, 8, 16), 50, (8, 16, 32, 50)),        # sorted, max appended
    ((8, 100, 50, 16), 20, (8, 16, 20)),       # widths >= max_history collapse into the max
    ((8, 8, 16), 30, (8, 16, 30)),             # duplicates removed
    ((), 12, (12,)),                           # no bucketing: one width
    ([4, "6"], 10, (4, 6, 10)),                # JSON lists / strings of ints
])
def test_history_buckets_normalised(given, max_history, expected):
    assert FeatureSpec(max_history=max_history, history_buckets=given).history_buckets == expected


def test_history_buckets_must_be_positive():
    with pytest.raises(ValueError, match="history_buckets must be >= 1"):
        FeatureSpec(history_buckets=(0, 8))


# ----- IdMapper -----------------------------------------------------------------------------
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
