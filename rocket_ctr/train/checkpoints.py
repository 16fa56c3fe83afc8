"""The newest intact checkpoint of a folder: a truncated or corrupt one is skipped with a warning.

A checkpoint copied half-way or written onto a full disk reads back as ``IndexError: Read less
bytes than requested`` (or a ``DataLossError`` from the CRC check) deep inside a restore. Every
reader of a run dir (resume, evaluate, export, warm start) asks this module instead of
``tf.train.latest_checkpoint``: candidates are the folder's ``checkpoint`` state (newest first;
the ``*.index`` files when the state file itself is unreadable), and a candidate counts as intact
only when its index and every tensor of its data files read back. The bad files are never
deleted: they are the user's to inspect (the next save of that step overwrites them).
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import tensorflow as tf

from rocket_ctr.errors import InputError

_CHECKED: dict = {}  # (prefix, file sizes and mtimes) -> problem or None: each check once per process
_WARNED: set = set()  # each warning once per process (a run dir is read several times)


def candidates(directory) -> list[str]:
    """Checkpoint prefixes of ``directory``, newest first (the state file's order, else by step)."""
    directory = Path(directory)
    try:
        state = tf.train.get_checkpoint_state(str(directory))
    except Exception:  # noqa: BLE001 - a truncated state file: fall back to the files themselves
        state = None
    if state is not None and state.model_checkpoint_path:
        # tf.train.get_checkpoint_state already joins relative paths to the directory
        return list(dict.fromkeys([state.model_checkpoint_path, *reversed(state.all_model_checkpoint_paths)]))
    indexes = directory.glob("*.index") if directory.is_dir() else []
    prefixes = [str(p)[:-len(".index")] for p in indexes]
    return sorted(prefixes, key=lambda p: [int(n) for n in re.findall(r"\d+", Path(p).name)], reverse=True)


def problem(prefix: str) -> str | None:
    """Why the checkpoint ``prefix`` cannot be restored (naming the bad file), or None when intact.

    Reads every tensor once (the checksums are verified on read), so a later restore of the same
    files mostly comes from the page cache.
    """
    files = sorted(Path(prefix).parent.glob(Path(prefix).name + ".*"))
    key = (prefix, tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.exists()))
    if key not in _CHECKED:
        _CHECKED[key] = _read_back(prefix)
    return _CHECKED[key]


def _read_back(prefix: str) -> str | None:
    index = Path(prefix + ".index")
    if not index.is_file():
        return f"{index} is missing"
    try:
        reader = tf.train.load_checkpoint(prefix)
    except Exception as err:  # noqa: BLE001 - any failure to read means not intact
        return f"{index} is unreadable ({_first_line(err)})"
    data = sorted(index.parent.glob(Path(prefix).name + ".data-*"))
    where = ", ".join(str(d) for d in data) or f"{prefix}.data-*"
    for name in reader.get_variable_to_shape_map():
        try:
            reader.get_tensor(name)
        except Exception as err:  # noqa: BLE001 - IndexError (truncated), DataLossError (CRC), NotFoundError
            return f"{where} is truncated or corrupt ({_first_line(err)})"
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def newest_intact(directory, warn=None) -> str | None:
    """The prefix of the newest intact checkpoint in ``directory`` (None when it holds none at all).

    Args:
        directory: a folder written by ``tf.train.CheckpointManager``.
        warn: called with one line per skipped checkpoint (default: printed to stderr).
    Raises:
        InputError: checkpoints exist but none is intact.
    """
    found = candidates(directory)
    skipped = []
    for prefix in found:
        reason = problem(prefix)
        if reason is None:
            for bad, why in skipped:
                line = f"warning: skipping checkpoint {bad}: {why}; using {prefix}, the newest intact one"
                if warn is not None or line not in _WARNED:
                    _WARNED.add(line)
                    (warn or _print_warning)(line)
            return prefix
        skipped.append((prefix, reason))
    if skipped:
        bad, why = skipped[0]
        raise InputError(f"{directory}: no intact checkpoint (newest: {bad}: {why}); restore the files "
                         "or train into a new run dir")
    return None


def _print_warning(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
