"""Serving latency of DeepCTR's reference Keras DIN as a TensorFlow SavedModel, in process.

Runs in the DeepCTR venv, never in rocket_ctr's (see ``deepctr_din.py`` for why and how the
venv is made):

    TF_USE_LEGACY_KERAS=1 /tmp/deepctr-venv/bin/python benchmarks/deepctr_din_serving.py \\
        [--data /tmp/rocket_serving_bench/log_200000/train] [--candidates 200] [--history 50] \\
        [--requests 500] [--fit-steps 20]

The last line of stdout is a JSON object: p50/p90/p99/max/mean ms of one request, plus how the
model was built. ``benchmarks/bench_serving_latency.py`` runs it with ``--serve-stdin`` instead,
to interleave its chunks of requests with rocket_ctr's (see "Interleaved mode" below).

What happens:
1. Vocabularies. With ``--data`` the log is read with pyarrow and raw ids are mapped to dense
   indices 1..V exactly as ``deepctr_din.py`` does (DeepCTR needs dense ids; candidate and history
   share one vocabulary per feature), and V comes from the data; without it V comes from
   ``--vocab`` (default: the generator's defaults, 20 000 items, 200 categories).
2. ``deepctr.models.DIN`` with the training benchmark's configuration: embedding 18, attention
   MLP 80-40 with ``att_activation="sigmoid"``, DNN 200-80 relu, no BN, no dropout, features
   item_id / cate_id / user_gender / user_occupation (SparseFeat) and hist_item_id /
   hist_cate_id (VarLenSparseFeat, maxlen ``--history``, sharing the item/cate tables).
3. Optionally ``--fit-steps`` batches of 256 rows of the log (weights do not change latency;
   this only proves the exported model is a trained Keras model, not a fresh graph).
4. Saved as a SavedModel with ``tf.saved_model.save(model, DIR)`` (TF 2.21 + tf-keras 2.21: it
   traces the Keras model's call into ``signatures["serving_default"]``), then loaded back with
   ``tf.saved_model.load(DIR)``: what TF Serving would execute, without the Python model object.
   The loaded signature's outputs are checked against ``model.predict`` on the same request.
5. One request = 1 user x N candidates. DeepCTR's DIN has no one-user-many-candidates input:
   its serving signature takes N independent rows, so the user's profile and history are
   repeated N times ([N, 1] and [N, L] int32 tensors) and the attention runs over the history
   N times. The request's tensors are built once; each timed call is
   ``signature(**tensors)["<output>"].numpy()``, the same shape of call rocket_ctr's in-process
   benchmark makes.

Interleaved mode (``--serve-stdin``): after building, saving, loading and ``--warmup`` calls it
prints ``@@ {"ready": ...}`` and then reads commands from stdin, one per line: ``run K`` times
K calls and answers ``@@ {"seconds": [...]}``; ``quit`` exits. Only lines starting with ``@@ `` are
answers (TensorFlow may print other things). The parent alternates chunks of its own cases with
chunks of this one, so background load falls on both alike, and while one side runs the other
is blocked on a pipe (no competition for the cores).

DeepCTR patches: only the PyPI version check in ``import deepctr`` (see ``deepctr_din.py``).
SavedModel export needs none: ``tf.saved_model.save`` works on deepctr 0.9.4's DIN under
TF 2.21 with ``TF_USE_LEGACY_KERAS=1``. If it ever fails, the error is printed and the script
falls back to ``model.save(DIR, save_format="tf")`` (the tf-keras SavedModel writer) and then
to serving a ``tf.function`` of the in-memory model; the JSON's ``"export"`` field says which one
was timed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PREFIX = "@@ "
DEFAULT_VOCAB = {"item_id": 20_000, "cate_id": 200, "user_gender": 3, "user_occupation": 21}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", nargs="+", help="Parquet file(s)/folder(s) of the log: vocabularies (and --fit-steps)")
    p.add_argument("--rows", type=int, default=60_000, help="rows of --data read (default: %(default)s)")
    p.add_argument("--vocab", default=None,
                   help="without --data: name=V,... vocabulary sizes (default: %s)"
                        % ",".join(f"{k}={v}" for k, v in DEFAULT_VOCAB.items()))
    p.add_argument("--candidates", type=int, default=200, help="N rows per request (default: %(default)s)")
    p.add_argument("--history", type=int, default=50, help="history length = DIN maxlen (default: %(default)s)")
    p.add_argument("--requests", type=int, default=500, help="timed requests (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=20, help="untimed requests first (default: %(default)s)")
    p.add_argument("--fit-steps", type=int, default=0, help="train this many batches of 256 first (needs --data)")
    p.add_argument("--embedding-dim", type=int, default=18)
    p.add_argument("--att-activation", default="sigmoid", help="DeepCTR default: dice")
    p.add_argument("--export-dir", default=None, help="where the SavedModel goes (default: a temporary folder)")
    p.add_argument("--serve-stdin", action="store_true", help="interleaved mode (see the module doc)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def vocabularies(args):
    """(vocabulary sizes, training arrays or None) from --data or --vocab."""
    if args.data:
        sys.path.insert(0, str(HERE))
        from deepctr_din import prepare, read_log

        x, y, vocab, _, _ = prepare(read_log(args.data, args.rows), args.history)
        return vocab, (x, y)
    vocab = dict(DEFAULT_VOCAB)
    if args.vocab:
        for part in args.vocab.split(","):
            name, _, value = part.partition("=")
            if name.strip() not in vocab:
                raise SystemExit(f"--vocab: unknown feature {name!r} (known: {sorted(vocab)})")
            vocab[name.strip()] = int(value)
    return vocab, None


def build_model(args, vocab):
    sys.path.insert(0, str(HERE))
    from deepctr_din import build_din, import_deepctr

    deepctr, DIN, SparseFeat, VarLenSparseFeat = import_deepctr()
    model, config = build_din(DIN, SparseFeat, VarLenSparseFeat, vocab, args.embedding_dim, args.history,
                              args.att_activation, 0.0, args.seed)
    return deepctr, model, config


def one_user_request(model, vocab, n, history, seed):
    """1 user x n candidates as DeepCTR's rows: the user's profile and history repeated n times."""
    import numpy as np

    rng = np.random.default_rng(seed)
    user = {"user_gender": rng.integers(1, vocab["user_gender"] + 1),
            "user_occupation": rng.integers(1, vocab["user_occupation"] + 1)}
    hist = {"hist_item_id": rng.integers(1, vocab["item_id"] + 1, history),
            "hist_cate_id": rng.integers(1, vocab["cate_id"] + 1, history)}
    rows = {"item_id": rng.integers(1, vocab["item_id"] + 1, n), "cate_id": rng.integers(1, vocab["cate_id"] + 1, n)}
    rows.update({k: np.full(n, v) for k, v in user.items()})
    rows.update({k: np.repeat(v[None, :], n, axis=0) for k, v in hist.items()})
    out = {}
    for tensor in model.inputs:
        name = tensor.name.split(":")[0]
        value = rows[name].astype(tensor.dtype.as_numpy_dtype)
        out[name] = value.reshape(n, -1) if tensor.shape.rank == 2 else value
    return out


def export(model, directory):
    """SavedModel of ``model`` -> (serving callable(**tensors) -> {name: tensor}, how, errors)."""
    import tensorflow as tf

    errors = []
    attempts = [("tf.saved_model.save", lambda: tf.saved_model.save(model, directory)),
                ("model.save(save_format='tf')", lambda: model.save(directory, save_format="tf"))]
    for how, save in attempts:
        try:
            save()
            loaded = tf.saved_model.load(directory)
            return (loaded.signatures["serving_default"], f"SavedModel via {how}, loaded with tf.saved_model.load",
                    errors, loaded)
        except Exception as err:  # noqa: BLE001 - reported in the JSON, next attempt
            errors.append(f"{how}: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
            print(f"deepctr_din_serving: {errors[-1]}", file=sys.stderr)
    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in model.inputs]

    @tf.function(input_signature=[{s.name: s for s in specs}])
    def serve(inputs):
        return {"output": model(inputs, training=False)}
    return (lambda **kw: serve(kw)), "tf.function of the in-memory model (SavedModel export failed)", errors, None


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    started = time.perf_counter()
    vocab, data = vocabularies(args)
    deepctr, model, config = build_model(args, vocab)
    keras = tf.keras
    if not keras.Model.__module__.startswith("tf_keras"):
        raise SystemExit(f"tf.keras.Model is from {keras.Model.__module__}: run with TF_USE_LEGACY_KERAS=1")
    fitted = 0
    if args.fit_steps and data is not None:
        x, y = data
        rows = min(len(y), 256 * args.fit_steps)
        model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy")
        model.fit({k: x[k][:rows] for k in model.input_names}, y[:rows], batch_size=256, epochs=1, verbose=0)
        fitted = rows // 256

    scratch = None if args.export_dir else tempfile.TemporaryDirectory(prefix="deepctr-din-savedmodel-")
    folder = args.export_dir or str(Path(scratch.name) / "1")
    try:
        return serve_and_time(args, model, folder, deepctr, config, vocab, fitted, started)
    finally:
        if scratch is not None:
            scratch.cleanup()


def serve_and_time(args, model, folder, deepctr, config, vocab, fitted, started) -> int:
    import numpy as np
    import tensorflow as tf

    serve, how, errors, _keep = export(model, folder)
    request = one_user_request(model, vocab, args.candidates, args.history, args.seed)
    tensors = {k: tf.constant(v) for k, v in request.items()}
    outputs = serve(**tensors)
    output_name = sorted(outputs)[0]
    served = outputs[output_name].numpy().reshape(-1)
    expected = model.predict(request, batch_size=args.candidates, verbose=0).reshape(-1)
    max_diff = float(np.max(np.abs(served - expected)))
    if not max_diff <= 1e-5:
        raise SystemExit(f"served DIN differs from model.predict by {max_diff}")

    def call():
        return serve(**tensors)[output_name].numpy()

    for _ in range(args.warmup):
        call()
    info = {"system": "deepctr DIN", "export": how, "export_dir": folder, "export_errors": errors,
            "candidates": args.candidates, "history": args.history, "fit_batches": fitted,
            "vocabulary_sizes": vocab, "params": int(model.count_params()), "max_abs_diff_vs_predict": max_diff,
            "inputs": {k: [list(v.shape), v.dtype.name] for k, v in tensors.items()}, "output": output_name,
            "setup_seconds": time.perf_counter() - started,
            "versions": {"deepctr": deepctr.__version__, "tensorflow": tf.__version__,
                         "tf_keras": getattr(__import__("tf_keras"), "__version__", None)},
            "config": {**config, "dnn_hidden_units": [200, 80], "att_hidden_size": [80, 40],
                       "embedding_dim": args.embedding_dim, "maxlen": args.history}}

    if args.serve_stdin:
        print(PREFIX + json.dumps({"ready": info}, default=str), flush=True)
        for line in sys.stdin:
            command = line.split()
            if not command:
                continue
            if command[0] == "quit":
                break
            if command[0] == "run":
                seconds = []
                for _ in range(int(command[1])):
                    t = time.perf_counter()
                    call()
                    seconds.append(time.perf_counter() - t)
                print(PREFIX + json.dumps({"seconds": seconds}), flush=True)
            else:
                print(PREFIX + json.dumps({"error": f"unknown command {line.strip()!r}"}), flush=True)
        return 0

    seconds = []
    for _ in range(args.requests):
        t = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - t)
    ms = np.asarray(seconds) * 1e3
    info.update({f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)},
                max_ms=float(ms.max()), mean_ms=float(ms.mean()), requests=len(ms))
    print(json.dumps(info, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
