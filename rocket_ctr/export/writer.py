"""Light-tower export for TF Serving: atomic, versioned, verified, with warmup records.

``export_light`` writes ``BASE/<version>/`` in TF Serving's layout::

    saved_model.pb, variables/, assets.extra/tf_serving_warmup_requests, assets.extra/rocket_ctr_export.json

from a model in memory (the CLI restores it from a run dir with ``rocket_ctr.train.run_dir.restore_model``).
The pieces, one module each: ``serving_module`` (the exported ``tf.Module`` and its two
signatures), ``rows`` (sample rows), ``verify`` (SavedModel vs in-memory tower),
``warmup`` (warmup records). Nothing here imports training.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import tensorflow as tf

from rocket_ctr.errors import InputError
from rocket_ctr.export.rows import sample_rows
from rocket_ctr.export.serving_module import ServingModule
from rocket_ctr.export.staging import make_staging, remove_stale
from rocket_ctr.export.verify import verify_export
from rocket_ctr.export.warmup import warmup_logs, write_warmup
from rocket_ctr.features.signatures import SCORE_ROWS, SERVING_DEFAULT, describe_signatures
from rocket_ctr.features.spec import HIST_LEN, FeatureSpec
from rocket_ctr.progress import stage

WARMUP_FILE, INFO_FILE = "tf_serving_warmup_requests", "rocket_ctr_export.json"


@dataclasses.dataclass
class ExportResult:
    """What :func:`export_light` wrote. ``max_abs_diff`` is the verification's largest gap."""

    path: Path
    version: int
    tower: str
    jit_compile: bool
    checked_rows: int
    max_abs_diff: float
    warmup_records: int
    removed_stale: list = dataclasses.field(default_factory=list)  # staging folders of killed exports


# ----- versions ----------------------------------------------------------------------------------
def list_versions(base) -> list[int]:
    """Complete versions under ``base`` (numeric folders holding a saved_model.pb), ascending."""
    base = Path(base)
    if not base.is_dir():
        return []
    return sorted(int(p.name) for p in base.iterdir()
                  if p.name.isdigit() and (p / "saved_model.pb").is_file())


def next_version(base) -> int:
    """1 + the largest numeric folder name under ``base`` (1 for a new base)."""
    base = Path(base)
    numbers = [int(p.name) for p in base.iterdir() if p.name.isdigit()] if base.is_dir() else []
    return max(numbers, default=0) + 1


def resolve_export(path) -> Path:
    """``BASE/<version>`` or ``BASE`` (-> its highest version) -> the version folder.

    Raises:
        InputError: no SavedModel there.
    """
    path = Path(path)
    if (path / "saved_model.pb").is_file():
        return path
    versions = list_versions(path)
    if not versions:
        raise InputError(f"{path}: neither a SavedModel folder nor an export base holding versions")
    return path / str(versions[-1])


# ----- export ------------------------------------------------------------------------------------
def _check_tower(model, tower: str) -> None:
    if tower not in ("light", "booster"):
        raise InputError(f"tower must be light or booster, got {tower!r}")
    if tower not in model.towers:
        raise InputError(f"this run (mode {model.config.mode}) has no {tower} tower")


def export_light(model, spec: FeatureSpec, export_base, version: int | None = None, *, tower: str = "light",
                 jit_compile: bool = True, data=None, sample_size: int = 256, warmup_candidates: int = 512,
                 source=None, progress: bool = True) -> ExportResult:
    """Exports one tower (default: the light one) as ``export_base/<version>/`` for TF Serving.

    Written to a temporary folder beside the target, verified, then renamed into place, so a
    server polling ``export_base`` never sees half a model and a failed export leaves it as it was.

    Args:
        model: a built RocketModel (e.g. ``rocket_ctr.train.run_dir.restore_model(run_dir)[0]``).
        spec: its FeatureSpec (a light export's signatures, metadata and sample rows leave out
            its booster-only columns: ``spec.served()``).
        export_base: the folder TF Serving's ``--model_base_path`` points at.
        version: the version number (default: the next integer).
        tower: ``light``; ``booster`` only for latency comparisons.
        jit_compile: XLA for the model part (TF Serving then needs ``--xla_cpu_compilation_enabled``).
        data: Parquet rows (e.g. the eval log) for verification and warmup; random ids if None.
        sample_size: rows read from ``data`` (edge-case rows are added).
        warmup_candidates: the largest N the warmup records cover.
        source: where the model came from (e.g. its run dir), recorded in rocket_ctr_export.json.
        progress: a line per stage on stderr (saving, warmup records, verification).
    Returns:
        An ExportResult.
    Raises:
        InputError: bad tower/base/version; VerificationError: outputs differ.
    """
    _check_tower(model, tower)
    spec = spec.for_tower(tower)  # a light export never asks for booster-only columns
    base = Path(export_base)
    if base.exists() and not base.is_dir():
        raise InputError(f"export base {base} exists and is not a folder")
    version = next_version(base) if version is None else int(version)
    if version < 1:
        raise InputError(f"version must be a positive integer, got {version}")
    final = base / str(version)
    if final.exists():
        raise InputError(f"{final} already exists; versions are never overwritten (pick another --version)")
    rows = sample_rows(spec, data, sample_size)
    module = ServingModule(model, tower, jit_compile, spec)
    created_base = not base.exists()
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"export base {base}: cannot create the folder ({err.strerror})") from None
    stale = remove_stale(base)  # staging folders of exports killed before they could clean up
    staging = make_staging(base, version)
    try:
        stage(f"export: saving the {tower} tower ({'XLA' if jit_compile else 'no XLA'}) as a SavedModel",
              enabled=progress)
        tf.saved_model.save(module, str(staging), signatures={SERVING_DEFAULT: module.serving_default,
                                                              SCORE_ROWS: module.score_rows})
        extra = staging / "assets.extra"
        extra.mkdir()
        logs = warmup_logs(spec, rows, warmup_candidates)
        stage(f"export: writing {len(logs)} warmup records", enabled=progress)
        write_warmup(extra / WARMUP_FILE, logs)
        worst = verify_export(staging, model, tower, rows, progress=progress)
        info = {"tower": tower, "jit_compile": jit_compile, "tensorflow": tf.__version__,
                "source": None if source is None else str(source),
                "signatures": describe_signatures(spec), "feature_spec": spec.to_dict(),
                "verified_max_abs_diff": worst,
                "negative_rate": model.negative_rate}  # < 1: probabilities are corrected to the full rate
        if tower in model.intercepts:  # added to the logit (rocket_ctr.calibration.intercept); none before it existed
            info["intercept"] = model.intercept_values()[tower]
        if tower in model.slopes:  # multiplies the tower's own logit (rocket_ctr.calibration.platt)
            info["slope"] = model.slope_values()[tower]
        if tower in model.knots:  # the isotonic map after them (calibration.isotonic): {"x": [...], "y": [...]}
            info["knots"] = model.knot_values()[tower]
        (extra / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        os.chmod(staging, 0o755)  # mkdtemp makes it owner-only; a server may run as another user
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if created_base:
            shutil.rmtree(base, ignore_errors=True)
        raise
    return ExportResult(final, version, tower, jit_compile, len(rows[HIST_LEN]), worst, len(logs), stale)


def read_export_info(version_dir) -> dict:
    """The ``rocket_ctr_export.json`` of an export ({} for SavedModels written elsewhere)."""
    path = Path(version_dir) / "assets.extra" / INFO_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
