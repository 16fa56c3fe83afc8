"""Amazon review data -> DIN-style click log (``rocket-ctr convert amazon``).

Built the way DIN builds Amazon Electronics: each user's reviews are ordered by time (ties by
item); every review after the first is a positive whose history is the earlier reviews (oldest
-> newest, newest ``max_history`` kept), paired with one negative: an item the user never
reviewed, drawn uniformly from the reviewed items by ``seed``, with the same history. Each user's
last positive and its negative go to test. ``cate_id`` is the leaf of the item's last category
path. String ids (reviewerID, asin, category) become stable 62-bit int64 ids.

Memory: the reviews are held as three int64 arrays (24 bytes per review, e.g. 40 MB for the
1.7M-review Electronics 5-core); the metadata file is streamed and only reviewed items are parsed.
"""
from __future__ import annotations

import ast
import json
import re
from array import array
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa

from rocket_ctr.datasets import common, output
from rocket_ctr.errors import InputError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.parquet_schema import arrow_schema

CHUNK_PAIRS = 65_536  # positive/negative pairs built at a time
MISSING_CATEGORY = 0  # cate_id of items without metadata or categories
REVIEW_FIELDS = ("reviewerID", "asin", "unixReviewTime")
REVIEW_SHAPE = "one JSON object per line with reviewerID, asin, unixReviewTime"
META_SHAPE = "one JSON object or Python dict literal per line with asin and categories"
_ASIN = re.compile(r"""["']asin["']\s*:\s*["']([^"']*)["']""")
SCHEMA = arrow_schema(FeatureSpec(user_features=()))  # the reference log without a user profile


def identify_files(paths: Sequence[str | Path]) -> tuple[Path, Path]:
    """Picks the reviews and the metadata file (the one whose name starts with ``meta``).

    Returns:
        ``(reviews, meta)``.
    """
    files = common.expand_inputs(paths)
    if len(files) > 2:  # e.g. a download folder: keep the JSON files
        files = [p for p in files if ".json" in p.name.lower()]
    meta = [p for p in files if p.name.lower().startswith("meta")]
    reviews = [p for p in files if not p.name.lower().startswith("meta")]
    if len(meta) != 1 or len(reviews) != 1:
        raise InputError("amazon: expected two files, the reviews (e.g. reviews_Electronics_5.json.gz) and "
                         "the metadata (named meta*, e.g. meta_Electronics.json.gz); got "
                         f"{', '.join(p.name for p in files) or 'none'}")
    return reviews[0], meta[0]


def read_reviews(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, set[str]]:
    """Streams the reviews file.

    Returns:
        ``(user_ids, item_ids, timestamps, asins)``: int64 arrays, one entry per review, and the
        set of reviewed asins.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    users, items, times, asins = array("q"), array("q"), array("q"), set()
    for number, line in common.read_lines(path, "utf-8", REVIEW_SHAPE):
        try:
            review = json.loads(line)
        except ValueError as err:
            raise InputError(f"{path} line {number}: not JSON ({err.msg}); expected {REVIEW_SHAPE}") from None
        missing = [k for k in REVIEW_FIELDS if k not in review] if isinstance(review, dict) else REVIEW_FIELDS
        if missing:
            raise InputError(f"{path} line {number}: no {', '.join(missing)}; expected {REVIEW_SHAPE}")
        when = review["unixReviewTime"]
        if not isinstance(when, int) or isinstance(when, bool) or not -2 ** 63 <= when < 2 ** 63:
            raise InputError(f"{path} line {number}: unixReviewTime is {when!r}, expected an integer")
        asin = str(review["asin"])
        users.append(common.stable_id(str(review["reviewerID"])))
        items.append(common.stable_id(asin))
        times.append(when)
        asins.add(asin)
    if not users:
        raise InputError(f"{path}: no reviews; expected {REVIEW_SHAPE}")
    return (np.frombuffer(users, np.int64), np.frombuffer(items, np.int64),
            np.frombuffer(times, np.int64), asins)


def _leaf_category(item: dict) -> str | None:
    """The leaf of the last category path (2014 dump: ``categories``; 2018 dump: flat ``category``)."""
    paths = item.get("categories")
    if isinstance(paths, list) and paths and isinstance(paths[-1], list) and paths[-1]:
        return str(paths[-1][-1])
    flat = item.get("category")
    if isinstance(flat, list) and flat and isinstance(flat[-1], str):
        return flat[-1]
    return None


def read_categories(path: Path, wanted: set[str]) -> dict[int, int]:
    """Streams the metadata file, parsing only the lines of ``wanted`` asins.

    Lines are strict JSON or (the 2014 dump) Python dict literals, read with ``ast.literal_eval``.

    Returns:
        item id -> cate id (stable ids) for the wanted items that have a category.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    categories = {}
    for number, line in common.read_lines(path, "utf-8", META_SHAPE):
        match = _ASIN.search(line)
        if match and match.group(1) not in wanted:
            continue  # skip parsing items nobody reviewed: most of a full metadata dump
        try:
            item = json.loads(line)
        except ValueError:
            try:
                item = ast.literal_eval(line)
            except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
                raise InputError(f"{path} line {number}: neither JSON nor a Python dict literal; "
                                 f"expected {META_SHAPE}") from None
        if not isinstance(item, dict) or "asin" not in item:
            raise InputError(f"{path} line {number}: no asin; expected {META_SHAPE}")
        leaf = _leaf_category(item)
        if str(item["asin"]) in wanted and leaf is not None:
            categories[common.stable_id(str(item["asin"]))] = common.stable_id(leaf)
    return categories


def sample_negatives(rng: np.random.Generator, users: np.ndarray, reviewed: np.ndarray,
                     n_items: int) -> np.ndarray:
    """One item index per entry of ``users`` that the user never reviewed (uniform, by ``rng``).

    Args:
        users: dense user index per negative to draw.
        reviewed: sorted unique keys ``user * n_items + item`` of every (user, item) reviewed.
    Raises:
        InputError: a user reviewed every item, so no negative exists.
    """
    def clashes(neg):
        keys = users * n_items + neg
        at = np.minimum(np.searchsorted(reviewed, keys), len(reviewed) - 1)
        return np.flatnonzero(reviewed[at] == keys)

    negatives = rng.integers(0, n_items, len(users))
    for _ in range(50):
        bad = clashes(negatives)
        if not len(bad):
            return negatives
        negatives[bad] = rng.integers(0, n_items, len(bad))
    for row in clashes(negatives):  # users who reviewed nearly everything: draw from the complement
        user = users[row]
        lo, hi = np.searchsorted(reviewed, [user * n_items, (user + 1) * n_items])
        free = np.setdiff1d(np.arange(n_items), reviewed[lo:hi] - user * n_items)
        if not len(free):
            raise InputError(f"amazon: a user reviewed all {n_items} items, so no negative item can be sampled")
        negatives[row] = free[rng.integers(len(free))]
    return negatives


def build_tables(users: np.ndarray, items: np.ndarray, times: np.ndarray, categories: dict[int, int],
                 max_history: int, seed: int):
    """Yields ``(split, pa.Table)`` chunks of positive/negative row pairs (see the module doc)."""
    order = np.lexsort((items, times, users))
    users, items, times = users[order], items[order], times[order]
    item_ids, item_index = np.unique(items, return_inverse=True)
    item_cate = np.array([categories.get(int(i), MISSING_CATEGORY) for i in item_ids], np.int64)
    first, end = common.group_bounds(users)
    user_index = np.cumsum(np.r_[True, users[1:] != users[:-1]]) - 1
    positives = np.flatnonzero(np.arange(len(users)) > first)
    reviewed = common.distinct(user_index * len(item_ids) + item_index)
    rng = np.random.default_rng(seed)
    negative = np.empty(len(users), np.int64)
    negative[positives] = sample_negatives(rng, user_index[positives], reviewed, len(item_ids))
    history = {"hist_item_id": items, "hist_cate_id": item_cate[item_index]}

    is_test = end[positives] - 1 == positives
    splits = {"train": rng.permutation(positives[~is_test]), "test": positives[is_test]}
    for split, rows in splits.items():
        for s in range(0, len(rows), CHUNK_PAIRS):
            pair = np.repeat(rows[s:s + CHUNK_PAIRS], 2)  # positive, then its negative
            is_negative = np.tile([False, True], len(pair) // 2)
            if split == "train":
                shuffle = rng.permutation(len(pair))
                pair, is_negative = pair[shuffle], is_negative[shuffle]
            item = np.where(is_negative, negative[pair], item_index[pair])
            hist = common.history_lists(history, first[pair], pair, max_history)
            yield split, pa.table({
                "user_id": pa.array(users[pair], pa.int64()),
                "item_id": pa.array(item_ids[item], pa.int64()),
                "cate_id": pa.array(item_cate[item], pa.int64()),
                "hist_item_id": hist["hist_item_id"], "hist_cate_id": hist["hist_cate_id"],
                "ts": pa.array(times[pair], pa.int64()),
                "label": pa.array((~is_negative).astype(np.int64), pa.int64()),
            }, schema=SCHEMA)


def convert(paths: Sequence[str | Path], out: str | Path, *, max_history: int = 50, seed: int = 0,
            progress: Callable[[str], None] | None = None) -> dict:
    """Converts Amazon reviews + metadata into ``out`` (train/, test/, feature_spec.json, summary).

    Args:
        paths: the reviews file and the ``meta*`` file (``.json`` or ``.json.gz``), or their folder.
        out: output folder (replaced atomically on success).
        max_history: longest history kept (newest steps).
        seed: negative sampling and train-row shuffle seed.
        progress: called with one-line progress messages.
    Returns:
        The summary written to ``convert_summary.json``.
    """
    say = progress or (lambda message: None)
    reviews_path, meta_path = identify_files(paths)
    output.check_out_dir(Path(out))
    say(f"reading reviews {reviews_path}")
    users, items, times, asins = read_reviews(reviews_path)
    say(f"{len(users):,} reviews of {len(asins):,} items; reading categories from {meta_path}")
    categories = read_categories(meta_path, asins)
    with output.staged_output(Path(out)) as stage:
        writers = {s: output.SplitWriter(stage / s) for s in ("train", "test")}
        for split, table in build_tables(users, items, times, categories, max_history, seed):
            writers[split].write(table)
        splits = {s: w.close(SCHEMA) for s, w in writers.items()}
        item_ids = np.unique(items)
        cates = [categories.get(int(i), MISSING_CATEGORY) for i in item_ids]
        output.write_spec(
            stage / "feature_spec.json",
            sequence_features=[common.id_feature("item_id", item_ids, history="hist_item_id"),
                               common.id_feature("cate_id", cates, history="hist_cate_id")],
            user_features=[], item_features=[], max_history=max_history,
        )
        summary = {
            "dataset": "amazon", "sources": [str(reviews_path.resolve()), str(meta_path.resolve())], "splits": splits,
            "reviews": len(users), "users": len(np.unique(users)), "items": len(item_ids),
            "categories": len(set(cates)), "items_without_category": len(item_ids) - len(categories),
            "max_history": max_history, "seed": seed,
            "label": "1 = reviewed item, 0 = sampled item the user never reviewed",
            "test": "each user's last positive and its negative",
        }
        output.write_summary(stage / output.SUMMARY, summary)
    return summary
