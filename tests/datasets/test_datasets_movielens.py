"""`rocket-ctr convert movielens`: 100K and 1M files in their published formats, hand-checked rows."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rocket_ctr.datasets.common import stable_id
from rocket_ctr.datasets.movielens import convert
from rocket_ctr.errors import InputError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.pipelines import cli

# user 1: 12 events (item k at ts 10k; items 6 and 7 share ts 60, ordered by item id).
RATINGS_1 = {1: 5, 2: 3, 3: 4, 4: 1, 5: 4, 6: 5, 7: 2, 8: 4, 9: 5, 10: 3, 11: 4, 12: 4}
FLAGS = {1: (3, 4, 5), 2: (1,), 3: (8,), 12: ()}  # genre flag positions (u.genre order); default Drama (8)


def _ts(item: int) -> int:
    return 60 if item == 7 else 10 * item


def write_100k(folder):
    folder.mkdir(parents=True, exist_ok=True)
    # u.data: tab-separated, deliberately not in time order
    lines = [f"1\t{i}\t{r}\t{_ts(i)}" for i, r in sorted(RATINGS_1.items(), reverse=True)]
    lines += ["2\t3\t4\t5", "2\t1\t2\t7", "2\t2\t5\t9"]
    (folder / "u.data").write_text("\n".join(lines) + "\n")
    items = []
    for i in range(1, 13):
        flags = ["0"] * 19
        for f in FLAGS.get(i, (8,)):
            flags[f] = "1"
        title = "Caf\xe9 Society (1995)" if i == 2 else f"Movie {i} (1995)"
        items.append("|".join([str(i), title, "01-Jan-1995", "", "http://us.imdb.com/x"] + flags))
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")
    return folder


def write_1m(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text("1::20::5::300\n1::10::2::100\n1::30::4::200\n")
    (folder / "movies.dat").write_bytes("10::Toy Story (1995)::Animation|Children's|Comedy\n"
                                        "20::Caf\xe9 (1996)::Drama\n30::Heat (1995)::Action|Crime|Thriller\n"
                                        .encode("latin-1"))
    (folder / "users.dat").write_text("1::F::1::10::48067\n")
    return folder


def rows(out, split):
    return sorted(pq.read_table(out / split).to_pylist(), key=lambda r: (r["user_id"], r["ts"], r["item_id"]))


def test_100k_rows_histories_splits_and_spec(tmp_path):
    out = tmp_path / "out"
    summary = convert([write_100k(tmp_path / "ml-100k")], out, max_history=3, seed=1)
    train, test = rows(out, "train"), rows(out, "test")
    assert [r["item_id"] for r in train] == [1, 2]  # user 1's first 2 events; user 2 (3 events): all test
    assert [(r["user_id"], r["item_id"]) for r in test] == [(1, i) for i in range(3, 13)] + [(2, 3), (2, 1), (2, 2)]
    by_item = {r["item_id"]: r for r in train + test if r["user_id"] == 1}
    assert by_item[1]["hist_item_id"] == [] and by_item[2]["hist_item_id"] == [1]
    assert by_item[3]["hist_item_id"] == [1]
    assert by_item[7]["hist_item_id"] == [3, 5, 6]  # same ts as item 6, later by item id
    assert by_item[12]["hist_item_id"] == [8, 9, 11]  # newest 3 positives, oldest -> newest
    assert by_item[12]["hist_cate_id"] == [stable_id("Drama")] * 3
    assert [by_item[i]["label"] for i in range(1, 13)] == [int(RATINGS_1[i] >= 4) for i in range(1, 13)]
    assert by_item[1]["cate_id"] == stable_id("Animation")  # first flagged genre
    assert by_item[12]["cate_id"] == stable_id("unknown")  # no flag set
    assert (by_item[1]["user_gender"], by_item[1]["user_occupation"], by_item[1]["ts"]) == ("M", "technician", 10)
    user2 = [r for r in test if r["user_id"] == 2]
    assert [r["hist_item_id"] for r in user2] == [[], [3], [3]]
    assert summary["splits"]["train"]["rows"] == 2 and summary["splits"]["test"]["rows"] == 13

    spec = FeatureSpec.load(out / "feature_spec.json")
    sequences = [(f.name, f.history) for f in spec.sequence_features]
    assert sequences == [("item_id", "hist_item_id"), ("cate_id", "hist_cate_id")]
    assert [f.name for f in spec.user_features] == ["user_gender", "user_occupation"]
    assert spec.max_history == 3 and spec.feature("user_gender").vocabulary == ("F", "M")
    on_disk = json.loads((out / "convert_summary.json").read_text())
    assert on_disk["dataset"] == "movielens-100k" and len(on_disk["sources"]) == 3
    schema = pq.read_schema(next((out / "train").glob("part-*.parquet")))
    assert schema.field("hist_item_id").type.value_type == pa.int64() and schema.field("label").type == pa.int64()


def test_1m_detected_by_name_latin1_and_codes(tmp_path):
    folder = write_1m(tmp_path / "ml-1m")
    out = tmp_path / "out"
    summary = convert([folder / "users.dat", folder / "ratings.dat", folder / "movies.dat"], out)
    assert summary["dataset"] == "movielens-1m"
    test = rows(out, "test")
    assert [(r["item_id"], r["label"], r["hist_item_id"]) for r in test] == [(10, 0, []), (30, 1, []), (20, 1, [30])]
    assert test[0]["cate_id"] == stable_id("Animation") and test[2]["hist_cate_id"] == [stable_id("Action")]
    assert (test[0]["user_gender"], test[0]["user_occupation"]) == ("F", "10")


def test_seed_makes_output_deterministic(tmp_path):
    raw = write_100k(tmp_path / "raw")
    convert([raw], tmp_path / "a", seed=3)
    convert([raw], tmp_path / "b", seed=3)
    assert pq.read_table(tmp_path / "a" / "train").equals(pq.read_table(tmp_path / "b" / "train"))


@pytest.mark.parametrize("name, content, message", [
    ("u.data", b"1,1,5,10\n", "line 1: expected 4 tab-separated fields (user, item, rating, timestamp), got 1"),
    ("u.data", "1\t1\t5\t10\n".encode("utf-16"), "line 1: NUL bytes (UTF-16"),
    ("u.data", b"1\t1\tfive\t10\n", "line 1: field 'rating' is 'five', expected an integer"),
    ("u.data", b"1\t1\t5\t99999999999999999999999\n", "line 1: field 'timestamp' is 99999999999999999999999"),
    ("u.data", b"1\t1\t5\t10\n1\t99\t5\t20\n", "line 2: movie 99 is not in the movies file"),
    ("u.user", b"1|24|M|technician\n", "line 1: expected 5 '|'-separated fields"),
])
def test_bad_files_name_file_and_line(tmp_path, name, content, message):
    raw = write_100k(tmp_path / "raw")
    (raw / name).write_bytes(content)
    with pytest.raises(InputError) as err:
        convert([raw], tmp_path / "out")
    assert str(raw / name) in str(err.value) and message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_missing_file_and_cli_exit_code(tmp_path, capsys):
    raw = write_100k(tmp_path / "raw")
    (raw / "u.user").unlink()
    with pytest.raises(InputError, match="movielens 100K: missing u.user"):
        convert([raw], tmp_path / "out")
    assert cli.main(["convert", "movielens", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "nowhere: no such file or folder" in err and "Traceback" not in err


def test_failed_run_keeps_previous_output_and_success_replaces_it(tmp_path):
    raw, out = write_100k(tmp_path / "raw"), tmp_path / "out"
    convert([raw], out, max_history=2)
    (raw / "u.data").write_bytes(b"garbage\n")
    with pytest.raises(InputError):
        convert([raw], out, max_history=5)
    assert FeatureSpec.load(out / "feature_spec.json").max_history == 2  # untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left over
    write_100k(raw)
    convert([raw], out, max_history=5)
    assert FeatureSpec.load(out / "feature_spec.json").max_history == 5


def test_refuses_to_replace_a_folder_that_is_not_a_conversion(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an earlier `rocket-ctr convert` output"):
        convert([write_100k(tmp_path / "raw")], tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
