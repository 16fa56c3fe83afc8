"""The output folder of batch scoring: sharded Parquet parts, written aside and moved in at the end.

``DIR/part-<shard>-of-<shards>-<seq>.parquet`` (at most ``rows_per_file`` rows each) plus
``DIR/_predict-<shard>-of-<shards>.json`` (what was scored, rows, seconds). Names starting with
``_`` or ``.`` are skipped by Parquet dataset readers, so ``DIR`` reads as one table.

A folder holds the results of one job: shard ``i`` of ``K`` refuses a folder that already holds
its own parts or parts of a job with another shard count, unless ``overwrite``; the parts of its
sibling shards are left alone. Parts are written into a hidden staging folder inside ``DIR``; only
when every part is complete are the old results removed (``overwrite``) and the new ones moved in,
so a refused or failed run loses nothing that was there.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rocket_ctr.errors import FieldError

_RESULT = re.compile(r"^(?:part-(\d+)-of-(\d+)-\d+\.parquet|_predict-(\d+)-of-(\d+)\.json)$")


def shard_tag(shard_index: int, num_shards: int) -> str:
    return f"{shard_index:05d}-of-{num_shards:05d}"


def conflicting_results(out_dir, num_shards: int = 1, shard_index: int | None = None) -> list[Path]:
    """Results in ``out_dir`` that a run of shard ``shard_index`` of ``num_shards`` would replace:
    its own, and any of another shard count (``shard_index`` None: every result there)."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return []
    found = []
    for path in sorted(out_dir.iterdir()):
        match = _RESULT.match(path.name)
        if not match:
            continue
        index, count = (int(g) for g in (match.group(1, 2) if match.group(1) else match.group(3, 4)))
        if shard_index is None or count != num_shards or index == shard_index:
            found.append(path)
    return found


def check_out_dir(out_dir, num_shards: int = 1, shard_index: int | None = None, overwrite: bool = False) -> None:
    """Refuses an output folder that already holds results (unless ``overwrite``) or is a file.

    Raises:
        FieldError: naming ``{out}`` and ``{overwrite}``.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise FieldError(f"{{out}} {out_dir} is a file; expected a folder for the prediction parts")
    existing = conflicting_results(out_dir, num_shards, shard_index)
    if existing and not overwrite:
        raise FieldError(f"{{out}} {out_dir} already holds {len(existing)} result file(s) ({existing[0].name} ...); "
                         "nothing was written: pick another {out} or pass {overwrite} to replace them")


class PredictionWriter:
    """Writes one shard's scored rows as Parquet parts; :meth:`commit` moves them into ``out_dir``.

    Args:
        out_dir: the output folder (created).
        shard_index, num_shards: which shard this is (names the parts).
        rows_per_file: rows per part file.
        overwrite: replace the results this shard conflicts with (see :func:`conflicting_results`).
    """

    def __init__(self, out_dir, shard_index: int = 0, num_shards: int = 1, *, rows_per_file: int = 1_000_000,
                 overwrite: bool = False):
        if rows_per_file < 1:
            raise FieldError(f"{{rows_per_file}} must be >= 1, got {rows_per_file}")
        check_out_dir(out_dir, num_shards, shard_index, overwrite)
        self.out_dir, self.shard_index, self.num_shards = Path(out_dir), shard_index, num_shards
        self.rows_per_file, self.overwrite = rows_per_file, overwrite
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".staging-{shard_tag(shard_index, num_shards)}-",
                                             dir=self.out_dir))
        self.files: list[str] = []
        self.rows = 0
        self._writer, self._in_file = None, 0

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        """Appends rows, starting a new part file every ``rows_per_file`` rows."""
        offset = 0
        while offset < table.num_rows:
            if self._writer is None:
                name = f"part-{shard_tag(self.shard_index, self.num_shards)}-{len(self.files):05d}.parquet"
                # probabilities are nearly all distinct: dictionary-encoding them only costs time
                keys = [f.name for f in table.schema if not pa.types.is_floating(f.type)]
                self._writer = pq.ParquetWriter(self.staging / name, table.schema, use_dictionary=keys)
                self.files.append(name)
            take = min(table.num_rows - offset, self.rows_per_file - self._in_file)
            part = table.slice(offset, take)
            self._writer.write_table(pa.Table.from_batches([part]) if isinstance(part, pa.RecordBatch) else part)
            offset, self._in_file, self.rows = offset + take, self._in_file + take, self.rows + take
            if self._in_file == self.rows_per_file:
                self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer, self._in_file = None, 0

    def commit(self, summary: dict) -> list[Path]:
        """Closes the last part, replaces conflicting results (``overwrite``), moves the parts in
        and writes ``_predict-<shard>-of-<shards>.json`` (``summary`` + files + rows)."""
        self._close_file()
        if not self.overwrite:
            check_out_dir(self.out_dir, self.num_shards, self.shard_index)  # written meanwhile by another run?
        for old in conflicting_results(self.out_dir, self.num_shards, self.shard_index):
            old.unlink()
        final = []
        for name in self.files:
            os.replace(self.staging / name, self.out_dir / name)
            final.append(self.out_dir / name)
        manifest = self.out_dir / f"_predict-{shard_tag(self.shard_index, self.num_shards)}.json"
        manifest.write_text(json.dumps({**summary, "rows": self.rows, "files": self.files}, indent=2) + "\n")
        shutil.rmtree(self.staging, ignore_errors=True)
        return final

    def abort(self) -> None:
        """Drops everything written (the output folder keeps what it held)."""
        try:
            self._close_file()
        finally:
            shutil.rmtree(self.staging, ignore_errors=True)
