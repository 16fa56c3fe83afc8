"""Cross-fitted calibration logits, level-matched to the served model (rocket_ctr.train.cross_fit)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from rocket_ctr.train.cross_fit import CrossFit

# a made-up model whose logit on a row is the row's own value plus a level the passes move
ROWS = {"fold": np.array([0.5, -1.0, 2.0]), "calibration": np.array([-0.25, 1.5])}
WEIGHTS = {"fold": np.array([1.0, 2.0, 0.5]), "calibration": np.array([3.0, 1.0])}
PASS_MOVES = {"fold": 0.3, "calibration": -0.7, "validation": 0.125}


def made_up(level: tf.Variable, scored: list) -> CrossFit:
    def train_pass(part):
        level.assign_add(PASS_MOVES[part])
        return len(ROWS.get(part, ())), 1

    def score(part):
        scored.append(part)
        parts = ("fold", "calibration") if part == "validation" else (part,)
        values = np.concatenate([ROWS[p] for p in parts])
        return ({"light": values + level.numpy(), "booster": 2 * values + level.numpy()},
                (values > 0).astype(float), np.concatenate([WEIGHTS[p] for p in parts]))

    return CrossFit(train_pass, score, lambda: [level])


def test_each_half_is_scored_after_a_pass_over_the_other_from_the_restored_state():
    level, scored = tf.Variable(0.0, dtype=tf.float64), []
    cross = made_up(level, scored)
    assert cross.score_out_of_fold() == 5
    assert level.numpy() == 0.0  # restored after each half's pass
    assert scored == ["calibration", "fold", "fold", "calibration"]  # each row once per half-model
    # before the levels are matched, each half carries its half-model's level
    logits, labels, weights = cross.result
    np.testing.assert_array_equal(logits["light"], np.concatenate([ROWS["calibration"] + 0.3, ROWS["fold"] - 0.7]))
    np.testing.assert_array_equal(weights, np.concatenate([WEIGHTS["calibration"], WEIGHTS["fold"]]))
    assert labels.shape == (5,)


def test_matching_moves_every_half_to_the_served_models_level_and_keeps_its_ranking():
    level, scored = tf.Variable(0.0, dtype=tf.float64), []
    cross = made_up(level, scored)
    cross.score_out_of_fold()
    level.assign_add(PASS_MOVES["validation"])  # the final pass: the served model
    shifts = cross.match_levels()
    # the level differences are constants, so the weighted means differ by them up to float64 rounding
    # of a five-term weighted average of values below 5 (~1e-15)
    for tower in ("light", "booster"):
        assert shifts[tower] == pytest.approx([0.125 - 0.3, 0.125 + 0.7], abs=1e-12)
    logits, _, _ = cross.result
    served = np.concatenate([ROWS["calibration"], ROWS["fold"]]) + 0.125
    np.testing.assert_allclose(logits["light"], served, rtol=0, atol=1e-12)
    np.testing.assert_allclose(logits["booster"], served + np.concatenate([ROWS["calibration"], ROWS["fold"]]),
                               rtol=0, atol=1e-12)


def test_validation_rows_that_weigh_nothing_leave_the_levels_alone():
    level, scored = tf.Variable(0.0, dtype=tf.float64), []
    cross = made_up(level, scored)
    for part in WEIGHTS:
        WEIGHTS[part] = WEIGHTS[part] * 0.0
    try:
        cross.score_out_of_fold()
        level.assign_add(1.0)
        assert cross.match_levels() == {"light": [0.0, 0.0], "booster": [0.0, 0.0]}
    finally:
        WEIGHTS.update({"fold": np.array([1.0, 2.0, 0.5]), "calibration": np.array([3.0, 1.0])})


@pytest.mark.parametrize("tower", ["light", "booster"])
def test_a_level_that_differs_row_by_row_is_matched_on_the_weighted_mean(tower):
    level, scored = tf.Variable(0.0, dtype=tf.float64), []
    cross = made_up(level, scored)
    cross.score_out_of_fold()
    half_levels = [half[3][tower] for half in cross.halves]
    values = np.concatenate([ROWS["fold"], ROWS["calibration"]]) * (2 if tower == "booster" else 1)
    weights = np.concatenate([WEIGHTS["fold"], WEIGHTS["calibration"]])
    mean = float(np.average(values, weights=weights))
    assert half_levels == pytest.approx([mean + 0.3, mean - 0.7], abs=1e-12)
