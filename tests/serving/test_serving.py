"""The TF-Serving-protocol test server through real gRPC and HTTP on 127.0.0.1, the clients and
the latency benchmark."""
import http.client
import json
import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from conftest import tiny_run
from rocket_ctr.export.rows import one_user_request, sample_rows
from rocket_ctr.export.writer import SCORE_ROWS, SERVING_DEFAULT, export_light
from rocket_ctr.features.spec import HIST_LEN
from rocket_ctr.pipelines.cli import main
from rocket_ctr.serving.client import connect, rows_from_parquet
from rocket_ctr.serving.launcher import ServerProcess
from rocket_ctr.serving.status import ServingError
from rocket_ctr.serving.tensors import as_array, to_json, to_proto
from rocket_ctr.train.run_dir import restore_model

NAME, MAX_CANDIDATES = "rocket", 50


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    run, log = tiny_run(tmp_path_factory)
    base = tmp_path_factory.mktemp("served")
    model, spec, _ = restore_model(run)
    result = export_light(model, spec, base, jit_compile=False, data=log / "test")
    rows = sample_rows(spec, log / "test", n=64)
    return base, result.path, spec, rows, log


@pytest.fixture(scope="module")
def server(setup):
    base = setup[0]
    with ServerProcess(base, NAME, args=["--max-candidates", str(MAX_CANDIDATES)], timeout=120) as process:
        yield process


@pytest.fixture(scope="module")
def local(setup):
    """The same SavedModel called in process: the reference for served results."""
    loaded = tf.saved_model.load(str(setup[1]))

    def run(signature, inputs):
        return loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})["probabilities"].numpy()
    return run


def request(setup, user=0, n=10):
    _, _, spec, rows, _ = setup
    return one_user_request(spec, rows, user, np.arange(n))


def rest(server, method, path, body=None):
    """(HTTP status, parsed JSON) of one raw REST call."""
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    status, payload = response.status, json.loads(response.read())
    connection.close()
    return status, payload


def _listify(value):
    return to_json(as_array(value))


# ----- gRPC ---------------------------------------------------------------------------------------
def test_grpc_predict_matches_the_savedmodel(setup, server, local):
    inputs = request(setup, user=2, n=25)
    with connect(server.grpc_target, NAME) as client:
        served = client.predict(inputs)["probabilities"]
    np.testing.assert_allclose(served, local(SERVING_DEFAULT, inputs), atol=1e-6)


def test_grpc_metadata_and_status(server, setup):
    spec = setup[2]
    with connect(server.grpc_target, NAME) as client:
        defs = client.signature_defs()
        assert {SERVING_DEFAULT, SCORE_ROWS} <= set(defs.signature_def)
        inputs, outputs = client.signature(SERVING_DEFAULT)
        assert inputs["user_gender"] == (tf.string, [1]) and inputs["hist_item_id"] == (tf.int64, [1, -1])
        assert inputs["item_id"] == (tf.int64, [-1]) and list(outputs) == ["probabilities"]
        rows_inputs, _ = client.signature(SCORE_ROWS)
        assert set(rows_inputs) == {*spec.scalar_id_columns, *spec.history_columns, HIST_LEN}
        assert client.status() == [{"version": 1, "state": "AVAILABLE", "error": ""}]


def grpc_predict(server, inputs, name=NAME, version=None, signature=""):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=[("grpc.enable_http_proxy", 0)]))
    req = predict_pb2.PredictRequest()
    req.model_spec.name, req.model_spec.signature_name = name, signature
    if version is not None:
        req.model_spec.version.value = version
    for k, v in inputs.items():
        req.inputs[k].CopyFrom(to_proto(v))
    return stub.Predict(req, timeout=30)


def test_grpc_errors_name_the_problem(server, setup):
    good = request(setup)
    cases = [
        ({k: v for k, v in good.items() if k != "cate_id"}, {}, grpc.StatusCode.INVALID_ARGUMENT, "cate_id"),
        ({**good, "cate_id": good["cate_id"].astype(np.int32)}, {}, grpc.StatusCode.INVALID_ARGUMENT, "cate_id"),
        ({**good, "user_gender": np.array([b"F", b"M"], object)}, {}, grpc.StatusCode.INVALID_ARGUMENT, "user_gender"),
        ({**good, "extra": np.array([1])}, {}, grpc.StatusCode.INVALID_ARGUMENT, "extra"),
        ({**good, "item_id": good["item_id"][:0], "cate_id": good["cate_id"][:0]}, {},
         grpc.StatusCode.INVALID_ARGUMENT, "N = 0"),
        ({**good, "cate_id": good["cate_id"][:3]}, {}, grpc.StatusCode.INVALID_ARGUMENT, "cate_id"),
        (request(setup, n=MAX_CANDIDATES + 1), {}, grpc.StatusCode.INVALID_ARGUMENT, "max-candidates"),
        (good, {"name": "nope"}, grpc.StatusCode.NOT_FOUND, "nope"),
        (good, {"version": 9}, grpc.StatusCode.NOT_FOUND, "9"),
        (good, {"signature": "nope"}, grpc.StatusCode.FAILED_PRECONDITION, "nope"),
    ]
    for inputs, spec, code, text in cases:
        with pytest.raises(grpc.RpcError) as caught:
            grpc_predict(server, inputs, **spec)
        assert caught.value.code() == code and text in caught.value.details(), (text, caught.value.details())
    assert grpc_predict(server, good).outputs["probabilities"].tensor_shape.dim[0].size == 10  # still serving


def test_grpc_metadata_needs_a_field(server):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=[("grpc.enable_http_proxy", 0)]))
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = NAME
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetModelMetadata(req, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ----- REST ---------------------------------------------------------------------------------------
def test_rest_status_and_metadata(server):
    status, body = rest(server, "GET", f"/v1/models/{NAME}")
    assert status == 200
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                              "status": {"error_code": "OK", "error_message": ""}}]}
    status, body = rest(server, "GET", f"/v1/models/{NAME}/versions/1/metadata")
    assert status == 200 and body["model_spec"]["version"] == "1"
    inputs = body["metadata"]["signature_def"]["signature_def"][SERVING_DEFAULT]["inputs"]
    assert inputs["item_id"]["dtype"] == "DT_INT64" and inputs["user_gender"]["dtype"] == "DT_STRING"


def test_rest_predict_columnar_and_row_forms(server, setup, local):
    _, _, spec, rows, _ = setup
    inputs = request(setup, user=1, n=12)
    status, body = rest(server, "POST", f"/v1/models/{NAME}:predict",
                        {"inputs": {k: _listify(v) for k, v in inputs.items()}})
    assert status == 200
    np.testing.assert_allclose(body["outputs"], local(SERVING_DEFAULT, inputs), atol=1e-6)
    # row form against score_rows: one object per row
    index = np.arange(8)
    batch = {c: rows[c][index] for c in (*spec.scalar_id_columns, *spec.history_columns, HIST_LEN)}
    instances = [{c: _listify(batch[c][i]) for c in batch} for i in index]
    status, body = rest(server, "POST", f"/v1/models/{NAME}/versions/1:predict",
                        {"signature_name": SCORE_ROWS, "instances": instances})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], local(SCORE_ROWS, batch), atol=1e-6)
    # row form reaches serving_default only with one candidate (every input shares the batch of 1)
    one = request(setup, user=1, n=1)
    status, body = rest(server, "POST", f"/v1/models/{NAME}:predict",
                        {"instances": [{k: _listify(v[0]) for k, v in one.items()}]})
    assert status == 200 and np.allclose(body["predictions"], local(SERVING_DEFAULT, one), atol=1e-6)


def test_rest_errors_name_the_problem(server, setup):
    good = {k: _listify(v) for k, v in request(setup).items()}
    path = f"/v1/models/{NAME}:predict"
    cases = [
        (path, {"inputs": {k: v for k, v in good.items() if k != "item_id"}}, 400, "item_id"),
        (path, {"inputs": {**good, "item_id": ["a"] * 10}}, 400, "item_id"),
        (path, {"inputs": {**good, "user_gender": [1]}}, 400, "user_gender"),
        (path, {"inputs": {**good, "user_gender": ["F", "M"]}}, 400, "user_gender"),
        (path, {"inputs": {**good, "hist_item_id": [[1, 2], [3]]}}, 400, "hist_item_id"),
        (path, {"inputs": {**good, "bogus": [1]}}, 400, "bogus"),
        (path, {"inputs": {**good, "item_id": [], "cate_id": []}}, 400, "N = 0"),
        (path, {"inputs": {**good, "cate_id": good["cate_id"][:4]}}, 400, "cate_id"),
        (path, {"inputs": {k: _listify(v) for k, v in request(setup, n=MAX_CANDIDATES + 1).items()}}, 400,
         "max-candidates"),
        (path, b"{not json", 400, "JSON"),
        (path, {"instances": [good], "inputs": good}, 400, "exactly one"),
        (path, {"instances": [{"item_id": 1}, {"cate_id": 2}]}, 400, "instance 1"),
        ("/v1/models/nope:predict", {"inputs": good}, 404, "nope"),
        (f"/v1/models/{NAME}/versions/9:predict", {"inputs": good}, 404, "9"),
        ("/v2/whatever", {"inputs": good}, 404, "Malformed"),
    ]
    for url, body, status, text in cases:
        got, payload = rest(server, "POST", url, body)
        assert got == status and text in payload["error"], (text, got, payload)
    assert rest(server, "GET", "/v1/models/nope")[0] == 404
    assert rest(server, "POST", path, {"inputs": good})[0] == 200  # still serving


def test_rest_client_matches_grpc_client(server, setup):
    inputs = request(setup, user=4, n=17)
    with connect(server.grpc_target, NAME) as g, connect(server.rest_target, NAME) as r:
        np.testing.assert_allclose(r.predict(inputs)["probabilities"], g.predict(inputs)["probabilities"], atol=1e-6)
        with pytest.raises(ServingError) as caught:
            r.predict({k: v for k, v in inputs.items() if k != "cate_id"})
        assert caught.value.http_status == 400 and "cate_id" in caught.value.message


def test_client_builds_a_request_from_parquet_rows(server, setup, local):
    log = setup[4]
    part = min((log / "test").glob("*.parquet"))
    user, = rows_from_parquet(part, 5, 1)
    candidates = rows_from_parquet(part, 0, 30)
    for target in (server.grpc_target, server.rest_target):
        with connect(target, NAME) as client:
            probabilities = client.score(user, candidates)
            assert probabilities.shape == (30,) and ((0 < probabilities) & (probabilities < 1)).all()
    expected = {"user_gender": [user["user_gender"].encode()], "user_occupation": [user["user_occupation"].encode()],
                "hist_item_id": [user["hist_item_id"]], "hist_cate_id": [user["hist_cate_id"]],
                "item_id": [c["item_id"] for c in candidates], "cate_id": [c["cate_id"] for c in candidates]}
    expected = {k: np.array(v, dtype=object if k.startswith("user_") else np.int64) for k, v in expected.items()}
    np.testing.assert_allclose(probabilities, local(SERVING_DEFAULT, expected), atol=1e-6)


# ----- versions, warmup, CLI ---------------------------------------------------------------------
def test_a_newer_version_is_picked_up_and_warmup_is_replayed(setup, tmp_path):
    base = tmp_path / "base"
    shutil.copytree(setup[1], base / "1")
    args = ["--file_system_poll_wait_seconds", "0.2"]
    with ServerProcess(base, NAME, args=args, timeout=120) as process:
        assert "warmup requests replayed" in process.log_tail()
        staging = base / ".tmp-2-test"
        shutil.copytree(setup[1], staging)
        os.rename(staging, base / "2")
        process.wait_for_version(2, timeout=60)
        with connect(process.grpc_target, NAME) as client:
            states = {s["version"]: s["state"] for s in client.status()}
            assert states == {2: "AVAILABLE", 1: "END"}
            assert client.predict(request(setup)) is not None
            with pytest.raises(ServingError) as caught:
                connect(process.grpc_target, NAME, version=1).predict(request(setup))
            assert caught.value.code == grpc.StatusCode.NOT_FOUND
            (base / "3").mkdir()  # a broken version is reported and skipped; 2 keeps serving
            (base / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
            for _ in range(100):
                states = {s["version"]: (s["state"], s["error"]) for s in client.status()}
                if 3 in states and states[3][0] == "END":
                    break
                time.sleep(0.1)
            assert states[3][0] == "END" and "load failed" in states[3][1] and states[2][0] == "AVAILABLE"
            assert client.predict(request(setup))["probabilities"].shape == (10,)


def test_serve_cli_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "stand-in" in text and "TensorFlow Serving" in text and "127.0.0.1" in text
    assert main(["serve", "--model_base_path", str(tmp_path / "missing")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_serve_is_callable_from_python_with_typed_arguments(setup, local):
    from rocket_ctr.serving.launcher import free_port
    from rocket_ctr.serving.server import ServeArgumentError, serve

    base = setup[0]
    grpc_port, rest_port, stop, said = free_port(), free_port(), threading.Event(), []
    thread = threading.Thread(target=lambda: said.append(serve(
        base, model_name="py", grpc_port=grpc_port, rest_port=rest_port, max_candidates=7, poll_seconds=0,
        warmup=False, grpc_threads=2, stop=stop, log=said.append)))
    thread.start()
    try:
        for _ in range(300):
            if any("gRPC" in str(line) for line in said):
                break
            time.sleep(0.1)
        with connect(f"grpc://127.0.0.1:{grpc_port}", "py") as client:
            served = client.predict(request(setup, n=7))["probabilities"]
            np.testing.assert_allclose(served, local(SERVING_DEFAULT, request(setup, n=7)), atol=1e-6)
            with pytest.raises(ServingError, match="max-candidates"):
                client.predict(request(setup, n=8))  # max_candidates reached the request check
        with connect(f"http://127.0.0.1:{rest_port}", "py") as client:
            assert client.predict(request(setup, n=3))["probabilities"].shape == (3,)
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive() and said[-1] == 0 and "shutting down" in said
    # bad arguments name the Python argument; the CLI names its flag for the same check
    for kwargs, name in ((dict(grpc_port=0), "grpc_port"), (dict(rest_port=-1), "rest_port"),
                         (dict(max_candidates=0), "max_candidates")):
        with pytest.raises(ServeArgumentError, match=name):
            serve(base, **kwargs)
    with pytest.raises(ServeArgumentError, match="model_base .*no such folder"):
        serve(base / "missing")


def test_serve_cli_errors_name_the_flags(tmp_path, capsys):
    for flags, text in ((["--port", "0"], "--port must be a port number >= 1 and --rest_api_port >= 0"),
                        (["--max-candidates", "0"], "--max-candidates must be >= 1, got 0")):
        assert main(["serve", "--model_base_path", str(tmp_path), *flags]) == 2
        assert text in capsys.readouterr().err
    assert main(["serve", "--model_base_path", str(tmp_path / "gone")]) == 2
    assert f"--model_base_path {tmp_path / 'gone'}: no such folder" in capsys.readouterr().err


def test_latency_helpers_interleave_and_summarize():
    from rocket_ctr.serving.latency import interleave, median_chunk_p50, summarize, timed

    calls, rounds_seen = [], []
    runs = [lambda k, i=i: calls.append((i, k)) or [i] * k for i in range(3)]
    chunks = interleave(runs, requests=7, rounds=3, rotate=True, on_round=lambda r, n: rounds_seen.append((r, n)))
    assert [k for i, k in calls if i == 0] == [3, 2, 2] and rounds_seen == [(1, 3), (2, 3), (3, 3)]
    assert [i for i, _ in calls] == [0, 1, 2, 1, 2, 0, 2, 0, 1]  # each round starts one run later
    assert chunks[1] == [[1, 1, 1], [1, 1], [1, 1]]
    assert len(interleave(runs[:1], 5, rounds=10)[0]) == 5  # never more rounds than requests
    stats = summarize([0.001, 0.002, 0.003, 0.004], wall=0.5, quantiles=(50, 99))
    assert stats["p50_ms"] == pytest.approx(2.5) and stats["max_ms"] == pytest.approx(4.0)
    assert stats["qps"] == pytest.approx(8.0) and stats["requests"] == 4 and "p90_ms" not in stats
    assert "qps" not in summarize([0.001]) and set(summarize([0.001])) >= {"p50_ms", "p90_ms", "p95_ms", "p99_ms"}
    assert median_chunk_p50([[0.001], [0.002, 0.004], [0.010]]) == pytest.approx(3.0)
    seconds, wall = timed(lambda: None, 10, concurrency=3)
    assert len(seconds) == 10 and wall >= 0


def test_frontier_point_reads_the_first_exports_in_process_result():
    from rocket_ctr.errors import InputError
    from rocket_ctr.serving.latency import frontier_point

    def result(backend, model, n, p50):
        return dict(backend=backend, model=model, candidates=n, p50_ms=p50, p99_ms=2 * p50, requests=30)

    report = {"settings": {"history": 50},
              "results": [result("in-process", "light xla", 100, 0.5), result("in-process", "light xla", 200, 1.25),
                          result("in-process", "booster xla", 200, 4.0),
                          result("gRPC test server", "light xla", 200, 9)]}
    line = frontier_point(report, "light tower (light_interest dot)", 0.71234)
    assert "light tower (light_interest dot) [light xla]" in line and "p50 1.25 ms, p99 2.50 ms" in line
    assert "200 candidates x 50 history" in line and "test GAUC 0.7123" in line
    assert "not measured" in frontier_point(report, "light", None)
    with pytest.raises(InputError):
        frontier_point({"settings": {"history": 50}, "results": report["results"][-1:]}, "light")


def test_bench_latency_prints_figures(setup, server, tmp_path, capsys):
    base = setup[0]
    assert main(["bench-latency", "--model", str(base), "--candidates", "5,20", "--requests", "5",
                 "--warmup", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "in-process" in out and "gRPC test server" in out and "REST test server" in out and "p50" in out
    report = json.loads((tmp_path / "latency.json").read_text())
    backends = {r["backend"] for r in report["results"]}
    assert backends == {"in-process", "gRPC test server", "REST test server"}
    assert all(r["p50_ms"] > 0 and r["qps"] > 0 for r in report["results"])
    assert (tmp_path / "latency.png").stat().st_size > 1000
    # against a running endpoint
    assert main(["bench-latency", "--target", server.grpc_target, "--model-name", NAME, "--candidates", "8",
                 "--requests", "3", "--warmup", "1"]) == 0
    assert "grpc" in capsys.readouterr().out
    assert main(["bench-latency", "--target", "grpc://10.1.2.3:8500", "--requests", "3"]) == 2


def test_hostile_requests_get_invalid_argument_and_the_server_keeps_serving(server, setup):
    good = request(setup)
    huge = predict_pb2.PredictRequest()
    huge.model_spec.name = NAME
    for k, v in good.items():
        huge.inputs[k].CopyFrom(to_proto(v))
    huge.inputs["item_id"].tensor_shape.dim[0].size = 10 ** 12  # declared, never sent
    negative = predict_pb2.PredictRequest()
    negative.CopyFrom(huge)
    negative.inputs["item_id"].tensor_shape.dim[0].size = -1
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}", options=[("grpc.enable_http_proxy", 0)]))
    for req in (huge, negative):
        with pytest.raises(grpc.RpcError) as caught:
            stub.Predict(req, timeout=30)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "item_id" in caught.value.details()
    path = f"/v1/models/{NAME}:predict"
    listed = {k: _listify(v) for k, v in good.items()}
    surrogate = json.dumps({"inputs": {**listed, "user_gender": ["\ud800"]}}).encode()
    deep = b'{"inputs": {"item_id": ' + b"[" * 600 + b"1" + b"]" * 600 + b"}}"
    for body, text in ((surrogate, "user_gender"), (deep, "")):
        status, payload = rest(server, "POST", path, body)
        assert status == 400 and text in payload["error"], payload
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=30)
    connection.putrequest("POST", path)
    connection.putheader("Content-Length", "abc")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 400 and "Content-Length" in json.loads(response.read())["error"]
    connection.close()
    assert grpc_predict(server, good).outputs["probabilities"].tensor_shape.dim[0].size == 10  # still serving


def test_bench_latency_against_an_unreachable_target_is_one_line(capsys):
    assert main(["bench-latency", "--target", "grpc://127.0.0.1:1", "--requests", "2"]) == 2
    err = capsys.readouterr().err
    assert "UNAVAILABLE" in err and "Traceback" not in err
