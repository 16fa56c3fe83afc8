"""Cross-fitted calibration logits around the validation fold-in (``fold_in_calibration cross-fit``).

The calibration must not be fitted on logits of rows the served model trained on, and the served
model has folded in every validation row. So, from the state early stopping kept, each half of the
validation users is folded in on a copy of that state and the other half is scored: out-of-fold
logits, which the refit fits.

A pass of Adam moves a model's logit level by a random amount (measured on the leave-one-out logs:
±0.05 to ±0.2 in logit, i.e. a PCOC off by up to 5 %), and the served model's pass is not either
half's pass. The ranking inside each half is what the half-models know; their level is not the
served model's. So each half's logits are shifted by the served model's mean logit on every
validation row minus that half-model's (weighted, per tower; no label is read): the refit then maps
the served model's level, and its reliability curve is fitted on rows the scoring models never
trained on.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

HALVES = (("fold", "calibration"), ("calibration", "fold"))  # (the half folded in, the half scored)


class CrossFit:
    """Out-of-fold logits of the validation rows, level-matched to the served model.

    Args:
        train_pass: ``(part) -> (rows, steps)``: one pass over a part of the validation rows
            (``"fold"``, ``"calibration"``) with the run's training step.
        score: ``(part) -> ({tower: logits}, labels, weights)``: the model's logits on a part of
            the validation rows (``"fold"``, ``"calibration"``, ``"validation"``).
        state: ``() -> variables`` a pass changes (the model's and the optimizers'), restored after
            each half's pass.
    """

    def __init__(self, train_pass: Callable, score: Callable, state: Callable):
        self.train_pass, self.score, self.state = train_pass, score, state
        self.halves: list = []  # (logits, labels, weights, levels) per scored half
        self.shifts: dict = {}  # {tower: [shift of each half]}: zeros until match_levels

    def score_out_of_fold(self) -> int:
        """Before the final pass: each half scored by the state folded in on the other half (the
        state is restored after each). Returns the number of rows scored."""
        variables = list(self.state())
        saved = [v.numpy() for v in variables]
        self.halves = []
        for trained, scored in HALVES:
            self.train_pass(trained)
            out_of_fold = self.score(scored)
            # the half-model's level over every validation row: its out-of-fold half and the half it trained on
            self.halves.append((*out_of_fold, _levels(out_of_fold, self.score(trained))))
            for variable, value in zip(variables, saved):
                variable.assign(value)
        self.shifts = {tower: [0.0] * len(self.halves) for tower in self.halves[0][0]}
        return sum(len(half[1]) for half in self.halves)

    def match_levels(self) -> dict:
        """After the final pass (the served model): shifts each half's logits by the served mean
        logit minus its half-model's. Returns ``{tower: [shift of each half]}``."""
        served = _levels(self.score("validation"))
        self.shifts = {tower: [served[tower] - half[3][tower] for half in self.halves] for tower in served}
        return self.shifts

    @property
    def result(self) -> tuple:
        """``({tower: logits}, labels, weights)`` of every validation row, for the refit."""
        logits = {tower: np.concatenate([half[0][tower] + shift for half, shift in zip(self.halves, shifts)])
                  for tower, shifts in self.shifts.items()}
        return (logits, np.concatenate([half[1] for half in self.halves]),
                np.concatenate([half[2] for half in self.halves]))


def _levels(*parts: tuple) -> dict:
    """The weighted mean logit per tower over the rows of ``parts`` (each ``({tower: logits}, labels, weights)``)."""
    weights = np.concatenate([part[2] for part in parts])
    towers = parts[0][0]
    if not len(weights) or float(np.sum(weights)) <= 0:
        return {tower: 0.0 for tower in towers}
    return {tower: float(np.average(np.concatenate([part[0][tower] for part in parts]), weights=weights))
            for tower in towers}
