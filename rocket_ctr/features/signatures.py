"""Every input signature and example-rows builder: the TensorSpecs that datasets, the model and
the exported serving signatures take.

Three views of one FeatureSpec's columns:

* :func:`output_signature`: raw ids as the input pipeline yields them (with each row's weight),
  plus the label.
* :func:`row_signature` / :func:`example_rows`: the model's inputs (embedding row indices).
* :func:`request_signature` / :func:`rows_signature`: the exported ``serving_default`` (one user
  + N candidates) and ``score_rows`` (N rows) inputs, raw ids.
"""
from __future__ import annotations

import tensorflow as tf

from rocket_ctr.features.spec import WEIGHT, FeatureSpec

SERVING_DEFAULT, SCORE_ROWS, OUTPUT = "serving_default", "score_rows", "probabilities"


def _dtype(feature_dtype: str) -> tf.DType:
    return tf.string if feature_dtype == "string" else tf.int64


def _column_dtype(spec: FeatureSpec, column: str) -> tf.DType:
    return _dtype(spec.feature(column).dtype)


def extra_specs(spec: FeatureSpec, batch=None, side: str | None = None, rows: bool = False) -> dict:
    """TensorSpecs of the numeric ([batch] float32) and multi-hot ([batch, None]; weights float32)
    columns, of one side or both; ``rows``: as the model reads them (ids as int64 row indices)."""
    out = {}
    for f in spec.extra_features:
        if side is not None and f.side != side:
            continue
        if hasattr(f, "pooling"):  # multi-hot
            out[f.name] = tf.TensorSpec([batch, None], tf.int64 if rows else _dtype(f.dtype), name=f.name)
            if f.weights:
                out[f.weights] = tf.TensorSpec([batch, None], tf.float32, name=f.weights)
        else:
            out[f.name] = tf.TensorSpec([batch], tf.float32, name=f.name)
    return out


# ----- input pipeline --------------------------------------------------------------------------
def output_signature(spec: FeatureSpec, user_id_string: bool = False) -> tuple[dict, tf.TensorSpec]:
    """The (features, label) TensorSpecs of the datasets :func:`rocket_ctr.io.reader.make_dataset` returns."""
    features = {spec.user_id: tf.TensorSpec([None], tf.string if user_id_string else tf.int64)}
    for f in spec.id_features:
        features[f.name] = tf.TensorSpec([None], _dtype(f.dtype))
        if f.history:
            features[f.history] = tf.TensorSpec([None, None], _dtype(f.dtype))
    features.update({f.name: tf.TensorSpec([None, None], _dtype(f.dtype)) for f in spec.side_features})
    features.update({k: tf.TensorSpec(s.shape, s.dtype) for k, s in extra_specs(spec).items()})
    features.update({c: tf.TensorSpec([None], tf.int32) for c in spec.length_columns})
    features[WEIGHT] = tf.TensorSpec([None], tf.float32)
    return features, tf.TensorSpec([None], tf.float32)


# ----- model -----------------------------------------------------------------------------------
def row_signature(spec: FeatureSpec) -> dict:
    """TensorSpecs of the model's inputs (row indices), any batch size and history length."""
    rows = {f.name: tf.TensorSpec([None], tf.int64) for f in spec.id_features}
    rows.update({c: tf.TensorSpec([None, None], tf.int64) for c in spec.history_columns})
    rows.update({k: tf.TensorSpec(s.shape, s.dtype) for k, s in extra_specs(spec, rows=True).items()})
    rows.update({c: tf.TensorSpec([None], tf.int32) for c in spec.length_columns})
    return rows


def example_rows(spec: FeatureSpec, batch: int = 2, steps: int = 3) -> dict:
    """A tiny batch of valid model inputs (row indices), for building a model's variables."""
    rows = {f.name: tf.zeros([batch], tf.int64) for f in spec.id_features}
    rows.update({c: tf.zeros([batch, steps], tf.int64) for c in spec.history_columns})
    rows.update({k: tf.zeros([batch, *([steps] if s.shape.rank == 2 else [])], s.dtype)
                 for k, s in extra_specs(spec, rows=True).items()})
    rows.update({c: tf.fill([batch], steps) for c in spec.length_columns})
    return rows


# ----- exported serving signatures -------------------------------------------------------------
def candidate_columns(spec: FeatureSpec) -> tuple:
    """Candidate-side inputs of ``serving_default`` (shape [N]; item-side multi-hot lists [N, L])."""
    return tuple(f.name for f in spec.sequence_features + spec.item_features) + spec.extra_columns_of("item")


def request_signature(spec: FeatureSpec) -> dict:
    """``serving_default`` inputs: user profile [1] (user-side multi-hot [1, L]), histories and
    side columns [1, L] (L per sequence group), candidates [N] (item-side multi-hot [N, L])."""
    sig = {c: tf.TensorSpec([1], _column_dtype(spec, c), name=c) for c in (f.name for f in spec.user_features)}
    sig.update(extra_specs(spec, 1, "user"))
    sig.update({c: tf.TensorSpec([1, None], _column_dtype(spec, c), name=c) for c in spec.history_columns})
    sig.update({c: tf.TensorSpec([None], _column_dtype(spec, c), name=c)
                for c in (f.name for f in spec.sequence_features + spec.item_features)})
    sig.update(extra_specs(spec, None, "item"))
    return sig


def rows_signature(spec: FeatureSpec) -> dict:
    """``score_rows`` inputs: every id column [N], histories and side columns [N, L] (L per sequence
    group), each group's length (``hist_len``, ``hist_len_<group>``...) [N] int32."""
    sig = {c: tf.TensorSpec([None], _column_dtype(spec, c), name=c) for c in spec.scalar_id_columns}
    sig.update({c: tf.TensorSpec([None, None], _column_dtype(spec, c), name=c) for c in spec.history_columns})
    sig.update(extra_specs(spec, None))
    sig.update({c: tf.TensorSpec([None], tf.int32, name=c) for c in spec.length_columns})
    return sig


def describe_signatures(spec: FeatureSpec) -> dict:
    """{signature: {"inputs": {name: {"dtype", "shape"}}, "outputs": ...}} (-1 = any size)."""
    def describe(sig):
        return {k: {"dtype": s.dtype.name, "shape": [-1 if d is None else d for d in s.shape.as_list()]}
                for k, s in sig.items()}
    output = {OUTPUT: {"dtype": "float32", "shape": [-1]}}
    return {SERVING_DEFAULT: {"inputs": describe(request_signature(spec)), "outputs": output},
            SCORE_ROWS: {"inputs": describe(rows_signature(spec)), "outputs": output}}
