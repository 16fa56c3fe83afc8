"""The test server's start-up: what it says on stderr, answering while the first version warms up,
newer versions taking over only once warm, parallel replay and the persistent XLA cache."""
import re
import shutil
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf

from conftest import refused_in_one_line, served_probabilities, tiny_run
from rocket_ctr.export.rows import one_user_request, sample_rows
from rocket_ctr.export.writer import SERVING_DEFAULT, export_light
from rocket_ctr.serving import models
from rocket_ctr.serving.client import connect
from rocket_ctr.serving.launcher import ServerProcess
from rocket_ctr.serving.models import ModelManager
from rocket_ctr.serving.status import ServingError
from rocket_ctr.serving.warmup import WarmupReplay, read_warmup

NAME = "rocket"


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """(spec, rows, {False: no-XLA export result, True: a small XLA export result})."""
    run, log = tiny_run(tmp_path_factory)
    from rocket_ctr.train.run_dir import restore_model

    model, spec, _ = restore_model(run)
    root = tmp_path_factory.mktemp("startup")
    results = {False: export_light(model, spec, root / "plain", jit_compile=False, data=log / "test"),
               True: export_light(model, spec, root / "xla", jit_compile=True, data=log / "test", sample_size=24,
                                  warmup_candidates=16)}
    return spec, sample_rows(spec, log / "test", n=32), results


def request(exports, user=0, n=10):
    spec, rows, _ = exports
    return one_user_request(spec, rows, user, np.arange(n))


def test_serve_says_what_it_loads_how_far_the_warmup_is_and_when_it_answers(exports):
    result = exports[2][False]
    with ServerProcess(result.path.parent, NAME, timeout=120) as server:
        log = server.log_tail(10**8)
        with connect(server.grpc_target, NAME) as client:
            assert client.predict(request(exports))["probabilities"].shape == (10,)
            assert client.status() == [{"version": 1, "state": "AVAILABLE", "error": ""}]
    total = result.warmup_records
    assert f"loading model '{NAME}' version 1 from {result.path} (light tower, no XLA)" in log
    assert f"answering requests while its {total} warmup requests are replayed in the background" in log
    assert re.search(rf"version 1: warmup \d+/{total} requests, \d+ s", log)
    assert re.search(rf"version 1 AVAILABLE: {total} warmup requests replayed in [\d.]+ s", log)
    assert "answering on gRPC 127.0.0.1" in log
    assert "Traceback" not in log


def test_status_lines_go_to_stderr(capsys):
    from rocket_ctr.serving.server import _say

    _say("hello")
    out, err = capsys.readouterr()
    assert out == "" and err == "rocket-ctr serve: hello\n"


def test_xla_export_with_a_compilation_cache_and_blocking_warmup(exports, tmp_path):
    spec, rows, results = exports
    result = results[True]
    cache = tmp_path / "xla-cache"
    inputs = request(exports, user=3, n=13)
    expected = served_probabilities(tf.saved_model.load(str(result.path)), SERVING_DEFAULT, inputs)
    with ServerProcess(result.path.parent, NAME, args=["--xla-cache-dir", str(cache)], timeout=300) as server:
        log = server.log_tail(10**8)
        with connect(server.grpc_target, NAME) as client:
            np.testing.assert_allclose(client.predict(inputs)["probabilities"], expected, atol=1e-6)
    assert "(light tower, XLA)" in log and "replayed in the background" in log
    cached = list(cache.glob("xla_compile_cache__*"))
    assert len(cached) >= result.warmup_records  # one compiled program per warmup shape at least
    # a second start reads the cache; without serving during warmup it answers only once warm
    args = ["--xla-cache-dir", str(cache), "--no-serve-during-warmup", "--warmup-threads", "2"]
    with ServerProcess(result.path.parent, NAME, args=args, timeout=300) as server:
        log = server.log_tail(10**8)
        with connect(server.grpc_target, NAME) as client:
            np.testing.assert_allclose(client.predict(inputs)["probabilities"], expected, atol=1e-6)
    assert f"replaying its {result.warmup_records} warmup requests before it answers" in log
    assert log.index("AVAILABLE:") < log.index("answering on gRPC")


def test_serve_flag_errors_name_the_flags(exports, capsys, tmp_path):
    base = str(exports[2][False].path.parent)
    line = refused_in_one_line(capsys, ["serve", "--model_base_path", base, "--warmup-threads", "0"])
    assert "--warmup-threads must be >= 1, got 0" in line
    line = refused_in_one_line(capsys, ["serve", "--model_base_path", base, "--xla-cache-dir", str(tmp_path / "a b")])
    assert "--xla-cache-dir" in line and "spaces" in line


# ----- the manager's states while warmups run (warmup held by a stand-in) ------------------------
class HeldReplay:
    """Stands in for WarmupReplay: ``run`` waits until the test releases the version."""

    release: dict = {}
    failing: set = set()

    def __init__(self, model, requests, threads=1, log=print, progress_seconds=5.0):
        self.model, self.requests, self.cancelled, self.elapsed = model, requests, False, 0.0
        self.release.setdefault(model.version, threading.Event())

    def run(self):
        assert self.release[self.model.version].wait(60)
        if self.model.version in self.failing:
            raise RuntimeError("a warmup request failed")
        return len(self.requests)

    def stop(self):
        self.cancelled = True


def _arrays(alias, value, dtype):
    return np.asarray(value)


def test_first_version_answers_during_its_warmup_and_a_newer_one_only_once_warm(exports, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "WarmupReplay", HeldReplay)
    monkeypatch.setattr(HeldReplay, "release", {})
    source, said = exports[2][False].path, []
    base = tmp_path / "base"
    shutil.copytree(source, base / "1")
    manager = ModelManager(NAME, base, poll_seconds=0, log=said.append)
    manager.poll()  # returns once loaded: the warmup is held
    assert manager.get(NAME).version == 1 and manager.status(NAME) == [(1, "LOADING", "")]
    _, outputs = manager.get(NAME).predict(request(exports), _arrays)
    assert outputs["probabilities"].shape == (10,)
    shutil.copytree(source, base / "2")
    poller = threading.Thread(target=manager.poll)
    poller.start()  # loads version 2 and waits for its warmup
    for _ in range(600):
        if 2 in HeldReplay.release:
            break
        threading.Event().wait(0.1)
    assert manager.get(NAME).version == 1 and dict((v, s) for v, s, _ in manager.status(NAME)) == {
        1: "LOADING", 2: "LOADING"}
    first = manager.background
    HeldReplay.release[2].set()
    poller.join(60)
    assert manager.get(NAME).version == 2 and first.cancelled  # version 1's warmup is stopped
    assert [(v, s) for v, s, _ in manager.status(NAME)] == [(2, "AVAILABLE"), (1, "END")]
    HeldReplay.release[1].set()  # version 1's warmup ends late: it stays retired
    threading.Event().wait(0.5)
    assert [(v, s) for v, s, _ in manager.status(NAME)] == [(2, "AVAILABLE"), (1, "END")]
    assert any("version 2 AVAILABLE: " in line for line in said)
    assert not any("version 1 AVAILABLE" in line for line in said)


def test_a_warmup_that_fails_in_the_background_retires_the_version(exports, tmp_path, monkeypatch):
    monkeypatch.setattr(models, "WarmupReplay", HeldReplay)
    monkeypatch.setattr(HeldReplay, "release", {1: threading.Event()})
    monkeypatch.setattr(HeldReplay, "failing", {1})
    base, said = tmp_path / "base", []
    shutil.copytree(exports[2][False].path, base / "1")
    manager = ModelManager(NAME, base, poll_seconds=0, log=said.append)
    manager.poll()
    assert manager.get(NAME).version == 1
    HeldReplay.release[1].set()
    for _ in range(100):
        if manager.current is None:
            break
        threading.Event().wait(0.1)
    with pytest.raises(ServingError) as caught:
        manager.get(NAME)
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    (version, state, error), = manager.status(NAME)
    assert state == "END" and "load failed" in error and "a warmup request failed" in error


# ----- WarmupReplay ------------------------------------------------------------------------------
class CountingModel:
    name, version = NAME, 7

    def __init__(self, fail_at=None):
        self.calls, self.fail_at, self._lock = 0, fail_at, threading.Lock()

    def predict(self, inputs, decode, signature_name=""):
        with self._lock:
            self.calls += 1
            if self.calls == self.fail_at:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "bad record")


def test_warmup_replay_reports_progress_runs_on_threads_and_stops(exports):
    requests = read_warmup(exports[2][False].path)
    assert len(requests) == exports[2][False].warmup_records
    said, model = [], CountingModel()
    assert WarmupReplay(model, requests[:12], log=said.append, progress_seconds=0).run() == 12
    assert said[0] == f"model '{NAME}' version 7: warmup 1/12 requests, 0 s" and len(said) == 11  # not 12/12
    assert said[-1].startswith(f"model '{NAME}' version 7: warmup 11/12 requests")
    said.clear()
    assert WarmupReplay(model, requests[:12], threads=3, log=said.append).run() == 12 and model.calls == 24
    assert len(said) == 1  # after the first request; then every 5 s
    stopped = WarmupReplay(CountingModel(), requests[:5], log=said.append)
    stopped.stop()
    assert stopped.run() == 0 and stopped.cancelled
    failing = CountingModel(fail_at=2)
    with pytest.raises(ServingError, match="bad record"):
        WarmupReplay(failing, requests[:10], log=said.append).run()
    assert failing.calls == 2  # the records after a failure are not run


def test_latency_against_a_target_waits_until_its_warmup_is_done(monkeypatch):
    from rocket_ctr.serving import latency

    class Client:
        def __init__(self, *states):
            self.states = list(states)

        def status(self):
            state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
            return [{"version": v, "state": s, "error": ""} for v, s in state.items()]

    monkeypatch.setattr(latency.time, "sleep", lambda seconds: None)
    said = []
    warming = Client({1: "LOADING"}, {1: "LOADING"}, {1: "AVAILABLE"})
    latency.wait_until_warm(warming, said.append)
    assert warming.states == [{1: "AVAILABLE"}] and len(said) == 1 and "LOADING" in said[0]
    said.clear()
    latency.wait_until_warm(Client({2: "LOADING", 1: "AVAILABLE"}), said.append)  # version 1 answers, warm
    assert not said
    with pytest.raises(latency.InputError, match="still LOADING"):
        latency.wait_until_warm(Client({1: "LOADING"}), said.append, timeout=-1)
