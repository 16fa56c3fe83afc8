"""The export gate: a candidate is promoted into the export base only if it is no worse than what serves.

``gate_export`` exports the candidate (verified, as ``export_light`` does) into a staging folder
under the base, scores it and the version now serving (the highest numeric version of the base,
TF Serving's layout) on the same held-out rows, and renames it into the next version only when
every criterion of :class:`GateCriteria` holds. Otherwise the base's versions stay as they were.
Either way it returns (and can write) a JSON report.

The criteria and their tolerances: :mod:`rocket_ctr.export.gate.criteria`.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path

from rocket_ctr.errors import InputError
from rocket_ctr.export.gate.criteria import GateCriteria, judge
from rocket_ctr.export.gate.measure import p99_latency_ms, score
from rocket_ctr.export.staging import make_staging, remove_stale
from rocket_ctr.export.writer import export_light, list_versions, next_version, read_export_info
from rocket_ctr.features.spec import FeatureSpec

REPORT_FILE = "rocket_ctr_gate_report.json"  # also written into a promoted version's assets.extra/


def serving_version(base) -> Path:
    """The version TF Serving serves from ``base``: its highest numeric version (InputError if none)."""
    versions = list_versions(base)
    if not versions:
        raise InputError(f"gate base {base}: no version to gate against (no numeric folder holding a "
                         "saved_model.pb); export the first version without the gate")
    return Path(base) / str(versions[-1])


def gate_export(model, spec: FeatureSpec, base, data, criteria: GateCriteria | None = None, *,
                report_path=None, log=print, **export_kwargs) -> dict:
    """Exports ``model``'s light tower as a candidate and promotes it into ``base`` only if it passes.

    Args:
        model, spec: the candidate (e.g. from ``rocket_ctr.train.run_dir.restore_model``).
        base: the export base TF Serving watches; it must already hold a version.
        data: held-out Parquet rows (never trained on by either model) to score both on.
        criteria: the tolerances (default: :class:`GateCriteria`).
        report_path: where to write the JSON report as well (optional).
        log: progress lines (``None``: silent).
        export_kwargs: passed to :func:`rocket_ctr.export.writer.export_light` (``jit_compile``, ``source``...).
    Returns:
        The report: ``{"promoted", "version", "path", "serving": {...}, "candidate": {...}, "criteria": [...],
        "failed": [...]}``.
    Raises:
        InputError: no version under ``base``, unreadable data, a failed export verification.
    """
    criteria = criteria or GateCriteria()
    base = Path(base)
    current = serving_version(base)
    progress = log is not None  # the export's own stage lines only when the caller wants lines
    log = log or (lambda *_: None)
    remove_stale(base)
    staging = make_staging(base, "gate")
    try:
        spec = spec.served()  # light exports: the gate data need not hold booster-only columns
        exported = export_light(model, spec, staging, 1, data=data, progress=progress, **export_kwargs)
        log(f"candidate exported and verified; scoring it and {current} on {data}")
        candidate, serving = score([exported.path, current], data, spec)
        log(f"timing both at {criteria.latency_candidates} candidates per request")
        latency = p99_latency_ms([exported.path, current], data, spec, criteria.latency_candidates,
                                 criteria.latency_requests)
        candidate["p99_latency_ms"], serving["p99_latency_ms"] = latency
        verdicts = judge(candidate, serving, criteria)
        failed = [v["name"] for v in verdicts if not v["passed"]]
        report = {"promoted": not failed, "base": str(base), "data": str(data), "version": None, "path": None,
                  "serving": {"version": int(current.name), "source": read_export_info(current).get("source"),
                              **serving},
                  "candidate": {"source": read_export_info(exported.path).get("source"), **candidate},
                  "criteria": verdicts, "failed": failed, "tolerances": dataclasses.asdict(criteria)}
        if not failed:
            version = next_version(base)
            final = base / str(version)
            if final.exists():
                raise InputError(f"{final} appeared while the gate ran (another export?); nothing was promoted")
            report.update(version=version, path=str(final))
            (exported.path / "assets.extra" / REPORT_FILE).write_text(report_json(report) + "\n")
            os.rename(exported.path, final)  # atomic: the same file system, a name TF Serving then sees whole
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if report_path is not None:
        Path(report_path).write_text(report_json(report) + "\n")
    return report


def report_json(report: dict) -> str:
    """Strict JSON (an undefined metric, NaN, is written as null)."""
    return json.dumps(_nan_to_null(report), indent=2, allow_nan=False, default=str)


def _nan_to_null(value):
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_null(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value
