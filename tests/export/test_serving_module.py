"""XLA exports' candidate buckets: the padded N of a request (serving_module.candidate_bucket)."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import FLOAT32_PROBABILITY_ATOL
from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.export.serving_module import CANDIDATE_PAD, ServingModule, _bucket, candidate_bucket, candidate_buckets
from rocket_ctr.features.signatures import example_rows, request_signature
from rocket_ctr.features.spec import FeatureSpec
from rocket_ctr.model.rocket import RocketModel
from rocket_ctr.serving.latency import synthetic_request


def test_buckets_pad_little_and_stay_few():
    assert [candidate_bucket(n) for n in (1, 8, 9, 64, 65, 200, 256, 257, 512)] == [8, 8, 16, 64, 72, 208, 256, 288,
                                                                                     512]
    for n in range(1, 5000):
        size = candidate_bucket(n)
        assert size >= n and size % CANDIDATE_PAD == 0
        assert size - n < max(CANDIDATE_PAD, n / 8)  # at most 12.5 % padding above the finest step
    sizes = candidate_buckets(512)
    assert len(sizes) == 32 and sizes[-1] == 512 and sizes == sorted(set(sizes))
    assert {candidate_bucket(n) for n in range(1, 513)} == set(sizes)  # what the warmup records cover
    with pytest.raises(ValueError):
        candidate_bucket(0)


def test_in_graph_bucket_equals_the_python_one():
    bucket = tf.function(_bucket, input_signature=[tf.TensorSpec([], tf.int32)])
    for n in [*range(1, 600), 4095, 4096, 4097, 65535, 65536]:
        assert int(bucket(tf.constant(n))) == candidate_bucket(n), n
    for n in (65537, 100_000):  # beyond the table: multiples of its last step, never below n
        assert int(bucket(tf.constant(n))) >= n


def test_xla_module_pads_to_the_bucket_and_answers_like_the_plain_one():
    spec = FeatureSpec()
    model = RocketModel(spec, RocketConfig(embedding_dim=8, booster_units=(32, 16)))
    model(example_rows(spec), training=False)
    signature = {k: (s.dtype, [-1 if d is None else d for d in s.shape]) for k, s in request_signature(spec).items()}
    plain, xla = ServingModule(model, jit_compile=False), ServingModule(model, jit_compile=True)
    for n in (5, 200):
        request = {k: tf.constant(v) for k, v in synthetic_request(signature, n, 20, seed=n).items()}
        want = plain.serving_default(request)["probabilities"].numpy()
        got = xla.serving_default(request)["probabilities"].numpy()
        assert got.shape == (n,)
        np.testing.assert_allclose(got, want, atol=FLOAT32_PROBABILITY_ATOL)
