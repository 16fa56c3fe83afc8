"""``rocket-ctr predict``: scores in input order equal to the model's, shards, processes, refusals."""
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from conftest import FLOAT32_PROBABILITY_ATOL, auc_tolerance, tiny_run
from rocket_ctr.export.writer import export_light
from rocket_ctr.pipelines.cli import main
from rocket_ctr.train.evaluation import evaluate
from rocket_ctr.train.run_dir import restore_model

KEYS = ["user_id", "item_id", "ts", "label"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    run, log = tiny_run(tmp_path_factory)
    model, spec, _ = restore_model(run)
    base = tmp_path_factory.mktemp("predict_export")
    export_light(model, spec, base, data=log / "test", sample_size=32, warmup_candidates=64)
    return run, log, base, model, spec


def _predict(*args) -> int:
    return main(["predict", "--no-progress", *map(str, args)])


def test_run_dir_and_export_score_every_row_in_order_as_the_model_does(setup, tmp_path, capsys):
    run, log, base, model, spec = setup
    assert _predict("--run-dir", run, "--data", log / "test", "--out", tmp_path / "run", "--batch-size", 700,
                    "--no-xla") == 0
    assert "rows/s" in capsys.readouterr().out
    assert _predict("--model", base, "--data", log / "test", "--out", tmp_path / "export",
                    "--rows-per-file", 1500) == 0
    source = pq.read_table(log / "test")
    from_run, from_export = pq.read_table(tmp_path / "run"), pq.read_table(tmp_path / "export")
    assert from_run.column_names == KEYS + ["p_light", "p_booster"] and from_export.column_names == KEYS + ["p_light"]
    assert from_run.select(KEYS).equals(source.select(KEYS)) and from_export.select(KEYS).equals(source.select(KEYS))
    np.testing.assert_allclose(from_run["p_light"].to_numpy(), from_export["p_light"].to_numpy(),
                               atol=FLOAT32_PROBABILITY_ATOL)
    expected = evaluate(model, log / "test", spec)
    from rocket_ctr.metrics.ranking import auc
    for tower in ("light", "booster"):
        labels, scores = source["label"].to_numpy(), from_run[f"p_{tower}"].to_numpy()
        # evaluate scores in other batches: near-tied rows may swap
        assert auc(labels, scores) == pytest.approx(
            expected[tower]["auc"], abs=auc_tolerance(labels, scores, FLOAT32_PROBABILITY_ATOL))
    assert len(list((tmp_path / "export").glob("part-*.parquet"))) == 2  # 2,000 rows, 1,500 per file
    manifest = json.loads((tmp_path / "export" / "_predict-00000-of-00001.json").read_text())
    assert manifest["rows"] == source.num_rows and manifest["towers"] == ["light"]


def test_shards_and_processes_write_the_same_rows_and_results_are_never_lost(setup, tmp_path, capsys):
    run, log, base, _, _ = setup
    whole, out = tmp_path / "whole", tmp_path / "sharded"
    assert _predict("--model", base, "--data", log / "test", "--out", whole) == 0
    for i in (1, 0):
        assert _predict("--model", base, "--data", log / "test", "--out", out, "--num-shards", 2,
                        "--shard-index", i) == 0
    assert pq.read_table(out).equals(pq.read_table(whole))  # part names sort by shard: the input order
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert _predict("--model", base, "--data", log / "test", "--out", out, "--num-shards", 2, "--shard-index", 0) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--out" in err and "--overwrite" in err and "nothing was written" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _predict("--model", base, "--data", log / "test", "--out", out, "--processes", 2, "--overwrite") == 0
    assert "with 2 processes" in capsys.readouterr().out
    assert pq.read_table(out).equals(pq.read_table(whole))
    assert sorted(p.name for p in out.iterdir())[:2] == ["_predict-00000-of-00002.json", "_predict-00001-of-00002.json"]


def test_bad_input_is_one_line_and_exit_code_2(setup, tmp_path, click_log, capsys):
    run, log, base, _, _ = setup
    columns = {"user_id": [1], "item_id": [2], "label": [0]}
    bad = click_log(columns=columns)
    assert _predict("--model", base, "--data", bad, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing column 'hist_item_id'" in err and not (tmp_path / "o").exists()
    assert _predict("--run-dir", run, "--data", log / "test", "--out", tmp_path / "o", "--processes", 2,
                    "--num-shards", 2) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_bucketed_batches_score_every_row_as_the_padded_model_does(setup, tmp_path):
    """Rows of mixed history lengths, scored in length buckets through the export's valid-step
    graph (sorted segment sums), equal the in-memory padded form on the whole log at once."""
    import pyarrow as pa

    from rocket_ctr.export.verify import reference_probabilities
    from rocket_ctr.io.batches import Chunk
    from rocket_ctr.model.layers.attention import use_padded_attention
    from rocket_ctr.scoring.scorer import row_features

    _, log, base, model, spec = setup
    assert _predict("--model", base, "--data", log / "test", "--out", tmp_path / "p", "--batch-size", 300) == 0
    light = spec.for_tower("light")
    chunk = Chunk(pa.concat_batches(pq.read_table(log / "test").to_batches()), light)
    assert len(set(np.searchsorted(light.history_buckets, chunk.lengths))) > 1 and (chunk.lengths == 0).any()
    rows = row_features(chunk, light, np.arange(chunk.n), light.max_history)
    use_padded_attention(model, True)
    try:
        expected = reference_probabilities(model, "light", rows)
    finally:
        use_padded_attention(model, False)
    np.testing.assert_allclose(pq.read_table(tmp_path / "p")["p_light"].to_numpy(), expected,
                               atol=FLOAT32_PROBABILITY_ATOL)
