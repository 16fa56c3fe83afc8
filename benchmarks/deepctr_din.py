"""Training throughput of DeepCTR's reference Keras DIN on a generated rocket_ctr click log.

Runs in its own virtual environment, never in rocket_ctr's (deepctr 0.9.x is written against
``tf.keras`` 2.x and does not build under Keras 3):

    python3.11 -m venv /tmp/deepctr-venv
    /tmp/deepctr-venv/bin/pip install deepctr 'tf-keras==2.21.*' 'tensorflow==2.21.*' pyarrow
    TF_USE_LEGACY_KERAS=1 /tmp/deepctr-venv/bin/python benchmarks/deepctr_din.py \\
        --data /tmp/rocket_train_bench/log_300000/train [--cores 2]

``benchmarks/bench_train_throughput.py`` creates that venv when it is missing and runs this
script itself; the last line of stdout is a JSON object with the result.

What happens (only step 4 is timed):
1. The Parquet log is read whole with pyarrow (columns item_id, cate_id, hist_item_id,
   hist_cate_id, user_gender, user_occupation, label).
2. Raw ids (sparse 62-bit hashes, strings) become dense indices 1..V from vocabularies built
   on the data itself (DeepCTR's embeddings need dense ids; 0 is its padding/mask index).
   Candidate and history ids share one vocabulary per feature, as they share one table.
3. Histories keep their newest ``--max-len`` steps and are padded (post, zeros) to exactly
   ``--max-len``: DeepCTR's DIN takes fixed-length sequences, padding to the maximum is its
   design.
4. ``deepctr.models.DIN`` (embedding dim 18, attention MLP 80-40, DNN 200-80, relu, no BN, no
   dropout), compiled with Adam(1e-3) and binary cross-entropy, trained by
   ``model.fit(x, y, batch_size=256, epochs=1)`` over every row. A callback stamps the end of
   each batch; examples/s is counted from the end of batch ``--warmup-steps`` to the end of the
   last batch (tracing and the first steps excluded). The whole fit() is reported too.

Choices that keep the comparison with rocket_ctr like for like (both are flags):
- ``att_activation="sigmoid"``: rocket_ctr's attention activation (DeepCTR's default is Dice).
- ``l2_reg_embedding=0``: rocket_ctr has no embedding L2 (DeepCTR's default is 1e-6). DeepCTR
  still attaches an ``l2(0.0)`` regulariser to every table, so its embedding gradients are dense
  (a zero-weighted sum over each whole table); that is how the library is built, not patched here.

DeepCTR patches: none to the model code. deepctr 0.9.4 imports and trains unmodified on
TensorFlow 2.21 with ``TF_USE_LEGACY_KERAS=1`` (tf-keras 2.21). Under Keras 3 (without the
variable) building DIN fails in ``deepctr/layers/utils.py`` ``Concat.compute_mask``
(``AttributeError: 'tuple' object has no attribute 'rank'``). The one thing patched is
``import deepctr`` itself: its ``__init__`` starts a thread that asks PyPI for the latest
deepctr version (``requests.get('https://pypi.python.org/pypi/deepctr/json')``); this script
makes ``requests.get`` answer "404" without any network, so nothing is fetched or printed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check-import", action="store_true", help="only check that deepctr imports, then exit")
    p.add_argument("--data", nargs="+",
                   help="Parquet file(s) or folder(s) of the generated log (e.g. <log>/train)")
    p.add_argument("--rows", type=int, default=None, help="train on the first N rows only (default: all)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--embedding-dim", type=int, default=18)
    p.add_argument("--max-len", type=int, default=50, help="histories are padded/truncated to this")
    p.add_argument("--att-activation", default="sigmoid", help="DeepCTR default: dice")
    p.add_argument("--l2-reg-embedding", type=float, default=0.0, help="DeepCTR default: 1e-6")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=20, help="batches left out of the timing")
    p.add_argument("--cores", type=int, default=None, help="pin this process to the first N allowed cores")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--with-user-id", action="store_true",
                   help="embed user_id as a sparse feature (DeepCTR's DIN examples do; real logs with repeating users)")
    p.add_argument("--eval", nargs="+", help="test Parquet file(s)/folder(s): after training, score them")
    p.add_argument("--predictions-out",
                   help="with --eval: write user_id, label, prob of every test row here (.npz), for GAUC "
                        "computed by rocket_ctr.metrics.ranking.gauc (one GAUC implementation for both systems)")
    return p.parse_args(argv)


# ----- data: read, dense ids, padded histories (untimed) ----------------------------------------
SCALARS = ("item_id", "cate_id", "user_gender", "user_occupation")
HISTORIES = {"hist_item_id": "item_id", "hist_cate_id": "cate_id"}


def read_log(paths, rows, extra=()):
    import pyarrow.dataset as pads

    files = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(root, f) for root, _, names in os.walk(path)
                            for f in names if f.endswith(".parquet"))
        else:
            files.append(path)
    if not files:
        raise SystemExit(f"no Parquet files in {paths}")
    table = pads.dataset(files, format="parquet").to_table(columns=[*SCALARS, *extra, *HISTORIES, "label"])
    return table.slice(0, rows) if rows else table


def dense_ids(arrays):
    """Maps the raw ids of several arrays (sharing one vocabulary) to 1..V; returns (mapped, the
    sorted vocabulary of raw ids)."""
    import numpy as np

    sizes = [len(a) for a in arrays]
    vocab, inverse = np.unique(np.concatenate(arrays), return_inverse=True)
    parts = np.split(inverse.reshape(-1).astype(np.int32) + 1, np.cumsum(sizes)[:-1])
    return parts, vocab


def list_values(column):
    """A list column as (flat values of its lists, offsets from 0)."""
    import numpy as np

    column = column.combine_chunks()
    offsets = column.offsets.to_numpy().astype(np.int64)
    return column.values.slice(offsets[0], offsets[-1] - offsets[0]).to_numpy(), offsets - offsets[0]


def padded(values, offsets, max_len):
    """Flat list values + offsets -> [n, max_len]: newest max_len steps, left-aligned, 0-padded."""
    import numpy as np

    n = len(offsets) - 1
    lengths = np.minimum(np.diff(offsets), max_len)
    starts = offsets[1:] - lengths  # newest steps are at the end of each list
    out = np.zeros((n, max_len), dtype=np.int32)
    row = np.repeat(np.arange(n), lengths)
    col = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    out[row, col] = values[np.repeat(starts, lengths) + col]
    return out


def prepare(table, max_len, scalars=SCALARS, test=None):
    """Dense ids from the training table's vocabularies; with ``test``, the same mapping applied to
    it (ids unseen in training -> 0). Returns (x, y, vocab, test_x, test_y)."""
    import numpy as np

    x, vocab, test_x = {}, {}, {}
    for name in scalars:
        hist = [h for h, base in HISTORIES.items() if base == name]
        arrays = [table[name].to_numpy()]
        lists = {}
        for h in hist:
            flat, lists[h] = list_values(table[h])
            arrays.append(flat)
        mapped, known = dense_ids(arrays)
        vocab[name] = len(known)
        x[name] = mapped[0]
        for h, values in zip(hist, mapped[1:]):
            x[h] = padded(values, lists[h], max_len)
        if test is not None:
            test_x[name] = _lookup(known, test[name].to_numpy())
            for h in hist:
                flat, offsets = list_values(test[h])
                test_x[h] = padded(_lookup(known, flat), offsets, max_len)
    y = table["label"].to_numpy().astype(np.float32)
    test_y = test["label"].to_numpy().astype(np.float32) if test is not None else None
    return x, y, vocab, test_x, test_y


def _lookup(known, values):
    """Raw ids -> 1..V by the sorted training vocabulary ``known``; unseen ids -> 0."""
    import numpy as np

    at = np.clip(np.searchsorted(known, values), 0, len(known) - 1)
    return np.where(known[at] == values, at + 1, 0).astype(np.int32)


# ----- model and timed training --------------------------------------------------------------------
def build_din(DIN, SparseFeat, VarLenSparseFeat, vocab: dict, dim: int, max_len: int,
              att_activation: str, l2_reg_embedding: float, seed: int, scalars=SCALARS):
    """DeepCTR's DIN at the benchmark's sizes (attention 80-40, DNN 200-80). Returns (model, config)."""
    columns = [SparseFeat(name, vocab[name] + 1, embedding_dim=dim) for name in scalars]
    columns += [VarLenSparseFeat(SparseFeat(h, vocab[base] + 1, embedding_dim=dim, embedding_name=base),
                                 maxlen=max_len) for h, base in HISTORIES.items()]
    config = dict(history_feature_list=["item_id", "cate_id"], dnn_hidden_units=(200, 80),
                  att_hidden_size=(80, 40), att_activation=att_activation, dnn_activation="relu",
                  dnn_use_bn=False, dnn_dropout=0.0, l2_reg_dnn=0.0, l2_reg_embedding=l2_reg_embedding,
                  seed=seed)
    return DIN(columns, **config), config


def import_deepctr():
    """Imports deepctr with its PyPI version check (a background HTTP request) disabled."""
    import requests

    class _NoUpdateInfo:
        status_code, text = 404, ""

    requests.get = lambda *args, **kwargs: _NoUpdateInfo()  # deepctr/utils.py check_version()
    import deepctr
    from deepctr.feature_column import SparseFeat, VarLenSparseFeat
    from deepctr.models import DIN
    return deepctr, DIN, SparseFeat, VarLenSparseFeat


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except (ImportError, AttributeError):
        return None


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.check_import:
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        import pyarrow  # noqa: F401
        import tf_keras  # noqa: F401
        print(f"deepctr {import_deepctr()[0].__version__} imports")
        return 0
    if not args.data:
        raise SystemExit("--data is required")
    if args.cores:  # before TensorFlow starts: its thread pools size themselves to the affinity
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    started = time.perf_counter()
    scalars = (*SCALARS, "user_id") if args.with_user_id else SCALARS
    extra = ("user_id",) if args.with_user_id else ()
    table = read_log(args.data, args.rows, extra)
    test = read_log(args.eval, None, ("user_id",)) if args.eval else None
    x, y, vocab, test_x, test_y = prepare(table, args.max_len, scalars, test)
    prep_seconds = time.perf_counter() - started
    n = len(y)
    print(f"deepctr_din: {n:,} rows prepared in {prep_seconds:.1f} s; vocabularies {vocab}", file=sys.stderr)

    import tensorflow as tf
    deepctr, DIN, SparseFeat, VarLenSparseFeat = import_deepctr()
    keras = tf.keras
    if not keras.Model.__module__.startswith("tf_keras"):
        raise SystemExit(f"tf.keras.Model is from {keras.Model.__module__}: run with TF_USE_LEGACY_KERAS=1 "
                         "and tf-keras installed")
    keras.utils.set_random_seed(args.seed)

    dim = args.embedding_dim
    model, config = build_din(DIN, SparseFeat, VarLenSparseFeat, vocab, dim, args.max_len,
                              args.att_activation, args.l2_reg_embedding, args.seed, scalars)
    model.compile(keras.optimizers.Adam(args.learning_rate), "binary_crossentropy")

    class BatchClock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.ends, self.sizes = [], []

        def on_train_batch_end(self, batch, logs=None):  # logs arrive as numpy: the step has finished
            self.ends.append(time.perf_counter())

    clock = BatchClock()
    fit_started = time.perf_counter()
    model.fit({k: x[k] for k in model.input_names}, y, batch_size=args.batch_size, epochs=args.epochs,
              verbose=0, callbacks=[clock])
    fit_seconds = time.perf_counter() - fit_started

    steps_per_epoch = -(-n // args.batch_size)
    sizes = ([args.batch_size] * (steps_per_epoch - 1) + [n - args.batch_size * (steps_per_epoch - 1)]) * args.epochs
    warm = args.warmup_steps
    if len(clock.ends) != len(sizes) or len(sizes) <= warm + 1:
        raise SystemExit(f"{len(clock.ends)} batches timed ({len(sizes)} expected, warm-up {warm}): use more rows")
    steady_seconds = clock.ends[-1] - clock.ends[warm - 1] if warm else clock.ends[-1] - fit_started
    steady_examples = sum(sizes[warm:])
    result = {
        "system": "deepctr DIN",
        "examples_per_s": steady_examples / steady_seconds,
        "fit_examples_per_s": n * args.epochs / fit_seconds,
        "steady_examples": steady_examples, "steady_seconds": steady_seconds,
        "steps": len(sizes), "warmup_steps": warm, "fit_seconds": fit_seconds, "rows": n,
        "prep_seconds": prep_seconds, "cores": len(os.sched_getaffinity(0)),
        "vocabulary_sizes": vocab, "params": int(model.count_params()),
        "versions": {"deepctr": deepctr.__version__, "tensorflow": tf.__version__, "tf_keras": _version("tf_keras")},
        "config": {**config, "dnn_hidden_units": [200, 80], "att_hidden_size": [80, 40],
                   "embedding_dim": dim, "max_len": args.max_len, "batch_size": args.batch_size,
                   "epochs": args.epochs, "optimizer": f"Adam({args.learning_rate})",
                   "features": {"sparse": list(scalars), "sequence": list(HISTORIES)}},
    }
    if test is not None:
        import numpy as np

        probs = model.predict({k: test_x[k] for k in model.input_names}, batch_size=4096, verbose=0).reshape(-1)
        result["test_rows"] = len(test_y)
        if args.predictions_out:
            np.savez(args.predictions_out, user_id=test["user_id"].to_numpy(), label=test_y, prob=probs)
            result["predictions"] = args.predictions_out
    print(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
