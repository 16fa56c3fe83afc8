"""Light-tower export for TF Serving: the serving module, atomic versioned writing, warmup, verification.

``export_light`` writes ``BASE/<version>/`` in TF Serving's layout::

    saved_model.pb, variables/, assets.extra/tf_serving_warmup_requests, assets.extra/rocket_ctr_export.json

The SavedModel is a ``tf.Module`` holding the ``IdMapper`` and the variables of one tower and
the bottom it reads, nothing else (the booster is never in a light export). Two signatures, raw
ids in (the id -> row mapping runs in the graph), ``probabilities`` [N] float32 out:

* ``serving_default``: one request = one user + N candidates. User profile inputs have shape
  [1], history inputs [1, L] (oldest -> newest; ``hist_len`` is L), candidate inputs [N]. The
  history term of the attention is computed once, not once per candidate.
* ``score_rows``: N independent rows: every id input [N], histories [N, L] left-aligned and
  padded, plus ``hist_len`` [N] int32.

N and L are free (``None`` dims: no re-tracing). Histories longer than ``max_history`` keep their
newest steps, as in training. With XLA the model part runs under ``jit_compile=True`` (the
string hashing of the id mapping stays outside it), on inputs padded to a multiple of
``CANDIDATE_PAD`` candidates and to the FeatureSpec's history buckets, so XLA compiles a handful
of shapes, which the warmup records cover.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from rocket_ctr.errors import InputError
from rocket_ctr.id_mapping import IdMapper
from rocket_ctr.signatures import (OUTPUT, SCORE_ROWS, SERVING_DEFAULT, candidate_columns, describe_signatures,
                                   request_signature, rows_signature)
from rocket_ctr.spec import HIST_LEN, FeatureSpec

WARMUP_FILE, INFO_FILE = "tf_serving_warmup_requests", "rocket_ctr_export.json"
CANDIDATE_PAD = 64  # XLA exports: N is padded up to a multiple of this (few compiled shapes)
TOLERANCE = 1e-5
MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many


class VerificationError(InputError):
    """The written SavedModel does not reproduce the in-memory tower (the export is discarded)."""


@dataclasses.dataclass
class ExportResult:
    """What :func:`export_light` wrote. ``max_abs_diff`` is the verification's largest gap."""

    path: Path
    version: int
    tower: str
    jit_compile: bool
    checked_rows: int
    max_abs_diff: float
    warmup_records: int


# ----- the serving module ------------------------------------------------------------------------
def tower_logit(model, tower: str, rows: dict) -> tf.Tensor:
    """One tower's logit on row indices, inference mode (the in-memory reference)."""
    return getattr(model, tower)(model.bottom_of(tower)(rows, training=False), training=False)


def _pad_dim(x: tf.Tensor, axis: int, size) -> tf.Tensor:
    paddings = [[0, 0]] * x.shape.rank
    paddings[axis] = [0, size - tf.shape(x)[axis]]
    return tf.pad(x, paddings)


def _assert_same(values: dict, axis: int, what: str) -> list:
    """Graph asserts that every tensor of ``values`` has the first one's size along ``axis``."""
    names = list(values)
    first = tf.shape(values[names[0]])[axis]
    return [tf.debugging.assert_equal(tf.shape(values[c])[axis], first,
                                      message=f"{what}: input '{c}' and input '{names[0]}' differ in length")
            for c in names[1:]]


class ServingModule(tf.Module):
    """The exported object: IdMapper + one tower and its bottom, with two signatures.

    Args:
        model: a built RocketModel.
        tower: ``light`` (served) or ``booster`` (benchmarking only).
        jit_compile: run the model part under XLA.
    """

    def __init__(self, model, tower: str = "light", jit_compile: bool = True):
        super().__init__(name=f"rocket_ctr_{tower}")
        spec = self.spec = model.spec
        self.mapper = IdMapper(spec)
        # Only this tower's variables are tracked; saving fails if a signature touched any other.
        layers = (model.bottom_of(tower), getattr(model, tower))
        self.tower_weights = {v.path: v.value for layer in layers for v in layer.weights}
        self._jit = jit_compile

        def probabilities(rows):
            return tf.sigmoid(tower_logit(model, tower, rows))

        self._compute = tf.function(probabilities, jit_compile=True) if jit_compile else probabilities
        self.serving_default = tf.function(self._request, input_signature=[request_signature(spec)])
        self.score_rows = tf.function(self._rows, input_signature=[rows_signature(spec)])

    def _padded(self, rows: dict, batch_columns, n):
        """XLA only: pads the batch to a multiple of CANDIDATE_PAD and histories to a bucket."""
        if not self._jit:
            return rows
        spec, rows = self.spec, dict(rows)
        size = (n + CANDIDATE_PAD - 1) // CANDIDATE_PAD * CANDIDATE_PAD
        for c in batch_columns:
            rows[c] = _pad_dim(rows[c], 0, size)
        buckets = tf.constant(spec.history_buckets, tf.int32)
        steps = tf.shape(rows[spec.history_columns[0]])[1]
        width = tf.gather(buckets, tf.reduce_sum(tf.cast(buckets < steps, tf.int32)))
        for c in spec.history_columns:
            rows[c] = _pad_dim(rows[c], 1, width)
        return rows

    def _request(self, inputs: dict) -> dict:
        spec = self.spec
        candidates = {c: inputs[c] for c in candidate_columns(spec)}
        n = tf.shape(candidates[candidate_columns(spec)[0]])[0]
        checks = _assert_same(candidates, 0, "serving_default candidates")
        checks += _assert_same({c: inputs[c] for c in spec.history_columns}, 1, "serving_default histories")
        checks.append(tf.debugging.assert_positive(n, message="serving_default: no candidates (N = 0)"))
        with tf.control_dependencies(checks):  # clear errors before any shape-dependent op runs
            features = {c: tf.identity(inputs[c][:, -spec.max_history:] if c in spec.history_columns else inputs[c])
                        for c in inputs}  # newest steps, as in training
        rows = self.mapper(features)
        rows[HIST_LEN] = tf.shape(rows[spec.history_columns[0]])[1:2]
        rows = self._padded(rows, candidate_columns(spec), n)
        return {OUTPUT: self._compute(rows)[:n]}

    def _rows(self, inputs: dict) -> dict:
        spec = self.spec
        batch = {c: inputs[c] for c in (*spec.scalar_id_columns, *spec.history_columns, HIST_LEN)}
        n = tf.shape(inputs[HIST_LEN])[0]
        checks = _assert_same(batch, 0, "score_rows")
        checks += _assert_same({c: inputs[c] for c in spec.history_columns}, 1, "score_rows histories")
        checks.append(tf.debugging.assert_positive(n, message="score_rows: no rows (N = 0)"))
        steps = tf.shape(inputs[spec.history_columns[0]])[1]
        checks.append(tf.debugging.assert_non_negative(inputs[HIST_LEN], message="score_rows: input 'hist_len' "
                                                       "must be >= 0"))
        checks.append(tf.debugging.assert_less_equal(inputs[HIST_LEN], steps, message="score_rows: input "
                                                     "'hist_len' exceeds the width of the history inputs"))
        with tf.control_dependencies(checks):
            inputs = {c: tf.identity(v) for c, v in inputs.items()}
        lengths = inputs[HIST_LEN]
        # keep each row's newest steps: row i reads steps [len_i - keep_i, len_i), left-aligned
        keep = tf.minimum(lengths, spec.max_history)
        index = (lengths - keep)[:, None] + tf.range(tf.minimum(steps, spec.max_history))[None, :]
        features = {c: inputs[c] for c in spec.scalar_id_columns}
        features.update({c: tf.gather(inputs[c], index, batch_dims=1) for c in spec.history_columns})
        rows = self.mapper(features)
        rows[HIST_LEN] = keep
        rows = self._padded(rows, (*spec.scalar_id_columns, *spec.history_columns, HIST_LEN), n)
        return {OUTPUT: self._compute(rows)[:n]}


# ----- sample rows: verification and warmup ------------------------------------------------------
def _edge_rows(spec: FeatureSpec, template: dict, seed: int = 0) -> dict:
    """Rows with unseen ids, empty histories and over-long histories (truncation)."""
    rng = np.random.default_rng(seed)
    n, width = 6, spec.max_history + 5
    lengths = np.array([0, width, 0, width, 1, spec.max_history], np.int32)
    rows = {HIST_LEN: lengths}
    for f in spec.id_features:
        seen = template[f.name][rng.integers(0, len(template[f.name]), n)]
        if f.dtype == "string":
            unseen = np.array([f"__unseen_{f.name}_{i}".encode() for i in range(n)], dtype=object)
        else:
            unseen = np.array([2**62 + i if i % 2 else -(i + 7) for i in range(n)], np.int64)
        rows[f.name] = np.where(np.arange(n) < 2, unseen, seen)
        if f.history:
            steps = np.arange(width)
            if f.dtype == "string":
                hist = np.array([[f"h{i}_{s}".encode() for s in steps] for i in range(n)], dtype=object)
            else:
                hist = (10**15 + np.arange(n)[:, None] * 1000 + steps[None, :]).astype(np.int64)
            rows[f.history] = np.where(steps[None, :] < lengths[:, None], hist, _pad_value(hist))
    return rows


def _pad_value(array: np.ndarray):
    return b"" if array.dtype == object else 0


def _random_rows(spec: FeatureSpec, n: int, seed: int = 0) -> dict:
    """Rows with random ids when no data is given."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, spec.max_history + 1, n).astype(np.int32)
    rows = {HIST_LEN: lengths}
    for f in spec.id_features:
        ids = rng.integers(0, 10 * max(f.num_rows, 1), (n, spec.max_history + 1))
        if f.dtype == "string":
            ids = np.array([[str(v).encode() for v in r] for r in ids], dtype=object)
        rows[f.name] = ids[:, 0]
        if f.history:
            mask = np.arange(spec.max_history)[None, :] < lengths[:, None]
            rows[f.history] = np.where(mask, ids[:, 1:], _pad_value(ids))
    return rows


def sample_rows(spec: FeatureSpec, data=None, n: int = 256, seed: int = 0) -> dict:
    """Raw feature rows for verification and warmup: real rows of ``data`` (else random ones)
    followed by edge rows (unseen ids, empty and over-long histories).

    Returns:
        {column: array}: id columns [n'], histories [n', W] left-aligned, ``hist_len`` [n'] int32.
    """
    if data is not None:
        from rocket_ctr.data import ClickLogReader

        reader = ClickLogReader(data, spec, batch_size=n, bucket_by_length=False)
        features, _ = next(iter(reader))
        base = {c: features[c] for c in (*spec.scalar_id_columns, *spec.history_columns, HIST_LEN)}
    else:
        base = _random_rows(spec, n, seed)
    edge = _edge_rows(spec, base, seed)
    width = max(base[spec.history_columns[0]].shape[1], edge[spec.history_columns[0]].shape[1])
    rows = {}
    for c in base:
        parts = [base[c], edge[c]]
        if c in spec.history_columns:
            parts = [np.pad(p, [(0, 0), (0, width - p.shape[1])], constant_values=_pad_value(p)) for p in parts]
        rows[c] = np.concatenate(parts)
    return rows


def _truncated(spec: FeatureSpec, rows: dict) -> dict:
    """Numpy reference of the in-graph truncation: each history keeps its newest steps."""
    lengths = rows[HIST_LEN].astype(np.int64)
    keep = np.minimum(lengths, spec.max_history)
    width = int(keep.max()) if len(keep) else 0
    out = dict(rows, **{HIST_LEN: keep.astype(np.int32)})
    for c in spec.history_columns:
        hist = rows[c]
        new = np.full((len(hist), width), _pad_value(hist), dtype=hist.dtype)
        for i, (length, k) in enumerate(zip(lengths, keep)):
            new[i, :k] = hist[i, length - k:length]
        out[c] = new
    return out


def reference_probabilities(model, tower: str, rows: dict) -> np.ndarray:
    """The in-memory tower's click probabilities for raw rows (numpy truncation + IdMapper)."""
    spec = model.spec
    truncated = _truncated(spec, rows)
    mapped = IdMapper(spec)({c: tf.constant(v) for c, v in truncated.items() if c != HIST_LEN})
    mapped[HIST_LEN] = tf.constant(truncated[HIST_LEN], tf.int32)
    return tf.sigmoid(tower_logit(model, tower, mapped)).numpy()


def one_user_request(spec: FeatureSpec, rows: dict, user: int, candidates) -> dict:
    """``serving_default`` inputs: row ``user``'s profile and real history + ``candidates``' items."""
    candidates = np.asarray(candidates)
    length = int(rows[HIST_LEN][user])
    request = {f.name: rows[f.name][user:user + 1] for f in spec.user_features}
    request.update({c: rows[c][user:user + 1, :length] for c in spec.history_columns})
    request.update({c: rows[c][candidates] for c in candidate_columns(spec)})
    return request


def _tiled(spec: FeatureSpec, rows: dict, user: int, candidates) -> dict:
    """The rows ``score_rows`` sees for :func:`one_user_request` (user side repeated)."""
    candidates = np.asarray(candidates)
    n = len(candidates)
    out = {c: np.repeat(rows[c][user:user + 1], n, axis=0) for c in (*spec.history_columns, HIST_LEN)}
    out.update({f.name: np.repeat(rows[f.name][user:user + 1], n) for f in spec.user_features})
    out.update({c: rows[c][candidates] for c in candidate_columns(spec)})
    return out


def verify_export(path, model, tower: str, rows: dict, users: int = 8) -> float:
    """Loads the SavedModel at ``path`` and compares both signatures with the in-memory tower.

    Returns:
        The largest absolute probability difference.
    Raises:
        VerificationError: a difference above TOLERANCE.
    """
    spec = model.spec
    loaded = tf.saved_model.load(str(path))
    score_rows, request = loaded.signatures[SCORE_ROWS], loaded.signatures[SERVING_DEFAULT]
    worst = float(np.max(np.abs(score_rows(**_tensors(rows))[OUTPUT].numpy()
                                - reference_probabilities(model, tower, rows))))
    n = len(rows[HIST_LEN])
    everyone = np.arange(n)
    for user in [*range(min(users, n)), *range(max(n - 6, 0), n)]:  # some real users + the edge rows
        served = request(**_tensors(one_user_request(spec, rows, user, everyone)))[OUTPUT].numpy()
        expected = reference_probabilities(model, tower, _tiled(spec, rows, user, everyone))
        worst = max(worst, float(np.max(np.abs(served - expected))))
    if not worst <= TOLERANCE:
        raise VerificationError(f"exported {tower} tower differs from the in-memory model by {worst:.3g} "
                                f"(> {TOLERANCE}); nothing was written")
    return worst


def _tensors(inputs: dict) -> dict:
    return {k: tf.constant(v) for k, v in inputs.items()}


# ----- warmup records ----------------------------------------------------------------------------
def warmup_logs(spec: FeatureSpec, rows: dict, max_candidates: int = 512) -> list:
    """TF Serving warmup ``PredictionLog``s built from ``rows``: one-user requests for every
    history bucket x N in multiples of CANDIDATE_PAD up to ``max_candidates``, plus row batches.
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    def log(signature, inputs):
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = signature
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))

    n, logs = len(rows[HIST_LEN]), []
    sizes = range(CANDIDATE_PAD, max(max_candidates, CANDIDATE_PAD) + 1, CANDIDATE_PAD)
    for b, width in enumerate(spec.history_buckets):
        # a history of `width` real (item, category) pairs taken from the candidate columns
        steps = (np.arange(width) + b) % n
        history = {f.history: rows[f.name][steps][None, :] for f in spec.sequence_features}
        for i, size in enumerate(sizes):
            user = (b + i) % n
            inputs = one_user_request(spec, rows, user, np.arange(size) % n)
            inputs.update(history)
            logs.append(log(SERVING_DEFAULT, inputs))
        for size in (CANDIDATE_PAD, 4 * CANDIDATE_PAD):
            index = np.arange(size) % n
            batch = {c: rows[c][index] for c in (*spec.scalar_id_columns, HIST_LEN)}
            batch[HIST_LEN] = np.minimum(batch[HIST_LEN], width).astype(np.int32)
            batch.update({c: _fit(rows[c][index], width) for c in spec.history_columns})
            logs.append(log(SCORE_ROWS, batch))
    return logs[:MAX_WARMUP_RECORDS]


def _fit(hist: np.ndarray, width: int) -> np.ndarray:
    if hist.shape[1] >= width:
        return hist[:, :width]
    return np.pad(hist, [(0, 0), (0, width - hist.shape[1])], constant_values=_pad_value(hist))


def write_warmup(path, logs: list) -> None:
    """Writes ``logs`` as the TFRecord file TF Serving replays at load."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in logs:
            writer.write(record.SerializeToString())


# ----- versions ----------------------------------------------------------------------------------
def list_versions(base) -> list[int]:
    """Complete versions under ``base`` (numeric folders holding a saved_model.pb), ascending."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir()
                  if p.name.isdigit() and (p / "saved_model.pb").is_file())


def next_version(base) -> int:
    """1 + the largest numeric folder name under ``base`` (1 for a new base)."""
    base = Path(base)
    numbers = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    return max(numbers, default=0) + 1


def resolve_export(path) -> Path:
    """``BASE/<version>`` or ``BASE`` (-> its highest version) -> the version folder.

    Raises:
        InputError: no SavedModel there.
    """
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = list_versions(path)
    if not versions:
        raise InputError(f"{path}: neither a SavedModel folder nor an export base holding versions")
    return path / str(versions[-1])


# ----- export ------------------------------------------------------------------------------------
def _load(source, tower: str):
    if isinstance(source, (str, os.PathLike)):
        from rocket_ctr.trainer import restore_model

        model, _, _ = restore_model(source)
    else:
        model = source
    if tower not in ("light", "booster"):
        raise InputError(f"tower must be light or booster, got {tower!r}")
    if tower not in model.towers:
        raise InputError(f"this run (mode {model.config.mode}) has no {tower} tower")
    return model


def export_light(source, export_base, version: int | None = None, *, tower: str = "light",
                 jit_compile: bool = True, data=None, sample_size: int = 256,
                 warmup_candidates: int = 512) -> ExportResult:
    """Exports one tower (default: the light one) as ``export_base/<version>/`` for TF Serving.

    Written to a temporary folder beside the target, verified, then renamed into place, so a
    server polling ``export_base`` never sees half a model and a failed export leaves it as it was.

    Args:
        source: a training run dir or a built RocketModel.
        export_base: the folder TF Serving's ``--model_base_path`` points at.
        version: the version number (default: the next integer).
        tower: ``light``; ``booster`` only for latency comparisons.
        jit_compile: XLA for the model part (TF Serving then needs ``--xla_cpu_compilation_enabled``).
        data: Parquet rows (e.g. the eval log) for verification and warmup; random ids if None.
        sample_size: rows read from ``data`` (edge-case rows are added).
        warmup_candidates: the largest N the warmup records cover.
    Returns:
        An ExportResult.
    Raises:
        InputError: bad base/version/run dir; VerificationError: outputs differ.
    """
    model = _load(source, tower)
    base = Path(export_base)
    if base.exists() and not base.is_dir():
        raise InputError(f"export base {base} exists and is not a folder")
    version = next_version(base) if version is None else int(version)
    if version < 1:
        raise InputError(f"version must be a positive integer, got {version}")
    final = base / str(version)
    if final.exists():
        raise InputError(f"{final} already exists; versions are never overwritten (pick another --version)")
    rows = sample_rows(model.spec, data, sample_size)
    module = ServingModule(model, tower, jit_compile)
    created_base = not base.exists()
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"export base {base}: cannot create the folder ({err.strerror})") from None
    staging = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=base))
    try:
        tf.saved_model.save(module, str(staging), signatures={SERVING_DEFAULT: module.serving_default,
                                                              SCORE_ROWS: module.score_rows})
        extra = staging / "assets.extra"
        extra.mkdir()
        logs = warmup_logs(model.spec, rows, warmup_candidates)
        write_warmup(extra / WARMUP_FILE, logs)
        worst = verify_export(staging, model, tower, rows)
        info = {"tower": tower, "jit_compile": jit_compile, "tensorflow": tf.__version__,
                "source": str(source) if isinstance(source, (str, os.PathLike)) else None,
                "signatures": describe_signatures(model.spec), "feature_spec": model.spec.to_dict(),
                "verified_max_abs_diff": worst}
        (extra / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        os.chmod(staging, 0o755)  # mkdtemp makes it owner-only; a server may run as another user
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_base:
            shutil.rmtree(base, ignore_errors=True)
        raise
    return ExportResult(final, version, tower, jit_compile, len(rows[HIST_LEN]), worst, len(logs))


def read_export_info(version_dir) -> dict:
    """The ``rocket_ctr_export.json`` of an export ({} for SavedModels written elsewhere)."""
    path = Path(version_dir) / "assets.extra" / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
