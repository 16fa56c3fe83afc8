"""Staging folders of exports under an export base, and the clean-up of ones left by killed exports.

An export is written to ``BASE/.tmp-<version>-<host>-<pid>-<random>/`` and renamed into
``BASE/<version>/`` (TF Serving ignores folders whose name is not a number). A process killed
with SIGKILL (or a machine that lost power) leaves its staging folder behind; the next export
under the same base removes such a folder when it is certainly not in use:

* its writer ran on this host and that process is gone (its pid no longer exists), or
* nothing in it changed for ``max_age_s`` (default 24 h): a writer on another host sharing the
  base, a folder of an older naming scheme, or a pid that the system has since reused.

A live export on another host touches its folder continuously while writing, so it is never
mistaken for a stale one unless it stalls for a whole day.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

PREFIX = ".tmp-"
MAX_AGE_S = 24 * 3600
_NAME = re.compile(r"^\.tmp-(?P<tag>[A-Za-z0-9]+)-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def make_staging(base, tag) -> Path:
    """A new, empty staging folder under ``base`` owned by this process (``tag``: the version, or ``gate``)."""
    return Path(tempfile.mkdtemp(prefix=f"{PREFIX}{tag}-{_host()}-{os.getpid()}-", dir=base))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _newest_change(folder: Path) -> float:
    """The latest mtime of the folder or anything inside it."""
    newest = folder.stat().st_mtime
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except OSError:
                pass
    return newest


def is_stale(folder: Path, max_age_s: float = MAX_AGE_S, now: float | None = None) -> bool:
    """Whether a ``.tmp-*`` staging folder belongs to no running export (see the module doc)."""
    match = _NAME.match(folder.name)
    if match and match["host"] == _host() and int(match["pid"]) != os.getpid() and not _pid_alive(int(match["pid"])):
        return True
    try:
        return (now if now is not None else time.time()) - _newest_change(folder) > max_age_s
    except OSError:
        return False  # vanished meanwhile: its owner finished


def remove_stale(base, max_age_s: float = MAX_AGE_S) -> list[Path]:
    """Removes the stale staging folders under ``base``; returns what was removed."""
    base = Path(base)
    if not base.is_dir():
        return []
    removed = []
    for folder in sorted(base.iterdir()):
        staging = folder.name.startswith(PREFIX) and folder.is_dir() and not folder.is_symlink()
        if staging and is_stale(folder, max_age_s):
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
    return removed
