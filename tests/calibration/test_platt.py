"""Platt scaling's 2-D fit: the exact minimiser (against a brute-force grid), its bounds and edge cases."""
import numpy as np
import pytest

from rocket_ctr.calibration.intercept import fit_intercept
from rocket_ctr.calibration.measures import ece, pcoc
from rocket_ctr.calibration.platt import SLOPE_RANGE, fit_platt, fit_towers


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _loss(z, y, w, offset, a, b):
    """Mean weighted log loss of σ(a·z + offset + b), broadcasting over arrays of a and b."""
    s = a[..., None] * z + offset + b[..., None]
    return (w * (np.logaddexp(0, s) - y * s)).sum(-1) / w.sum()


def _grid_minimum(z, y, w, offset, a_range, b_range, rounds=6, n=41):
    """Brute force: a grid over (a, b), refined around its best point ``rounds`` times."""
    (a_low, a_high), (b_low, b_high) = a_range, b_range
    for _ in range(rounds):
        a, b = np.meshgrid(np.linspace(a_low, a_high, n), np.linspace(b_low, b_high, n), indexing="ij")
        i, j = np.unravel_index(np.argmin(_loss(z, y, w, offset, a, b)), a.shape)
        best = a[i, j], b[i, j]
        da, db = 2 * (a_high - a_low) / (n - 1), 2 * (b_high - b_low) / (n - 1)
        a_low, a_high = max(a_range[0], best[0] - da), min(a_range[1], best[0] + da)
        b_low, b_high = best[1] - db, best[1] + db
    return best


def _mis_sloped(rng, n, true_slope, offset=0.0, shift=0.0):
    """Logits z whose labels follow σ(true_slope·z + offset + shift)."""
    z = rng.normal(-1.0, 1.2, n)
    y = (rng.random(n) < _sigmoid(true_slope * z + offset + shift)).astype(float)
    return z, y


def test_fit_is_the_minimum_a_brute_force_search_finds():
    rng = np.random.default_rng(0)
    offset = np.log(0.1)
    z, y = _mis_sloped(rng, 20_000, 0.6, offset, 0.4)
    w = rng.uniform(0.5, 2.0, len(z))
    a, b = fit_platt(z, y, w, offset)
    grid_a, grid_b = _grid_minimum(z, y, w, offset, (0.2, 2.0), (-3.0, 3.0))
    assert (a, b) == pytest.approx((grid_a, grid_b), abs=2e-3)
    found = _loss(z, y, w, offset, np.array(a), np.array(b))
    assert found <= _loss(z, y, w, offset, np.array(grid_a), np.array(grid_b)) + 1e-12
    # its first-order conditions: the fitted probabilities sum to the clicks, also weighted by z
    p = _sigmoid(a * z + offset + b)
    assert np.dot(w, p - y) == pytest.approx(0.0, abs=1e-8)
    assert np.dot(w * z, p - y) == pytest.approx(0.0, abs=1e-8)


def test_fit_recovers_a_known_slope_and_intercept_and_weights_are_copies():
    rng = np.random.default_rng(1)
    z, y = _mis_sloped(rng, 400_000, 0.7, shift=-0.5)
    assert fit_platt(z, y) == pytest.approx((0.7, -0.5), abs=0.02)
    counts = rng.integers(0, 4, 2_000)
    copies = np.repeat(np.arange(2_000), counts)
    assert fit_platt(z[:2_000], y[:2_000], counts) == pytest.approx(fit_platt(z[copies], y[copies]), abs=1e-8)


def test_offset_comes_after_the_slope():
    """σ(a·z + log r + b): the same fit as on logits z with log r folded into b only when a = 1."""
    rng = np.random.default_rng(2)
    z, y = _mis_sloped(rng, 50_000, 0.5, np.log(0.1))
    a, b = fit_platt(z, y, offset=np.log(0.1))
    a_plain, b_plain = fit_platt(z, y)
    assert a == pytest.approx(a_plain, abs=1e-8) and b == pytest.approx(b_plain - np.log(0.1), abs=1e-8)
    assert fit_towers({"light": z + np.log(0.1)}, y, offset=np.log(0.1))["light"] == pytest.approx((a, b), abs=1e-8)


def test_slope_outside_the_range_stops_at_the_bound():
    rng = np.random.default_rng(3)
    z, y = _mis_sloped(rng, 20_000, 0.6)
    w = np.ones_like(z)
    a, b = fit_platt(z, y, slope_range=(0.8, 5.0))
    assert a == 0.8
    assert b == pytest.approx(fit_intercept(0.8 * z, y), abs=1e-10)
    grid = _grid_minimum(z, y, w, 0.0, (0.8, 5.0), (-3.0, 3.0))
    assert (a, b) == pytest.approx(grid, abs=2e-3)
    # separable rows: no finite minimum; the largest slope allowed
    separable = np.array([-2.0, -1.0, 1.0, 2.0]), np.array([0.0, 0.0, 1.0, 1.0])
    assert fit_platt(*separable)[0] == SLOPE_RANGE[1]
    # reversed ranking: the smallest (still positive) slope
    assert fit_platt(separable[0], separable[1][::-1])[0] == SLOPE_RANGE[0]


def test_degenerate_rows():
    z = np.zeros(10)
    assert fit_platt(z, np.zeros(10)) is None and fit_platt(z, np.ones(10)) is None and fit_platt([], []) is None
    y = np.array([1.0] * 3 + [0.0] * 7)
    a, b = fit_platt(z + 0.5, y)  # every logit the same: no slope to fit
    assert a == 1.0 and b == pytest.approx(np.log(3 / 7) - 0.5)
    with pytest.raises(ValueError, match="length"):
        fit_platt(z, np.zeros(9))
    with pytest.raises(ValueError, match="slope_range"):
        fit_platt(z, y, slope_range=(-1.0, 2.0))


def test_slope_fixes_a_mis_sloped_models_ece():
    """An over-confident model (logits twice the true ones): the intercept fixes PCOC, not ECE; Platt fixes both."""
    rng = np.random.default_rng(4)
    true = rng.normal(-3.0, 0.8, 400_000)
    y = (rng.random(len(true)) < _sigmoid(true)).astype(float)
    z = 2.0 * true + 3.0
    valid, test = slice(0, 200_000), slice(200_000, None)  # ~11k clicks each: PCOC noise under 1 %
    b_only = fit_intercept(z[valid], y[valid])
    a, b = fit_platt(z[valid], y[valid])
    shifted, scaled = _sigmoid(z[test] + b_only), _sigmoid(a * z[test] + b)
    assert pcoc(y[test], shifted) == pytest.approx(1.0, abs=0.03)
    assert ece(y[test], shifted) > 0.01
    assert a == pytest.approx(0.5, abs=0.03)
    assert pcoc(y[test], scaled) == pytest.approx(1.0, abs=0.02) and ece(y[test], scaled) < 0.003
