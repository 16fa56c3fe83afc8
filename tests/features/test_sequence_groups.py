"""Several behaviour sequences (FeatureSpec.sequence_groups), each with its own attention, and
sequence-only side columns: spec, reader, model (extractors, x width, served form = training form),
bad input (exit 2 naming the column), train -> export -> a 1 x N request (in process and over the
test server)."""
import http.client
import json
import re

import grpc
import numpy as np
import pytest
import tensorflow as tf

from conftest import (
    FLOAT32_PROBABILITY_ATOL,
    LOGIT_CLOSE,
    assert_predict_from_export_equals_predict_from_run,
    log_columns,
    own_tables_for,
    refused_in_one_line,
    served_probabilities,
    write_log,
)
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.export.rows import one_user_request, sample_rows
from rocket_ctr.export.writer import export_light, read_export_info
from rocket_ctr.features.signatures import SCORE_ROWS, SERVING_DEFAULT, example_rows
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.features.types import SequenceGroup, SideFeature
from rocket_ctr.io.reader import ClickLogReader
from rocket_ctr.model.rocket import RocketModel
from rocket_ctr.pipelines.cli import main
from rocket_ctr.train.run_dir import restore_model
from rocket_ctr.train.trainer import Trainer

SPEC = FeatureSpec(
    sequence_groups=({"name": "items", "features": ["item_id"],
                      "side_features": [{"name": "hist_btag", "vocabulary": [1, 2, 3, 4]}]},
                     {"name": "cates", "features": ["cate_id"]}),
).with_buckets(item_id=500, cate_id=20)
CONFIG = dict(embedding_dim=4, attention_units=(8, 4), light_units=(8,), booster_units=(16, 8))


def group_columns(n: int = 200, seed: int = 0) -> dict:
    """Reference columns; the category sequence gets its own lengths (0..8), the item sequence a
    behaviour type per step (1..4)."""
    rng = np.random.default_rng(seed)
    columns = log_columns(n, max_len=12, seed=seed)
    columns["hist_cate_id"] = [[int(c) for c in rng.integers(0, 30, rng.integers(0, 9))] for _ in range(n)]
    columns["hist_btag"] = [[int(b) for b in rng.integers(1, 5, len(h))] for h in columns["hist_item_id"]]
    return columns


# ----- spec --------------------------------------------------------------------------------------
def test_spec_round_trips_and_the_default_has_one_group_of_every_sequence_feature(tmp_path):
    SPEC.save(tmp_path / "spec.json")
    assert FeatureSpec.load(tmp_path / "spec.json") == SPEC
    assert SPEC.groups[0].side_features == (SideFeature("hist_btag", vocabulary=(1, 2, 3, 4)),)
    assert SPEC.history_columns == ("hist_item_id", "hist_btag", "hist_cate_id")
    assert SPEC.length_columns == ("hist_len", "hist_len_cates")
    assert "hist_btag" in SPEC.columns and SPEC.feature("hist_btag").num_rows == 5
    default = FeatureSpec()
    assert "sequence_groups" not in default.to_dict()  # written as before
    assert default.groups == (SequenceGroup("history", ("item_id", "cate_id")),)
    assert default.length_columns == ("hist_len",) and default.history_columns == ("hist_item_id", "hist_cate_id")


@pytest.mark.parametrize("groups, words", [
    ([{"name": "a", "features": ["item_id"]}], "['cate_id'] are in no group"),
    ([{"name": "a", "features": ["item_id", "cate_id"]}, {"name": "b", "features": ["cate_id"]}],
     "in more than one group"),
    ([{"name": "a", "features": ["item_id", "cate_id", "brand"]}], "['brand'] are not sequence features"),
    ([{"name": "a", "features": ["item_id"]}, {"name": "a", "features": ["cate_id"]}], "used twice"),
    ([{"name": "a b", "features": ["item_id", "cate_id"]}], "letters, digits or '_'"),
    ([{"name": "a", "features": []}], "at least one sequence feature"),
    ([{"name": "a", "features": ["item_id", "cate_id"], "side_features": [{"name": "hist_item_id"}]}],
     "names these columns twice"),
    ([{"name": "a", "features": ["item_id", "cate_id"], "side_features": [{"name": "s", "dtype": "float"}]}],
     "dtype must be one of"),
    ([{"name": "a", "features": ["item_id", "cate_id"], "extra": 1}], "unknown SequenceGroup keys"),
])
def test_bad_sequence_groups_are_refused(groups, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        FeatureSpec(sequence_groups=groups)


# ----- reader ------------------------------------------------------------------------------------
def test_reader_pads_each_group_to_its_own_longest_history(tmp_path):
    columns = group_columns(40)
    path = write_log(tmp_path / "log.parquet", columns)
    features, _ = next(iter(ClickLogReader(path, SPEC, batch_size=40, bucket_by_length=False)))
    items = max(len(h) for h in columns["hist_item_id"])
    cates = max(len(h) for h in columns["hist_cate_id"])
    assert items != cates
    assert features["hist_item_id"].shape == features["hist_btag"].shape == (40, items)
    assert features["hist_cate_id"].shape == (40, cates)
    for r, i in enumerate(features["item_id"]):
        assert features["hist_len"][r] == len(columns["hist_item_id"][i])
        assert features["hist_len_cates"][r] == len(columns["hist_cate_id"][i])
        k = features["hist_len_cates"][r]
        assert features["hist_cate_id"][r, :k].tolist() == columns["hist_cate_id"][i]
        assert features["hist_btag"][r, :features["hist_len"][r]].tolist() == columns["hist_btag"][i]
    # length buckets: a batch is bucketed by its rows' longest history; every group padded to it
    for features, _ in ClickLogReader(path, SPEC, batch_size=8):
        width = features["hist_item_id"].shape[1]
        assert features["hist_cate_id"].shape[1] == width == features["hist_btag"].shape[1]
        longest = np.maximum(features["hist_len"], features["hist_len_cates"]).max()
        assert width == min(b for b in SPEC.history_buckets if b >= longest)


def test_a_side_column_of_another_length_than_its_group_is_refused_naming_it(tmp_path, capsys):
    columns = group_columns(40)
    row = next(i for i, h in enumerate(columns["hist_item_id"]) if h)
    columns["hist_btag"][row] = columns["hist_btag"][row] + [1]
    path = write_log(tmp_path / "bad.parquet", columns)
    SPEC.save(tmp_path / "spec.json")
    run_dir = tmp_path / "run"
    line = refused_in_one_line(capsys, ["train", "--train", path, "--run-dir", str(run_dir), "--spec",
                             str(tmp_path / "spec.json")])
    assert "'hist_btag'" in line and f"row {row}" in line and "sequence group 'items'" in line, line
    assert not run_dir.exists() or not any(run_dir.iterdir())
    columns = group_columns(40)
    columns["hist_btag"] = [[float(b) for b in h] for h in columns["hist_btag"]]
    line = refused_in_one_line(capsys, ["train", "--train", write_log(tmp_path / "bad2.parquet", columns), "--run-dir",
                             str(run_dir), "--spec", str(tmp_path / "spec.json")])
    assert "'hist_btag'" in line and "side column" in line, line


# ----- model -------------------------------------------------------------------------------------
def own_tables(light_interest: str) -> dict:
    """A shared attention is the booster's DIN one (this test counts its width), over the shared tables."""
    return {**own_tables_for(light_interest), **({"booster_interest": "din"} if light_interest == "shared" else {})}


@pytest.mark.parametrize("light_interest", ["dot", "din", "mean", "shared"])
def test_two_groups_give_two_extractors_per_tower_and_a_wider_x(light_interest):
    config = RocketConfig(light_interest=light_interest, **CONFIG, **own_tables(light_interest))
    model = RocketModel(SPEC, config)
    model(example_rows(SPEC), training=True)
    for tower in ("light", "booster"):
        first, second = model.interests_of(tower)
        assert first is model.interest_of(tower) and first is not second
        assert type(first) is type(second)
        assert second in model.serving_layers(tower)
    assert model.light_interest_cates is not model.booster_interest_cates if light_interest != "shared" \
        else not hasattr(model, "light_interest_cates")
    # x = 2 profile ids + 2 candidates + 2 pooled groups (items + its side column, cates) = 7 x D
    assert model.bottom.output_width == 4 * 7
    assert model.light.hidden[0].kernel.shape[0] == 4 * 7
    default = RocketModel(FeatureSpec().with_buckets(item_id=500, cate_id=20), config)
    default(example_rows(default.spec), training=True)
    assert default.light.hidden[0].kernel.shape[0] == 4 * 6
    assert len(default.interests_of("light")) == 1


def test_one_declared_group_builds_the_same_variables_as_the_default_spec():
    default = FeatureSpec().with_buckets(item_id=500, cate_id=20)
    declared = FeatureSpec(sequence_groups=[{"name": "history", "features": ["item_id", "cate_id"]}]
                           ).with_buckets(item_id=500, cate_id=20)
    shapes = []
    for spec in (default, declared):
        model = RocketModel(spec, RocketConfig(**CONFIG), name="rocket_model")
        model(example_rows(spec), training=True)
        # (Keras numbers unnamed layers per process: dense_86 vs dense_93 is the same layer)
        shapes.append([(re.sub(r"_\d+/", "/", v.path), tuple(v.shape)) for v in model.weights])
    assert shapes[0] == shapes[1]
    assert not any("hist_btag" in path or "_history" in path for path, _ in shapes[0])


def _model_rows(n: int, items: int, cates: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"item_id": tf.constant(rng.integers(0, 500, n)), "cate_id": tf.constant(rng.integers(0, 20, n)),
            "user_gender": tf.constant(rng.integers(0, 16, n)), "user_occupation": tf.constant(rng.integers(0, 256, n)),
            "hist_item_id": tf.constant(rng.integers(0, 500, (n, items))),
            "hist_btag": tf.constant(rng.integers(0, 5, (n, items))),
            "hist_cate_id": tf.constant(rng.integers(0, 20, (n, cates))),
            "hist_len": tf.constant(rng.integers(0, items + 1, n), tf.int32),
            "hist_len_cates": tf.constant(rng.integers(0, cates + 1, n), tf.int32)}


@pytest.mark.parametrize("light_interest", ["dot", "din", "mean", "shared"])
def test_served_form_equals_the_training_form(light_interest, float64):
    """One user's batch-1 histories against N candidates = the same rows with the user side tiled
    (in float64: the two forms sum in another order)."""
    model = RocketModel(SPEC, RocketConfig(light_interest=light_interest, **CONFIG, **own_tables(light_interest)))
    rows = _model_rows(9, items=6, cates=3)
    model(rows, training=True)
    assert model.light.logit.kernel.dtype == "float64"
    user = ("user_gender", "user_occupation", "hist_item_id", "hist_btag", "hist_cate_id")
    for u in (0, 4):
        served = dict(rows)
        for c in user:
            served[c] = rows[c][u:u + 1]
        lengths = {c: int(rows[c][u]) for c in SPEC.length_columns}
        for c, steps in (("hist_item_id", lengths["hist_len"]), ("hist_btag", lengths["hist_len"]),
                         ("hist_cate_id", lengths["hist_len_cates"])):
            served[c] = served[c][:, :steps]  # a request sends exactly the kept steps: L = its length
        served.update({c: tf.constant([steps], tf.int32) for c, steps in lengths.items()})
        tiled = {c: (tf.repeat(rows[c][u:u + 1], 9, axis=0) if c in user or c in lengths else rows[c])
                 for c in rows}
        for tower in ("light", "booster"):
            np.testing.assert_allclose(model.tower_logit(tower, served).numpy(),
                                       model.tower_logit(tower, tiled).numpy(), **LOGIT_CLOSE)


def test_a_side_column_and_the_second_group_change_the_score():
    model = RocketModel(SPEC, RocketConfig(**CONFIG))
    rows = _model_rows(6, items=5, cates=4, seed=1)
    rows["hist_len"] = tf.fill([6], 5)
    rows["hist_len_cates"] = tf.fill([6], 4)
    base = model.light_logit(rows).numpy()
    other_btag = dict(rows, hist_btag=(rows["hist_btag"] + 1) % 5)
    other_cates = dict(rows, hist_cate_id=(rows["hist_cate_id"] + 3) % 20)
    assert not np.allclose(model.light_logit(other_btag).numpy(), base)
    assert not np.allclose(model.light_logit(other_cates).numpy(), base)


# ----- train -> export -> serve ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("sequence_groups")
    path = write_log(root / "log.parquet", group_columns(300))
    config = RocketConfig(epochs=1, batch_size=32, validation_fraction=0.0, jit_compile=False, **CONFIG)
    Trainer(root / "run", path, None, config, SPEC, verbose=0).fit()
    model, spec, _ = restore_model(root / "run")
    assert spec == SPEC and len(model.interests_of("light")) == 2
    result = export_light(model, spec, root / "base", jit_compile=False, data=path)
    assert result.max_abs_diff <= 1e-5
    return root, path, model, spec, result


def test_export_metadata_lists_the_new_histories_as_user_side_inputs(exported):
    _, _, _, _, result = exported
    info = read_export_info(result.path)
    inputs = info["signatures"][SERVING_DEFAULT]["inputs"]
    assert inputs["hist_btag"] == {"dtype": "int64", "shape": [1, -1]}
    assert inputs["hist_cate_id"] == {"dtype": "int64", "shape": [1, -1]}
    assert "hist_len" not in inputs and "hist_len_cates" not in inputs
    rows_inputs = info["signatures"][SCORE_ROWS]["inputs"]
    assert rows_inputs["hist_len_cates"] == {"dtype": "int32", "shape": [-1]}
    assert rows_inputs["hist_btag"] == {"dtype": "int64", "shape": [-1, -1]}
    assert info["feature_spec"]["sequence_groups"][1] == {"name": "cates", "features": ["cate_id"],
                                                          "side_features": []}


def test_a_one_by_n_request_matches_the_rows_and_bad_histories_are_refused(exported):
    _, path, model, spec, result = exported
    loaded = tf.saved_model.load(str(result.path))
    rows = sample_rows(spec, path, n=16)
    user = int(np.flatnonzero((rows["hist_len"] > 0) & (rows["hist_len_cates"] > 0))[0])
    request = one_user_request(spec, rows, user, np.arange(16))
    assert request["hist_btag"].shape == request["hist_item_id"].shape == (1, rows["hist_len"][user])
    assert request["hist_cate_id"].shape == (1, rows["hist_len_cates"][user])
    served = served_probabilities(loaded, SERVING_DEFAULT, request)
    tiled = {c: rows[c][:16].copy() for c in rows}
    for c in (*spec.user_columns, *spec.history_columns, *spec.length_columns):
        tiled[c] = np.repeat(rows[c][user:user + 1], 16, axis=0)
    np.testing.assert_allclose(served, served_probabilities(loaded, SCORE_ROWS, tiled), atol=FLOAT32_PROBABILITY_ATOL)
    # the behaviour types matter
    other = dict(request, hist_btag=request["hist_btag"] % 4 + 1)
    assert not np.allclose(served_probabilities(loaded, SERVING_DEFAULT, other), served)
    with pytest.raises(tf.errors.InvalidArgumentError, match="hist_btag"):
        longer = np.pad(request["hist_btag"], [(0, 0), (0, 1)])
        served_probabilities(loaded, SERVING_DEFAULT, dict(request, hist_btag=longer))
    with pytest.raises(tf.errors.InvalidArgumentError, match="hist_len_cates"):
        served_probabilities(loaded, SCORE_ROWS, dict(tiled, hist_len_cates=tiled["hist_len_cates"] + 100))


def test_the_test_server_takes_the_new_histories_and_names_a_bad_one(exported):
    from rocket_ctr.serving.client import connect
    from rocket_ctr.serving.launcher import ServerProcess
    from rocket_ctr.serving.status import ServingError
    from rocket_ctr.serving.tensors import as_array, to_json

    _, path, _, spec, result = exported
    loaded = tf.saved_model.load(str(result.path))
    rows = sample_rows(spec, path, n=8)
    user = int(np.flatnonzero(rows["hist_len"] > 0)[0])
    request = one_user_request(spec, rows, user, np.arange(8))
    expected = served_probabilities(loaded, SERVING_DEFAULT, request)
    with ServerProcess(result.path.parent, "rocket", timeout=120) as server:
        with connect(server.grpc_target, "rocket") as client:
            np.testing.assert_allclose(client.predict(request)["probabilities"], expected, atol=1e-6)
            inputs, _ = client.signature(SERVING_DEFAULT)
            assert inputs["hist_btag"] == (tf.int64, [1, -1])
            for bad in (request["hist_btag"].astype(np.float32), np.pad(request["hist_btag"], [(0, 0), (0, 2)])):
                with pytest.raises(ServingError) as caught:
                    client.predict({**request, "hist_btag": bad})
                assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT and "hist_btag" in str(caught.value)
        body = {"inputs": {k: to_json(as_array(v)) for k, v in request.items()}}
        connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
        for name, bad, status in (("hist_btag", None, 200), ("hist_btag", [["pv"]], 400),
                                  ("hist_btag", [[1] * (request["hist_btag"].shape[1] + 1)], 400)):
            inputs = dict(body["inputs"]) if bad is None else {**body["inputs"], name: bad}
            connection.request("POST", "/v1/models/rocket:predict", body=json.dumps({"inputs": inputs}).encode(),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            payload = json.loads(response.read())
            assert response.status == status, payload
            if status == 200:
                np.testing.assert_allclose(payload["outputs"], expected, atol=1e-6)
            else:
                assert name in payload["error"], payload
        connection.close()


def test_the_xla_serving_module_pads_each_group_and_scores_as_without_xla(exported):
    from rocket_ctr.export.serving_module import ServingModule

    _, path, model, spec, _ = exported
    rows = sample_rows(spec, path, n=12)
    user = int(np.flatnonzero((rows["hist_len"] > 0) & (rows["hist_len_cates"] > 0))[0])
    request = {k: tf.constant(v) for k, v in one_user_request(spec, rows, user, np.arange(11)).items()}
    batch = {k: tf.constant(v) for k, v in rows.items()}
    plain, xla = ServingModule(model, "light", False, spec), ServingModule(model, "light", True, spec)
    for signature, inputs in (("serving_default", request), ("score_rows", batch)):
        np.testing.assert_allclose(getattr(xla, signature)(inputs)["probabilities"].numpy(),
                                   getattr(plain, signature)(inputs)["probabilities"].numpy(),
                                   atol=FLOAT32_PROBABILITY_ATOL)


def test_predict_and_replay_read_the_groups(exported, capsys):

    root, path, _, _, result = exported
    assert_predict_from_export_equals_predict_from_run(root, path, result.path.parent)
    capsys.readouterr()
    code = main(["replay", "--model", str(result.path.parent), "--data", path, "--group-by", "user",
                 "--requests", "6", "--max-candidates", "20"])
    out = capsys.readouterr().out
    assert code == 0 and "replayed 6 requests" in out and "0 row(s) beyond 1e-05" in out, out
