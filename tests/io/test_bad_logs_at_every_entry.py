"""A corpus of bad logs fed to every command that reads a log: one line, exit 2, no traceback, and
nothing created (no run dir, no output folder, no export base)."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import refused_in_one_line

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "v0_1"
GOOD = FIXTURES / "log" / "test" / "part-00000.parquet"


def _replace(table: pa.Table, name: str, array) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, array)


def write_corpus(folder: Path) -> dict[str, Path]:
    """Each bad log as a folder holding one file plus the log's feature_spec.json."""
    good = pq.read_table(GOOD).slice(0, 50)
    n = good.num_rows
    as_lists = pa.array([[i] for i in range(n)], pa.list_(pa.int64()))
    tables = {
        "zero rows": good.slice(0, 0),
        "a list where a scalar belongs": _replace(good, "item_id", as_lists),
        "a missing column": good.drop_columns(["label"]),
        "NaN labels": _replace(good, "label", pa.array(np.full(n, np.nan))),
        "null labels": _replace(good, "label", pa.array([None] * n, pa.int64())),
        "a wrong type": _replace(good, "cate_id", pa.array([str(i) for i in range(n)])),
    }
    logs = {}
    for name, table in tables.items():
        logs[name] = folder / name.replace(" ", "_")
        logs[name].mkdir()
        pq.write_table(table, logs[name] / "part-0.parquet")
    logs["text"] = folder / "text"
    logs["text"].mkdir()
    (logs["text"] / "part-0.parquet").write_text("user_id,item_id,label\n1,2,0\n")
    logs["truncated"] = folder / "truncated"
    logs["truncated"].mkdir()
    data = GOOD.read_bytes()
    (logs["truncated"] / "part-0.parquet").write_bytes(data[: len(data) // 2])
    for log in logs.values():
        shutil.copy(FIXTURES / "log" / "feature_spec.json", log / "feature_spec.json")
    return logs


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """A finished run dir and an export of it (copies of the compatibility fixtures)."""
    folder = tmp_path_factory.mktemp("sources")
    run = shutil.copytree(FIXTURES / "run_finished", folder / "run")
    export = shutil.copytree(FIXTURES / "export", folder / "export")
    return Path(run), Path(export)


ENTRIES = {
    "train": lambda log, out, run, export: ["train", "--train", log, "--run-dir", out, "--epochs", "1"],
    "train --eval": lambda log, out, run, export: ["train", "--train", str(FIXTURES / "log" / "train"),
                                                   "--eval", log, "--run-dir", out, "--epochs", "1"],
    "train --warm-start": lambda log, out, run, export: ["train", "--train", log, "--run-dir", out,
                                                         "--warm-start", run],
    "launch-local": lambda log, out, run, export: ["launch-local", "--workers", "2", "--", "--train", log,
                                                   "--run-dir", out],
    "evaluate": lambda log, out, run, export: ["evaluate", "--run-dir", run, "--data", log, "--plots", out],
    "predict --run-dir": lambda log, out, run, export: ["predict", "--run-dir", run, "--data", log, "--out", out],
    "predict --model": lambda log, out, run, export: ["predict", "--model", export, "--data", log, "--out", out],
    "replay": lambda log, out, run, export: ["replay", "--model", export, "--data", log],
    "inspect": lambda log, out, run, export: ["inspect", log, "--fit-spec", str(Path(out) / "spec.json")],
    "export --data": lambda log, out, run, export: ["export", "--run-dir", run, "--export-base", out,
                                                    "--data", log],
}
BAD = ("text", "truncated", "zero rows", "a list where a scalar belongs", "a missing column", "NaN labels",
       "null labels", "a wrong type")


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_every_entry_refuses_every_bad_log_in_one_line_and_creates_nothing(entry, corpus, sources, tmp_path,
                                                                           capsys):
    run, export = sources
    for bad in BAD:
        out = tmp_path / f"out_{bad.replace(' ', '_')}"
        argv = ENTRIES[entry](str(corpus[bad]), str(out), str(run), str(export / "1"))
        line = refused_in_one_line(capsys, argv)
        assert "Traceback" not in line and str(corpus[bad]) in line, (bad, line)
        assert not out.exists(), (bad, f"{entry} created {out}")


def test_a_train_refused_by_a_bad_row_deep_in_the_log_removes_the_run_dir_it_created(tmp_path, capsys,
                                                                                    monkeypatch):
    """A null id is not in the footers: the reader finds it in the last rows, after the run dir was
    created (small read batches and shuffle window keep it out of the batch that builds the model)."""
    from rocket_ctr.io import reader

    monkeypatch.setattr(reader, "READ_BATCH_ROWS", 64)
    good = pq.read_table(GOOD)
    ids = good.column("item_id").to_pylist()
    ids[-1] = None
    log = tmp_path / "log"
    log.mkdir()
    pq.write_table(_replace(good, "item_id", pa.array(ids, pa.int64())), log / "part-0.parquet")
    shutil.copy(FIXTURES / "log" / "feature_spec.json", log / "feature_spec.json")
    run_dir = tmp_path / "run"
    line = refused_in_one_line(capsys, ["train", "--train", str(log), "--run-dir", str(run_dir), "--epochs", "1",
                                        "--validation-fraction", "0", "--batch-size", "64",
                                        "--shuffle-buffer", "64"])
    assert "'item_id'" in line and "null" in line
    assert not run_dir.exists()
