"""Sample weights and negative downsampling: weighted = duplicated rows (loss and metrics), the
reader's pass-through and sampling, and bad input refused by the CLI."""
import dataclasses
import json

import numpy as np
import pytest

from rocket_ctr.config.schema import RocketConfig
from rocket_ctr.features.signatures import example_rows
from rocket_ctr.features.spec import WEIGHT, FeatureSpec
from rocket_ctr.io.reader import ClickLogReader
from rocket_ctr.metrics.ranking import auc, gauc, logloss
from rocket_ctr.metrics.streaming import StreamingEvaluator
from rocket_ctr.model.rocket import RocketModel
from tests.conftest import log_columns, refused_in_one_line

WEIGHTED = dataclasses.replace(FeatureSpec(), weight="w")


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 6, n)
    labels = rng.integers(0, 2, n)
    scores = np.round(rng.random(n), 1)  # ties within and across users
    weights = rng.integers(0, 4, n)
    return users, labels, scores, weights, np.repeat(np.arange(n), weights)


def test_weighted_metrics_equal_the_unweighted_ones_on_duplicated_rows():
    users, labels, scores, weights, dup = _data()
    assert auc(labels, scores, weights) == pytest.approx(auc(labels[dup], scores[dup]), abs=1e-12)
    assert gauc(users, labels, scores, weights) == pytest.approx(gauc(users[dup], labels[dup], scores[dup]), abs=1e-12)
    assert logloss(labels, scores * 0.9 + 0.05, weights=weights) == \
        pytest.approx(logloss(labels[dup], scores[dup] * 0.9 + 0.05))
    weighted, duplicated = StreamingEvaluator(), StreamingEvaluator()
    weighted.update(users, labels, {"light": scores}, weights.astype(float))
    duplicated.update(users[dup], labels[dup], {"light": scores[dup]})
    a, b = weighted.result()["light"], duplicated.result()["light"]
    for key in ("auc", "gauc", "logloss", "pcoc"):
        assert a[key] == pytest.approx(b[key], abs=1e-12), key
    with pytest.raises(ValueError, match="weights"):
        auc(labels, scores, -weights - 1)


def test_weighted_loss_terms_equal_the_unweighted_ones_on_duplicated_rows():
    spec = FeatureSpec().with_buckets(item_id=100, cate_id=20)
    model = RocketModel(spec, RocketConfig(embedding_dim=4, light_units=(8,), booster_units=(8,), hint_gate=True))
    n, dup_weights = 6, np.array([1, 0, 3, 2, 1, 4])
    rows = example_rows(spec, batch=n, steps=3)
    rng = np.random.default_rng(0)
    rows = {k: (v + rng.integers(0, 16, v.shape) if k != "hist_len" else v) for k, v in rows.items()}
    labels = np.array([0, 1, 1, 0, 1, 0], np.float32)
    dup = np.repeat(np.arange(n), dup_weights)
    logits = model(rows, training=False)
    weighted = model.loss_terms(labels, logits, dup_weights)
    duplicated = model.loss_terms(labels[dup], {k: np.asarray(v)[dup] for k, v in logits.items()})
    assert set(weighted) == {"light_ce", "booster_ce", "hint"}
    # float32 weighted sums of 6 and plain sums of 11 non-negative terms: each within ~12·eps32 ≈ 7e-7 relative
    for name in weighted:
        assert float(weighted[name]) == pytest.approx(float(duplicated[name]), rel=1e-5), name
    unit = model.loss_terms(labels, logits, np.ones(n))
    plain = model.loss_terms(labels, logits)
    assert all(float(unit[k]) == pytest.approx(float(plain[k])) for k in plain)


def _weighted_log(click_log, name, weights, n=40):
    columns = log_columns(n, seed=2)
    columns["w"] = weights
    return click_log(name, columns)


def test_reader_passes_weights_through(click_log):
    weights = [float(i % 5) for i in range(40)]
    path = _weighted_log(click_log, "w.parquet", weights)
    seen = {}
    for features, _ in ClickLogReader(path, WEIGHTED, batch_size=8):
        seen.update(zip(features["item_id"].tolist(), features[WEIGHT].tolist()))
    assert seen == {i: weights[i] for i in range(40)}
    for features, _ in ClickLogReader(path, FeatureSpec(), batch_size=8):
        assert np.all(features[WEIGHT] == 1.0)


def test_reader_keeps_every_click_and_a_stable_share_of_negatives(click_log):
    path = click_log(n=3000, seed=4, max_len=5)

    def read(rate, seed=0, epoch=0):
        reader = ClickLogReader(path, batch_size=64, shuffle=True, seed=seed, negative_rate=rate)
        reader.epoch = epoch
        return {int(i): int(y) for f, label in reader for i, y in zip(f["item_id"], label)}

    everything, sampled = read(1.0), read(0.2)
    positives = {i for i, y in everything.items() if y}
    negatives = len(everything) - len(positives)
    assert positives <= set(sampled)
    kept = len(set(sampled) - positives)
    assert 0.15 * negatives < kept < 0.25 * negatives
    assert read(0.2, epoch=1) == sampled  # the same rows every epoch (a hash, not a draw)
    assert read(0.2, seed=1) != sampled


@pytest.mark.parametrize("bad, words", [(-1.0, "holds -1.0"), (float("nan"), "holds nan"), (None, "missing")])
def test_bad_weights_are_refused_in_one_line_and_an_earlier_run_is_untouched(click_log, tmp_path, capsys, bad, words):
    weights = [1.0] * 40
    weights[7] = bad
    path = _weighted_log(click_log, "bad.parquet", weights)
    spec_file = tmp_path / "spec.json"
    WEIGHTED.save(spec_file)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text('{"earlier": true}')
    line = refused_in_one_line(capsys, ["train", "--train", path, "--run-dir", str(run_dir), "--spec", str(spec_file)])
    assert "'w'" in line and words in line and "row 7" in line and ">= 0" in line
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.json"]
    assert json.loads((run_dir / "metrics.json").read_text()) == {"earlier": True}


@pytest.mark.parametrize("rate", ["0", "1.5", "-0.1", "nan"])
def test_bad_negative_rates_are_refused_in_one_line(click_log, tmp_path, capsys, rate):
    path = click_log()
    line = refused_in_one_line(capsys, ["train", "--train", path, "--run-dir", str(tmp_path / "run"),
                                        "--negative-rate", rate])
    assert "--negative-rate" in line and not (tmp_path / "run").exists()
    line = refused_in_one_line(capsys, ["generate", "--out", str(tmp_path / "log"), "--negative-rate", rate])
    assert "--negative-rate" in line and ("(0, 1]" in line or "finite" in line)


def test_bad_spec_negative_rate_is_refused(tmp_path, capsys, click_log):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({**FeatureSpec().to_dict(), "negative_rate": 0}))
    line = refused_in_one_line(capsys, ["train", "--train", click_log(), "--run-dir", str(tmp_path / "run"),
                             "--spec", str(spec_file)])
    assert "negative_rate must be in (0, 1]" in line
