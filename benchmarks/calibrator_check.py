"""Which calibration map, fitted on a finished run's validation rows, fixes its test calibration?

    .venv/bin/python benchmarks/calibrator_check.py RUN_DIR LOG [RUN_DIR LOG ...] [--tower light] [--knots 16 32]

For each run dir (``bench_calibration.py``'s ``WORK/runs/...``) and the generated log it trained on
(``LOG/train``, ``LOG/test``), the tower's test PCOC / ECE / AUC under maps of its logit fitted on
the run's validation rows (weighted like the refit): none (``log r`` only), the intercept, Platt
(slope and intercept), isotonic regression (a step function: ties cost AUC) and the isotonic
blocks interpolated linearly in logit (strictly increasing: AUC unchanged); the served isotonic map
after Platt with ``--knots`` K (``rocket_ctr.calibration.isotonic``, what ``training.calibration_knots`` fits);
and, as a ceiling, Platt fitted on the test rows themselves.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def isotonic(x, y, w):
    """Weighted isotonic regression of ``y`` on ``x``: the library's pool adjacent violators
    (``rocket_ctr.calibration.isotonic.pool_adjacent_violators``) over the rows in increasing ``x``.

    Returns:
        ``(right edges, weighted mean x, value)`` of the blocks, in increasing ``x``.
    """
    from rocket_ctr.calibration.isotonic import pool_adjacent_violators

    order = np.argsort(x, kind="stable")
    x, y, w = x[order], y[order], w[order]
    blocks = pool_adjacent_violators(y, w)
    first = np.array([block[0] for block in blocks])
    last = np.array([block[1] for block in blocks])
    centres = np.add.reduceat(w * x, first) / np.add.reduceat(w, first)
    return x[last], centres, np.array([block[2] for block in blocks])


def step(blocks, x):
    ends, _, values = blocks
    return values[np.minimum(np.searchsorted(ends, x), len(values) - 1)]


def interpolated(blocks, x):
    _, centers, values = blocks
    v = np.clip(values, 1e-6, 1 - 1e-6)
    return _sigmoid(np.interp(x, centers, np.log(v / (1 - v))))


def check(run_dir: Path, log: Path, tower: str, knots=(16,)) -> None:
    """Prints one run's table (see the module docstring)."""
    from rocket_ctr.calibration.intercept import fit_intercept
    from rocket_ctr.calibration.isotonic import apply_knots, fit_knots
    from rocket_ctr.calibration.measures import ece, pcoc
    from rocket_ctr.calibration.platt import fit_platt
    from rocket_ctr.io.holdout import plan_holdout
    from rocket_ctr.io.log_gate import resolve_paths
    from rocket_ctr.metrics.ranking import auc
    from rocket_ctr.train.evaluation import scored_batches, validation_logits
    from rocket_ctr.train.run_dir import restore_model

    model, spec, config = restore_model(run_dir)
    training, offset = config.training, model.logit_offset
    holdout = plan_holdout(resolve_paths(log / "train"), spec, training.validation_split,
                           training.validation_fractions(training.fold_in_validation != "no"))
    logits, vy, vw = validation_logits(model, log / "train", spec, (holdout, "validation"), spec.negative_rate)
    v = logits[tower] - offset
    z, y, w = [], [], []
    for _, label, weight, batch in scored_batches(model, log / "test", spec):
        z.append(batch[tower].numpy().astype(np.float64)), y.append(label), w.append(weight)
    z, y, w = np.concatenate(z), np.concatenate(y).astype(np.float64), np.concatenate(w)
    b = fit_intercept(v + offset, vy, vw)
    a, b2 = fit_platt(v, vy, vw, offset)
    a3, b3 = fit_platt(z, y, w, offset)
    blocks = isotonic(v, vy.astype(np.float64), vw)
    maps = {"none": _sigmoid(z + offset), "intercept": _sigmoid(z + offset + b),
            f"platt (a {a:.3f})": _sigmoid(a * z + offset + b2), "isotonic": step(blocks, z),
            "isotonic interpolated": interpolated(blocks, z),
            **{f"isotonic map after platt, K {k}": _sigmoid(apply_knots(a * z + offset + b2, *fit_knots(
                a * v + offset + b2, vy, vw, k))) for k in knots},
            f"platt fitted on test (a {a3:.3f})": _sigmoid(a3 * z + offset + b3)}
    print(f"{run_dir.name} {tower}: {len(vy)} validation rows, {int(vy.sum())} clicks", flush=True)
    for name, p in maps.items():
        print(f"  {name:34s} PCOC {pcoc(y, p, w):.3f}  ECE {ece(y, p, w):.4f}  AUC {auc(y, p, w):.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pairs", nargs="+", help="RUN_DIR LOG pairs")
    parser.add_argument("--tower", default="light")
    parser.add_argument("--knots", type=int, nargs="+", default=[16], help="K of the isotonic maps")
    args = parser.parse_args()
    if len(args.pairs) % 2:
        parser.error("give RUN_DIR LOG pairs")
    for run_dir, log in zip(args.pairs[::2], args.pairs[1::2]):
        check(Path(run_dir), Path(log), args.tower, args.knots)


if __name__ == "__main__":
    main()
