"""Export reports its stages on stderr (saving, warmup records, verification), or nothing when asked."""
import re

import pytest

from conftest import tiny_run
from rocket_ctr.export.writer import export_light
from rocket_ctr.train.run_dir import restore_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run, log = tiny_run(tmp_path_factory)
    model, spec, _ = restore_model(run)
    return log, model, spec


def test_export_prints_a_line_per_stage(trained, tmp_path, capsys):
    log, model, spec = trained
    result = export_light(model, spec, tmp_path / "base", jit_compile=False, data=log / "test", sample_size=32,
                          warmup_candidates=64)
    lines = capsys.readouterr().err.strip().splitlines()
    rows = result.checked_rows
    assert lines[0] == "export: saving the light tower (no XLA) as a SavedModel"
    assert lines[1] == f"export: writing {result.warmup_records} warmup records"
    assert re.fullmatch(rf"export: verifying {rows} rows and \d+ requests of {rows} candidates against the "
                        r"in-memory light tower", lines[2]), lines
    assert re.fullmatch(r"export: verified \d+ requests, [\d,]+ requests/s, done in \d+:\d\d:\d\d", lines[-1]), lines


def test_export_without_progress_prints_nothing(trained, tmp_path, capsys):
    log, model, spec = trained
    export_light(model, spec, tmp_path / "base", jit_compile=False, sample_size=16, warmup_candidates=8,
                 progress=False)
    assert capsys.readouterr().err == ""
