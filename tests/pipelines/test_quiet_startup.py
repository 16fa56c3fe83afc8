"""TensorFlow's start-up noise stays off the CLI's console unless --verbose or the user's TF_CPP_MIN_LOG_LEVEL."""
import os
import subprocess
import sys

from rocket_ctr.pipelines.quiet_startup import LEVEL_VARIABLE, MARKER, configure

NOISE = ("absl::InitializeLog", "cudart_stub", "cuInit", "cpu_feature_guard", "oneDNN")


def test_the_user_s_level_and_verbose_are_respected(monkeypatch):
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # no import hook left in this process
    environ = {}
    assert configure(False, environ) and environ[LEVEL_VARIABLE] == "3" and environ[MARKER] == "3"
    assert configure(False, environ)  # a child rocket-ctr: still ours to silence
    assert not configure(True, environ) and LEVEL_VARIABLE not in environ  # --verbose in a child: everything
    user = {LEVEL_VARIABLE: "0"}
    assert not configure(False, user) and user == {LEVEL_VARIABLE: "0"}
    assert not configure(True, {})


def cli(*args):
    environ = {k: v for k, v in os.environ.items() if k not in (LEVEL_VARIABLE, MARKER)}
    return subprocess.run([sys.executable, "-m", "rocket_ctr.pipelines.cli", *args], env=environ,
                          capture_output=True, text=True, timeout=300)


def test_a_command_that_imports_tensorflow_prints_only_its_own_lines(tmp_path):
    command = ["evaluate", "--run-dir", str(tmp_path / "missing"), "--data", str(tmp_path)]
    quiet = cli(*command)
    assert quiet.returncode == 2
    assert quiet.stderr.strip().splitlines() == [quiet.stderr.strip()], quiet.stderr
    assert quiet.stderr.startswith("rocket-ctr evaluate: error: ") and "not a training run dir" in quiet.stderr
    verbose = cli("--verbose", *command)
    assert verbose.returncode == 2 and verbose.stderr.strip().endswith(quiet.stderr.strip())
    if any(n in verbose.stderr for n in NOISE):  # this TensorFlow build makes noise: it was hidden above
        assert not any(n in quiet.stderr for n in NOISE)
