"""Isotonic calibration: the knots' fit (monotone, no ties, weights), the in-graph map (= numpy, XLA), a bent curve."""
import numpy as np
import pytest
import tensorflow as tf

from rocket_ctr.calibration.isotonic import (
    apply_knots,
    fit_knots,
    identity_knots,
    piecewise_linear,
    pool_adjacent_violators,
)
from rocket_ctr.calibration.measures import ece, pcoc
from rocket_ctr.calibration.platt import fit_platt
from rocket_ctr.metrics.ranking import auc


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _bent(rng, n):
    """Logits z whose true logit bends: under-confident below z = -3, over-confident above."""
    z = rng.normal(-3.0, 1.0, n)
    true = -3.0 + np.where(z < -3.0, 1.8 * (z + 3.0), 0.5 * (z + 3.0))
    return z, (rng.random(n) < _sigmoid(true)).astype(float)


def test_pool_adjacent_violators_is_the_weighted_isotonic_fit():
    blocks = pool_adjacent_violators(np.array([0.1, 0.3, 0.2, 0.2, 0.5]), np.array([1.0, 1.0, 2.0, 1.0, 1.0]))
    assert [(f, l) for f, l, _ in blocks] == [(0, 0), (1, 3), (4, 4)]
    assert blocks[1][2] == pytest.approx((0.3 + 0.4 + 0.2) / 4)
    values = [v for _, _, v in blocks]
    assert all(a < b for a, b in zip(values, values[1:]))  # strictly increasing


def test_knots_are_strictly_increasing_and_keep_the_ranking_with_ties():
    rng = np.random.default_rng(0)
    z = np.round(rng.normal(-2.0, 1.0, 20_000), 1)  # many tied logits
    y = (rng.random(len(z)) < _sigmoid(np.sin(2 * z) + z)).astype(float)  # a wiggly, non-monotone truth
    for k in (2, 8, 16, 32):
        x, v = fit_knots(z, y, k=k)
        assert x.shape == v.shape == (k,)
        assert np.all(np.diff(x) > 0) and np.all(np.diff(v) > 0)
        mapped = apply_knots(z, x, v)
        order = np.argsort(z, kind="stable")
        # ties stay ties, distinct logits stay distinct and in order
        assert np.all(np.diff(mapped[order]) >= 0)
        assert len(np.unique(mapped)) == len(np.unique(z))
        assert auc(y, _sigmoid(mapped)) == pytest.approx(auc(y, _sigmoid(z)), abs=1e-12)


def test_weight_k_is_k_copies_and_degenerate_rows():
    rng = np.random.default_rng(1)
    z = rng.normal(size=600)
    y = (rng.random(600) < _sigmoid(z)).astype(float)
    counts = rng.integers(1, 4, 600)
    copies = np.repeat(np.arange(600), counts)
    for a, b in zip(fit_knots(z, y, counts, k=8), fit_knots(z[copies], y[copies], k=8)):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    assert fit_knots(z, np.zeros(600), k=8) is None and fit_knots([], [], k=8) is None
    # one pooled block (all logits equal): a shift with slope 1, still k distinct knots
    x, v = fit_knots(np.zeros(100), np.arange(100) % 4 == 0, k=4)
    np.testing.assert_allclose(v - x, np.log(0.25 / 0.75))
    with pytest.raises(ValueError):
        fit_knots(z, y, k=1)


def _float32_bound(u, x, y):
    """How far ``piecewise_linear`` in float32 can be from the exact map at ``u``: its K + 2 terms, each a few
    roundings off, are summed, so |error| <= (K + 6)·eps32·Σ|terms| (eps32 = 2**-24) in any summation order."""
    u, x, y = (np.asarray(a, np.float64) for a in (u, x, y))
    slopes = np.diff(y) / np.diff(x)
    terms = np.abs(slopes * (np.clip(u[:, None], x[:-1], x[1:]) - x[:-1])).sum(-1)
    terms += np.abs(y[0]) + np.abs(np.minimum(u - x[0], 0)) + np.abs(np.maximum(u - x[-1], 0))
    return (len(x) + 6) * 2.0**-24 * terms


def test_graph_map_equals_numpy_with_and_without_xla():
    rng = np.random.default_rng(2)
    x, v = fit_knots(*_bent(rng, 50_000), k=16)
    u = np.concatenate([rng.normal(-3.0, 3.0, 1_000), [-50.0, 50.0], x]).astype(np.float32)
    x32, v32 = x.astype(np.float32), v.astype(np.float32)  # the knots the graph holds
    expected = apply_knots(u.astype(np.float64), x32.astype(np.float64), v32.astype(np.float64))
    for jit in (False, True):
        got = tf.function(piecewise_linear, jit_compile=jit)(tf.constant(u), tf.constant(x32), tf.constant(v32))
        assert np.all(np.abs(got.numpy() - expected) <= _float32_bound(u, x32, v32))
    # float32 knots move the map by ~eps32·(|y| + slope·|x|) <= ~1e-6 (numpy only: the same on any CPU)
    np.testing.assert_allclose(expected, apply_knots(u.astype(np.float64), x, v), atol=1e-5)
    # beyond the knots: slope 1; the identity knots map u to u
    np.testing.assert_allclose(apply_knots(np.array([-60.0, 60.0]), x, v), [v[0] - 60 - x[0], v[-1] + 60 - x[-1]])
    k = identity_knots(8)
    k32 = np.asarray(k, np.float32)
    assert np.all(np.abs(piecewise_linear(tf.constant(u), k, k).numpy() - u) <= _float32_bound(u, k32, k32))
    # any input shape
    assert piecewise_linear(tf.zeros((3, 1)), k, k).shape == (3, 1)


def test_isotonic_fixes_a_bent_reliability_curve_where_platt_does_not():
    """Negatives kept at r = 0.1 and weighted 1/r, as the refit's validation rows of a downsampled log."""
    rng = np.random.default_rng(3)
    z, y = _bent(rng, 600_000)
    valid, test = slice(0, 300_000), slice(300_000, None)
    kept = (y[valid] == 1) | (rng.random(300_000) < 0.1)
    zv, yv = z[valid][kept], y[valid][kept]
    wv = np.where(yv == 1, 1.0, 10.0)
    a, b = fit_platt(zv, yv, wv)
    platt = _sigmoid(a * z[test] + b)
    x, v = fit_knots(a * zv + b, yv, wv, k=16)
    iso = _sigmoid(apply_knots(a * z[test] + b, x, v))
    assert ece(y[test], platt) > 0.006
    assert ece(y[test], iso) < 0.002
    # the validation rows' PCOC is 1, as Platt's (the test's is off by the same sampling noise)
    assert pcoc(yv, _sigmoid(apply_knots(a * zv + b, x, v)), wv) == pytest.approx(1.0, abs=1e-6)
    assert pcoc(y[test], iso) == pytest.approx(pcoc(y[test], platt), abs=0.002)
    assert auc(y[test], iso) == pytest.approx(auc(y[test], platt), abs=1e-9)


def test_knots_of_an_evenly_spaced_score_grid_do_not_move_with_float_noise():
    rng = np.random.default_rng(0)
    grid = -2.8 + 0.0112 * np.arange(6)  # a tower that outputs a few evenly spaced scores
    index = rng.integers(0, grid.size, 6_000)
    u, labels = grid[index], rng.random(index.size) < 0.1 + 0.1 * index  # rising rates: every score a knot
    # the same scores, rounded otherwise: the lowest or the highest gap is wider by 1e-11
    x, y = fit_knots(np.where(u == grid[0], u - 1e-11, u), labels, k=16)
    other_x, other_y = fit_knots(np.where(u == grid[-1], u + 1e-11, u), labels, k=16)
    np.testing.assert_allclose(other_x, x, atol=1e-9)
    np.testing.assert_allclose(other_y, y, atol=1e-6)
