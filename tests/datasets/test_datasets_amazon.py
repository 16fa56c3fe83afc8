"""`rocket-ctr convert amazon`: DIN-style pairs from 5-core reviews JSON + dict-literal metadata."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from rocket_ctr.datasets.amazon import convert, sample_negatives
from rocket_ctr.datasets.common import stable_id
from rocket_ctr.errors import InputError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.pipelines import cli

# (reviewerID, asin, unixReviewTime), deliberately not in time order.
REVIEWS = [("A", "i1", 100), ("A", "i2", 300), ("B", "i2", 50), ("A", "i3", 200), ("A", "i4", 400),
           ("B", "i5", 60), ("C", "i6", 10)]
META = [
    # the 2014 dump: Python dict literals with single quotes; leaf of the *last* category path
    "{'asin': 'i1', 'title': 'Cable', 'categories': [['Electronics', 'Computers', 'Cables'], "
    "['Electronics', 'Audio']]}",
    "{'asin': 'i2', 'salesRank': {'Electronics': 5}, 'categories': [['Electronics', 'Camera & Photo']]}",
    '{"asin": "i3", "categories": [["Electronics", "Audio"]]}',  # strict JSON is accepted too
    "{'asin': 'i4', 'categories': [['Electronics', 'Cables']]}",
    "{'asin': 'i5', 'categories': [['Books']]}",
    "{'asin': 'i6', 'categories': []}",  # no category
    "{'asin': 'unreviewed', 'title': 'never parsed' ",  # broken, but nobody reviewed it: skipped
]
CATE = {"i1": "Audio", "i2": "Camera & Photo", "i3": "Audio", "i4": "Cables", "i5": "Books"}


def write_raw(folder, reviews=REVIEWS, meta=META, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps({"reviewerID": u, "asin": a, "reviewerName": "X", "helpful": [0, 0],
                               "reviewText": "fine", "overall": 5.0, "summary": "ok",
                               "unixReviewTime": t, "reviewTime": "01 1, 2014"}) + "\n" for u, a, t in reviews)
    reviews_path = folder / ("reviews_Electronics_5.json.gz" if gz else "reviews_Electronics_5.json")
    if gz:
        with gzip.open(reviews_path, "wt") as handle:
            handle.write(text)
    else:
        reviews_path.write_text(text)
    meta_path = folder / "meta_Electronics.json"
    meta_path.write_text("\n".join(meta) + "\n")
    return reviews_path, meta_path


def read(out, split):
    return pq.read_table(out / split).to_pylist()


def test_pairs_histories_negatives_and_split(tmp_path):
    reviews, meta = write_raw(tmp_path / "raw")
    out = tmp_path / "out"
    summary = convert([meta, reviews], out, max_history=2, seed=7)  # any order: meta* is the metadata
    ids = {a: stable_id(a) for a in ("i1", "i2", "i3", "i4", "i5", "i6")}
    reviewed = {stable_id("A"): {ids[a] for a in ("i1", "i2", "i3", "i4")},
                stable_id("B"): {ids["i2"], ids["i5"]}}
    train, test = read(out, "train"), read(out, "test")
    positives = sorted((r["user_id"], r["ts"], r["item_id"], tuple(r["hist_item_id"]))
                       for r in train if r["label"] == 1)
    # A's reviews by time: i1, i3, i2, i4 -> positives i3 [i1], i2 [i1, i3]; i4 (last) goes to test
    assert positives == [(stable_id("A"), 200, ids["i3"], (ids["i1"],)),
                         (stable_id("A"), 300, ids["i2"], (ids["i1"], ids["i3"]))]
    test_pos = sorted((r["user_id"], r["item_id"], tuple(r["hist_item_id"])) for r in test if r["label"] == 1)
    assert test_pos == sorted([(stable_id("A"), ids["i4"], (ids["i3"], ids["i2"])),  # newest 2, oldest first
                               (stable_id("B"), ids["i5"], (ids["i2"],))])
    for rows in (train, test):  # every positive has one negative with the same user, time and history
        assert sorted((r["user_id"], r["ts"], tuple(r["hist_item_id"])) for r in rows if r["label"] == 0) == \
            sorted((r["user_id"], r["ts"], tuple(r["hist_item_id"])) for r in rows if r["label"] == 1)
        for r in rows:
            if r["label"] == 0:
                assert r["item_id"] in set(ids.values()) and r["item_id"] not in reviewed[r["user_id"]]
    every = {r["item_id"]: r["cate_id"] for r in train + test}
    every.update({h: c for r in train + test for h, c in zip(r["hist_item_id"], r["hist_cate_id"])})
    for asin, cate in CATE.items():
        if ids[asin] in every:
            assert every[ids[asin]] == stable_id(cate)
    assert every.get(ids["i6"], 0) == 0  # item without categories
    assert all(r["user_id"] != stable_id("C") for r in train + test)  # a single review: no pair
    assert summary["splits"]["train"] == {"rows": 4, "ctr": 0.5, "files": 1}
    assert summary["splits"]["test"]["rows"] == 4 and summary["items_without_category"] == 1

    spec = FeatureSpec.load(out / "feature_spec.json")
    sequences = [(f.name, f.history) for f in spec.sequence_features]
    assert sequences == [("item_id", "hist_item_id"), ("cate_id", "hist_cate_id")]
    assert spec.user_features == () and spec.max_history == 2
    assert len(spec.feature("item_id").vocabulary) == 6


def test_seed_determines_negatives(tmp_path):
    reviews, meta = write_raw(tmp_path / "raw", gz=False)
    for name in ("a", "b"):
        convert([reviews, meta], tmp_path / name, seed=1)
    assert pq.read_table(tmp_path / "a" / "train").equals(pq.read_table(tmp_path / "b" / "train"))


def test_sample_negatives_avoids_reviewed_items_even_when_nearly_all_are():
    n_items = 20
    users = np.repeat(np.arange(3), 200)
    reviewed = np.unique(np.concatenate([0 * n_items + np.arange(19),  # user 0: all but item 19
                                         1 * n_items + np.arange(0, 20, 2), [2 * n_items + 5]]))
    neg = sample_negatives(np.random.default_rng(0), users, reviewed, n_items)
    assert set(neg[users == 0]) == {19}
    assert not set(neg[users == 1]) & set(range(0, 20, 2)) and 5 not in set(neg[users == 2])
    with pytest.raises(InputError, match="reviewed all 20 items"):
        sample_negatives(np.random.default_rng(0), np.zeros(3, np.int64), np.arange(20), n_items)


@pytest.mark.parametrize("which, content, message", [
    ("reviews", b'{"reviewerID": "A", "asin": "i1", "unixReviewTime": 1}\n{"reviewerID": "A", "asin\n',
     "line 2: not JSON"),
    ("reviews", b'{"reviewerID": "A", "asin": "i1"}\n', "line 1: no unixReviewTime"),
    ("reviews", b'{"reviewerID": "A", "asin": "i1", "unixReviewTime": 99999999999999999999999}\n',
     "line 1: unixReviewTime is 99999999999999999999999, expected an integer"),
    ("reviews", b'{"reviewerID": "A", "asin": "i1", "unixReviewTime": 1}\n{"reviewerID": "\xff"}\n',
     "line 2: not utf-8 text"),
    ("reviews", b'reviewerID\tasin\tunixReviewTime\nA\ti1\t1\n', "line 1: not JSON"),
    ("meta", b"{'asin': 'i1', 'categories': [['Audio']]\n", "line 1: neither JSON nor a Python dict literal"),
    ("meta", b"__import__('os').system('true')\n", "line 1: neither JSON nor a Python dict literal"),
])
def test_bad_input_names_file_and_line(tmp_path, which, content, message):
    reviews, meta = write_raw(tmp_path / "raw", gz=False)
    target = reviews if which == "reviews" else meta
    target.write_bytes(content)
    with pytest.raises(InputError) as err:
        convert([reviews, meta], tmp_path / "out")
    assert str(target) in str(err.value) and message in str(err.value)
    assert not (tmp_path / "out").exists()


def test_missing_files(tmp_path, capsys):
    reviews, meta = write_raw(tmp_path / "raw")
    with pytest.raises(InputError, match="expected two files, the reviews .* and the metadata"):
        convert([reviews], tmp_path / "out")
    code = cli.main(["convert", "amazon", str(reviews), str(tmp_path / "meta_gone.json"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "meta_gone.json: no such file" in err and "Traceback" not in err
