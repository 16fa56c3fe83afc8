"""Numeric and multi-hot features: the spec (JSON round trip, old specs, checks), the reader, and a
small rocket train -> export -> serving (in process, REST and gRPC) with the new inputs."""
import http.client
import json

import grpc
import numpy as np
import pytest
import tensorflow as tf

from conftest import (
    FLOAT32_PROBABILITY_ATOL,
    assert_predict_from_export_equals_predict_from_run,
    log_columns,
    served_probabilities,
    write_log,
)
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.export.rows import one_user_request, sample_rows
from rocket_ctr.export.writer import export_light, read_export_info
from rocket_ctr.features.signatures import SCORE_ROWS, SERVING_DEFAULT
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.features.types import MultiHotFeature, NumericFeature
from rocket_ctr.io.reader import ClickLogReader
from rocket_ctr.serving.client import connect
from rocket_ctr.serving.launcher import ServerProcess
from rocket_ctr.serving.status import ServingError
from rocket_ctr.serving.tensors import as_array, to_json
from rocket_ctr.train.run_dir import restore_model
from rocket_ctr.train.trainer import Trainer

SPEC = FeatureSpec(
    numeric_features=(NumericFeature("price", boundaries=(3.0, 5.0, 7.0), normalize=True, mean=5.0, std=2.0,
                                     default=5.0),
                      NumericFeature("age", side="user", normalize=True, mean=25.0, std=14.0)),
    multi_hot_features=(MultiHotFeature("tags", weights="tag_w", max_len=4, buckets=64),
                        MultiHotFeature("utags", side="user", dtype="string", pooling="sum", buckets=50)),
).with_buckets(item_id=500, cate_id=20)


def feature_columns(n: int = 200, seed: int = 0) -> dict:
    """Reference columns + price (some null), age, tags with weights, string user tags."""
    rng = np.random.default_rng(seed)
    columns = log_columns(n, max_len=12, seed=seed)
    columns["price"] = [None if i % 10 == 0 else float(rng.normal(5, 2)) for i in range(n)]
    columns["age"] = [float(i % 50) for i in range(n)]
    columns["tags"] = [[int(t) for t in rng.integers(0, 30, rng.integers(0, 6))] for _ in range(n)]
    columns["tag_w"] = [[float(w) for w in rng.uniform(0.5, 1.5, len(t))] for t in columns["tags"]]
    columns["utags"] = [[f"u{int(t)}" for t in rng.integers(0, 9, rng.integers(0, 3))] for _ in range(n)]
    return columns


# ----- spec --------------------------------------------------------------------------------------
def test_spec_round_trips_through_json_and_old_specs_still_load(tmp_path):
    SPEC.save(tmp_path / "spec.json")
    assert FeatureSpec.load(tmp_path / "spec.json") == SPEC
    data = json.loads((tmp_path / "spec.json").read_text())
    assert data["numeric_features"][0]["boundaries"] == [3.0, 5.0, 7.0]
    old = FeatureSpec().to_dict()
    assert "numeric_features" not in old and "multi_hot_features" not in old  # written as before
    assert FeatureSpec.from_dict(old) == FeatureSpec()
    assert SPEC.columns[-6:] == ("price", "age", "tags", "tag_w", "utags", "label")
    assert SPEC.user_columns == ("user_gender", "user_occupation", "age", "utags")


@pytest.mark.parametrize("feature, words", [
    ({"name": "price", "boundaries": [1, 3, 2]}, "sorted ascending"),
    ({"name": "price", "boundaries": [1, 1]}, "sorted ascending"),
    ({"name": "price", "boundaries": [1, "x"]}, "finite number"),
    ({"name": "price", "boundaries": [1, float("inf")]}, "finite number"),
    ({"name": "price"}, "normalize"),
    ({"name": "price", "normalize": True, "std": 0}, "std must be > 0"),
    ({"name": "price", "normalize": True, "side": "ad"}, "side"),
    ({"name": "price", "num_buckets": 1}, "num_buckets"),
])
def test_bad_numeric_features_are_refused_naming_the_column(tmp_path, feature, words):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({**FeatureSpec().to_dict(), "numeric_features": [feature]}))
    with pytest.raises(ValueError) as caught:
        FeatureSpec.load(path)
    assert "'price'" in str(caught.value) and words in str(caught.value)


def test_bad_multi_hot_features_are_refused():
    with pytest.raises(ValueError, match="'tags'.*pooling"):
        FeatureSpec(multi_hot_features=[{"name": "tags", "pooling": "max"}])
    with pytest.raises(ValueError, match="'tags'.*dtype"):
        FeatureSpec(multi_hot_features=[{"name": "tags", "dtype": "float"}])
    with pytest.raises(ValueError, match="twice"):
        FeatureSpec(multi_hot_features=[{"name": "item_id"}])


def test_served_spec_drops_booster_only_numeric_and_multi_hot_features():
    spec = FeatureSpec(numeric_features=[{"name": "pos", "normalize": True, "booster_only": True}],
                       multi_hot_features=[{"name": "tags"}])
    assert [f.name for f in spec.served().extra_features] == ["tags"]
    assert spec.booster_only_columns == ("pos",)


# ----- reader ------------------------------------------------------------------------------------
def test_reader_yields_numeric_nan_for_null_and_padded_multi_hot_lists(tmp_path):
    columns = feature_columns(20)
    columns["tags"][3] = [1, 2, 3, 4, 5, 6]
    columns["tag_w"][3] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    columns["tags"][4] = None
    columns["tag_w"][4] = None
    path = write_log(tmp_path / "log.parquet", columns)
    features, _ = next(iter(ClickLogReader(path, SPEC, batch_size=20, bucket_by_length=False)))
    order = {int(i): r for r, i in enumerate(features["item_id"])}
    assert features["price"].dtype == np.float32 and np.isnan(features["price"][order[0]])
    np.testing.assert_allclose(features["price"][order[1]], columns["price"][1], rtol=1e-6)
    assert features["tags"].shape == (20, 4)
    assert features["tags"][order[3]].tolist() == [1, 2, 3, 4]  # the first max_len elements
    assert features["tag_w"][order[3]].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert features["tags"][order[4]].tolist() == [-1] * 4 and features["tag_w"][order[4]].tolist() == [0.0] * 4
    assert features["utags"].shape == (20, 16) and features["utags"].dtype == object


# ----- train -> export -> serve ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("feature_types")
    path = write_log(root / "log.parquet", feature_columns(300))
    config = RocketConfig(epochs=1, batch_size=32, embedding_dim=4, attention_units=(8, 4), light_units=(8,),
                          booster_units=(16, 8), validation_fraction=0.0, jit_compile=False)
    Trainer(root / "run", path, None, config, SPEC, verbose=0).fit()
    model, spec, _ = restore_model(root / "run")
    assert spec == SPEC and model.bottom.extras is not None
    result = export_light(model, spec, root / "base", jit_compile=False, data=path)
    return root, path, model, spec, result


def test_export_signatures_and_metadata_hold_the_new_inputs(exported):
    _, _, _, _, result = exported
    info = read_export_info(result.path)
    inputs = info["signatures"][SERVING_DEFAULT]["inputs"]
    assert inputs["price"] == {"dtype": "float32", "shape": [-1]} and inputs["age"] == {"dtype": "float32",
                                                                                          "shape": [1]}
    assert inputs["tags"] == {"dtype": "int64", "shape": [-1, -1]} and inputs["tag_w"]["dtype"] == "float32"
    assert inputs["utags"] == {"dtype": "string", "shape": [1, -1]}
    assert set(info["signatures"][SCORE_ROWS]["inputs"]) >= {"price", "age", "tags", "tag_w", "utags"}
    assert info["feature_spec"]["numeric_features"][0]["boundaries"] == [3.0, 5.0, 7.0]


def test_one_by_n_request_with_the_new_inputs_matches_the_model(exported):
    _, path, model, spec, result = exported
    loaded = tf.saved_model.load(str(result.path))
    rows = sample_rows(spec, path, n=16)
    request = one_user_request(spec, rows, 0, np.arange(16))
    assert request["age"].shape == (1,) and request["utags"].shape[0] == 1 and request["tags"].shape[0] == 16
    probabilities = served_probabilities(loaded, SERVING_DEFAULT, request)
    assert probabilities.shape == (16,) and np.all(np.isfinite(probabilities))
    # NaN price = the default price; a price that changes bucket changes the score
    nan_price = dict(request, price=np.full(16, np.nan, np.float32))
    default_price = dict(request, price=np.full(16, 5.0, np.float32))
    at_default = served_probabilities(loaded, SERVING_DEFAULT, default_price)
    np.testing.assert_allclose(served_probabilities(loaded, SERVING_DEFAULT, nan_price), at_default)
    expensive = dict(request, price=np.full(16, 100.0, np.float32))
    assert not np.allclose(served_probabilities(loaded, SERVING_DEFAULT, expensive), at_default)
    # lists padded further with -1 (and weight 0) score the same
    wider = dict(request, tags=np.pad(request["tags"], [(0, 0), (0, 3)], constant_values=-1),
                 tag_w=np.pad(request["tag_w"], [(0, 0), (0, 3)]))
    np.testing.assert_allclose(served_probabilities(loaded, SERVING_DEFAULT, wider), probabilities,
                               atol=FLOAT32_PROBABILITY_ATOL)  # pooled over another width
    with pytest.raises(tf.errors.InvalidArgumentError, match="tag_w"):
        served_probabilities(loaded, SERVING_DEFAULT, dict(request, tag_w=request["tag_w"][:, :1]))


def _rest(server, body):
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    connection.request("POST", "/v1/models/rocket:predict", body=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    status, payload = response.status, json.loads(response.read())
    connection.close()
    return status, payload


def test_the_test_server_accepts_the_new_inputs_over_grpc_and_rest(exported):
    _, path, _, spec, result = exported
    loaded = tf.saved_model.load(str(result.path))
    rows = sample_rows(spec, path, n=8)
    request = one_user_request(spec, rows, 1, np.arange(8))
    expected = served_probabilities(loaded, SERVING_DEFAULT, request)
    with ServerProcess(result.path.parent, "rocket", timeout=120) as server:
        with connect(server.grpc_target, "rocket") as client:
            np.testing.assert_allclose(client.predict(request)["probabilities"], expected, atol=1e-6)
            inputs, _ = client.signature(SERVING_DEFAULT)
            assert inputs["price"] == (tf.float32, [-1]) and inputs["utags"] == (tf.string, [1, -1])
            for name, bad in (("price", np.zeros(8, np.int64)), ("tag_w", request["tag_w"][:, :1]),
                              ("tags", request["tags"].astype(np.float32))):
                with pytest.raises(ServingError) as caught:
                    client.predict({**request, name: bad})
                assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and name in str(caught.value), name
        body = {"inputs": {k: to_json(as_array(v)) for k, v in request.items()}}
        status, payload = _rest(server, body)
        assert status == 200
        np.testing.assert_allclose(payload["outputs"], expected, atol=1e-6)
        for name, bad in (("price", ["cheap"] * 8), ("tags", [["a"]] * 8), ("age", [1.0, 2.0]),
                          ("utags", [[1, 2]])):
            status, payload = _rest(server, {"inputs": {**body["inputs"], name: bad}})
            assert status == 400 and name in payload["error"], (name, payload)


def test_predict_from_the_export_and_the_run_dir_reads_the_new_columns(exported):


    root, path, _, _, result = exported
    assert_predict_from_export_equals_predict_from_run(root, path, result.path.parent)


def test_booster_only_numeric_and_multi_hot_features_stay_out_of_the_light_export(tmp_path):
    spec = FeatureSpec(numeric_features=(NumericFeature("slot_pos", normalize=True, booster_only=True),),
                       multi_hot_features=(MultiHotFeature("tags", buckets=64, booster_only=True),)
                       ).with_buckets(item_id=500, cate_id=20)
    columns = feature_columns(120)
    columns["slot_pos"] = [float(i % 4) for i in range(120)]
    path = write_log(tmp_path / "log.parquet", columns)
    config = RocketConfig(epochs=1, batch_size=32, embedding_dim=4, attention_units=(8, 4), light_units=(8,),
                          booster_units=(16, 8), validation_fraction=0.0, jit_compile=False)
    Trainer(tmp_path / "run", path, None, config, spec, verbose=0).fit()
    model, restored, _ = restore_model(tmp_path / "run")
    assert model.booster_extras is not None and model.bottom.extras is None
    result = export_light(model, restored, tmp_path / "base", jit_compile=False, data=path)
    inputs = read_export_info(result.path)["signatures"][SERVING_DEFAULT]["inputs"]
    assert "slot_pos" not in inputs and "tags" not in inputs and "item_id" in inputs
