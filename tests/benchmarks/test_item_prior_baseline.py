"""benchmarks/item_prior_baseline.py: the smoothed item rate, its GAUC, and the rows training holds out."""
import importlib.util
from pathlib import Path

import numpy as np

from conftest import log_columns, write_log

SPEC = importlib.util.spec_from_file_location(
    "item_prior_baseline", Path(__file__).resolve().parents[2] / "benchmarks" / "item_prior_baseline.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def test_smoothed_rates_shrink_each_keys_click_rate_to_its_prior():
    keys, labels = np.array([1, 1, 1, 2]), np.array([1.0, 1.0, 0.0, 0.0])
    rates = bench.smoothed_rates(keys, labels, np.array([1, 2, 3]), smoothing=2.0, prior=np.array([0.5, 0.5, 0.9]))
    np.testing.assert_allclose(rates, [(2 + 2 * 0.5) / (3 + 2), (0 + 2 * 0.5) / (1 + 2), 0.9])  # 3: unseen


def test_the_users_affinity_to_a_category_reorders_items_of_equal_rate():
    # items 1 and 2 have the same rate; user 7 clicked category 0 and never category 1
    train = {"user": np.array([7, 7, 8, 8]), "item": np.array([1, 2, 1, 2]), "category": np.array([0, 1, 0, 1]),
             "label": np.array([1.0, 0.0, 0.0, 1.0])}
    test = {"user": np.array([7, 7]), "item": np.array([1, 2]), "category": np.array([0, 1]),
            "label": np.array([1.0, 0.0])}
    plain, affine = bench.scores(train, test, 1.0), bench.scores(train, test, 1.0, affinity=True)
    assert plain[0] == plain[1] and affine[0] > affine[1]
    assert bench.prior_gauc(train, test, 1.0, affinity=True) == 1.0


def test_prior_gauc_ranks_by_the_training_rate_and_scores_unseen_items_at_the_prior():
    train = {"user": np.array([1, 2, 3, 4]), "item": np.array([1, 1, 2, 2]), "label": np.array([1.0, 1.0, 0.0, 0.0])}
    test = {"user": np.array([7, 7, 8, 8]), "item": np.array([1, 2, 2, 3]), "label": np.array([1.0, 0.0, 0.0, 1.0])}
    # user 7: the clicked item has the higher rate; user 8: the unseen item (prior 0.5) beats item 2
    assert bench.prior_gauc(train, test, smoothing=1.0) == 1.0
    flipped = {**test, "label": 1.0 - test["label"]}
    assert bench.prior_gauc(train, flipped, smoothing=1.0) == 0.0


def test_the_scorer_is_fitted_without_the_rows_training_holds_out(tmp_path, capsys):
    data = tmp_path / "movielens_latest" / "time"
    columns = log_columns(400, seed=1)
    write_log(data / "train.parquet", columns)
    write_log(data / "test.parquet", log_columns(100, seed=2, start=400))
    bench.main(["--logs", "ml_time", "--data-root", str(tmp_path)])
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("ml_time") and "newest 5%" in line
    spec = bench.FeatureSpec()
    train_log, eval_log = bench.check_logs(str(data / "train.parquet"), str(data / "test.parquet"), spec)
    holdout = bench.plan_validation(train_log, eval_log, spec, bench.RocketConfig(), distributed=False)
    mask = bench.held_out(train_log.files, spec, holdout)
    ts = np.array(columns["ts"])
    assert mask.sum() == 20 and (ts[mask] >= ts[~mask].max()).all()  # the newest 5 % of 400 rows
