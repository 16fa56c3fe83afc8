"""What the CLI calls things in its one-line errors: the flags the user typed."""
from __future__ import annotations

import pytest

from conftest import refused_in_one_line


@pytest.mark.parametrize("argv", [
    ["export", "--run-dir", "{missing}", "--export-base", "{out}"],
    ["predict", "--run-dir", "{missing}", "--data", "{missing}", "--out", "{out}"],
    ["evaluate", "--run-dir", "{missing}", "--data", "{missing}"],
])
def test_a_folder_that_is_not_a_run_dir_is_named_by_its_flag(argv, tmp_path, capsys):
    (tmp_path / "missing").mkdir()
    argv = [a.format(missing=tmp_path / "missing", out=tmp_path / "out") for a in argv]
    line = refused_in_one_line(capsys, argv)
    assert "not a training run dir" in line and "--run-dir must be a folder" in line, line
    assert "run_dir" not in line.replace(str(tmp_path), "")
    assert not (tmp_path / "out").exists()


def test_inspect_says_when_its_user_count_is_an_estimate():
    import numpy as np

    from rocket_ctr.pipelines.inspect import SKETCH_SIZE, DistinctCounter, users_text

    small, large = DistinctCounter(), DistinctCounter()
    small.add(np.arange(100))
    large.add(np.arange(4 * SKETCH_SIZE))
    assert users_text(small.estimate(), small.exact) == "100"
    text = users_text(large.estimate(), large.exact)
    assert text.startswith("about ") and "estimated" in text and "±1.1 %" in text
    # the estimate's error is a few standard errors at most
    assert abs(large.estimate() / (4 * SKETCH_SIZE) - 1) < 5 * 0.011
