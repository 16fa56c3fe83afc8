"""``rocket-ctr replay``: 1 × N requests (in process and through a live endpoint) against batch scores."""
import numpy as np
import pyarrow as pa
import pytest

from conftest import tiny_run
from rocket_ctr.export.writer import export_light
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.row_ranges import file_fragments, plan_shard
from rocket_ctr.pipelines.cli import main
from rocket_ctr.scoring.replay import group_requests, replay
from rocket_ctr.scoring.scorer import load_saved_model, saved_model_scorer
from rocket_ctr.serving.launcher import ServerProcess
from rocket_ctr.train.run_dir import restore_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    run, log = tiny_run(tmp_path_factory)
    model, spec, _ = restore_model(run)
    base = tmp_path_factory.mktemp("replay_export")
    export_light(model, spec, base, jit_compile=False, data=log / "test", sample_size=32, warmup_candidates=64)
    return log, base, spec


def test_requests_group_rows_by_user_and_time_in_order_of_first_appearance():
    batch = pa.record_batch({"user_id": [5, 3, 5, 5, 3, 5], "ts": [1, 1, 1, 2, 1, 1]})
    spec = FeatureSpec()
    assert [r.tolist() for r in group_requests(batch, spec, "user+ts", 512)] == [[0, 2, 5], [1, 4], [3]]
    assert [r.tolist() for r in group_requests(batch, spec, "user", 2)] == [[0, 2], [3, 5], [1, 4]]


def test_in_process_and_live_requests_match_the_batch_scores(setup, capsys):
    log, base, _ = setup
    with ServerProcess(base, "rocket", timeout=120) as server:
        code = main(["replay", "--model", str(base), "--data", str(log / "test"), "--group-by", "user",
                     "--requests", "30", "--max-candidates", "40", "--target", server.grpc_target,
                     "--model-name", "rocket"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "replayed 30 requests" in out and "N <= 40" in out
    assert "savedmodel: max |request - batch| = " in out and f"{server.grpc_target}: max" in out
    assert out.count("0 row(s) beyond 1e-05") == 2


def test_differing_scores_are_listed_and_fail_the_check(setup, capsys):
    log, base, spec = setup
    loaded, info = load_saved_model(base)
    pieces = plan_shard(file_fragments([str(p) for p in sorted((log / "test").glob("*.parquet"))]))
    report = replay(pieces, spec, saved_model_scorer(loaded, info),
                    {"off": lambda user, candidates: np.full(len(candidates["item_id"]), 0.5)},
                    group_by="user", max_requests=5, keep=3)
    assert not report.ok and report.requests == 5 and report.differing_rows["off"] == report.rows
    assert len(report.mismatches) == 3 and report.mismatches[0].request == 0.5
    assert set(report.mismatches[0].keys) == {"user_id", "item_id", "ts"}
    assert main(["replay", "--model", str(base), "--data", str(log / "test"), "--requests", "5",
                 "--tolerance", "-1"]) == 2
    assert "--tolerance must be >= 0" in capsys.readouterr().err
