"""Parquet -> tf.data: exact content, bucketing, shuffling, sharding, and every bad-input case."""
from __future__ import annotations

import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REFERENCE_SCHEMA, log_columns, write_log
from rocket_ctr.errors import InputError
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.features.spec import HIST_LEN, FeatureSpec
from rocket_ctr.io import reader as data
from rocket_ctr.io.reader import make_dataset, surfacing_input_errors
from rocket_ctr.pipelines import cli

# small spec: widths 2/4/10, while the generated histories reach 15 steps (some truncated, some empty)
SPEC = FeatureSpec(max_history=10, history_buckets=(2, 4))
WIDTHS = (2, 4, 10)


def _batches(dataset) -> list[tuple[dict, np.ndarray]]:
    return [({k: v.numpy() for k, v in f.items()}, label.numpy()) for f, label in dataset]


def _read(paths, spec=SPEC, **kwargs) -> list[tuple[dict, np.ndarray]]:
    with surfacing_input_errors():
        return _batches(make_dataset(paths, spec, **kwargs))


def _item_ids(batches) -> list[int]:
    return [int(i) for f, _ in batches for i in f["item_id"]]


def _merge(*column_dicts) -> dict:
    return {k: sum((c[k] for c in column_dicts), []) for k in column_dicts[0]}


def _check_content(batches, columns: dict, max_history: int = 10) -> None:
    """Every row of ``columns`` comes out exactly once, with exactly the expected values."""
    ids = _item_ids(batches)
    assert sorted(ids) == sorted(columns["item_id"]), "rows lost or duplicated"
    assert len(set(ids)) == len(ids)
    row_of = {item: r for r, item in enumerate(columns["item_id"])}
    for features, label in batches:
        width = features["hist_item_id"].shape[1]
        assert features["hist_cate_id"].shape == features["hist_item_id"].shape
        assert features[HIST_LEN].dtype == np.int32 and label.dtype == np.float32
        for b, item in enumerate(features["item_id"]):
            r = row_of[int(item)]
            kept = columns["hist_item_id"][r][-max_history:]  # newest steps
            assert features[HIST_LEN][b] == len(kept)
            assert width >= len(kept)
            np.testing.assert_array_equal(features["hist_item_id"][b], kept + [0] * (width - len(kept)))
            kept_cate = columns["hist_cate_id"][r][-max_history:]
            np.testing.assert_array_equal(features["hist_cate_id"][b], kept_cate + [0] * (width - len(kept)))
            assert features["user_id"][b] == columns["user_id"][r]
            assert features["cate_id"][b] == columns["cate_id"][r]
            assert features["user_gender"][b].decode() == columns["user_gender"][r]
            assert features["user_occupation"][b].decode() == columns["user_occupation"][r]
            assert label[b] == columns["label"][r]


@pytest.fixture
def three_files(tmp_path):
    """A folder (with a sub-folder) of 3 files, 170 rows, several row groups; returns (folder, columns)."""
    parts = [log_columns(60, seed=1, max_len=15), log_columns(45, seed=2, max_len=15, start=60),
             log_columns(65, seed=3, max_len=15, start=105)]
    folder = tmp_path / "log"
    for name, columns in zip(("part-0.parquet", "part-1.parquet", "sub/part-2.parquet"), parts):
        write_log(folder / name, columns, row_group_size=20)
    return str(folder), _merge(*parts)


# ----- content ------------------------------------------------------------------------------
@pytest.mark.parametrize("shuffle", [False, True])
@pytest.mark.parametrize("read_rows", [data.READ_BATCH_ROWS, 7])
def test_every_row_exactly_once_with_exact_values(three_files, monkeypatch, shuffle, read_rows):
    # read_rows=7 streams many small record batches through a small shuffle window (carry-over path)
    monkeypatch.setattr(data, "READ_BATCH_ROWS", read_rows)
    folder, columns = three_files
    batches = _read(folder, batch_size=8, shuffle=shuffle, shuffle_buffer=16, seed=3)
    _check_content(batches, columns)
    lengths = [len(h) for h in columns["hist_item_id"]]
    assert 0 in lengths and max(lengths) > 10  # the data covers empty and over-long histories


def test_histories_keep_newest_steps_left_aligned(click_log):
    columns = log_columns(3, max_len=0)
    columns["hist_item_id"] = [list(range(1, 15)), [7], []]
    columns["hist_cate_id"] = [[-v for v in h] for h in columns["hist_item_id"]]
    (features, _), = _read(click_log(columns=columns), FeatureSpec(max_history=10, history_buckets=()))
    np.testing.assert_array_equal(features["hist_item_id"],
                                  [list(range(5, 15)), [7] + [0] * 9, [0] * 10])
    np.testing.assert_array_equal(features[HIST_LEN], [10, 1, 0])


def test_batches_padded_only_to_their_bucket(three_files):
    folder, columns = three_files
    batches = _read(folder, batch_size=8)
    widths = [f["hist_item_id"].shape[1] for f, _ in batches]
    assert set(widths) == set(WIDTHS)
    for (features, _), width in zip(batches, widths):
        lower = WIDTHS[WIDTHS.index(width) - 1] if width != WIDTHS[0] else -1
        assert ((features[HIST_LEN] > lower) & (features[HIST_LEN] <= width)).all()
    partial = sum(len(label) < 8 for _, label in batches)
    assert partial <= len(WIDTHS)  # only each bucket's last batch may be short
    # without bucketing batches mix lengths, padded to the longest history among their rows
    flat = _read(folder, batch_size=8, bucket_by_length=False)
    assert all(max(1, f[HIST_LEN].max()) <= f["hist_item_id"].shape[1] <= 10 for f, _ in flat)
    assert any(len(set(np.searchsorted(WIDTHS, f[HIST_LEN]))) > 1 for f, _ in flat)
    one_batch_groups = _read(folder, batch_size=len(columns["label"]), bucket_by_length=False)
    assert one_batch_groups[0][0]["hist_item_id"].shape[1] == one_batch_groups[0][0][HIST_LEN].max()
    _check_content(flat, columns)


def test_buckets_come_from_the_spec(three_files):
    folder, columns = three_files
    spec = FeatureSpec(max_history=12, history_buckets=(3,))
    batches = _read(folder, spec, batch_size=16)
    assert {f["hist_item_id"].shape[1] for f, _ in batches} == {3, 12}
    _check_content(batches, columns, max_history=12)


def test_file_folder_glob_and_list(three_files):
    folder, columns = three_files
    n = len(columns["item_id"])
    first = os.path.join(folder, "part-0.parquet")
    assert len(_item_ids(_read(first))) == 60
    assert len(_item_ids(_read(folder))) == n  # folders are searched recursively
    assert len(_item_ids(_read(os.path.join(folder, "part-*.parquet")))) == 105
    assert len(_item_ids(_read(os.path.join(folder, "**", "*.parquet")))) == n
    assert len(_item_ids(_read([first, folder]))) == n  # duplicates across items read once


# ----- shuffling, repeat, drop_remainder -----------------------------------------------------
def test_shuffle_changes_order_and_is_deterministic_by_seed(three_files):
    folder, _ = three_files
    plain = _item_ids(_read(folder, batch_size=8))
    a = _item_ids(_read(folder, batch_size=8, shuffle=True, seed=1))
    b = _item_ids(_read(folder, batch_size=8, shuffle=True, seed=1))
    c = _item_ids(_read(folder, batch_size=8, shuffle=True, seed=2))
    assert a == b
    assert a != plain and a != c
    assert sorted(a) == sorted(plain) == sorted(c)


def test_repeat_reshuffles_every_epoch(three_files):
    folder, columns = three_files
    n = len(columns["item_id"])
    dataset = make_dataset(folder, SPEC, batch_size=8, shuffle=True, seed=5, repeat=True)
    ids: list[int] = []
    for features, _ in dataset:
        ids += features["item_id"].numpy().tolist()
        if len(ids) >= 3 * n:
            break
    epochs = [ids[:n], ids[n:2 * n], ids[2 * n:3 * n]]  # batches never straddle epochs
    assert all(sorted(e) == sorted(columns["item_id"]) for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]


def test_drop_remainder(three_files):
    folder, columns = three_files
    for shuffle in (False, True):
        batches = _read(folder, batch_size=8, shuffle=shuffle, shuffle_buffer=16, drop_remainder=True)
        ids = _item_ids(batches)
        assert all(len(label) == 8 for _, label in batches)
        assert len(set(ids)) == len(ids) and set(ids) <= set(columns["item_id"])
        per_bucket = np.bincount(np.searchsorted(WIDTHS, [min(len(h), 10) for h in columns["hist_item_id"]]))
        assert len(ids) == sum(count // 8 * 8 for count in per_bucket)  # < 8 rows dropped per bucket


# ----- sharding ------------------------------------------------------------------------------
def _shards(paths, num_shards, **kwargs) -> list[list[int]]:
    return [_item_ids(_read(paths, batch_size=8, num_shards=num_shards, shard_index=i, **kwargs))
            for i in range(num_shards)]


@pytest.mark.parametrize("shuffle", [False, True])
def test_sharding_by_row_range_across_files_covers_every_row_once(three_files, shuffle):
    folder, columns = three_files
    shards = _shards(folder, 2, shuffle=shuffle)  # 170 rows in 3 files: rows 0-84 / 85-169 across files
    assert sorted(shards[0]) == list(range(85)) and sorted(shards[1]) == list(range(85, 170))
    assert sorted(shards[0] + shards[1]) == sorted(columns["item_id"])


@pytest.mark.parametrize("row_group_size", [None, 10])
def test_sharding_by_row_range_within_one_file(click_log, row_group_size):
    columns = log_columns(95, max_len=15)
    path = click_log(columns=columns, row_group_size=row_group_size)  # 1 file, 1 or 10 row groups
    shards = _shards(path, 3)
    assert [sorted(s) for s in shards] == [list(range(31)), list(range(31, 63)), list(range(63, 95))]
    eleven = _shards(path, 11)  # more workers than row groups: still contiguous, equal to a row
    assert {len(s) for s in eleven} == {8, 9} and sorted(sum(eleven, [])) == list(range(95))
    assert data.ClickLogReader(path, SPEC).shard_rows(3) == [31, 32, 32]
    with pytest.raises(InputError, match=r"shard_index must be in \[0, 3\), got 3"):
        make_dataset(path, SPEC, num_shards=3, shard_index=3)


# ----- valid but unusual input ---------------------------------------------------------------
def test_unseen_negative_huge_ids_and_empty_histories(click_log):
    big = 2**62
    columns = log_columns(4, max_len=0)  # every history empty
    columns.update(user_id=[-1, big, 0, 2**63 - 1], item_id=[big, -5, 0, -(2**63)], cate_id=[big, -1, 3, 9])
    (features, label), = _read(click_log(columns=columns))
    np.testing.assert_array_equal(features["item_id"], [big, -5, 0, -(2**63)])
    np.testing.assert_array_equal(features["user_id"], [-1, big, 0, 2**63 - 1])
    assert features["hist_item_id"].shape == (4, 2) and not features["hist_item_id"].any()
    np.testing.assert_array_equal(features[HIST_LEN], [0, 0, 0, 0])
    columns = log_columns(3, max_len=0)
    columns["hist_item_id"] = [[big, -big, -1], [], [2**63 - 1]]
    columns["hist_cate_id"] = [[1, 2, 3], [], [4]]
    (features, _), *rest = _read(click_log("b.parquet", columns=columns))
    _check_content([(features, _)] + rest, columns)


def test_string_ids_and_extra_columns(click_log):
    spec = FeatureSpec(sequence_features=(IdFeature("item_id", history="hist_item_id", dtype="string"),),
                       user_features=(), max_history=4, history_buckets=())
    columns = {"user_id": ["u1", "u2", "u3"], "item_id": ["a", "b", "c"],
               "hist_item_id": [["x", "y"], [], ["1", "2", "3", "4", "5"]], "label": [0, 1, 1],
               "unused_extra": [1.5, 2.5, 3.5]}
    schema = pa.schema([("user_id", pa.string()), ("item_id", pa.string()),
                        ("hist_item_id", pa.list_(pa.string())), ("label", pa.int8()), ("unused_extra", pa.float64())])
    (features, label), = _read(click_log(columns=columns, schema=schema), spec)
    assert features["hist_item_id"].tolist() == [[b"x", b"y", b"", b""], [b""] * 4, [b"2", b"3", b"4", b"5"]]
    assert features["user_id"].tolist() == [b"u1", b"u2", b"u3"]
    np.testing.assert_array_equal(label, [0, 1, 1])
    only_empty = dict(columns, hist_item_id=[[], [], []])
    (features, _), = _read(click_log("empty.parquet", columns=only_empty, schema=schema), spec)
    assert features["hist_item_id"].tolist() == [[b""] * 4] * 3


def test_boolean_labels_and_empty_file_beside_others(tmp_path):
    columns = log_columns(5)
    write_log(tmp_path / "a.parquet", dict(columns, label=[bool(x) for x in columns["label"]]),
              schema=REFERENCE_SCHEMA.set(8, pa.field("label", pa.bool_())))
    write_log(tmp_path / "b.parquet", log_columns(0))  # 0 rows, valid schema
    batches = _read(str(tmp_path))
    _check_content(batches, columns)


# ----- bad input: schema errors (raised by make_dataset itself) ------------------------------
def _retyped(column: str, arrow_type: pa.DataType, values: list) -> tuple[dict, pa.Schema]:
    columns = log_columns(4)
    columns[column] = values
    index = REFERENCE_SCHEMA.get_field_index(column)
    return columns, REFERENCE_SCHEMA.set(index, pa.field(column, arrow_type))


@pytest.mark.parametrize("column, arrow_type, values, expected", [
    ("label", pa.string(), ["0", "1", "1", "0"], r"column 'label' has type string, expected integer 0/1 labels"),
    ("label", pa.float64(), [0.0, float("nan"), 1.0, 0.0], r"column 'label' has type double, expected integer 0/1"),
    ("item_id", pa.float64(), [1.0, 2.0, 3.0, 4.0],
     r"column 'item_id' has type double, expected int64 scalar ids"),
    ("cate_id", pa.list_(pa.int64()), [[1], [2], [3], [4]],
     r"column 'cate_id' has type list<int64>, expected int64 scalar"),
    ("hist_item_id", pa.int64(), [1, 2, 3, 4], r"column 'hist_item_id' has type int64, expected list<int64> history"),
    ("hist_cate_id", pa.list_(pa.string()), [["a"], [], [], []],
     r"'hist_cate_id' has type list<string>, expected list<int64>"),
    ("user_gender", pa.int64(), [0, 1, 0, 1], r"column 'user_gender' has type int64, expected string scalar ids"),
    ("user_id", pa.float32(), [1.0, 2.0, 3.0, 4.0],
     r"column 'user_id' has type float, expected int64 or string user ids"),
])
def test_wrong_type(tmp_path, column, arrow_type, values, expected):
    columns, schema = _retyped(column, arrow_type, values)
    path = write_log(tmp_path / "bad.parquet", columns, schema=schema)
    with pytest.raises(InputError) as err:
        make_dataset(path)
    message = str(err.value)
    assert message.startswith(path + ": ") and "\n" not in message
    assert re.search(expected, message), message


@pytest.mark.parametrize("column", ["label", "hist_cate_id", "user_occupation", "user_id"])
def test_missing_column_names_file_column_and_expected(tmp_path, column):
    write_log(tmp_path / "a-good.parquet", log_columns(4))
    columns = log_columns(4)
    del columns[column]
    bad = write_log(tmp_path / "b-bad.parquet", columns)
    with pytest.raises(InputError,
                       match=rf"^{re.escape(bad)}: missing column '{column}' \(expected .+\); file has \[") as err:
        make_dataset(str(tmp_path))
    assert "\n" not in str(err.value)


def test_user_id_type_must_agree_across_files(tmp_path):
    write_log(tmp_path / "a.parquet", log_columns(3))
    columns, schema = _retyped("user_id", pa.string(), ["u1", "u2", "u3", "u4"])
    bad = write_log(tmp_path / "b.parquet", columns, schema=schema)
    with pytest.raises(InputError, match=rf"^{re.escape(bad)}: column 'user_id' is string here but int in .*a.parquet"):
        make_dataset(str(tmp_path))


# ----- bad input: value errors (raised while iterating) --------------------------------------
def _value_error(path, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        with surfacing_input_errors():
            for _ in make_dataset(path, SPEC, batch_size=2, **kwargs):
                pass
    message = str(err.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_null_label_in_int_column(click_log):
    columns = log_columns(6)
    columns["label"][3] = None
    path = click_log(columns=columns)
    # the log gate sees it in the footer statistics, before a batch is read
    assert _value_error(path) == f"{path}: column 'label' has 1 null label(s) in row group 0; labels must be 0 or 1"


@pytest.mark.parametrize("bad", [2, -1])
def test_label_outside_0_1(click_log, bad):
    columns = log_columns(6)
    columns["label"][4] = bad
    path = click_log(columns=columns)
    assert _value_error(path) == f"{path}: column 'label' holds {bad}; labels must be 0 or 1"


@pytest.mark.parametrize("column", ["item_id", "user_gender", "hist_item_id", "user_id"])
def test_null_ids(click_log, column):
    columns = log_columns(6)
    columns[column][2] = None
    if column == "hist_item_id":
        columns["hist_cate_id"][2] = None
    path = click_log(columns=columns)
    assert _value_error(path) == f"{path}: column {column!r} has 1 null value(s); expected none"


def test_null_inside_history_list(click_log):
    columns = log_columns(6, max_len=0)
    columns["hist_item_id"][1] = [5, None, 7]
    columns["hist_cate_id"][1] = [1, 2, 3]
    path = click_log(columns=columns)
    assert _value_error(path) == f"{path}: column 'hist_item_id' has 1 null id(s) inside its lists; expected none"


def test_history_lists_of_different_lengths(click_log, monkeypatch):
    monkeypatch.setattr(data, "READ_BATCH_ROWS", 4)  # the row number counts from the file's start
    columns = log_columns(10, max_len=3)
    columns["hist_item_id"][6] = [1, 2, 3]
    columns["hist_cate_id"][6] = [1, 2]
    path = click_log(columns=columns)
    assert _value_error(path) == (f"{path}: 'hist_item_id' and 'hist_cate_id' have different lengths in row 6 "
                                  "(3 and 2 steps); history lists must be aligned step by step")


def test_value_error_in_a_row_group_shard(click_log):
    columns = log_columns(20)
    columns["label"][15] = 7
    path = click_log(columns=columns, row_group_size=5)
    message = _value_error(path, num_shards=2, shard_index=1)  # rows 10-19
    assert message == f"{path}: column 'label' holds 7; labels must be 0 or 1"


# ----- bad input: files and paths ------------------------------------------------------------
def test_not_parquet(tmp_path):
    path = tmp_path / "notes.parquet"
    path.write_text("user_id,item_id,label\n1,2,0\n")
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: not a readable Parquet file \(") as err:
        make_dataset(str(path))
    assert "\n" not in str(err.value)


def test_truncated_parquet(tmp_path, click_log):
    good = click_log(n=50)
    raw = open(good, "rb").read()
    path = tmp_path / "cut.parquet"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))}: not a readable Parquet file") as err:
        make_dataset(str(path))
    assert "\n" not in str(err.value)


def test_path_matching_nothing(tmp_path):
    with pytest.raises(InputError, match=r"nothing\.parquet: no such file, folder or matching glob"):
        make_dataset(str(tmp_path / "nothing.parquet"))
    with pytest.raises(InputError, match=r"\*\.parquet: no such file, folder or matching glob"):
        make_dataset(str(tmp_path / "*.parquet"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match=r"empty_dir: folder holds no \*\.parquet files"):
        make_dataset(str(tmp_path / "empty_dir"))


def test_empty_dataset(click_log):
    path = click_log(n=0)
    assert pq.read_metadata(path).num_rows == 0
    with pytest.raises(InputError, match=rf"^empty dataset: 1 file\(s\) hold no rows \({re.escape(path)}"):
        make_dataset(path)


def test_bad_options():
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        make_dataset("whatever", batch_size=0)


# ----- the CLI ------------------------------------------------------------------------------
def _bad_label_file(click_log) -> str:
    columns = log_columns(6)
    columns["label"][1] = 2
    return click_log("labels.parquet", columns=columns)


@pytest.mark.parametrize("make_bad, expected", [
    (lambda tmp_path, log: str(tmp_path / "missing.parquet"), "missing.parquet: no such file"),
    (lambda tmp_path, log: (tmp_path / "x.parquet").write_text("hello") and str(tmp_path / "x.parquet"),
     "x.parquet: not a readable Parquet file"),
    (lambda tmp_path, log: _bad_label_file(log), "labels.parquet: column 'label' holds 2"),  # while streaming
])
def test_cli_inspect_bad_file_exits_2_without_traceback(tmp_path, click_log, capsys, make_bad, expected):
    path = make_bad(tmp_path, click_log)
    assert cli.main(["inspect", path]) == 2
    out, err = capsys.readouterr()
    assert expected in err and "rocket-ctr inspect: error: " in err
    assert "Traceback" not in err + out
    assert len(err.strip().splitlines()) == 1


def test_cli_inspect_prints_summary(tmp_path, capsys):
    columns = log_columns(40, max_len=15)
    write_log(tmp_path / "log" / "train" / "part-0.parquet", columns)
    SPEC.save(tmp_path / "log" / "feature_spec.json")  # found above the data folder
    assert cli.main(["inspect", str(tmp_path / "log" / "train"), "--batch-size", "8"]) == 0
    out, _ = capsys.readouterr()
    assert "rows           40" in out and "feature_spec.json" in out


def test_cli_inspect_bad_spec_exits_2(tmp_path, click_log, capsys):
    (tmp_path / "spec.json").write_text('{"max_histroy": 3}')
    assert cli.main(["inspect", click_log(), "--spec", str(tmp_path / "spec.json")]) == 2
    _, err = capsys.readouterr()
    assert "spec.json: not a valid FeatureSpec JSON" in err and "max_histroy" in err and "Traceback" not in err


def test_inspect_summary_numbers(three_files):
    from rocket_ctr.io.log_gate import find_feature_spec_path
    from rocket_ctr.pipelines.inspect import summarize

    folder, columns = three_files
    summary = summarize(folder, SPEC, batch_size=8)
    lengths = np.array([len(h) for h in columns["hist_item_id"]])
    assert len(summary["files"]) == 3 and summary["rows"] == 170
    assert summary["ctr"] == pytest.approx(np.mean(columns["label"]))
    assert summary["hist_len_mean"] == pytest.approx(np.minimum(lengths, 10).mean())
    assert summary["hist_len_max"] == 10 and summary["hist_raw_max"] == lengths.max()
    assert summary["truncated_share"] == pytest.approx(np.mean(lengths > 10))
    assert summary["distinct_users"] == 7 and summary["distinct_users_exact"]
    assert set(summary["widths"]) == set(WIDTHS)
    assert sum(w["rows"] for w in summary["widths"].values()) == 170
    assert summary["batches"] == sum(w["batches"] for w in summary["widths"].values())
    assert find_feature_spec_path(folder) is None  # no feature_spec.json beside or above: defaults


def test_distinct_counter_estimates_large_counts():
    from rocket_ctr.pipelines.inspect import DistinctCounter

    counter = DistinctCounter(k=1024)
    rng = np.random.default_rng(0)
    for _ in range(20):  # 100k distinct ids, each seen twice
        ids = rng.choice(2**62, size=5_000, replace=False) + 10**6
        counter.add(ids)
        counter.add(ids[::-1].copy())
    counter.add(np.array([b"a", b"b"], dtype=object))
    assert not counter.exact
    assert counter.estimate() == pytest.approx(100_002, rel=0.1)
