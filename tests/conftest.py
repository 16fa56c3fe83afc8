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


# Two computations of the same values that sum in another order (padded or valid history steps, a split or a
# whole matmul, oneDNN's blocking, the thread count) differ by at most n·eps·Σ|terms| (n terms summed). In float32
# (eps32 = 2**-24 ≈ 6e-8) that is ~1e-6 relative, far more after a batch norm over a few rows, and depends on the
# CPU; in float64 (eps64 = 2**-53 ≈ 1.1e-16) it stays below 1e-10 for the n·Σ|terms| <= 1e6 of these tests, while
# a float32 rounding anywhere on either path (~1e-7) or a logic slip would show. So such comparisons run in
# float64 (the `float64` fixture) and compare with FLOAT64_CLOSE.
FLOAT64_CLOSE = {"rtol": 1e-9, "atol": 1e-9}
# MLP returns its logits as float32 (losses in float32 under mixed precision): two float64 logits that agree to
# 1e-9 round to float32 values at most one float32 ulp (<= 2**-23 relative) apart.
LOGIT_CLOSE = {"rtol": 2**-23, "atol": 1e-9}

# Probabilities of one float32 tower along two paths (an export or the model in memory, XLA or not, one user's
# request or its tiled rows, another batch size): each dot product of n terms rounds to within n·eps32·Σ|terms|.
# Propagated through the tests' largest tower (the tiny trained run's light tower: 48 → 200 → 80 → 1, Σ|terms| up
# to ~5) and σ' <= 1/4, that bounds the two paths' difference by 4.5e-5 on any CPU (2.4e-7 seen here); a wrong row,
# column or history moves a probability by far more.
FLOAT32_PROBABILITY_ATOL = 5e-5


def auc_tolerance(labels, scores, atol: float) -> float:
    """How far the AUC of ``scores`` can move when each score moves by at most ``atol`` (another float32 path): only
    positive/negative pairs closer than 2·atol can swap, each by 1 / (positives · negatives)."""
    labels, scores = np.asarray(labels) > 0, np.asarray(scores, np.float64)
    positives, negatives = scores[labels], np.sort(scores[~labels])
    close = (np.searchsorted(negatives, positives + 2 * atol, side="right")
             - np.searchsorted(negatives, positives - 2 * atol, side="left"))
    return close.sum() / max(len(positives) * len(negatives), 1) + 1e-12


@pytest.fixture
def float64():
    """Keras layers and models built in the test compute in float64 (the dtype policy is restored after):
    see FLOAT64_CLOSE."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_dtype_policy(previous)


def compute_dtype() -> str:
    """The dtype Keras layers compute in now: float64 under the `float64` fixture, float32 otherwise."""
    import keras

    return keras.config.dtype_policy().compute_dtype


TINY = dict(epochs=1, embedding_dim=8, booster_units=(32, 16), jit_compile=False,
            learning_rate=5e-3)  # learns enough in one epoch that a reversed ranking is worse (export gate)


def tiny_run(tmp_path_factory):
    """(run dir, log dir) of a tiny trained model (config ``TINY``), trained once per test session and
    shared by the export, serving, scoring and checkpoint tests."""
    import shutil

    from rocket_ctr.config.schema import RocketConfig
    from rocket_ctr.datagen.synthetic import generate
    from rocket_ctr.train.trainer import Trainer

    root = tmp_path_factory.getbasetemp() / "tiny_export_run"
    log, run = root / "log", root / "run"
    if not (run / "metrics.json").exists():
        shutil.rmtree(root, ignore_errors=True)
        generate(log, n_rows=20_000, n_users=1000, n_items=1000, n_cates=20, seed=0)
        Trainer(run, log / "train", log / "test", RocketConfig(**TINY), verbose=0).fit()
    return run, log


def own_tables_for(light_interest: str) -> dict:
    """Config fields a light extractor needs beside the defaults: none, but a shared attention cannot read
    the booster's own, wider tables (``booster_embedding_dim`` 0)."""
    return {"booster_embedding_dim": 0} if light_interest == "shared" else {}


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


def assert_valid_step_form_equals_the_padded_form(layer, query, keys, mask) -> None:
    """An interest extractor's valid-steps form (training) against its padded form (XLA, serving):
    the pooled interest and the gradients with respect to the query, the keys and every weight,
    eagerly and traced with unknown batch and width (as the training step is). In float64 (the
    ``float64`` fixture) the two summation orders agree to ~1e-15, so FLOAT64_CLOSE is far above
    rounding and far below any real difference."""
    import tensorflow as tf

    from rocket_ctr.model.layers.attention import use_padded_attention

    width = int(query.shape[-1])

    def pooled_and_gradients(padded):
        use_padded_attention(layer, padded)
        with tf.GradientTape() as tape:
            tape.watch([query, keys])
            out = layer(query, keys, mask)
            loss = tf.reduce_sum(out * tf.range(1, width + 1, dtype=out.dtype))
        return [out.numpy()] + [tf.convert_to_tensor(g).numpy()
                                for g in tape.gradient(loss, [query, keys] + layer.trainable_weights)]

    skipping, padded = pooled_and_gradients(False), pooled_and_gradients(True)
    use_padded_attention(layer, False)
    assert skipping[0].dtype == np.float64
    for a, b in zip(skipping, padded):
        np.testing.assert_allclose(a, b, **FLOAT64_CLOSE)
    traced = tf.function(layer.call, input_signature=[tf.TensorSpec([None, width], tf.float64),
                                                      tf.TensorSpec([None, None, width], tf.float64),
                                                      tf.TensorSpec([None, None], tf.bool)])
    np.testing.assert_allclose(traced(query, keys, mask).numpy(), skipping[0], **FLOAT64_CLOSE)


def assert_predict_from_export_equals_predict_from_run(root, data, export_base) -> None:
    """``rocket-ctr predict`` through the export and through the run dir ``root/run`` (no XLA) score
    the same light probabilities, within the float32 forward-error bound."""
    import pyarrow.parquet as pq

    from rocket_ctr.pipelines.cli import main

    assert main(["predict", "--no-progress", "--model", str(export_base), "--data", str(data),
                 "--out", str(root / "p_export")]) == 0
    assert main(["predict", "--no-progress", "--run-dir", str(root / "run"), "--no-xla", "--data", str(data),
                 "--out", str(root / "p_run")]) == 0
    np.testing.assert_allclose(pq.read_table(root / "p_export")["p_light"].to_numpy(),
                               pq.read_table(root / "p_run")["p_light"].to_numpy(), atol=FLOAT32_PROBABILITY_ATOL)
