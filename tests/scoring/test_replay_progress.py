"""Replay reports the requests and rows done on stderr: a line every few seconds without a terminal."""
import re

import pytest

from conftest import tiny_run
from rocket_ctr import progress
from rocket_ctr.export.writer import export_light
from rocket_ctr.io.row_ranges import file_fragments, plan_shard
from rocket_ctr.pipelines.replay import saved_model_target
from rocket_ctr.scoring.replay import replay
from rocket_ctr.scoring.scorer import load_saved_model, saved_model_scorer
from rocket_ctr.train.run_dir import restore_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    run, log = tiny_run(tmp_path_factory)
    model, spec, _ = restore_model(run)
    base = tmp_path_factory.mktemp("replay_progress_export")
    export_light(model, spec, base, jit_compile=False, data=log / "test", sample_size=16, warmup_candidates=8,
                 progress=False)
    loaded, info = load_saved_model(base)
    pieces = plan_shard(file_fragments([str(p) for p in sorted((log / "test").glob("*.parquet"))]))
    return pieces, spec, loaded, info


def test_replay_prints_requests_rows_rate_and_time_left(exported, capsys, monkeypatch):
    pieces, spec, loaded, info = exported
    monkeypatch.setenv(progress.SECONDS_VARIABLE, "0")
    scorer = saved_model_scorer(loaded, info)
    report = replay(pieces, spec, scorer, {"savedmodel": saved_model_target(loaded)}, max_requests=4)
    lines = capsys.readouterr().err.strip().splitlines()
    assert report.requests == 4 and len(lines) == 5, lines
    assert re.fullmatch(r"replay: 1/4 requests \(\d+ rows\), [\d,]+ requests/s, \d+:\d\d:\d\d left", lines[0]), lines
    assert re.fullmatch(rf"replay: 4 requests \({report.rows:,} rows\), [\d,]+ requests/s, done in \S+", lines[-1])
    replay(pieces, spec, scorer, {}, max_requests=2, progress=False)
    assert capsys.readouterr().err == ""
