"""Shared test fixtures: small reference-schema click logs written on the fly."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.io.parquet_schema import arrow_schema

REFERENCE_SCHEMA = arrow_schema(FeatureSpec())


def log_columns(n: int = 100, *, seed: int = 0, max_len: int = 60, start: int = 0) -> dict:
    """Columns of ``n`` reference-schema rows as Python lists.

    Row ``i`` (global index ``start + i``) has ``item_id == i_global`` (so tests can recognise
    rows), a random history of 0..``max_len`` steps whose item ids are ``i_global * 1000 + step``
    (oldest -> newest) and category ids ``-(that)``.
    """
    rng = np.random.default_rng(seed)
    index = np.arange(start, start + n)
    lengths = rng.integers(0, max_len + 1, size=n)
    hist_item = [[int(i) * 1000 + s for s in range(k)] for i, k in zip(index, lengths)]
    return {
        "user_id": [int(i) % 7 for i in index],
        "item_id": [int(i) for i in index],
        "cate_id": [int(i) % 5 for i in index],
        "hist_item_id": hist_item,
        "hist_cate_id": [[-v for v in h] for h in hist_item],
        "user_gender": [("F", "M", "U")[int(i) % 3] for i in index],
        "user_occupation": [f"job{int(i) % 4}" for i in index],
        "ts": [1_700_000_000 + int(i) for i in index],
        "label": [int(x) for x in rng.integers(0, 2, size=n)],
    }


def write_log(path, columns: dict | None = None, *, schema: pa.Schema | None = None,
              row_group_size: int | None = None, **kwargs) -> str:
    """Writes ``columns`` (default: ``log_columns(**kwargs)``) to the Parquet file ``path``.

    Types come from ``REFERENCE_SCHEMA`` for reference columns unless ``schema`` is given;
    other columns are inferred by pyarrow.
    """
    columns = log_columns(**kwargs) if columns is None else columns
    if schema is None:
        fields = [REFERENCE_SCHEMA.field(c) if c in REFERENCE_SCHEMA.names else None for c in columns]
        arrays = {c: pa.array(v, type=f.type if f is not None else None) for (c, v), f in zip(columns.items(), fields)}
        table = pa.table(arrays)
    else:
        table = pa.table(columns, schema=schema)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)


@pytest.fixture
def click_log(tmp_path):
    """A function ``(name="log.parquet", columns=None, **kwargs) -> path`` writing into tmp_path."""
    def write(name: str = "log.parquet", columns: dict | None = None, **kwargs) -> str:
        return write_log(tmp_path / name, columns, **kwargs)
    return write


def model_rows(batch: int, steps: int, seed: int = 0) -> dict:
    """Random model inputs (row indices) of the tests' small spec: item/cate/gender ids [batch],
    item/cate histories [batch, steps] and ``hist_len`` in [0, steps]."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    return {"item_id": tf.constant(rng.integers(0, 50, batch)), "cate_id": tf.constant(rng.integers(0, 10, batch)),
            "user_gender": tf.constant(rng.integers(0, 4, batch)),
            "hist_item_id": tf.constant(rng.integers(0, 50, (batch, steps))),
            "hist_cate_id": tf.constant(rng.integers(0, 10, (batch, steps))),
            "hist_len": tf.constant(rng.integers(0, steps + 1, batch), tf.int32)}


def refused_in_one_line(capsys, argv) -> str:
    """Runs the CLI on ``argv``, asserts exit code 2 with exactly one stderr line, returns that line."""
    from rocket_ctr.pipelines.cli import main

    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def served_probabilities(loaded, signature: str, inputs: dict):
    """A loaded SavedModel's ``probabilities`` from ``signature`` on numpy/list ``inputs``."""
    import tensorflow as tf

    return loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})["probabilities"].numpy()
