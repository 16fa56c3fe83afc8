"""Set-up and main jobs for a fresh machine that has only Python 3.11 and pip.

    python3 tasks.py demo   # venv + install, then the main job end to end on a small generated log
    python3 tasks.py test   # venv + install with test extras, then ruff (ruff.toml) and the whole test suite

Extra arguments after the task name go to ``rocket-ctr demo`` or to pytest.
"""
import hashlib
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if sys.platform == "win32" else "bin")


def ensure_installed(extras: str = "test") -> None:
    """Creates .venv and installs the package (editable) once per change of setup.py."""
    if not (BIN / "python").exists():
        print(f"creating virtual environment {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "setup.py").read_bytes() + extras.encode()).hexdigest()
    marker = VENV / ".rocket_ctr_installed"
    if marker.exists() and marker.read_text() == digest:
        return
    print("installing rocket_ctr and its dependencies into .venv (first run: a few minutes)", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    subprocess.run(pip + ["--upgrade", "pip"], check=True)
    subprocess.run(pip + ["-e", f"{ROOT}[{extras}]"], check=True)
    marker.write_text(digest)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("demo", "test"):
        print(__doc__)
        return 2
    task, rest = argv[0], argv[1:]
    ensure_installed()
    if task == "demo":
        command = [str(BIN / "rocket-ctr"), "demo", *rest]
        return subprocess.run(command, cwd=ROOT).returncode
    lint = subprocess.run([str(BIN / "ruff"), "check", str(ROOT)], cwd=ROOT)
    if lint.returncode:
        print("ruff found problems (see above); fix them or run `.venv/bin/ruff check --fix`", file=sys.stderr)
        return lint.returncode
    command = [str(BIN / "python"), "-m", "pytest", "-q", str(ROOT / "tests"), *rest]
    return subprocess.run(command, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
