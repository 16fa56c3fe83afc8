"""`rocket-ctr convert taobao-ad`: the four Tianchi CSVs in their published format, hand-checked rows."""
from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from rocket_ctr.datasets import taobao, taobao_buckets
from rocket_ctr.datasets.taobao import convert
from rocket_ctr.errors import InputError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.pipelines import cli

T0 = 1494518400  # 2017-05-12 00:00 China Standard Time
T1 = T0 + 86_400  # 2017-05-13 00:00 CST: the last day -> test

RAW_SAMPLE = ["user,time_stamp,adgroup_id,pid,nonclk,clk",
              f"1,{T1 + 100},100,430548_1007,1,0",
              f"1,{T0 + 1000},100,430548_1007,1,0",
              f"2,{T0 + 2000},999,430539_1007,0,1",  # ad without an ad_feature row
              f"1,{T0 + 5000},101,430539_1007,0,1",
              f"2,{T1 + 50},101,430548_1007,1,0"]
AD_FEATURE = ["adgroup_id,cate_id,campaign_id,customer,brand,price",
              "100,7,1000,500,NULL,12.5",  # brand missing, as in the published file
              "101,9,1001,501,90,3.0"]
# the published header ends with a blank: "new_user_class_level "
USER_PROFILE = ["userid,cms_segid,cms_group_id,final_gender_code,age_level,pvalue_level,shopping_level,occupation,"
                "new_user_class_level ",
                "1,0,5,2,5,,3,0,2"]  # pvalue_level empty
BEHAVIOR_LOG = ["user,time_stamp,btag,cate,brand",
                f"1,{T0 + 3000},fav,9,90",
                f"1,{T0 + 500},pv,7,70",
                f"1,{T0 + 1000},cart,8,80",  # same second as an impression: not in that one's history
                f"1,{T1 + 200},buy,7,70",  # after every impression: dropped
                f"3,{T0},pv,1,1",  # user without impressions: dropped
                f"2,{T0 + 1500},pv,5,50"]


def write_raw(folder, **override):
    folder.mkdir(parents=True, exist_ok=True)
    files = {"raw_sample": RAW_SAMPLE, "ad_feature": AD_FEATURE, "user_profile": USER_PROFILE,
             "behavior_log": BEHAVIOR_LOG}
    for name, lines in files.items():
        content = override.get(name, ("\n".join(lines) + "\n").encode())
        (folder / f"{name}.csv").write_bytes(content)
    return folder


def by_key(rows):
    return {(r["user_id"], r["ts"]): r for r in rows}


@pytest.mark.parametrize("bucket_bytes", [1 << 30, 50])  # one bucket, and many
def test_rows_histories_profiles_and_time_split(tmp_path, monkeypatch, bucket_bytes):
    monkeypatch.setattr(taobao_buckets, "BUCKET_BYTES", bucket_bytes)
    out = tmp_path / "out"
    summary = convert([write_raw(tmp_path / "raw")], out, max_history=2, seed=0)
    assert (summary["buckets"] > 1) == (bucket_bytes == 50)
    train, test = by_key(pq.read_table(out / "train").to_pylist()), by_key(pq.read_table(out / "test").to_pylist())
    assert sorted(train) == [(1, T0 + 1000), (1, T0 + 5000), (2, T0 + 2000)]
    assert sorted(test) == [(1, T1 + 100), (2, T1 + 50)]

    first = train[(1, T0 + 1000)]
    assert (first["hist_cate_id"], first["hist_brand"], first["hist_btag"]) == ([7], [70], [1])
    late = train[(1, T0 + 5000)]  # newest 2 of pv(7), cart(8), fav(9), oldest -> newest
    assert [late[c] for c in ("hist_cate_id", "hist_brand", "hist_btag", "label")] == [[8, 9], [80, 90], [2, 3], 1]
    assert test[(1, T1 + 100)]["hist_cate_id"] == [8, 9]
    assert first["adgroup_id"] == 100 and (first["cate_id"], first["brand"], first["campaign_id"]) == (7, 0, 1000)
    assert [first[c] for c in ("customer", "price", "pid", "btag", "label")] == [500, 12.5, "430548_1007", 1, 0]
    profile = ("cms_group_id", "final_gender_code", "pvalue_level", "new_user_class_level")
    assert [first[c] for c in profile] == [5, 2, 0, 2]
    orphan = train[(2, T0 + 2000)]  # unknown ad, user without profile: zeros, price null
    assert [orphan[c] for c in ("cate_id", "brand", "price", "age_level", "label")] == [0, 0, None, 0, 1]
    assert orphan["hist_cate_id"] == [5] and test[(2, T1 + 50)]["hist_brand"] == [50]
    assert summary["rows_without_ad_feature"] == 1 and summary["rows_without_user_profile"] == 2
    assert summary["splits"]["train"]["rows"] == 3 and math.isclose(summary["splits"]["train"]["ctr"], 2 / 3)
    assert summary["behaviours_kept"] == 4 and not (out / "_buckets").exists()

    spec = FeatureSpec.load(out / "feature_spec.json")
    assert [(f.name, f.history) for f in spec.sequence_features] == [("cate_id", "hist_cate_id"),
                                                                     ("brand", "hist_brand")]
    # two behaviour sequences, each with its own attention; the behaviour type a side column of the first
    assert [(g.name, g.features, g.side_columns) for g in spec.groups] == [
        ("cate", ("cate_id",), ("hist_btag",)), ("brand", ("brand",), ())]
    assert spec.feature("hist_btag").vocabulary == (1, 2, 3, 4)
    assert [f.name for f in spec.item_features] == ["adgroup_id", "campaign_id", "customer", "pid"]
    assert [f.name for f in spec.user_features] == list(taobao.PROFILE_COLUMNS)
    assert spec.feature("pid").dtype == "string" and spec.feature("brand").vocabulary == (0, 50, 70, 80, 90)


@pytest.mark.parametrize("name, content, message", [
    ("raw_sample", b"user\ttime_stamp\tadgroup_id\tpid\tnonclk\tclk\n1\t2\t3\tx\t1\t0\n",
     "line 1: not comma-separated; expected the header user,time_stamp,adgroup_id,pid,nonclk,clk"),
    ("raw_sample", f"user,time_stamp,adgroup_id,pid,nonclk,clk\n1,{T0},100,p,1,0\n1,{T0},100,p,1\n".encode(),
     "line 3: 5 field(s); expected 6 comma-separated columns user,time_stamp,adgroup_id,pid,nonclk,clk"),
    ("behavior_log", f"user,time_stamp,btag,cate,brand\n1,{T0},".encode() + b"p\xffv,7,70\n", "line 2: not UTF-8 text"),
    ("behavior_log", "user,time_stamp,btag,cate,brand\n".encode("utf-16"), "NUL bytes in the header"),
    ("behavior_log", f"user,time_stamp,btag,cate,brand\n1,{T0},click,7,70\n".encode(),
     "btag 'click' is not one of pv, cart, fav, buy"),
    ("ad_feature", b"adgroup_id,cate_id,campaign_id,customer,brand,price\n100,seven,1,1,1,1.0\n",
     "line 2: column 'cate_id' is 'seven', expected an integer"),
    ("user_profile", b"userid,cms_segid\n1,2\n", "expected the CSV header userid,cms_segid,cms_group_id"),
])
def test_bad_files_are_named_with_what_was_expected(tmp_path, name, content, message):
    raw = write_raw(tmp_path / "raw", **{name: content})
    with pytest.raises(InputError) as err:
        convert([raw], tmp_path / "out")
    assert str(raw / f"{name}.csv") in str(err.value) and message in str(err.value)
    assert not (tmp_path / "out").exists() and list(tmp_path.glob(".out*")) == []


def test_missing_file_cli_exit_code(tmp_path, capsys):
    raw = write_raw(tmp_path / "raw")
    (raw / "behavior_log.csv").unlink()
    code = cli.main(["convert", "taobao-ad", str(raw), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "taobao-ad: missing behavior_log.csv;" in err and "Traceback" not in err
    (raw / "behavior_log.csv.tar.gz").write_bytes(b"")  # the Tianchi download, not yet extracted
    with pytest.raises(InputError, match=r"behavior_log.csv \(behavior_log.csv.tar.gz must be extracted first"):
        convert([raw], tmp_path / "out")


def test_converted_log_trains_with_price_brand_and_behaviour_type(tmp_path):
    """The spec declares price (numeric: bucketised at the ads' price quantiles, missing -> median),
    the category sequence with the behaviour type as its side column and the brand sequence, each
    with its own attention; the tiny log trains and exports with them (issue 15's done-when)."""
    from rocket_ctr.config.schema import RocketConfig
    from rocket_ctr.export.writer import export_light
    from rocket_ctr.train.run_dir import restore_model
    from rocket_ctr.train.trainer import Trainer

    out = tmp_path / "out"
    convert([write_raw(tmp_path / "raw")], out, max_history=2, seed=0)
    spec = FeatureSpec.load(out / "feature_spec.json")
    (price,) = spec.numeric_features
    assert price.name == "price" and price.default == 7.75  # the median of the ads' prices 3.0 and 12.5
    assert 3.0 < price.boundaries[0] and price.boundaries[-1] < 12.5 and len(price.boundaries) == 19
    config = RocketConfig(epochs=1, batch_size=2, embedding_dim=4, attention_units=(8, 4), light_units=(8,),
                          booster_units=(8,), validation_fraction=0.0, jit_compile=False)
    Trainer(tmp_path / "run", out / "train", out / "test", config, spec, verbose=0).fit()
    model, restored, _ = restore_model(tmp_path / "run")
    assert restored == spec and model.bottom.extras is not None
    assert len(model.interests_of("light")) == len(model.interests_of("booster")) == 2
    assert list(model.bottom.side_embeddings) == ["hist_btag"]
    result = export_light(model, restored, tmp_path / "base", jit_compile=False, data=out / "test")
    assert result.max_abs_diff <= 1e-5
