"""The evaluation after each training epoch: the chief's validation and eval metrics go into the
epoch's record, and in a multi-worker run reach every worker unchanged (early stopping and the
hint warm-up then decide the same everywhere)."""
from __future__ import annotations

import numpy as np

from rocket_ctr.train.distributed import broadcast_from_chief
from rocket_ctr.train.evaluation import evaluate

EVAL_KEYS = ("auc", "gauc", "logloss", "count", "gauc_users")


def evaluated(trainer, record: dict) -> dict:
    """The epoch's record with the chief's validation and eval metrics (shared with every worker).

    Args:
        trainer: the run (its model, data, hold-out and place in the cluster).
        record: the epoch's record, with its ``train`` logs.
    Returns:
        ``record``, completed in place.
    """
    if trainer.holdout and trainer.is_chief:
        record["validation"] = evaluate(trainer.model, trainer.train_paths, trainer.spec,
                                        holdout=(trainer.holdout, "validation"),
                                        negative_rate=trainer.spec.negative_rate, intercept=False)
        _print_eval(trainer, record["validation"], "validation")
    if trainer.eval_paths is not None and trainer.is_chief:
        record["eval"] = evaluate(trainer.model, trainer.eval_paths, trainer.spec, intercept=False)
        _print_eval(trainer, record["eval"], "eval")
    if trainer.distributed:
        _share_chief_results(trainer, record)
    return record


def _print_eval(trainer, results: dict, split: str) -> None:
    if trainer.verbose:
        print(f"  {split}: " + "  ".join(f"{t} gauc {v['gauc']:.4f} auc {v['auc']:.4f} logloss {v['logloss']:.4f}"
                                     for t, v in results.items()))


def _share_chief_results(trainer, record: dict):
    """Puts the chief's training loss and validation metrics into every worker's ``record``.

    Each worker's local loss becomes the chief's; the validation numbers (which drive early
    stopping and the hint warm-up) are the chief's float64 values, exactly, on every worker.
    """
    towers = trainer.config.model.towers
    values = [record["train"].get("loss", 0.0)]
    if trainer.holdout:
        values += [record.get("validation", {}).get(t, {}).get(k, 0.0) for t in towers for k in EVAL_KEYS]
    shared = broadcast_from_chief(trainer.strategy, np.asarray(values, np.float64), trainer.is_chief)
    record["train"]["loss"] = float(shared[0])
    if trainer.holdout and not trainer.is_chief:
        it = iter(shared[1:])
        record["validation"] = {t: {k: (int(v) if k in ("count", "gauc_users") else float(v))
                                    for k, v in zip(EVAL_KEYS, it)} for t in towers}
