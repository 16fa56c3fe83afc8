"""Partitions the Taobao impressions and behaviours by user into on-disk bucket files.

raw_sample.csv and behavior_log.csv are streamed, checked and hash-partitioned by user into K
LZ4-compressed Arrow files each (:func:`bucket_count`: one per ``BUCKET_BYTES`` of CSV, at most
``MAX_BUCKETS``), so :mod:`rocket_ctr.datasets.taobao` can sort and join one bucket at a time.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rocket_ctr.datasets import common
from rocket_ctr.errors import InputError

I64 = pa.int64()
RAW_SAMPLE = {"user": I64, "time_stamp": I64, "adgroup_id": I64, "pid": pa.string(), "nonclk": I64, "clk": I64}
BEHAVIOR_LOG = {"user": I64, "time_stamp": I64, "btag": pa.string(), "cate": I64, "brand": I64}
BTAGS = ("pv", "cart", "fav", "buy")  # behaviour type codes 1..4; an impression counts as "pv" (1)
FLUSH_ROWS = 2_000_000  # rows buffered before they are partitioned into the bucket files
BUCKET_BYTES = 128 << 20  # CSV bytes per on-disk bucket (sets the memory bound)
MAX_BUCKETS = 256  # open files during partitioning
_MIX = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing spreads consecutive user ids over buckets

SAMPLE_BUCKET = pa.schema([("user", I64), ("ts", I64), ("adgroup_id", I64), ("pid", pa.string()), ("clk", I64)])
BEHAVIOUR_BUCKET = pa.schema([(c, I64) for c in ("user", "ts", "btag", "cate", "brand")])


def bucket_count(csv_bytes: int) -> int:
    """Buckets for ``csv_bytes`` of CSV: one per ``BUCKET_BYTES``, at least 1, at most ``MAX_BUCKETS``."""
    return min(MAX_BUCKETS, max(1, math.ceil(csv_bytes / BUCKET_BYTES)))


def _membership(users: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A fast ``isin(x, users)``: a bitmap for ids below 2**26 (Taobao's are ~1M), else a binary search."""
    if len(users) and users.min() >= 0 and users.max() < 1 << 26:
        bitmap = np.zeros(int(users.max()) + 1, bool)
        bitmap[users] = True
        return lambda x: bitmap[np.minimum(np.maximum(x, 0), len(bitmap) - 1)] & (x >= 0) & (x < len(bitmap))
    return lambda x: common.sorted_lookup(x, users)[1]


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
