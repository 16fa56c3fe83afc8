"""Numeric and multi-hot encoders in the graph against numpy references; the id mapping of lists."""
import re

import numpy as np
import tensorflow as tf

from conftest import FLOAT64_CLOSE
from rocket_ctr.config.schema import ModelConfig
from rocket_ctr.features.hashing import splitmix64
from rocket_ctr.features.id_mapping import IdMapper
from rocket_ctr.features.signatures import example_rows
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.features.types import MultiHotFeature, NumericFeature
from rocket_ctr.model.layers.features import FeatureEncoders, bucketize, clean, pool
from rocket_ctr.model.rocket import RocketModel


def test_bucketize_equals_np_digitize_including_values_on_the_boundaries():
    rng = np.random.default_rng(0)
    boundaries = np.sort(rng.normal(0, 3, 9))
    values = np.concatenate([rng.normal(0, 4, 500), boundaries, boundaries - 1e-6, [-1e30, 1e30]]).astype(np.float32)
    got = bucketize(tf.constant(values), tuple(boundaries)).numpy()
    np.testing.assert_array_equal(got, np.digitize(values.astype(np.float64), boundaries))


def test_missing_values_become_the_default():
    values = tf.constant([1.5, np.nan, np.inf, -np.inf, -2.0], tf.float32)
    np.testing.assert_array_equal(clean(values, 7.0).numpy(), [1.5, 7.0, 7.0, 7.0, -2.0])


def test_numeric_encoder_buckets_and_normalises():
    feature = NumericFeature("price", boundaries=(1.0, 10.0), normalize=True, mean=4.0, std=2.0, default=4.0)
    encoders = FeatureEncoders([feature], embedding_dim=3)
    values = np.array([0.5, 1.0, np.nan, 20.0], np.float32)
    bucket_embedding, scalar = encoders({"price": tf.constant(values)})["items"]
    table = encoders.tables["price"].embeddings.numpy()
    np.testing.assert_allclose(bucket_embedding.numpy(), table[[0, 1, 1, 2]])
    np.testing.assert_allclose(scalar.numpy()[:, 0], [-1.75, -1.5, 0.0, 8.0])
    assert encoders.output_width == 4


def _numpy_pool(table, rows, weights, pooling):
    out = np.zeros((rows.shape[0], table.shape[1]))
    for i, (r, w) in enumerate(zip(rows, weights)):
        keep = r >= 0
        total = (table[r[keep]] * w[keep][:, None]).sum(0)
        denominator = w[keep].sum()
        out[i] = total if pooling == "sum" else (total / denominator if denominator else 0.0)
    return out


def test_multi_hot_pooling_equals_numpy_sum_and_weighted_mean():
    rng = np.random.default_rng(1)
    table = rng.normal(size=(20, 5))  # float64: the sums are compared, not their float32 rounding
    rows = rng.integers(0, 20, (6, 4))
    rows[0] = -1  # an empty list
    rows[1, 2:] = -1
    weights = rng.uniform(0.1, 2.0, (6, 4))
    embedded = tf.gather(tf.constant(table), tf.maximum(tf.constant(rows), 0))
    for pooling in ("sum", "mean"):
        for w in (None, weights):
            got = pool(embedded, tf.constant(rows), None if w is None else tf.constant(w), pooling).numpy()
            expected = _numpy_pool(table, rows, np.ones_like(weights) if w is None else w, pooling)
            assert got.dtype == np.float64
            np.testing.assert_allclose(got, expected, **FLOAT64_CLOSE)
    assert np.all(pool(embedded, tf.constant(rows), None, "mean").numpy()[0] == 0)


def test_mapper_truncates_pads_and_masks_multi_hot_lists():
    spec = FeatureSpec(multi_hot_features=[MultiHotFeature("tags", max_len=3, buckets=50, weights="w"),
                                           MultiHotFeature("words", dtype="string", vocabulary=("a", "b"), max_len=2)])
    mapper = IdMapper(spec)
    out = mapper({"tags": tf.constant([[5, 6, 7, 8], [9, -1, -1, -1]], tf.int64),
                  "w": tf.constant([[1, 2, 3, 4], [np.nan, 0, 0, 0]], tf.float32),
                  "words": tf.constant([["b"], [""]])})
    tags = out["tags"].numpy()
    assert tags.shape == (2, 3) and tags[1, 1:].tolist() == [-1, -1] and np.all(tags[0] >= 0)
    np.testing.assert_array_equal(tags[0], splitmix64(np.array([5, 6, 7])) % np.uint64(50))
    np.testing.assert_array_equal(out["w"].numpy(), [[1, 2, 3], [0, 0, 0]])
    np.testing.assert_array_equal(out["words"].numpy(), [[2, -1], [-1, -1]])


def test_models_without_the_new_features_keep_their_variables():
    plain = RocketModel(FeatureSpec(), ModelConfig(embedding_dim=4))
    plain(example_rows(FeatureSpec()), training=False)
    spec = FeatureSpec(numeric_features=[NumericFeature("price", boundaries=(1.0,), normalize=True),
                                         NumericFeature("pos", normalize=True, booster_only=True)],
                       multi_hot_features=[MultiHotFeature("tags", side="user")])
    extended = RocketModel(spec, ModelConfig(embedding_dim=4))
    extended(example_rows(spec), training=False)
    def names(model):  # without the model's and Keras' automatic numbering
        return [re.sub(r"_\d+", "", v.path.split("/", 1)[1]) for v in model.weights]
    old, new = names(plain), names(extended)
    assert plain.bottom.extras is None and extended.booster_extras is not None
    added = [p for p in new if p not in old]
    assert added and all("extra" in p for p in added), added
    assert [p for p in new if p in old] == old  # the same variables, in the same order
