"""The exported object: a ``tf.Module`` with the serving signatures of one tower.

The SavedModel that :func:`rocket_ctr.export.writer.export_light` writes is a ``tf.Module`` holding the
``IdMapper`` and the variables of one tower's path (the embedding tables, the tower's interest
extractor, its MLP), nothing else (the booster is never in a light export; a light tower that
shares the booster's attention holds that attention, not the booster tower). Two signatures,
raw ids in (the id -> row mapping runs in the graph), ``probabilities`` [N] float32 out
(corrected to the full rate when the model trained on downsampled negatives, scaled by the
tower's fitted slope and intercept and mapped by its isotonic map when it has them:
``rocket_ctr.calibration.platt``, ``rocket_ctr.calibration.intercept``, ``rocket_ctr.calibration.isotonic``):

* ``serving_default``: one request = one user + N candidates. User profile inputs have shape
  [1], history inputs [1, L] (oldest -> newest; ``hist_len`` is L), candidate inputs [N]
  (numeric features: raw float32, [1] user-side or [N] item-side, NaN = missing; multi-hot
  features: [1, M] or [N, M] raw id lists padded with -1 / "", weights float32 of the same shape). The
  history term of the interest extractor is computed once, not once per candidate.
* ``score_rows``: N independent rows: every id input [N], histories [N, L] left-aligned and
  padded, plus ``hist_len`` [N] int32.

With several sequence groups (``FeatureSpec.sequence_groups``) each group's histories and side
columns share their own L (``serving_default``: [1, L_g], its length is L_g; ``score_rows``:
[N, L_g] plus its length input ``hist_len_<group>``); a group's lists of different lengths are
refused (INVALID_ARGUMENT naming the input).

N and L are free (``None`` dims: no re-tracing). Histories longer than ``max_history`` keep their
newest steps, as in training. With XLA the model part runs under ``jit_compile=True`` (the
string hashing of the id mapping stays outside it), on inputs padded to a candidate bucket
(:func:`candidate_bucket`: ``CANDIDATE_PAD`` = 8 at least, 8 buckets per octave, so at most
12.5 % padding: 200 -> 208) and to the FeatureSpec's history buckets, so XLA compiles a bounded
set of shapes, which the warmup records cover. (Padding to a multiple of 64 made 200 candidates
cost 256.)
"""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.features.id_mapping import IdMapper
from rocket_ctr.features.signatures import OUTPUT, candidate_columns, request_signature, rows_signature
from rocket_ctr.features.spec import HIST_LEN, FeatureSpec

CANDIDATE_PAD = 8  # XLA exports: the finest candidate bucket step (see candidate_bucket)
BUCKETS_PER_OCTAVE = 8  # XLA exports: candidate buckets between n and 2n (padding <= 1 / this)
_TABLE_LIMIT = 1 << 16  # the in-graph bucket table; beyond it, multiples of its last step


def candidate_bucket(n: int) -> int:
    """The padded batch size of ``n`` candidates (or rows) in an XLA export: ``n`` rounded up to a
    multiple of ``max(CANDIDATE_PAD, 2**floor(log2 n) / BUCKETS_PER_OCTAVE)`` (200 -> 208, 256 -> 256)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    step = max(CANDIDATE_PAD, (1 << (n.bit_length() - 1)) // BUCKETS_PER_OCTAVE)
    return -(-n // step) * step


def candidate_buckets(limit: int) -> list:
    """Every padded size :func:`candidate_bucket` gives for 1 <= n <= ``limit``, ascending."""
    sizes = [candidate_bucket(1)]
    while sizes[-1] < limit:
        sizes.append(candidate_bucket(sizes[-1] + 1))
    return sizes


_TABLE = candidate_buckets(_TABLE_LIMIT)
_TABLE_STEP = _TABLE[-1] // BUCKETS_PER_OCTAVE


def _bucket(n: tf.Tensor) -> tf.Tensor:
    """In-graph :func:`candidate_bucket` of a scalar int32 ``n`` (exact up to ``_TABLE_LIMIT``)."""
    table = tf.constant(_TABLE, tf.int32)
    i = tf.reduce_sum(tf.cast(table < n, tf.int32))
    beyond = (n + _TABLE_STEP - 1) // _TABLE_STEP * _TABLE_STEP
    return tf.where(i < len(_TABLE), tf.gather(table, tf.minimum(i, len(_TABLE) - 1)), beyond)


def tower_logit(model, tower: str, rows: dict) -> tf.Tensor:
    """One tower's logit on row indices, inference mode (the in-memory reference)."""
    return model.tower_logit(tower, rows)


def tower_probability(model, tower: str, rows: dict) -> tf.Tensor:
    """One tower's served click probability: corrected to the full rate when the model trained
    on downsampled negatives and scaled by its fitted slope and intercept (``σ(a·logit + log r + b)``,
    see ``rocket_ctr.calibration``: ``measures``, ``intercept`` and ``platt``)."""
    return tf.sigmoid(model.calibrated_logit(tower, tower_logit(model, tower, rows)))


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


def _assert_weights(spec: FeatureSpec, inputs: dict) -> list:
    """Graph asserts that each multi-hot weight input has its id input's shape."""
    return [tf.debugging.assert_equal(tf.shape(inputs[f.weights]), tf.shape(inputs[f.name]),
                                      message=f"input '{f.weights}' and input '{f.name}' differ in shape "
                                              "(one weight per list element)")
            for f in spec.multi_hot_features if f.weights]


class ServingModule(tf.Module):
    """The exported object: IdMapper + one tower's path, with two signatures.

    Args:
        model: a built RocketModel.
        tower: ``light`` (served) or ``booster`` (benchmarking only).
        jit_compile: run the model part under XLA.
        spec: the model's FeatureSpec (default: ``model.spec``).
    """

    def __init__(self, model, tower: str = "light", jit_compile: bool = True, spec: FeatureSpec | None = None):
        super().__init__(name=f"rocket_ctr_{tower}")
        spec = self.spec = spec or model.spec
        self.mapper = IdMapper(spec)
        # Only this tower's variables are tracked; saving fails if a signature touched any other.
        self.tower_weights = {v.path: v.value for layer in model.serving_layers(tower) for v in layer.weights}
        if tower in model.intercepts:  # the tower's fitted intercept (models before it have none)
            self.tower_weights[model.intercepts[tower].path] = model.intercepts[tower].value
        if tower in model.slopes:  # its fitted slope (Platt scaling; none before it existed)
            self.tower_weights[model.slopes[tower].path] = model.slopes[tower].value
        for knots in model.knots.get(tower, ()):  # its isotonic map's knots (rocket_ctr.calibration.isotonic)
            self.tower_weights[knots.path] = knots.value
        self._jit = jit_compile

        def probabilities(rows):
            return tower_probability(model, tower, rows)

        self._compute = tf.function(probabilities, jit_compile=True) if jit_compile else probabilities
        self.serving_default = tf.function(self._request, input_signature=[request_signature(spec)])
        self.score_rows = tf.function(self._rows, input_signature=[rows_signature(spec)])

    def _padded(self, rows: dict, batch_columns, n):
        """XLA only: pads the batch to its candidate bucket and histories to a history bucket."""
        if not self._jit:
            return rows
        spec, rows = self.spec, dict(rows)
        size = _bucket(n)
        for c in batch_columns:
            rows[c] = _pad_dim(rows[c], 0, size)
        buckets = tf.constant(spec.history_buckets, tf.int32)
        for group in spec.groups:  # each sequence group to the bucket of its own width
            columns = spec.group_columns(group)
            steps = tf.shape(rows[columns[0]])[1]
            width = tf.gather(buckets, tf.reduce_sum(tf.cast(buckets < steps, tf.int32)))
            for c in columns:
                rows[c] = _pad_dim(rows[c], 1, width)
        return rows

    def _assert_groups(self, inputs: dict, what: str) -> list:
        """Graph asserts that the lists of each sequence group have one length."""
        return [check for group in self.spec.groups
                for check in _assert_same({c: inputs[c] for c in self.spec.group_columns(group)}, 1, what)]

    def _request(self, inputs: dict) -> dict:
        spec = self.spec
        candidates = {c: inputs[c] for c in candidate_columns(spec)}
        n = tf.shape(candidates[candidate_columns(spec)[0]])[0]
        checks = _assert_same(candidates, 0, "serving_default candidates")
        checks += self._assert_groups(inputs, "serving_default histories")
        checks += _assert_weights(spec, inputs)
        checks.append(tf.debugging.assert_positive(n, message="serving_default: no candidates (N = 0)"))
        with tf.control_dependencies(checks):  # clear errors before any shape-dependent op runs
            features = {c: tf.identity(inputs[c][:, -spec.max_history:] if c in spec.history_columns else inputs[c])
                        for c in inputs}  # newest steps, as in training
        rows = self.mapper(features)
        for group, length in zip(spec.groups, spec.length_columns):
            rows[length] = tf.shape(rows[spec.group_columns(group)[0]])[1:2]
        rows = self._padded(rows, candidate_columns(spec), n)
        return {OUTPUT: self._compute(rows)[:n]}

    def _rows(self, inputs: dict) -> dict:
        spec = self.spec
        lengths = spec.length_columns
        batch = {c: inputs[c] for c in (*spec.scalar_id_columns, *spec.history_columns, *spec.extra_columns,
                                        *lengths)}
        n = tf.shape(inputs[HIST_LEN])[0]
        checks = _assert_same(batch, 0, "score_rows")
        checks += self._assert_groups(inputs, "score_rows histories")
        checks += _assert_weights(spec, inputs)
        checks.append(tf.debugging.assert_positive(n, message="score_rows: no rows (N = 0)"))
        for group, length in zip(spec.groups, lengths):
            steps = tf.shape(inputs[spec.group_columns(group)[0]])[1]
            checks.append(tf.debugging.assert_non_negative(inputs[length], message=f"score_rows: input '{length}' "
                                                           "must be >= 0"))
            checks.append(tf.debugging.assert_less_equal(inputs[length], steps, message=f"score_rows: input "
                                                         f"'{length}' exceeds the width of the history inputs"))
        with tf.control_dependencies(checks):
            inputs = {c: tf.identity(v) for c, v in inputs.items()}
        features = {c: inputs[c] for c in (*spec.scalar_id_columns, *spec.extra_columns)}
        kept = {}
        for group, length in zip(spec.groups, lengths):
            columns = spec.group_columns(group)
            steps, total = tf.shape(inputs[columns[0]])[1], inputs[length]
            # keep each row's newest steps: row i reads steps [len_i - keep_i, len_i), left-aligned
            kept[length] = tf.minimum(total, spec.max_history)
            index = (total - kept[length])[:, None] + tf.range(tf.minimum(steps, spec.max_history))[None, :]
            for c in columns:  # lists no wider than max_history are kept whole: no copy (batch scoring's case)
                features[c] = tf.cond(steps > spec.max_history, lambda c=c: tf.gather(inputs[c], index, batch_dims=1),
                                      lambda c=c: inputs[c])
        rows = self.mapper(features)
        rows.update(kept)
        rows = self._padded(rows, (*spec.scalar_id_columns, *spec.history_columns, *spec.extra_columns, *lengths), n)
        return {OUTPUT: self._compute(rows)[:n]}
