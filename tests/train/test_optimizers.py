"""LazyAdam: Adam on dense variables, row-wise Adam on embedding (IndexedSlices) gradients."""
import keras
import numpy as np
import tensorflow as tf

from rocket_ctr.train.optimizers import LazyAdam


def test_dense_updates_equal_keras_adam():
    rng = np.random.default_rng(0)
    ours, reference = keras.Variable(np.ones((4, 3), "float32")), keras.Variable(np.ones((4, 3), "float32"))
    lazy, adam = LazyAdam(0.05), keras.optimizers.Adam(0.05)
    for _ in range(6):
        g = tf.constant(rng.normal(size=(4, 3)).astype("float32"))
        lazy.apply([g], [ours])
        adam.apply([g], [reference])
    # The fused kernel takes 1 − β2 in float32 (1.3e-5 relative off 0.001), Keras in float64: √v differs by ~6e-6
    # relative and 6 steps of <= lr·3 drift ~2e-6. Element-wise ops only: no summation order, the same on any CPU.
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-5)


def test_sparse_updates_move_only_touched_rows_like_adam_on_those_rows():
    emb = keras.layers.Embedding(100, 3)
    emb.build((None,))
    before = emb.embeddings.numpy().copy()
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(emb(tf.constant([3, 3, 7])))
    grad = tape.gradient(loss, emb.trainable_variables)
    assert isinstance(grad[0], tf.IndexedSlices)
    LazyAdam(0.1).apply(grad, emb.trainable_variables)
    after = emb.embeddings.numpy()
    assert list(np.flatnonzero(np.any(after != before, axis=1))) == [3, 7]
    # first Adam step moves each touched coordinate by lr (duplicates summed first: row 3 twice): by lr·|g|/(|g| + ε),
    # 1e-7 relative short of lr, and float32 rounds |before − after| (<= 0.15) to ~1e-8; rtol 1e-4 covers both
    np.testing.assert_allclose(before[[3, 7]] - after[[3, 7]], 0.1, rtol=1e-4)


def test_scaled_rates_step_their_variables_by_that_multiple_dense_and_sparse():
    from rocket_ctr.train.optimizers import make_optimizer
    dense = [keras.Variable(np.zeros(3, "float32"), name=f"dense{i}") for i in range(2)]
    emb = keras.layers.Embedding(10, 3)
    emb.build((None,))
    before = emb.embeddings.numpy().copy()
    for name in ("lazy_adam", "adam"):
        for v in dense:
            v.assign(np.zeros(3, "float32"))
        emb.embeddings.assign(before)
        optimizer = make_optimizer(name, 0.01)
        optimizer.build(dense + [emb.embeddings])
        optimizer.scale_rates([dense[1], emb.embeddings], 3.0)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(dense[0] + dense[1]) + tf.reduce_sum(emb(tf.constant([2])))
        optimizer.apply(tape.gradient(loss, dense + [emb.embeddings]), dense + [emb.embeddings])
        # Adam's first step moves each coordinate by lr·|g|/(|g| + ε): 1e-7 relative short of lr; float32 rounding
        # of values <= 0.03 adds ~1e-9: rtol 1e-4 covers both
        np.testing.assert_allclose(dense[0].numpy(), -0.01, rtol=1e-4)
        np.testing.assert_allclose(dense[1].numpy(), -0.03, rtol=1e-4)
        np.testing.assert_allclose(before[2] - emb.embeddings.numpy()[2], 0.03, rtol=1e-4)
