"""Taobao display-ad click log (Tianchi dataset 56) -> DIN click log (``rocket-ctr convert taobao-ad``).

Each impression of ``raw_sample.csv`` is one row: ``label = clk``; the ad's category, brand,
campaign, customer and price come from ``ad_feature.csv``; the user's profile columns from
``user_profile.csv``; the history is the user's behaviours (``behavior_log.csv``: category,
brand, behaviour type) strictly before the impression's second, newest ``max_history`` kept.
The spec declares two behaviour sequences, each with its own attention: categories (with the
behaviour type of each step as a sequence-only side column) and brands; the ``btag`` column
(1 = pv, what an impression is) stays in the log but is no feature.
Behaviours of the impression's own second are left out: they may be the response to it (leakage).
Impressions on the last day (China Standard Time, UTC+8) go to test, earlier ones to train, as
BARS' TaobaoAd_x1 splits 2017-05-06..12 / 2017-05-13. Impressions whose ad or user has no
feature row are kept with 0 in those columns (a production ranker serves them too).

Memory bound (the behaviour log is ~23 GB of CSV): impressions and behaviours are streamed and
hash-partitioned by user into K on-disk Arrow bucket files (K = CSV bytes / 128 MiB, at most
256; :mod:`rocket_ctr.datasets.taobao_buckets`), then one bucket at a time is sorted and joined.
Peak memory is about 1 GB: one bucket (~4M behaviours, sorted with their keys), ``CHUNK_ROWS``
rows of history lists, the ad and profile tables (~0.1 GB) and the CSV reader's read-ahead
(~80 MB). Scratch disk, beside the output folder, is up to ~60% of the CSV size (LZ4-compressed).
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa

from rocket_ctr.datasets import common, output
from rocket_ctr.datasets.taobao_buckets import (
    BEHAVIOR_LOG,
    BEHAVIOUR_BUCKET,
    BTAGS,
    I64,
    RAW_SAMPLE,
    SAMPLE_BUCKET,
    Buckets,
    bucket_count,
    partition_behaviours,
    partition_samples,
)
from rocket_ctr.errors import InputError

AD_FEATURE = {"adgroup_id": I64, "cate_id": I64, "campaign_id": I64, "customer": I64, "brand": I64,
              "price": pa.float64()}
USER_PROFILE = {"userid": I64, "cms_segid": I64, "cms_group_id": I64, "final_gender_code": I64, "age_level": I64,
                "pvalue_level": I64, "shopping_level": I64, "occupation": I64, "new_user_class_level": I64}
FILES = {"raw_sample": RAW_SAMPLE, "ad_feature": AD_FEATURE, "user_profile": USER_PROFILE,
         "behavior_log": BEHAVIOR_LOG}
PROFILE_COLUMNS = tuple(USER_PROFILE)[1:]
AD_COLUMNS = ("cate_id", "campaign_id", "customer", "brand")
PRICE_BUCKETS = 20  # equal-mass price buckets of the spec's numeric price feature
CANDIDATE_BTAG = 1  # an impression's own behaviour type: "pv"
CST = 8 * 3600  # the log's days are China Standard Time days
CHUNK_ROWS = 32_768  # impressions joined and written at a time (x max_history x 3 history values)

SCHEMA = pa.schema(
    [("user_id", I64), ("adgroup_id", I64), ("cate_id", I64), ("brand", I64), ("btag", I64),
     ("campaign_id", I64), ("customer", I64), ("pid", pa.string()), ("price", pa.float64()),
     ("hist_cate_id", pa.list_(I64)), ("hist_brand", pa.list_(I64)), ("hist_btag", pa.list_(I64))]
    + [(c, I64) for c in PROFILE_COLUMNS] + [("ts", I64), ("label", I64)])


def identify_files(paths: Sequence[str | Path]) -> dict[str, Path]:
    """Finds raw_sample, ad_feature, user_profile and behavior_log (``.csv`` or ``.csv.gz``) by name."""
    by_name = {p.name: p for p in common.expand_inputs(paths)}
    found, missing = {}, []
    for name in FILES:
        path = by_name.get(f"{name}.csv") or by_name.get(f"{name}.csv.gz")
        if path is None:
            packed = f"{name}.csv.tar.gz" in by_name
            hint = f" ({name}.csv.tar.gz must be extracted first: tar -xzf)" if packed else ""
            missing.append(f"{name}.csv{hint}")
        found[name] = path
    if missing:
        raise InputError(f"taobao-ad: missing {', '.join(missing)}; expected raw_sample.csv, ad_feature.csv, "
                         f"user_profile.csv and behavior_log.csv (or their folder)")
    return found


def _read_whole(path: Path, columns: dict) -> dict[str, np.ndarray]:
    """A small CSV as numpy columns sorted by its first (key) column; empty ints become 0."""
    batches = list(common.iter_csv(path, columns))
    table = pa.Table.from_batches(batches, schema=pa.schema(columns.items()))
    key = next(iter(columns))
    if table.num_rows == 0:
        raise InputError(f"{path}: no rows after the header")
    if table.column(key).null_count:
        raise InputError(f"{path}: empty {key} values; every row needs one")
    out = {}
    for name, kind in columns.items():
        column = table.column(name)
        out[name] = (column.to_numpy() if kind == pa.float64()
                     else column.fill_null(0).to_numpy().astype(np.int64, copy=False))
    order = np.argsort(out[key], kind="stable")
    return {name: values[order] for name, values in out.items()}


def bucket_rows(samples: dict, behaviours: dict, ads: dict, profiles: dict, *, max_history: int,
                test_start: int, rng: np.random.Generator, counts: dict):
    """Yields ``(split, table)`` chunks of one bucket's rows: impressions + ads, profile, history.

    Args:
        samples, behaviours: the bucket's impressions and behaviours (numpy columns).
        ads, profiles: the ad_feature and user_profile columns, sorted by their key.
        test_start: first second of the test day; rng shuffles the train rows.
        counts: accumulates rows whose ad / user has no feature row.
    """
    s, b = samples, behaviours  # sorted in place, so the unsorted columns are freed
    # key = user rank << 32 | ts (ts < 2**32 is checked): one sort orders behaviours by user and
    # time (stable: ties keep log order) and one searchsorted finds each impression's "before ts".
    ranks = common.distinct(np.concatenate([s["user"], b["user"]]))
    s_key = (np.searchsorted(ranks, s["user"]) << 32) | s["ts"]
    b_key = (np.searchsorted(ranks, b["user"]) << 32) | b["ts"]
    s_order, b_order = np.lexsort((s["adgroup_id"], s_key)), np.argsort(b_key, kind="stable")
    for columns, order in ((s, s_order), (b, b_order)):
        for name in columns:
            columns[name] = columns[name][order]
    s_key, b_key = s_key[s_order], b_key[b_order]
    starts = np.searchsorted(b_key, s_key >> 32 << 32, side="left")  # the user's first behaviour
    ends = np.searchsorted(b_key, s_key, side="left")  # the first at or after the impression
    history = {"hist_cate_id": b["cate"], "hist_brand": b["brand"], "hist_btag": b["btag"]}
    ad_row, has_ad = common.sorted_lookup(s["adgroup_id"], ads["adgroup_id"])
    user_row, has_profile = common.sorted_lookup(s["user"], profiles["userid"])
    counts["rows_without_ad_feature"] += int((~has_ad).sum())
    counts["rows_without_user_profile"] += int((~has_profile).sum())
    is_test = s["ts"] >= test_start
    splits = (("train", rng.permutation(np.flatnonzero(~is_test))), ("test", np.flatnonzero(is_test)))
    for split, rows in splits:
        for first in range(0, len(rows), CHUNK_ROWS):  # bounds the history lists held at once
            r = rows[first:first + CHUNK_ROWS]
            ad, found = ad_row[r], has_ad[r]
            columns = {"user_id": s["user"][r], "adgroup_id": s["adgroup_id"][r]}
            columns.update({name: np.where(found, ads[name][ad], 0) for name in AD_COLUMNS})
            columns.update(btag=np.full(len(r), CANDIDATE_BTAG), pid=s["pid"][r],
                           price=pa.array(ads["price"][ad], mask=~found | np.isnan(ads["price"][ad])))
            columns.update(common.history_lists(history, starts[r], ends[r], max_history))
            profile, known = user_row[r], has_profile[r]
            columns.update({c: np.where(known, profiles[c][profile], 0) for c in PROFILE_COLUMNS})
            columns.update(ts=s["ts"][r], label=s["clk"][r])
            yield split, pa.table({name: columns[name] for name in SCHEMA.names}, schema=SCHEMA)


def convert(paths: Sequence[str | Path], out: str | Path, *, max_history: int = 50, seed: int = 0,
            progress: Callable[[str], None] | None = None) -> dict:
    """Converts the Tianchi Taobao display-ad files into ``out`` (train/, test/, spec, summary).

    Args:
        paths: raw_sample.csv, ad_feature.csv, user_profile.csv, behavior_log.csv, or their folder.
        out: output folder (replaced atomically on success).
        max_history: longest history kept (newest steps).
        seed: train-row shuffle seed (rows are shuffled within each user bucket).
        progress: called with one-line progress messages.
    Returns:
        The summary written to ``convert_summary.json``.
    """
    say = progress or (lambda message: None)
    files = identify_files(paths)
    output.check_out_dir(Path(out))
    say(f"reading {files['ad_feature']} and {files['user_profile']}")
    ads = _read_whole(files["ad_feature"], AD_FEATURE)
    profiles = _read_whole(files["user_profile"], USER_PROFILE)
    for name in ("raw_sample", "behavior_log"):
        if not files[name].is_file():
            raise InputError(f"{files[name]}: no such file")
    size = files["raw_sample"].stat().st_size + files["behavior_log"].stat().st_size
    k = bucket_count(size)
    with output.staged_output(Path(out)) as stage:
        scratch = stage / "_buckets"
        say(f"partitioning {files['raw_sample']} into {k} user buckets")
        samples = Buckets(scratch / "samples", k, SAMPLE_BUCKET)
        users, latest = partition_samples(files["raw_sample"], samples)
        samples.close()
        say(f"partitioning {files['behavior_log']} (behaviours of {len(users):,} sampled users)")
        behaviours = Buckets(scratch / "behaviours", k, BEHAVIOUR_BUCKET)
        kept = partition_behaviours(files["behavior_log"], behaviours, users, latest, say)
        behaviours.close()

        test_start = (latest + CST) // 86_400 * 86_400 - CST
        writers = {split: output.SplitWriter(stage / split) for split in ("train", "test")}
        # distinct ids per feature, for the spec's table sizes
        seen = {"cate_id": [ads["cate_id"]], "brand": [ads["brand"]], "adgroup_id": [ads["adgroup_id"]],
                "pid": []}
        counts = {"rows_without_ad_feature": 0, "rows_without_user_profile": 0}
        for bucket in range(k):
            say(f"joining bucket {bucket + 1}/{k}")
            bucket_samples, bucket_behaviours = samples.read(bucket), behaviours.read(bucket)
            for name, values in (("cate_id", bucket_behaviours["cate"]), ("brand", bucket_behaviours["brand"]),
                                 ("adgroup_id", bucket_samples["adgroup_id"]), ("pid", bucket_samples["pid"])):
                seen[name] = [common.distinct(np.concatenate(seen[name] + [common.distinct(values)]))]
            for split, table in bucket_rows(bucket_samples, bucket_behaviours, ads, profiles,
                                            max_history=max_history, test_start=test_start,
                                            rng=np.random.default_rng([seed, bucket]), counts=counts):
                writers[split].write(table)
        splits = {split: writer.close(SCHEMA) for split, writer in writers.items()}
        output.write_spec(stage / "feature_spec.json", **_spec(ads, profiles, seen, max_history))
        summary = {
            "dataset": "taobao-ad", "sources": [str(p.resolve()) for p in files.values()], "splits": splits,
            "users": len(users), "behaviours_kept": kept, "buckets": k, **counts,
            "test_day_start_ts": test_start, "max_history": max_history, "seed": seed,
            "label": "clk", "test": "impressions of the last day (UTC+8)",
        }
        output.write_summary(stage / output.SUMMARY, summary)
        shutil.rmtree(scratch)
    return summary


def _spec(ads: dict, profiles: dict, seen: dict, max_history: int) -> dict:
    """FeatureSpec arguments: two behaviour sequences, each with its own attention (the category
    sequence with the behaviour type as a sequence-only side column; the brand sequence), ad
    columns, user profile columns, the price."""
    seen = {name: np.concatenate(values) if values else np.zeros(0, object) for name, values in seen.items()}
    feature = common.id_feature
    return dict(
        sequence_features=[feature("cate_id", seen["cate_id"], history="hist_cate_id"),
                           feature("brand", seen["brand"], history="hist_brand")],
        sequence_groups=[{"name": "cate", "features": ["cate_id"],
                          "side_features": [{"name": "hist_btag", "vocabulary": list(range(1, len(BTAGS) + 1))}]},
                         {"name": "brand", "features": ["brand"]}],
        item_features=[feature("adgroup_id", seen["adgroup_id"]), feature("campaign_id", ads["campaign_id"]),
                       feature("customer", ads["customer"]), feature("pid", seen["pid"], dtype="string")],
        user_features=[feature(c, profiles[c]) for c in PROFILE_COLUMNS],
        numeric_features=_price_features(ads["price"]),
        max_history=max_history,
    )


def _price_features(prices: np.ndarray) -> list:
    """The ad's price as a numeric feature: bucketised at the ads' price quantiles (20 equal-mass
    buckets; a missing price reads as the median). None when no ad has a price."""
    from rocket_ctr.features.fit import quantile_boundaries

    prices = prices[np.isfinite(prices)]
    if not len(prices):
        return []
    boundaries = quantile_boundaries(prices, PRICE_BUCKETS) or (float(prices[0]),)
    return [{"name": "price", "boundaries": list(boundaries), "default": float(np.median(prices))}]
