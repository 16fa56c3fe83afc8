"""Output side of the click-log converters: Parquet splits, the spec, the summary, staging.

Every converter writes ``DIR/train/part-*.parquet``, ``DIR/test/part-*.parquet``,
``DIR/feature_spec.json`` and ``DIR/convert_summary.json`` into a hidden staging folder beside
``DIR`` and renames it into place only when everything succeeded.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rocket_ctr.errors import InputError
from rocket_ctr.features.spec import FeatureSpec

ROWS_PER_PART = 1_000_000  # rows per Parquet part file (several files let workers shard by file)
ROW_GROUP_ROWS = 131_072  # small row groups keep the streaming reader's memory low
SUMMARY = "convert_summary.json"


class SplitWriter:
    """Writes one split as ``folder/part-00000.parquet, ...``, starting a new part every ``rows_per_part``."""

    def __init__(self, folder: Path, rows_per_part: int = ROWS_PER_PART):
        self.folder, self.rows_per_part = folder, rows_per_part
        folder.mkdir(parents=True, exist_ok=True)
        self.rows = self.positives = self._part_rows = 0
        self._parts = 0
        self._writer = None

    def write(self, table: pa.Table) -> None:
        """Appends ``table``'s rows (every call must have the same schema)."""
        self.rows += table.num_rows
        self.positives += int(np.asarray(table.column("label")).sum())
        start = 0
        while start < table.num_rows:
            if self._writer is None:
                path = self.folder / f"part-{self._parts:05d}.parquet"
                self._writer = pq.ParquetWriter(str(path), table.schema)
                self._parts += 1
            take = min(self.rows_per_part - self._part_rows, table.num_rows - start)
            self._writer.write_table(table.slice(start, take), row_group_size=ROW_GROUP_ROWS)
            start += take
            self._part_rows += take
            if self._part_rows >= self.rows_per_part:
                self._close_part()

    def _close_part(self) -> None:
        self._writer.close()
        self._writer, self._part_rows = None, 0

    def close(self, schema: pa.Schema) -> dict:
        """Finishes the split (an empty split still gets one empty part with ``schema``).

        Returns:
            ``{"rows", "ctr", "files"}`` for the summary.
        """
        if self._writer is not None:
            self._close_part()
        if self._parts == 0:
            pq.write_table(schema.empty_table(), str(self.folder / "part-00000.parquet"))
            self._parts = 1
        ctr = self.positives / self.rows if self.rows else None
        return {"rows": self.rows, "ctr": ctr, "files": self._parts}


def check_out_dir(out: Path) -> None:
    """Refuses an ``--out`` that exists and is neither empty nor an earlier conversion's output.

    Checked before the (long) conversion starts, so a typo such as ``--out .`` fails fast.
    """
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / SUMMARY).exists())):
        raise InputError(f"--out {out}: exists and is not an earlier `rocket-ctr convert` output; "
                         f"choose a new or empty folder")


def _sibling(out: Path, role: str) -> Path:
    """A new hidden folder beside ``out`` (made with the umask's permissions, unlike mkdtemp's 0700)."""
    while True:
        path = out.parent / f".{out.name}.{role}-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


@contextlib.contextmanager
def staged_output(out: Path) -> Iterator[Path]:
    """Yields a staging folder beside ``out``; on success it replaces ``out``, on error it is deleted.

    An existing ``out`` is moved aside, the staging folder renamed in, then the old one removed,
    so a failed conversion never leaves half an output or destroys an existing one.
    """
    out = Path(out)
    check_out_dir(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = _sibling(out, "staging")
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = _sibling(out, "old")
        os.replace(out, old / out.name)
    os.replace(stage, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_spec(path: Path, **spec: object) -> None:
    """Validates ``FeatureSpec(**spec)`` and saves it as JSON."""
    FeatureSpec.from_dict(spec).save(path)


def write_summary(path: Path, summary: dict) -> None:
    """Writes the conversion summary (rows per split, CTR, source files, counts) as JSON."""
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
