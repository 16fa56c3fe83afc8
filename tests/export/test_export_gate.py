"""The export gate: promote a candidate only when it matches what serves; a JSON report either way."""
import json
import math
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from conftest import tiny_run
from rocket_ctr.errors import FieldError, InputError
from rocket_ctr.export.gate.criteria import GateCriteria, judge
from rocket_ctr.export.gate.promotion import REPORT_FILE, gate_export
from rocket_ctr.export.writer import export_light, list_versions
from rocket_ctr.pipelines.cli import main
from rocket_ctr.train.run_dir import restore_model

SERVING = {"gauc": 0.70, "logloss": 0.20, "pcoc": 1.02, "p99_latency_ms": 2.0}
LOOSE_LATENCY = GateCriteria(max_latency_increase=10.0, latency_requests=40)  # timing noise is not under test


def failed(candidate, criteria=GateCriteria()):
    return [v["name"] for v in judge({**SERVING, **candidate}, SERVING, criteria) if not v["passed"]]


def test_each_criterion_and_its_tolerance():
    assert failed({}) == []
    assert failed({"gauc": 0.6995}) == [] and failed({"gauc": 0.698}) == ["gauc"]
    assert failed({"logloss": 0.2009}) == [] and failed({"logloss": 0.202}) == ["logloss"]
    assert failed({"pcoc": 0.91}) == [] and failed({"pcoc": 1.2}) == ["pcoc"]
    assert failed({"pcoc": 1.2}, GateCriteria(pcoc_tolerance=0.25)) == []
    assert failed({"p99_latency_ms": 2.4}) == [] and failed({"p99_latency_ms": 2.6}) == ["p99_latency_ms"]
    assert failed({"gauc": math.nan}) == ["gauc"]  # undefined is never a pass
    with pytest.raises(FieldError, match="max_gauc_drop"):
        GateCriteria(max_gauc_drop=-1)
    with pytest.raises(FieldError, match="latency_candidates"):
        GateCriteria(latency_candidates=0)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(run dir, log, model, spec, base holding version 1 = the trained run's light tower)."""
    run, log = tiny_run(tmp_path_factory)
    model, spec, _ = restore_model(run)
    base = tmp_path_factory.mktemp("gate") / "base"
    export_light(model, spec, base, jit_compile=False, data=log / "test")
    return run, log, model, spec, base


def snapshot(base):
    return sorted((str(p.relative_to(base)), p.stat().st_mtime_ns) for p in base.rglob("*"))


def test_an_equal_candidate_is_promoted_into_the_next_version(served, tmp_path):
    run, log, model, spec, base = served
    base = shutil.copytree(base, tmp_path / "base")
    report = gate_export(model, spec, base, log / "test", LOOSE_LATENCY, report_path=tmp_path / "r.json",
                         log=None, jit_compile=False, source=run)
    assert report["promoted"] and report["failed"] == [] and report["version"] == 2
    assert list_versions(base) == [1, 2] and json.loads((tmp_path / "r.json").read_text())["promoted"]
    assert json.loads((base / "2" / "assets.extra" / REPORT_FILE).read_text())["version"] == 2
    assert abs(report["candidate"]["gauc"] - report["serving"]["gauc"]) < 1e-6
    assert [p.name for p in base.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def worse_run(run, model, folder):
    """A copy of ``run`` whose newest checkpoint holds the light tower with its ranking reversed."""
    shutil.copytree(run, folder)
    flipped, spec, _ = restore_model(folder)
    kernel = flipped.light.logit.kernel
    kernel.assign(-kernel)
    tf.train.CheckpointManager(tf.train.Checkpoint(model=flipped), str(folder / "checkpoints"), 10).save(10_000)
    return folder


def test_a_worse_candidate_is_refused_by_the_cli_and_the_base_is_untouched(served, tmp_path):
    run, log, model, spec, base = served
    worse = worse_run(run, model, tmp_path / "worse")
    before = snapshot(base)
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "rocket_ctr.pipelines.cli", "export", "--run-dir", str(worse),
                             "--gate-against", str(base), "--data", str(log / "test"), "--no-xla",
                             "--latency-requests", "40", "--gate-report", str(tmp_path / "report.json")],
                            capture_output=True, text=True, env=environ, timeout=600)
    assert result.returncode == 1, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert not report["promoted"] and "gauc" in report["failed"] and report["serving"]["version"] == 1
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert "not promoted" in result.stderr and snapshot(base) == before


def test_gate_input_errors_are_one_line(served, tmp_path, capsys):
    run, log, _, _, base = served
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["export", "--run-dir", str(run), "--gate-against", str(empty), "--data", str(log / "test")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no version to gate against" in err[0]
    assert main(["export", "--run-dir", str(run), "--gate-against", str(base)]) == 2
    assert "needs --data" in capsys.readouterr().err
    assert main(["export", "--run-dir", str(run), "--gate-against", str(base), "--data", str(log / "test"),
                 "--max-gauc-drop", "-1"]) == 2
    assert "--max-gauc-drop must be a number >= 0" in capsys.readouterr().err
    assert list(empty.iterdir()) == []
    with pytest.raises(InputError, match="no version"):
        gate_export(None, None, empty, log / "test")
