"""Replay check: logged rows sent as 1 user × N candidates requests must score as the batch path does.

Rows are grouped into requests by ``user+ts`` (one logged impression) or ``user``; a request is
the user-side inputs (profile, history) of the group's first row plus the candidate columns of up
to ``max_candidates`` rows. Each request goes to every target (``{name: fn(user, candidates) ->
probabilities}``: the SavedModel's ``serving_default`` in process, a live TF Serving endpoint...)
and is compared, row by row, with the row-wise batch scores (``score_rows``, as ``rocket-ctr
predict`` computes them) of the same rows given the same user-side inputs.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import pyarrow as pa

from rocket_ctr.errors import InputError
from rocket_ctr.features.signatures import candidate_columns
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.batches import Chunk
from rocket_ctr.io.parquet_schema import check_batch
from rocket_ctr.io.row_ranges import RowRange
from rocket_ctr.progress import Progress
from rocket_ctr.scoring.scorer import READ_ROWS, Scorer, score_chunk

GROUP_BY = ("user+ts", "user")
Target = Callable[[dict, dict], np.ndarray]  # (user inputs, candidate columns) -> probabilities [N]


@dataclasses.dataclass
class Mismatch:
    """One row whose request score differs from its batch score beyond the tolerance."""

    target: str
    keys: dict
    batch: float
    request: float

    @property
    def diff(self) -> float:
        return abs(self.request - self.batch)


@dataclasses.dataclass
class ReplayReport:
    """What a replay compared: per target the largest |request - batch| and the rows beyond tolerance."""

    requests: int = 0
    rows: int = 0
    max_candidates_seen: int = 0
    max_abs_diff: dict = dataclasses.field(default_factory=dict)
    differing_rows: dict = dataclasses.field(default_factory=dict)
    mismatches: list = dataclasses.field(default_factory=list)  # the first ``keep`` Mismatch rows

    @property
    def ok(self) -> bool:
        return not any(self.differing_rows.values())


def group_requests(batch: pa.RecordBatch, spec: FeatureSpec, group_by: str, max_candidates: int) -> list[np.ndarray]:
    """Row indices of each request of ``batch``, in order of first appearance (groups larger than
    ``max_candidates`` become several requests)."""
    if group_by not in GROUP_BY:
        raise InputError(f"group_by must be one of {GROUP_BY}, got {group_by!r}")
    keys = [spec.user_id] + ([spec.timestamp] if group_by == "user+ts" else [])
    missing = [k for k in keys if k is None or k not in batch.schema.names]
    if missing:
        raise InputError(f"cannot group requests by {group_by}: the log has no timestamp column (use user)")
    table = pa.table({**{f"k{i}": batch.column(k) for i, k in enumerate(keys)},
                      "row": pa.array(np.arange(batch.num_rows))})
    grouped = table.group_by([f"k{i}" for i in range(len(keys))], use_threads=False).aggregate([("row", "list")])
    groups = sorted((np.asarray(rows, dtype=np.int64) for rows in grouped.column("row_list").to_pylist()),
                    key=lambda rows: rows[0])
    return [rows[s:s + max_candidates] for rows in groups for s in range(0, len(rows), max_candidates)]


def request_inputs(chunk: Chunk, spec: FeatureSpec, rows: np.ndarray) -> tuple[dict, dict]:
    """``(user, candidates)`` of one request: the first row's profile and kept history, the rows' candidates."""
    first = rows[:1]
    user = {c: chunk.scalars[c][first] for c in spec.user_columns}
    # [1, L]: exactly the kept steps of each sequence group
    user.update(chunk.padded(first, [int(lengths[first[0]]) for lengths in chunk.group_lengths]))
    candidates = {c: chunk.scalars[c][rows] for c in candidate_columns(spec)}
    return user, candidates


def _as_user_rows(chunk: Chunk, spec: FeatureSpec, rows: np.ndarray, user_rows: np.ndarray) -> Chunk:
    """A chunk of ``rows`` whose user-side inputs are those of ``user_rows`` (what the requests sent)."""
    view = chunk.take(user_rows)
    user_columns = set(spec.user_columns)
    for column in (*spec.scalar_id_columns, *spec.extra_columns):
        if column not in user_columns:
            view.scalars[column] = chunk.scalars[column][rows]
    return view


def replay(pieces: list[RowRange], spec: FeatureSpec, batch_scorer: Scorer, targets: dict[str, Target], *,
           group_by: str = "user+ts", max_candidates: int = 512, max_requests: int = 1000,
           tolerance: float = 1e-5, keep: int = 20, key_columns: list[str] | None = None,
           on_request: Callable[[int], None] | None = None, progress: bool = True) -> ReplayReport:
    """Replays the first ``max_requests`` requests (0: all) of ``pieces`` against ``targets``.

    Args:
        batch_scorer: ``{tower: score_rows}`` of the model the targets serve (one tower).
        targets: ``{name: fn(user, candidates) -> probabilities}``.
        keep: how many differing rows the report lists (all are counted).
        key_columns: columns shown for a differing row (default: user id, candidate id, timestamp).
        on_request: called with 1 after each request.
        progress: requests and rows done on stderr (``rocket_ctr.progress``: a bar on a terminal,
            a line every few seconds otherwise).
    """
    if max_candidates < 1:
        raise InputError(f"max_candidates must be >= 1, got {max_candidates}")
    tower = next(iter(batch_scorer))
    keys = key_columns or [c for c in (spec.user_id, spec.sequence_features[0].name, spec.timestamp) if c]
    report = ReplayReport(max_abs_diff={name: 0.0 for name in targets}, differing_rows={name: 0 for name in targets})
    log_rows = sum(p.num_rows for p in pieces)  # from the files' metadata
    if max_requests:  # counted in requests, at most one per row
        shown = Progress(min(max_requests, log_rows), "requests", prefix="replay: ", enabled=progress,
                         detail=lambda: f"{report.rows:,} rows")
    else:  # the whole log: counted in rows
        shown = Progress(log_rows, "rows", prefix="replay: ", enabled=progress,
                         detail=lambda: f"{report.requests:,} requests")
    with shown:
        for piece in pieces:
            columns = list(dict.fromkeys([*spec.columns, *keys]))
            try:
                for first_row, batch in piece.batches(columns, READ_ROWS):
                    check_batch(batch, spec, piece.path, first_row)
                    chunk = Chunk(batch, spec)
                    requests = group_requests(batch, spec, group_by, max_candidates)
                    if max_requests:
                        requests = requests[:max_requests - report.requests]
                    if not requests:
                        continue
                    rows = np.concatenate(requests)
                    user_rows = np.concatenate([np.full(len(r), r[0]) for r in requests])
                    batch_scores = score_chunk(_as_user_rows(chunk, spec, rows, user_rows), spec, batch_scorer)[tower]
                    offset = 0
                    for request in requests:
                        user, candidates = request_inputs(chunk, spec, request)
                        expected = batch_scores[offset:offset + len(request)]
                        for name, target in targets.items():
                            got = np.asarray(target(user, candidates), dtype=np.float64).reshape(-1)
                            _compare(report, name, got, expected, batch, request, keys, tolerance, keep)
                        offset += len(request)
                        report.requests += 1
                        report.rows += len(request)
                        report.max_candidates_seen = max(report.max_candidates_seen, len(request))
                        shown.update(1 if max_requests else len(request))
                        if on_request:
                            on_request(1)
                    if max_requests and report.requests >= max_requests:
                        return report
            except (pa.ArrowException, OSError) as err:
                raise InputError(f"{piece.name}: cannot read Parquet data ({str(err).splitlines()[0]})") from None
    return report


def _compare(report: ReplayReport, name: str, got: np.ndarray, expected: np.ndarray, batch: pa.RecordBatch,
             rows: np.ndarray, keys: list[str], tolerance: float, keep: int) -> None:
    if got.shape != expected.shape:
        raise InputError(f"target {name}: {got.size} scores for a request of {expected.size} candidates")
    diff = np.abs(got - expected)
    report.max_abs_diff[name] = max(report.max_abs_diff[name], float(diff.max()))
    bad = np.flatnonzero(~(diff <= tolerance))  # NaN counts as differing
    report.differing_rows[name] += len(bad)
    for i in bad[:max(keep - len(report.mismatches), 0)]:
        row = int(rows[i])
        report.mismatches.append(Mismatch(name, {k: batch.column(k)[row].as_py() for k in keys},
                                          float(expected[i]), float(got[i])))
