"""EarlyStopping's choice of the best epoch: the last one within min_delta of the top score."""
import math

import pytest

from rocket_ctr.train.callbacks.early_stopping import EarlyStopping


def stopper(scores, min_delta, patience=2, tmp_path=None):
    history = [{"stage": "joint", "validation": {"light": {"gauc": s}}} for s in scores]
    return EarlyStopping(patience, "light", tmp_path, tmp_path, checkpoints=None, history=history, min_delta=min_delta)


@pytest.mark.parametrize("scores,min_delta,best", [
    ([0.7711, 0.7859, 0.7843], 0.0, 1),       # the strict best: epoch 2
    ([0.7711, 0.7859, 0.7843], 0.002, 2),     # epoch 3 is within 0.002 of it and has seen more data
    ([0.7867, 0.7985, 0.7889], 0.002, 1),     # epoch 3 is clearly worse: epoch 2 stays
    ([0.80, 0.799, 0.798], 0.002, 2),         # the tolerance is measured from the top, so it cannot drift
    ([0.80, 0.799, 0.797], 0.002, 1),
    ([-math.inf, -math.inf], 0.002, 0),       # nothing counted (a booster-only stage)
])
def test_the_best_epoch_is_the_last_within_min_delta_of_the_top(scores, min_delta, best, tmp_path):
    assert stopper(scores, min_delta, tmp_path=tmp_path).best_index == best


def test_patience_counts_from_the_last_epoch_as_good_as_the_best(tmp_path):
    assert not stopper([0.80, 0.799, 0.7985], 0.002, patience=1, tmp_path=tmp_path)._patience_exhausted()
    assert stopper([0.80, 0.79, 0.795], 0.002, patience=1, tmp_path=tmp_path)._patience_exhausted()
