"""Synthetic click-log generator: schema, determinism, time split, realism and learnable structure."""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from rocket_ctr.datagen.synthetic import GeneratorConfig, feature_spec, generate, hashed_ids
from rocket_ctr.errors import InputError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.pipelines.cli import main

EXPECTED = pa.schema([
    ("user_id", pa.int64()), ("item_id", pa.int64()), ("cate_id", pa.int64()),
    ("hist_item_id", pa.list_(pa.int64())), ("hist_cate_id", pa.list_(pa.int64())),
    ("user_gender", pa.string()), ("user_occupation", pa.string()),
    ("ts", pa.int64()), ("label", pa.int64()), ("click_prob", pa.float64()),
])
SMALL = dict(n_users=2_000, n_items=3_000, n_cates=50)


def read(out, split):
    return ds.dataset(str(out / split), format="parquet").to_table()


def auc(score, label):
    """Rank-sum AUC (ties get average ranks)."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, weights=ranks) / counts)[inverse]
    pos = label == 1
    n_pos, n_neg = pos.sum(), (~pos).sum()
    return (ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = generate(out, n_rows=50_000, with_oracle=True, seed=0)
    table = pa.concat_tables([read(out, "train"), read(out, "test")])
    return out, summary, table


def test_schema_and_sidecar_files(log):
    out, summary, table = log
    for split in ("train", "test"):
        assert read(out, split).schema.equals(EXPECTED)
    assert set(table["user_gender"].to_pylist()) <= {"F", "M", "U"}
    assert set(np.unique(table["label"].to_numpy())) == {0, 1}
    params = json.loads((out / "params.json").read_text())
    assert params["complete"] and params["config"]["n_rows"] == 50_000 and params["rows"] == summary["rows"]
    assert summary["rows"] == {"train": 45_000, "test": 5_000}
    spec = FeatureSpec.load(out / "feature_spec.json")
    assert spec.max_history == 50 and spec.timestamp == "ts"
    assert spec.feature("hist_item_id").buckets >= 2 * GeneratorConfig().n_items
    assert set(spec.columns) <= set(EXPECTED.names)


@pytest.mark.parametrize("max_history", [1, 5, 20, 50, 200])
def test_generated_feature_spec_round_trips(max_history):
    cfg = GeneratorConfig(max_history=max_history, n_items=1_000, n_cates=10)
    spec = FeatureSpec.from_dict(feature_spec(cfg).to_dict())
    assert spec.max_history == max_history and spec.history_buckets[-1] == max_history
    assert spec.feature("item_id").buckets == 2_000 and spec.feature("cate_id").buckets == 20
    assert spec.feature("user_gender").dtype == spec.feature("user_occupation").dtype == "string"


def test_time_split_and_histories(log):
    out, _, _ = log
    train, test = read(out, "train"), read(out, "test")
    assert pc.max(train["ts"]).as_py() <= pc.min(test["ts"]).as_py()
    lengths = pc.list_value_length(train["hist_item_id"]).to_numpy()
    assert np.array_equal(lengths, pc.list_value_length(train["hist_cate_id"]).to_numpy())
    assert lengths.min() == 0 and lengths.max() == 50
    assert 0.01 < (lengths == 0).mean() < 0.1 and 0.002 < (lengths == 50).mean() < 0.05
    assert 6 <= lengths.mean() <= 14 and np.median(lengths) < lengths.mean()  # mostly short


def test_ids_are_sparse_and_huge(log):
    _, _, table = log
    for column in ("user_id", "item_id", "cate_id"):
        ids = np.unique(table[column].to_numpy())
        assert ids.min() >= 0 and ids.max() > 2**40
        assert ids.max() - ids.min() > 1000 * len(ids)  # not a dense 0..n range
    ids = hashed_ids(10_000, seed=0, namespace=1)
    assert len(np.unique(ids)) == 10_000 and ids.min() >= 0 and ids.max() < 2**62


def test_realised_ctr_near_base(log, tmp_path):
    _, summary, table = log
    assert abs(summary["ctr"]["all"] - 0.05) < 0.02
    assert abs(table["click_prob"].to_numpy().mean() - 0.05) < 0.01
    high = generate(tmp_path, n_rows=50_000, base_ctr=0.2, seed=1, **SMALL)
    assert abs(high["ctr"]["all"] - 0.2) < 0.02


def test_click_structure_is_learnable(log):
    _, _, table = log
    prob, label = table["click_prob"].to_numpy(), table["label"].to_numpy()
    assert auc(prob, label) > 0.7
    # the candidate's category among the last 3 history steps (newest last) lifts the click prob
    hist = table["hist_cate_id"].combine_chunks()
    offsets, values = hist.offsets.to_numpy(), hist.values.to_numpy()
    row = np.repeat(np.arange(len(table)), np.diff(offsets))
    age = offsets[row + 1] - 1 - np.arange(len(values))
    cate = table["cate_id"].to_numpy()
    recent = np.zeros(len(table), bool)
    recent[row[(age < 3) & (values == cate[row])]] = True
    older = np.zeros(len(table), bool)
    older[row[(age >= 3) & (values == cate[row])]] = True
    assert 0.05 < recent.mean() < 0.8
    assert prob[recent].mean() > 2 * prob[~recent].mean()
    assert label[recent].mean() > 2 * label[~recent].mean()
    assert prob[recent].mean() > 1.5 * prob[older & ~recent].mean()  # recency matters, not just presence


def test_cross_term_changes_only_the_click_probability(tmp_path):
    generate(tmp_path / "off", n_rows=20_000, seed=4, with_oracle=True, **SMALL)
    generate(tmp_path / "on", n_rows=20_000, seed=4, with_oracle=True, cross_strength=1.5, **SMALL)
    off, on = read(tmp_path / "off", "train"), read(tmp_path / "on", "train")
    features = [c for c in off.column_names if c not in ("label", "click_prob")]
    assert on.select(features).equals(off.select(features))  # same world, impressions and histories
    prob_off, prob_on = off["click_prob"].to_numpy(), on["click_prob"].to_numpy()
    assert np.corrcoef(prob_off, prob_on)[0, 1] < 0.95
    # one more signal with its own strength: the oracle separates clicks better
    assert auc(prob_on, on["label"].to_numpy()) > auc(prob_off, off["label"].to_numpy())


def test_deterministic_by_seed(tmp_path):
    a = generate(tmp_path / "a", n_rows=4_000, seed=7, **SMALL)
    b = generate(tmp_path / "b", n_rows=4_000, seed=7, **SMALL)
    c = generate(tmp_path / "c", n_rows=4_000, seed=8, **SMALL)
    ta, tb, tc = (read(tmp_path / x, "train") for x in "abc")
    assert ta.equals(tb) and a["ctr"] == b["ctr"]
    assert not ta.equals(tc) and c["rows"] == a["rows"]
    for name in a["train_files"]:  # byte-identical files
        other = name.replace(str(tmp_path / "a"), str(tmp_path / "b"))
        assert open(name, "rb").read() == open(other, "rb").read()


def test_files_and_row_groups(tmp_path):
    summary = generate(tmp_path, n_rows=5_000, test_fraction=0.2, rows_per_file=1_500,
                       row_group_size=400, **SMALL)
    assert [f.rsplit("/", 1)[1] for f in summary["train_files"]] == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    sizes = [pq.ParquetFile(f).metadata.num_rows for f in summary["train_files"]]
    assert sizes == [1_500, 1_500, 1_000]
    meta = pq.ParquetFile(summary["train_files"][0]).metadata
    assert meta.num_row_groups == 4 and meta.row_group(0).num_rows == 400
    assert summary["rows"] == {"train": 4_000, "test": 1_000}
    # the data does not depend on the file layout
    generate(tmp_path / "one", n_rows=5_000, test_fraction=0.2, **SMALL)
    assert read(tmp_path, "train").equals(read(tmp_path / "one", "train"))
    # a rerun with fewer rows replaces the old parts instead of mixing with them
    again = generate(tmp_path, n_rows=2_000, **SMALL)
    assert read(tmp_path, "train").num_rows + read(tmp_path, "test").num_rows == 2_000
    assert len(again["train_files"]) == 1


def test_refuses_foreign_parquet_parts(tmp_path):
    foreign = tmp_path / "train" / "part-00000.parquet"
    foreign.parent.mkdir()
    pq.write_table(pa.table({"x": [1]}), foreign)
    with pytest.raises(InputError, match="did not write"):
        generate(tmp_path, n_rows=100, **SMALL)
    assert pq.read_table(foreign).column_names == ["x"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_rows=0), "n_rows"), (dict(base_ctr=1.0), "base_ctr"), (dict(base_ctr=0), "base_ctr"),
    (dict(test_fraction=1.0), "test_fraction"), (dict(seed=-1), "seed"), (dict(n_rows=2.5), "n_rows"),
    (dict(rows_per_file=0), "rows_per_file"), (dict(nonsense=1), "nonsense"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        generate(tmp_path, **kwargs)
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        generate(afile, n_rows=10)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["generate", "--out", str(out), "--rows", "3000", "--users", "500", "--items", "800",
                 "--cates", "40", "--max-history", "20", "--seed", "3", "--with-oracle"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "train") in printed and "params.json" in printed and "CTR" in printed
    table = read(out, "train")
    assert "click_prob" in table.column_names
    assert pc.max(pc.list_value_length(table["hist_item_id"])).as_py() <= 20
    assert main(["generate", "--out", str(out), "--rows", "0"]) == 2
    assert "--rows" in capsys.readouterr().err
    assert main(["generate", "--out", str(out), "--base-ctr", "1.5"]) == 2
    assert "--base-ctr must be in (0, 1)" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["generate", "--out", str(tmp_path / "afile"), "--rows", "10"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_split_by_day_writes_one_folder_per_day_of_the_span(tmp_path, capsys):
    summary = generate(tmp_path, n_rows=3_000, days=3, seed=1, **SMALL)
    assert summary["splits"] == ("day-01", "day-02", "day-03") and sum(summary["rows"].values()) == 3_000
    start = GeneratorConfig().start_ts
    for d, split in enumerate(summary["splits"]):
        ts = pq.read_table(tmp_path / split, columns=["ts"])["ts"].to_numpy()
        assert len(ts) > 900 and ((ts - start) // 86_400 == d).all()
    assert not (tmp_path / "train").exists() and json.loads((tmp_path / "params.json").read_text())["days"] == 3
    assert main(["generate", "--out", str(tmp_path / "cli"), "--rows", "900", "--days", "-1"]) == 2
    assert "--days must be an integer >= 0" in capsys.readouterr().err


def test_brand_sequence_is_a_second_sequence_group_with_its_own_signal(tmp_path, capsys):
    import tensorflow as tf

    from rocket_ctr.features.id_mapping import IdMapper
    from rocket_ctr.io.reader import ClickLogReader
    from rocket_ctr.model.rocket import RocketModel
    from rocket_ctr.train.evaluation import model_inputs

    generate(tmp_path / "off", n_rows=20_000, seed=4, with_oracle=True, **SMALL)
    assert main(["generate", "--out", str(tmp_path / "on"), "--rows", "20000", "--users", "2000", "--items", "3000",
                 "--cates", "50", "--seed", "4", "--with-oracle", "--brand-strength", "1.5", "--brands", "40"]) == 0
    off, on = read(tmp_path / "off", "train"), read(tmp_path / "on", "train")
    assert on.column_names[-3:] == ["brand_id", "hist_brand_id", "click_prob"]
    features = [c for c in off.column_names if c not in ("label", "click_prob")]
    assert on.select(features).equals(off.select(features))  # every other column as without it
    assert len(set(on["brand_id"].to_pylist())) <= 40
    prob = on["click_prob"].to_numpy()
    # the signal: candidates whose brand the user followed recently are clicked more
    brands, hist = on["brand_id"].to_pylist(), on["hist_brand_id"].to_pylist()
    followed = np.array([b in h[-3:] for b, h in zip(brands, hist)])
    assert followed.mean() > 0.02 and prob[followed].mean() > 1.5 * prob[~followed].mean()
    spec = FeatureSpec.load(tmp_path / "on" / "feature_spec.json")
    assert [g.name for g in spec.groups] == ["history", "brand"] and spec.length_columns[1] == "hist_len_brand"
    # the model reads it: one more extractor per tower, over its own lengths
    features_, label = next(iter(ClickLogReader(tmp_path / "on" / "train", spec, batch_size=64)))
    rows = model_inputs(spec, IdMapper(spec))({k: tf.constant(v) for k, v in features_.items()}, tf.constant(label))[0]
    model = RocketModel(spec)
    logits = model(rows, training=False)
    assert logits["light"].shape == (64,) and hasattr(model, "booster_interest_brand")
