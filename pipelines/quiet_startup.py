"""Keeps TensorFlow's C++ start-up noise off the console of ``rocket-ctr`` unless asked for.

What TensorFlow prints on its own, measured here (TF 2.21, CPU machine with the CUDA-enabled wheel):
``WARNING: All log messages before absl::InitializeLog() is called are written to STDERR`` and
``cudart_stub.cc: Could not find cuda drivers`` (twice each, while ``import tensorflow`` runs,
before its log level applies), then ``failed call to cuInit: ... UNKNOWN ERROR (303)`` (a C++
ERROR at the first op) and, on machines with oneDNN, its INFO notes. So, unless ``--verbose`` is
given or the user set ``TF_CPP_MIN_LOG_LEVEL`` themselves:

* ``TF_CPP_MIN_LOG_LEVEL=3`` (C++ errors that matter reach Python as exceptions anyway), and
* the process's stderr (file descriptor 2) goes to a temporary file while ``tensorflow`` is
  first imported; the text is dropped when the import succeeds and written out when it fails.

Only the CLI calls :func:`configure`; the library never changes the process's logging.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile

LEVEL_VARIABLE, QUIET_LEVEL = "TF_CPP_MIN_LOG_LEVEL", "3"
MARKER = "ROCKET_CTR_QUIET_STARTUP"  # set with the level: child processes know it was not the user's


def user_chose_level(environ=os.environ) -> bool:
    """Whether ``TF_CPP_MIN_LOG_LEVEL`` was set by the user (not by an earlier rocket-ctr process)."""
    return LEVEL_VARIABLE in environ and environ.get(MARKER) != environ[LEVEL_VARIABLE]


def configure(verbose: bool, environ=os.environ) -> bool:
    """Silences TensorFlow's start-up output for this process and its children, unless ``verbose``
    or the user set ``TF_CPP_MIN_LOG_LEVEL``; call it before anything imports TensorFlow.

    Returns:
        Whether start-up output is silenced.
    """
    if verbose or user_chose_level(environ):
        if verbose and environ.get(MARKER) is not None and environ.get(MARKER) == environ.get(LEVEL_VARIABLE):
            del environ[LEVEL_VARIABLE]  # a parent rocket-ctr silenced it; --verbose shows everything
        return False
    environ[LEVEL_VARIABLE] = environ[MARKER] = QUIET_LEVEL
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport())
    return True


@contextlib.contextmanager
def _stderr_captured():
    """Points file descriptor 2 at a temporary file; yields that file."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield captured
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _QuietImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` (once) and wraps its loader so that the import runs with stderr captured."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = module.__spec__.loader = self.loader  # the real loader from here on
        with _stderr_captured() as captured:
            try:
                self.loader.exec_module(module)
                return
            except BaseException as err:  # what TensorFlow said before failing matters: shown, then raised
                captured.seek(0)
                said, error = captured.read(), err
        os.write(2, said)
        raise error
