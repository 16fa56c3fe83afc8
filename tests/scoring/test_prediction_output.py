"""The predict output folder: parts of bounded size, refusal of a folder holding results, overwrite, nothing lost."""
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rocket_ctr.errors import FieldError
from rocket_ctr.scoring.prediction_output import PredictionWriter, check_out_dir, conflicting_results


def _write(out, rows, shard=0, shards=1, **kwargs):
    writer = PredictionWriter(out, shard, shards, **kwargs)
    writer.write(pa.record_batch({"x": list(rows)}))
    return writer.commit({"source": "test"})


def test_parts_of_bounded_size_in_order_and_a_manifest(tmp_path):
    files = _write(tmp_path / "out", range(25), rows_per_file=10)
    assert [f.name for f in files] == [f"part-00000-of-00001-0000{i}.parquet" for i in range(3)]
    assert pq.read_table(tmp_path / "out").column("x").to_pylist() == list(range(25))  # _predict json skipped
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # staging removed


def test_a_folder_holding_results_is_refused_unless_overwrite_and_nothing_is_lost(tmp_path):
    out = tmp_path / "out"
    _write(out, range(5))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FieldError, match=r"already holds 2 result file\(s\).*nothing was written") as err:
        PredictionWriter(out)
    assert "--overwrite" in err.value.render({"overwrite": "--overwrite", "out": "--out"})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    writer = PredictionWriter(out, overwrite=True)  # a failed run: the old results stay
    writer.write(pa.record_batch({"x": [9]}))
    writer.abort()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    _write(out, range(3), overwrite=True)
    assert pq.read_table(out).column("x").to_pylist() == [0, 1, 2]
    (tmp_path / "file").write_text("x")
    with pytest.raises(FieldError, match="is a file"):
        check_out_dir(tmp_path / "file")


def test_sibling_shards_share_a_folder_but_another_shard_count_conflicts(tmp_path):
    out = tmp_path / "out"
    _write(out, range(0, 5), 0, 2)
    _write(out, range(5, 9), 1, 2)  # the sibling's parts are not in the way
    assert sorted(pq.read_table(out).column("x").to_pylist()) == list(range(9))
    with pytest.raises(FieldError):
        PredictionWriter(out, 1, 2)  # its own parts are
    assert len(conflicting_results(out, 3, 0)) == 4 and len(conflicting_results(out)) == 4
