"""The export gate's criteria: a candidate's metrics against the serving version's, with tolerances.

Pure Python (the CLI builds its flags from :class:`GateCriteria` without importing TensorFlow).

Criteria (candidate ``c`` against serving ``s``; tolerances in :class:`GateCriteria`):

* ``gauc``: c.gauc >= s.gauc - max_gauc_drop
* ``logloss``: c.logloss <= s.logloss * (1 + max_logloss_increase)
* ``pcoc`` (predicted / observed CTR): |c.pcoc - 1| <= max(pcoc_tolerance, |s.pcoc - 1|): inside the
  band, or at least no further from 1 than what serves
* ``p99_latency``: c.p99_ms <= s.p99_ms * (1 + max_latency_increase), one user x ``latency_candidates``
  candidates, both timed side by side in this process
"""
from __future__ import annotations

import dataclasses
import math

from rocket_ctr.errors import FieldError


@dataclasses.dataclass(frozen=True)
class GateCriteria:
    """Tolerances of the gate (see the module doc for each rule)."""

    max_gauc_drop: float = 0.001
    max_logloss_increase: float = 0.005
    pcoc_tolerance: float = 0.1
    max_latency_increase: float = 0.25
    latency_candidates: int = 200
    latency_requests: int = 200

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise FieldError(f"{{{field.name}}} must be a number >= 0, got {value!r}")
        for name in ("latency_candidates", "latency_requests"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise FieldError(f"{{{name}}} must be an integer >= 1, got {getattr(self, name)!r}")


def judge(candidate: dict, serving: dict, criteria: GateCriteria) -> list[dict]:
    """Each criterion's verdict: ``{"name", "passed", "candidate", "serving", "rule"}``.

    A metric that is undefined (NaN, e.g. GAUC with no user holding both classes) fails.
    """
    c_pcoc, s_pcoc = abs(candidate["pcoc"] - 1), abs(serving["pcoc"] - 1)
    band = max(criteria.pcoc_tolerance, s_pcoc)
    latency_limit = serving["p99_latency_ms"] * (1 + criteria.max_latency_increase)
    rules = [
        ("gauc", candidate["gauc"] >= serving["gauc"] - criteria.max_gauc_drop,
         f"candidate >= serving - {criteria.max_gauc_drop}"),
        ("logloss", candidate["logloss"] <= serving["logloss"] * (1 + criteria.max_logloss_increase),
         f"candidate <= serving x (1 + {criteria.max_logloss_increase})"),
        ("pcoc", c_pcoc <= band, f"|candidate - 1| <= max({criteria.pcoc_tolerance}, |serving - 1|) = {band:.4g}"),
        ("p99_latency_ms", candidate["p99_latency_ms"] <= latency_limit,
         f"candidate <= serving x (1 + {criteria.max_latency_increase}) at {criteria.latency_candidates} candidates"),
    ]
    return [{"name": name, "passed": bool(passed) and _finite(candidate[name]) and _finite(serving[name]),
             "candidate": candidate[name], "serving": serving[name], "rule": rule}
            for name, passed, rule in rules]


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)
