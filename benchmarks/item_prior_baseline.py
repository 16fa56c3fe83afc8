"""How far the towers are above the item's own click rate: GAUC of a popularity scorer on the real logs.

The scorer ranks each user's candidates by the candidate's smoothed positive rate in the training
rows, ``(clicks + k · p) / (rows + k)`` (``p``: the log's positive rate; an item never seen scores
``p``). It reads no history and no user. A second scorer adds the user's affinity to the
candidate's category: the user's positive rate in it (clicks *and* non-clicks, shrunk to the user's
own rate) against the user's rate, in logits. Each is fitted twice per log:

* on the rows ``rocket-ctr train`` trains on before any fold-in (its default validation rows held
  out, the same split as training plans it for that eval log);
* on every training row.

A model whose light tower or booster is near the first figure learns little beyond the item's
popularity on that log; the gap between the two figures is what the held-out rows alone are worth to
this scorer.

    .venv/bin/python benchmarks/item_prior_baseline.py [--logs ml_time ml_user_tail] [--smoothing 5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads

sys.path.insert(0, str(Path(__file__).resolve().parent))
from experiment_real_logs import LOGS  # noqa: E402

from rocket_ctr.config.schema import RocketConfig  # noqa: E402
from rocket_ctr.features.spec import FeatureSpec  # noqa: E402
from rocket_ctr.metrics.ranking import gauc  # noqa: E402
from rocket_ctr.train.assembly import check_logs, plan_validation  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def smoothed_rates(train_keys: np.ndarray, labels: np.ndarray, test_keys: np.ndarray, smoothing: float,
                   prior) -> np.ndarray:
    """Each test row's key's positive rate in the training rows, shrunk to a prior.

    Args:
        train_keys, labels: the training rows' keys (int64) and 0/1 labels.
        test_keys: the test rows' keys.
        smoothing: k, the prior's weight in rows.
        prior: the rate a key is shrunk to, one for all or one per test row.
    Returns:
        ``(clicks + k · prior) / (rows + k)`` per test row (a key the training rows lack: its prior).
    """
    keys, index = np.unique(train_keys, return_inverse=True)
    clicks = np.bincount(index, weights=labels, minlength=len(keys))
    rows = np.bincount(index, minlength=len(keys))
    at = np.clip(np.searchsorted(keys, test_keys), 0, len(keys) - 1)
    seen = keys[at] == test_keys
    return (np.where(seen, clicks[at], 0.0) + smoothing * prior) / (np.where(seen, rows[at], 0.0) + smoothing)


def scores(train: dict, test: dict, smoothing: float, affinity: bool = False) -> np.ndarray:
    """The item-rate scorer's test scores (columns: user, item, category, label); ``affinity``: the
    logit of the item's rate plus the user's affinity to the candidate's category, the logit of the
    user's rate in that category (shrunk to the user's rate) minus the logit of the user's rate."""
    prior = float(train["label"].mean())
    item = smoothed_rates(train["item"], train["label"], test["item"], smoothing, prior)
    if not affinity:
        return item
    user = smoothed_rates(train["user"], train["label"], test["user"], smoothing, prior)
    categories = int(max(train["category"].max(), test["category"].max())) + 1
    pair = smoothed_rates(train["user"] * categories + train["category"], train["label"],
                          test["user"] * categories + test["category"], smoothing, user)
    return _logit(item) + _logit(pair) - _logit(user)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def prior_gauc(train: dict, test: dict, smoothing: float, affinity: bool = False) -> float:
    """Test GAUC of :func:`scores` fitted on ``train``."""
    return gauc(test["user"], test["label"], scores(train, test, smoothing, affinity))


def read(files: list[str], spec: FeatureSpec) -> dict:
    """A log's user, item and category (the first two sequence features: the candidate's) and label columns."""
    item, category = (f.name for f in spec.sequence_features[:2])
    table = pads.dataset(files, format="parquet").to_table(columns=[spec.user_id, item, category, spec.label])
    return {"user": table[spec.user_id].to_numpy(), "item": table[item].to_numpy(),
            "category": table[category].to_numpy(),
            "label": table[spec.label].to_numpy().astype(np.float64)}


def held_out(files: list[str], spec: FeatureSpec, holdout) -> np.ndarray:
    """A bool mask over the training log's rows: the validation rows of ``holdout``."""
    dataset = pads.dataset(files, format="parquet")
    masks = [holdout.validation_rows(batch, spec) for batch in dataset.to_batches(columns=list(holdout.columns(spec)))]
    return np.concatenate(masks) if masks else np.zeros(0, dtype=bool)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", nargs="+", default=list(LOGS), choices=list(LOGS))
    parser.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--smoothing", type=float, default=5.0, help="k: the prior's weight in rows")
    args = parser.parse_args(argv)
    spec, config = FeatureSpec(), RocketConfig()
    print(f"item-rate scorer, k = {args.smoothing:g}: test GAUC fitted on the rows training trains on / on every "
          "row; then with the user's affinity to the candidate's category, the same two")
    for name in args.logs:
        data = args.data_root / LOGS[name]
        train_log, eval_log = check_logs(str(data / "train.parquet"), str(data / "test.parquet"), spec)
        holdout = plan_validation(train_log, eval_log, spec, config, distributed=False)
        test = read(eval_log.files, spec)
        every = read(train_log.files, spec)
        kept = None if holdout is None else ~held_out(train_log.files, spec, holdout)
        trained = every if kept is None else {k: v[kept] for k, v in every.items()}
        fitted = [prior_gauc(rows, test, args.smoothing, affinity) for affinity in (False, True)
                  for rows in (trained, every)]
        print(f"{name:14s} {fitted[0]:.4f} / {fitted[1]:.4f}; {fitted[2]:.4f} / {fitted[3]:.4f}  "
              f"({holdout.reason if holdout else 'no validation rows'})")


if __name__ == "__main__":
    main()
