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
256), then one bucket at a time is sorted and joined. Peak memory is about 1 GB: one bucket
(~4M behaviours, sorted with their keys), ``CHUNK_ROWS`` rows of history lists, the ad and
profile tables (~0.1 GB) and the CSV reader's read-ahead (~80 MB). Scratch disk, beside the
output folder, is up to ~60% of the CSV size (LZ4-compressed).
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rocket_ctr.datasets import common
from rocket_ctr.errors import InputError

I64 = pa.int64()
RAW_SAMPLE = {"user": I64, "time_stamp": I64, "adgroup_id": I64, "pid": pa.string(), "nonclk": I64, "clk": I64}
AD_FEATURE = {"adgroup_id": I64, "cate_id": I64, "campaign_id": I64, "customer": I64, "brand": I64,
              "price": pa.float64()}
USER_PROFILE = {"userid": I64, "cms_segid": I64, "cms_group_id": I64, "final_gender_code": I64, "age_level": I64,
                "pvalue_level": I64, "shopping_level": I64, "occupation": I64, "new_user_class_level": I64}
BEHAVIOR_LOG = {"user": I64, "time_stamp": I64, "btag": pa.string(), "cate": I64, "brand": I64}
FILES = {"raw_sample": RAW_SAMPLE, "ad_feature": AD_FEATURE, "user_profile": USER_PROFILE,
         "behavior_log": BEHAVIOR_LOG}
PROFILE_COLUMNS = tuple(USER_PROFILE)[1:]
AD_COLUMNS = ("cate_id", "campaign_id", "customer", "brand")
PRICE_BUCKETS = 20  # equal-mass price buckets of the spec's numeric price feature
BTAGS = ("pv", "cart", "fav", "buy")  # behaviour type codes 1..4; an impression counts as "pv" (1)
CANDIDATE_BTAG = 1
CST = 8 * 3600  # the log's days are China Standard Time days
CHUNK_ROWS = 32_768  # impressions joined and written at a time (x max_history x 3 history values)
FLUSH_ROWS = 2_000_000  # rows buffered before they are partitioned into the bucket files
BUCKET_BYTES = 128 << 20  # CSV bytes per on-disk bucket (sets the memory bound)
MAX_BUCKETS = 256  # open files during partitioning
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads consecutive user ids over buckets

SCHEMA = pa.schema(
    [("user_id", I64), ("adgroup_id", I64), ("cate_id", I64), ("brand", I64), ("btag", I64),
     ("campaign_id", I64), ("customer", I64), ("pid", pa.string()), ("price", pa.float64()),
     ("hist_cate_id", pa.list_(I64)), ("hist_brand", pa.list_(I64)), ("hist_btag", pa.list_(I64))]
    + [(c, I64) for c in PROFILE_COLUMNS] + [("ts", I64), ("label", I64)])
SAMPLE_BUCKET = pa.schema([("user", I64), ("ts", I64), ("adgroup_id", I64), ("pid", pa.string()), ("clk", I64)])
BEHAVIOUR_BUCKET = pa.schema([(c, I64) for c in ("user", "ts", "btag", "cate", "brand")])


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


def _join(keys: np.ndarray, table_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each key in the sorted ``table_keys`` (0 where absent) and a found-mask."""
    if not len(table_keys):
        return np.zeros(len(keys), np.int64), np.zeros(len(keys), bool)
    at = np.minimum(np.searchsorted(table_keys, keys), len(table_keys) - 1)
    return at, table_keys[at] == keys


def _membership(users: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A fast ``isin(x, users)``: a bitmap for ids below 2**26 (Taobao's are ~1M), else a binary search."""
    if len(users) and users.min() >= 0 and users.max() < 1 << 26:
        bitmap = np.zeros(int(users.max()) + 1, bool)
        bitmap[users] = True
        return lambda x: bitmap[np.minimum(np.maximum(x, 0), len(bitmap) - 1)] & (x >= 0) & (x < len(bitmap))
    return lambda x: _join(x, users)[1]


def _bucket_of(users: np.ndarray, k: int) -> np.ndarray:
    return ((users.astype(np.uint64) * _MIX) >> np.uint64(32)) % np.uint64(k)


class Buckets:
    """K compressed Arrow files that tables are hash-partitioned into by user.

    Added rows are buffered up to ``FLUSH_ROWS`` so each bucket gets sizeable record batches.
    """

    def __init__(self, folder: Path, k: int, schema: pa.Schema):
        self.folder, self.k, self.schema = folder, k, schema
        folder.mkdir(parents=True, exist_ok=True)
        options = pa.ipc.IpcWriteOptions(compression="lz4")
        self._writers = [pa.ipc.new_file(str(self._path(b)), schema, options=options) for b in range(k)]
        self._pending, self._pending_rows = [], 0

    def _path(self, b: int) -> Path:
        return self.folder / f"bucket-{b:04d}.arrow"

    def add(self, table: pa.Table) -> None:
        """Appends each row of ``table`` to the bucket of its ``user``."""
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        table = pa.concat_tables(self._pending).combine_chunks()
        self._pending, self._pending_rows = [], 0
        bucket = _bucket_of(table.column("user").to_numpy(), self.k)
        order = np.argsort(bucket, kind="stable")
        table = table.take(order)
        bounds = np.searchsorted(bucket[order], np.arange(self.k + 1))
        for b in np.flatnonzero(np.diff(bounds)):
            self._writers[b].write_table(table.slice(bounds[b], bounds[b + 1] - bounds[b]))

    def close(self) -> None:
        self._flush()
        for writer in self._writers:
            writer.close()

    def read(self, b: int) -> dict[str, np.ndarray]:
        """One bucket's rows as numpy columns (the file is deleted afterwards)."""
        path = self._path(b)
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
        path.unlink()
        return {name: table.column(name).to_numpy() for name in self.schema.names}


def _check_time(path: Path, ts: np.ndarray) -> None:
    if len(ts) and (ts.min() < 0 or ts.max() >= 1 << 32):
        raise InputError(f"{path}: time_stamp {ts.min() if ts.min() < 0 else ts.max()} is not Unix seconds")


def partition_samples(path: Path, buckets: Buckets) -> tuple[np.ndarray, int]:
    """Streams raw_sample.csv into ``buckets``.

    Returns:
        ``(sorted distinct users, latest time_stamp)``.
    """
    users, latest = [], -1
    for batch in common.iter_csv(path, RAW_SAMPLE):
        for name in ("user", "time_stamp", "adgroup_id", "clk"):
            if batch.column(name).null_count:
                raise InputError(f"{path}: empty {name} values; every impression needs one")
        clk = batch.column("clk").to_numpy()
        if len(clk) and (clk.min() < 0 or clk.max() > 1):
            raise InputError(f"{path}: clk must be 0 or 1, found {clk.max() if clk.max() > 1 else clk.min()}")
        ts = batch.column("time_stamp").to_numpy()
        _check_time(path, ts)
        latest = max(latest, int(ts.max()) if len(ts) else -1)
        users.append(common.distinct(batch.column("user").to_numpy()))
        pid = batch.column("pid").fill_null("")
        buckets.add(pa.table({"user": batch.column("user"), "ts": batch.column("time_stamp"),
                              "adgroup_id": batch.column("adgroup_id"), "pid": pid, "clk": batch.column("clk")}))
    if latest < 0:
        raise InputError(f"{path}: no impressions")
    return common.distinct(np.concatenate(users)), latest


def partition_behaviours(path: Path, buckets: Buckets, users: np.ndarray, before: int,
                         say: Callable[[str], None]) -> int:
    """Streams behavior_log.csv into ``buckets``, keeping behaviours of ``users`` before ``before``.

    Returns:
        The number of behaviours kept.
    """
    kept = read = 0
    codes = pa.array(BTAGS)
    member = _membership(users)
    for batch in common.iter_csv(path, BEHAVIOR_LOG):
        for name in ("user", "time_stamp", "btag"):
            if batch.column(name).null_count:
                raise InputError(f"{path}: empty {name} values; every behaviour needs one")
        btag = pc.index_in(batch.column("btag"), value_set=codes)
        if btag.null_count:
            bad = batch.column("btag").filter(pc.is_null(btag))[0].as_py()
            raise InputError(f"{path}: btag {bad!r} is not one of {', '.join(BTAGS)}")
        user, ts = batch.column("user").to_numpy(), batch.column("time_stamp").to_numpy()
        _check_time(path, ts)
        keep = member(user) & (ts < before)
        read += len(user)
        if keep.any():
            buckets.add(pa.table({"user": user[keep], "ts": ts[keep],
                                  "btag": btag.to_numpy().astype(np.int64)[keep] + 1,
                                  "cate": common.int_column(batch, "cate")[keep],
                                  "brand": common.int_column(batch, "brand")[keep]}))
            kept += int(keep.sum())
        if read // 50_000_000 != (read - len(user)) // 50_000_000:
            say(f"  {read:,} behaviours read, {kept:,} kept")
    return kept


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
    ad_row, has_ad = _join(s["adgroup_id"], ads["adgroup_id"])
    user_row, has_profile = _join(s["user"], profiles["userid"])
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
    common.check_out_dir(Path(out))
    say(f"reading {files['ad_feature']} and {files['user_profile']}")
    ads = _read_whole(files["ad_feature"], AD_FEATURE)
    profiles = _read_whole(files["user_profile"], USER_PROFILE)
    for name in ("raw_sample", "behavior_log"):
        if not files[name].is_file():
            raise InputError(f"{files[name]}: no such file")
    size = files["raw_sample"].stat().st_size + files["behavior_log"].stat().st_size
    k = min(MAX_BUCKETS, max(1, math.ceil(size / BUCKET_BYTES)))
    with common.staged_output(Path(out)) as stage:
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
        writers = {split: common.SplitWriter(stage / split) for split in ("train", "test")}
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
        common.write_spec(stage / "feature_spec.json", **_spec(ads, profiles, seen, max_history))
        summary = {
            "dataset": "taobao-ad", "sources": [str(p.resolve()) for p in files.values()], "splits": splits,
            "users": len(users), "behaviours_kept": kept, "buckets": k, **counts,
            "test_day_start_ts": test_start, "max_history": max_history, "seed": seed,
            "label": "clk", "test": "impressions of the last day (UTC+8)",
        }
        common.write_summary(stage / common.SUMMARY, summary)
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
