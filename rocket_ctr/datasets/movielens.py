"""MovieLens 100K / 1M ratings -> reference-schema click log (``rocket-ctr convert movielens``).

Every rating is one row: ``label = rating >= 4``; the history is the user's earlier positively
rated movies (events ordered by timestamp, ties by movie id, so the output does not depend on
file order); ``cate_id`` is the movie's first genre; ``user_gender`` and ``user_occupation`` are
kept (1M's occupation is its numeric code, as a string). Each user's last ``TEST_EVENTS`` events
go to test, the rest (shuffled by ``seed``) to train. The files are small (1M: 24 MB), so they are
read whole.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa

from rocket_ctr.datasets import common, output
from rocket_ctr.errors import InputError
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.parquet_schema import arrow_schema

TEST_EVENTS = 10
CHUNK_ROWS = 131_072  # rows built at a time (bounds the history lists in memory)
# u.genre of MovieLens 100K: the order of the 19 genre flags in u.item.
GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
               "Romance", "Sci-Fi", "Thriller", "War", "Western")
FILES = {"100k": ("u.data", "u.item", "u.user"), "1m": ("ratings.dat", "movies.dat", "users.dat")}
SCHEMA = arrow_schema(FeatureSpec())  # the reference log


def identify_files(paths: Sequence[str | Path]) -> tuple[str, dict[str, Path]]:
    """Tells 100K from 1M by the file names given (files or the extracted ``ml-*`` folder).

    Returns:
        ``("100k" | "1m", {"ratings": path, "movies": path, "users": path})``.
    """
    by_name = {p.name: p for p in common.expand_inputs(paths)}
    for variant, names in FILES.items():
        if any(name in by_name for name in names):
            missing = [name for name in names if name not in by_name]
            if missing:
                raise InputError(f"movielens {variant.upper()}: missing {', '.join(missing)}; expected "
                                 f"{', '.join(names)} (or their folder)")
            return variant, dict(zip(("ratings", "movies", "users"), (by_name[n] for n in names)))
    raise InputError(f"movielens: expected u.data, u.item, u.user (100K) or ratings.dat, movies.dat, "
                     f"users.dat (1M), or their folder; got {', '.join(sorted(by_name)) or 'no files'}")


def _records(path: Path, sep: str, fields: Sequence[str], ints: Sequence[int] = ()):
    """Yields ``(line_number, fields)`` of a latin-1, ``sep``-separated file, checking the field count."""
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    shape = f"{len(fields)} {'tab' if sep == chr(9) else repr(sep)}-separated fields ({', '.join(fields)})"
    for number, line in common.read_lines(path, "latin-1", shape):
        parts = line.split(sep)
        if len(parts) != len(fields):
            raise InputError(f"{path} line {number}: expected {shape}, got {len(parts)} field(s)")
        try:
            for i in ints:
                parts[i] = int(parts[i])
                if not -2 ** 63 <= parts[i] < 2 ** 63:
                    raise ValueError(parts[i])
        except ValueError:
            raise InputError(f"{path} line {number}: field {fields[i]!r} is {parts[i]!r}, expected an "
                             f"integer ({shape})") from None
        yield number, parts


def read_ratings(path: Path, variant: str) -> dict[str, np.ndarray]:
    """Returns ``user``, ``item``, ``rating``, ``ts`` and ``line`` arrays of the ratings file."""
    sep = "\t" if variant == "100k" else "::"
    columns = {"user": [], "item": [], "rating": [], "ts": [], "line": []}
    for number, (user, item, rating, ts) in _records(path, sep, ("user", "item", "rating", "timestamp"),
                                                     ints=(0, 1, 2, 3)):
        for name, value in zip(columns, (user, item, rating, ts, number)):
            columns[name].append(value)
    if not columns["user"]:
        raise InputError(f"{path}: no ratings")
    return {name: np.asarray(values, np.int64) for name, values in columns.items()}


def read_movies(path: Path, variant: str) -> dict[int, str]:
    """Movie id -> first genre name."""
    if variant == "100k":
        fields = ("movie id", "title", "release date", "video release date", "IMDb URL") + GENRES_100K
        genres = {}
        for number, parts in _records(path, "|", fields, ints=(0,)):
            flags = parts[5:]
            if any(f not in ("0", "1") for f in flags):
                raise InputError(f"{path} line {number}: genre flags must be 0/1, got {'|'.join(flags)}")
            genres[parts[0]] = next((g for g, f in zip(GENRES_100K, flags) if f == "1"), "unknown")
        return genres
    return {movie: names.split("|")[0] for _, (movie, _title, names)
            in _records(path, "::", ("MovieID", "Title", "Genres"), ints=(0,))}


def read_users(path: Path, variant: str) -> dict[int, tuple[str, str]]:
    """User id -> (gender, occupation)."""
    if variant == "100k":
        rows = _records(path, "|", ("user id", "age", "gender", "occupation", "zip code"), ints=(0,))
        return {p[0]: (p[2], p[3]) for _, p in rows}
    rows = _records(path, "::", ("UserID", "Gender", "Age", "Occupation", "Zip-code"), ints=(0,))
    return {p[0]: (p[1], p[3]) for _, p in rows}


def _lookup(keys: np.ndarray, table: dict, what: str, ratings: dict, path: Path) -> np.ndarray:
    """Positions of ``keys`` in ``sorted(table)``; a key missing there is an InputError."""
    known = np.fromiter(sorted(table), np.int64, len(table))
    where = np.minimum(np.searchsorted(known, keys), max(len(known) - 1, 0))
    missing = np.flatnonzero(known[where] != keys) if len(known) else np.arange(len(keys))
    if len(missing):
        row = missing[0]
        raise InputError(f"{path} line {ratings['line'][row]}: {what} {keys[row]} is not in the {what}s file")
    return where


def build_tables(ratings: dict, movies: dict, users: dict, max_history: int, seed: int,
                 ratings_path: Path):
    """Yields ``(split, pa.Table)`` chunks of output rows.

    Args:
        ratings: :func:`read_ratings` arrays; movies/users: :func:`read_movies`/:func:`read_users`.
        max_history: newest positives kept per history.
        seed: shuffles the train rows.
    """
    order = np.lexsort((ratings["item"], ratings["ts"], ratings["user"]))
    r = {name: values[order] for name, values in ratings.items()}
    movie_genre = _lookup(r["item"], movies, "movie", r, ratings_path)
    genre_ids = np.array([common.stable_id(movies[m]) for m in sorted(movies)], np.int64)
    cate = genre_ids[movie_genre]
    user_row = _lookup(r["user"], users, "user", r, ratings_path)
    profiles = [users[u] for u in sorted(users)]
    gender = np.array([p[0] for p in profiles], object)[user_row]
    occupation = np.array([p[1] for p in profiles], object)[user_row]
    label = (r["rating"] >= 4).astype(np.int64)

    first, end = common.group_bounds(r["user"])
    positives_before = np.cumsum(label) - label  # positives earlier in the sorted order
    hist_end, hist_start = positives_before, positives_before[first]
    positive = label == 1
    history_values = {"hist_item_id": r["item"][positive], "hist_cate_id": cate[positive]}

    test = end - np.arange(len(label)) <= TEST_EVENTS
    rng = np.random.default_rng(seed)
    splits = {"train": rng.permutation(np.flatnonzero(~test)), "test": np.flatnonzero(test)}
    for split, rows in splits.items():
        for s in range(0, len(rows), CHUNK_ROWS):
            part = rows[s:s + CHUNK_ROWS]
            hist = common.history_lists(history_values, hist_start[part], hist_end[part], max_history)
            yield split, pa.table({
                "user_id": pa.array(r["user"][part], pa.int64()),
                "item_id": pa.array(r["item"][part], pa.int64()),
                "cate_id": pa.array(cate[part], pa.int64()),
                "hist_item_id": hist["hist_item_id"], "hist_cate_id": hist["hist_cate_id"],
                "user_gender": pa.array(gender[part], pa.string()),
                "user_occupation": pa.array(occupation[part], pa.string()),
                "ts": pa.array(r["ts"][part], pa.int64()),
                "label": pa.array(label[part], pa.int64()),
            }, schema=SCHEMA)


def convert(paths: Sequence[str | Path], out: str | Path, *, max_history: int = 50, seed: int = 0,
            progress: Callable[[str], None] | None = None) -> dict:
    """Converts MovieLens 100K or 1M into ``out`` (train/, test/, feature_spec.json, summary).

    Args:
        paths: the three files, or the folder holding them (100K vs 1M told by their names).
        out: output folder (replaced atomically on success).
        max_history: longest history kept (newest steps).
        seed: train-row shuffle seed.
        progress: called with one-line progress messages.
    Returns:
        The summary written to ``convert_summary.json``.
    """
    say = progress or (lambda message: None)
    variant, files = identify_files(paths)
    output.check_out_dir(Path(out))
    say(f"reading MovieLens {variant.upper()} from {files['ratings'].parent}")
    movies = read_movies(files["movies"], variant)
    users = read_users(files["users"], variant)
    ratings = read_ratings(files["ratings"], variant)
    with output.staged_output(Path(out)) as stage:
        writers = {s: output.SplitWriter(stage / s) for s in ("train", "test")}
        for split, table in build_tables(ratings, movies, users, max_history, seed, files["ratings"]):
            writers[split].write(table)
        splits = {s: w.close(SCHEMA) for s, w in writers.items()}
        item_ids = np.union1d(np.fromiter(movies, np.int64), ratings["item"])
        output.write_spec(
            stage / "feature_spec.json",
            sequence_features=[
                common.id_feature("item_id", item_ids, history="hist_item_id"),
                common.id_feature("cate_id", [common.stable_id(g) for g in movies.values()], history="hist_cate_id"),
            ],
            user_features=[
                common.id_feature("user_gender", [p[0] for p in users.values()], dtype="string"),
                common.id_feature("user_occupation", [p[1] for p in users.values()], dtype="string"),
            ],
            item_features=[], max_history=max_history,
        )
        summary = {
            "dataset": f"movielens-{variant}", "sources": [str(p.resolve()) for p in files.values()],
            "splits": splits, "users": len(np.unique(ratings["user"])), "items": len(item_ids),
            "max_history": max_history, "seed": seed,
            "label": "rating >= 4", "test": f"each user's last {TEST_EVENTS} events",
        }
        output.write_summary(stage / output.SUMMARY, summary)
    return summary
