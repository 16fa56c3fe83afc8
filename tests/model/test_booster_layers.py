"""What only the booster reads: the DCN-v2 cross stack and the booster-only column tables."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import FLOAT64_CLOSE
from rocket_ctr.errors import InputError
from rocket_ctr.features.id_feature import IdFeature
from rocket_ctr.model.layers.booster import ColumnEmbeddings, CrossNetwork, append_columns


def numpy_cross(x0, kernels, biases):
    x = x0
    for w, b in zip(kernels, biases):
        x = x0 * (x @ w + b) + x
    return x


def test_cross_network_is_dcn_v2_full_rank(float64):
    rng = np.random.default_rng(0)
    x0 = rng.normal(size=(5, 7))
    layer = CrossNetwork(3)
    layer(x0)
    kernels = [rng.normal(scale=0.3, size=(7, 7)) for _ in range(3)]
    biases = [rng.normal(size=7) for _ in range(3)]
    for i, (w, b) in enumerate(zip(kernels, biases)):
        getattr(layer, f"kernel_{i}").assign(w)
        getattr(layer, f"bias_{i}").assign(b)
    crossed = layer(x0).numpy()
    assert crossed.dtype == np.float64
    np.testing.assert_allclose(crossed, numpy_cross(x0, kernels, biases), **FLOAT64_CLOSE)
    assert len(layer.trainable_weights) == 6 and layer(x0).shape == x0.shape


def test_cross_network_at_zero_weights_is_the_identity_and_its_config_round_trips():
    layer = CrossNetwork(2, l2=1e-4, name="cross")
    x0 = tf.random.normal([4, 6])
    layer(x0)
    for v in layer.weights:
        v.assign(tf.zeros_like(v))
    np.testing.assert_allclose(layer(x0).numpy(), x0.numpy())
    copy = CrossNetwork.from_config(layer.get_config())
    assert (copy.num_layers, copy.l2, copy.name) == (2, 1e-4, "cross")
    assert len(layer.losses) == 2  # the L2 penalty of each kernel
    with pytest.raises(ValueError, match="at least one layer"):
        CrossNetwork(0)


def test_column_embeddings_look_up_their_columns_and_name_the_missing_ones():
    features = (IdFeature("slot", buckets=5, booster_only=True), IdFeature("device", buckets=3, booster_only=True))
    layer = ColumnEmbeddings(features, embedding_dim=4)
    lookups = layer({"slot": tf.constant([0, 4]), "device": tf.constant([2]), "other": tf.constant([1, 1])})
    assert [e.shape.as_list() for e in lookups] == [[2, 4], [1, 4]]
    x = append_columns(tf.zeros([2, 3]), lookups)  # a user-side [1, D] lookup broadcasts to the N rows
    assert x.shape == (2, 11)
    np.testing.assert_allclose(x[1, 7:].numpy(), lookups[1][0].numpy())
    with pytest.raises(InputError, match=r"booster-only columns \['device'\]"):
        layer({"slot": tf.constant([0])})
    copy = ColumnEmbeddings.from_config(layer.get_config())
    assert copy.features == features and copy.embedding_dim == 4
    assert isinstance(copy.embeddings["slot"], keras.layers.Embedding)
