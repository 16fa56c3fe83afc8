"""Bad numeric and multi-hot input: one line naming the column and what was expected, exit code 2,
nothing written over an earlier run."""
import json

import pytest

from conftest import log_columns, refused_in_one_line
from rocket_ctr.features.spec import FeatureSpec

SPEC = FeatureSpec(numeric_features=[{"name": "price", "boundaries": [1.0, 2.0], "normalize": True}],
                   multi_hot_features=[{"name": "tags", "weights": "tag_w", "max_len": 4}])


def _columns(n=40):
    columns = log_columns(n, max_len=6)
    columns["price"] = [float(i % 5) for i in range(n)]
    columns["tags"] = [[i % 7, i % 3] for i in range(n)]
    columns["tag_w"] = [[1.0, 0.5] for _ in range(n)]
    return columns


def _train(tmp_path, capsys, path, spec=SPEC, spec_text=None) -> str:
    spec_file = tmp_path / "spec.json"
    if spec_text is None:
        spec.save(spec_file)
    else:
        spec_file.write_text(spec_text)
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "metrics.json").write_text('{"earlier": true}')
    line = refused_in_one_line(capsys, ["train", "--train", path, "--run-dir", str(run_dir), "--spec", str(spec_file)])
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.json"]
    assert json.loads((run_dir / "metrics.json").read_text()) == {"earlier": True}
    return line


@pytest.mark.parametrize("column, values, words", [
    ("price", ["cheap"] * 40, "type string, expected numbers"),
    ("price", [1.0] * 7 + [float("inf")] + [1.0] * 32, "holds inf in row 7"),
    ("price", [None, float("nan")] * 20, "holds no number"),
    ("tags", [[0.5]] * 40, "list<double>, expected list<int64> ids"),
    ("tags", [1] * 40, "expected list<int64> ids"),
    ("tag_w", [["x"]] * 40, "expected list<float> weights"),
    ("tag_w", [[1.0]] * 40, "holds 1 weight(s) but 'tags' 2 id(s) in row 0"),
    ("tag_w", [[1.0, None]] * 40, "expected finite weights"),
])
def test_bad_values_are_refused_naming_the_column(click_log, tmp_path, capsys, column, values, words):
    path = click_log("bad.parquet", {**_columns(), column: values})
    line = _train(tmp_path, capsys, path)
    assert repr(column) in line and words in line, line


def test_missing_column_is_refused(click_log, tmp_path, capsys):
    columns = _columns()
    del columns["price"]
    line = _train(tmp_path, capsys, click_log("bad.parquet", columns))
    assert "missing column 'price'" in line


def test_unsorted_boundaries_in_a_spec_file_are_refused(click_log, tmp_path, capsys):
    data = SPEC.to_dict()
    data["numeric_features"][0]["boundaries"] = [2.0, 1.0]
    line = _train(tmp_path, capsys, click_log("log.parquet", _columns()), spec_text=json.dumps(data))
    assert "'price'" in line and "sorted ascending" in line


def test_unfitted_buckets_are_refused(click_log, tmp_path, capsys):
    spec = FeatureSpec(numeric_features=[{"name": "price", "num_buckets": 4}])
    line = _train(tmp_path, capsys, click_log("log.parquet", _columns()), spec=spec)
    assert "'price'" in line and "--fit-spec" in line
