"""FeatureSpec: reference defaults, JSON round trip, validation."""
from __future__ import annotations

import json

import pytest

from rocket_ctr.errors import InputError
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.spec import FeatureSpec


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


def test_booster_only_columns_round_trip_and_drop_out_of_the_served_spec(tmp_path):
    spec = FeatureSpec(user_features=(IdFeature("user_gender", dtype="string", buckets=4),
                                      IdFeature("user_segment", buckets=9, booster_only=True)),
                       item_features=(IdFeature("brand", buckets=7), IdFeature("slot", buckets=5, booster_only=True)))
    path = tmp_path / "feature_spec.json"
    spec.save(path)
    assert json.loads(path.read_text())["item_features"][1]["booster_only"] is True
    loaded = FeatureSpec.load(path)
    assert loaded == spec and loaded.booster_only_columns == ("user_segment", "slot")
    assert {"user_segment", "slot"} <= set(loaded.columns)  # the training pipeline reads them
    served = loaded.served()
    assert served.booster_only_columns == () and not {"user_segment", "slot"} & set(served.columns)
    assert [f.name for f in served.user_features] == ["user_gender"]
    assert [f.name for f in served.item_features] == ["brand"]
    assert loaded.for_tower("booster") is loaded and loaded.for_tower("light") == served
    assert FeatureSpec().served() == FeatureSpec()  # specs written before booster_only load unchanged
    old = FeatureSpec().to_dict()
    for group in ("sequence_features", "user_features", "item_features"):
        for feature in old[group]:
            del feature["booster_only"]
    assert FeatureSpec.load(_save(tmp_path, old)) == FeatureSpec()


def test_booster_only_sequence_features_and_non_bool_flags_are_refused(tmp_path):
    data = FeatureSpec().to_dict()
    data["sequence_features"][1]["booster_only"] = True
    with pytest.raises(InputError, match=r"sequence features \['cate_id'\] cannot be booster_only.*user_features "
                                         r"or item_features"):
        FeatureSpec.load(_save(tmp_path, data))
    with pytest.raises(ValueError, match="feature 'slot': booster_only must be true or false, got 'yes'"):
        IdFeature("slot", booster_only="yes")
