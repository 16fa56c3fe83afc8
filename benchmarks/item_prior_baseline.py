"""How far the towers are above the item's own click rate: GAUC of a popularity scorer on the real logs.

The scorer ranks each user's candidates by the candidate's smoothed positive rate in the training
rows, ``(clicks + k · p) / (rows + k)`` (``p``: the log's positive rate; an item never seen scores
``p``). It reads no history and no user. It is fitted twice per log:

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


def item_rates(items: np.ndarray, labels: np.ndarray, smoothing: float) -> tuple[dict, float]:
    """Each item's smoothed positive rate and the prior it is shrunk to.

    Args:
        items, labels: the training rows' item ids and 0/1 labels.
        smoothing: k, the prior's weight in rows.
    Returns:
        ({item: rate}, prior).
    """
    prior = float(labels.mean())
    ids, index = np.unique(items, return_inverse=True)
    clicks = np.bincount(index, weights=labels, minlength=len(ids))
    rows = np.bincount(index, minlength=len(ids))
    return dict(zip(ids.tolist(), ((clicks + smoothing * prior) / (rows + smoothing)).tolist())), prior


def prior_gauc(train: dict, test: dict, smoothing: float) -> float:
    """Test GAUC of the item-rate scorer fitted on ``train`` (columns: item, label; test: also user)."""
    rates, prior = item_rates(train["item"], train["label"], smoothing)
    scores = np.array([rates.get(i, prior) for i in test["item"].tolist()])
    return gauc(test["user"], test["label"], scores)


def read(files: list[str], spec: FeatureSpec) -> dict:
    """A log's user, item (the first sequence feature: the candidate) and label columns."""
    item = spec.sequence_features[0].name
    table = pads.dataset(files, format="parquet").to_table(columns=[spec.user_id, item, spec.label])
    return {"user": table[spec.user_id].to_numpy(), "item": table[item].to_numpy(),
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
    print(f"item-rate scorer, k = {args.smoothing:g}: test GAUC fitted on the rows training trains on / on every row")
    for name in args.logs:
        data = args.data_root / LOGS[name]
        train_log, eval_log = check_logs(str(data / "train.parquet"), str(data / "test.parquet"), spec)
        holdout = plan_validation(train_log, eval_log, spec, config, distributed=False)
        test = read(eval_log.files, spec)
        every = read(train_log.files, spec)
        trained = every if holdout is None else \
            {k: v[~held_out(train_log.files, spec, holdout)] for k, v in every.items()}
        fitted = [prior_gauc(rows, test, args.smoothing) for rows in (trained, every)]
        print(f"{name:14s} {fitted[0]:.4f} / {fitted[1]:.4f}  ({holdout.reason if holdout else 'no validation rows'})")


if __name__ == "__main__":
    main()
