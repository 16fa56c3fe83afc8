"""Results of the experiment scripts: a JSON-lines file appended run by run, and mean ± std cells.

An interrupted experiment keeps every finished run; a re-run loads them and skips their keys.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path


def load(path: Path) -> dict:
    """The finished runs in ``path``, by their ``key`` (empty when the file does not exist yet)."""
    if not path.exists():
        return {}
    return {r["key"]: r for r in map(json.loads, path.read_text().splitlines())}


def append(path: Path, done: dict, record: dict) -> None:
    """Appends ``record`` to ``path`` as it finishes and adds it to ``done``."""
    with path.open("a") as out:
        out.write(json.dumps(record) + "\n")
    done[record["key"]] = record


def mean_std(values: list) -> str:
    """``mean ± std`` to 4 places (std 0 for one value), ``–`` for none."""
    if not values:
        return "–"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {std:.4f}"
