"""Results of the experiment scripts: a JSON-lines file appended run by run, and mean ± std cells.

An interrupted experiment keeps every finished run; a re-run loads them and skips the runs already
there. Every line carries what the run trained (:func:`provenance`): its recipe's family and name,
the run's own settings (``settings``), the resolved config (``recipes.resolve``), the data path, seed, epochs and
the git commit. A line counts for a recipe only when its stored config has the recipe's key today
(:func:`lines_of`); a line without a stored config is never joined by its name.
"""
from __future__ import annotations

import json
import statistics
import subprocess
from collections import Counter
from pathlib import Path

from recipes import recipe_key, resolve

ROOT = Path(__file__).resolve().parent.parent


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


def git_commit() -> str | None:
    """The repository's HEAD commit (``-dirty`` when tracked files differ from it), None without git."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def provenance(family: str, name: str, data, *, config: dict | None = None, **run) -> dict:
    """The fields every results line carries about its run.

    Args:
        family, name: the recipe (``recipes.FAMILIES``).
        data: the data the run read (a path).
        config: the resolved config the run trained, when read back from it (e.g. its run dir's
            config.json); default: ``recipes.resolve(family, name, **run)``.
        run: the run's own settings passed to ``recipes.resolve`` (epochs, seed, flags).
    Returns:
        ``{"family", "recipe", "settings" (``run``), "config", "data", "seed", "epochs", "git_commit"}``.
    """
    resolved = config if config is not None else resolve(family, name, **run)
    settings = resolved["config"]
    epochs = settings.get("training", {}).get("epochs") if "training" in settings else settings.get("epochs")
    return {"family": family, "recipe": name, "settings": run, "config": resolved, "data": str(data),
            "seed": run.get("seed"), "epochs": epochs, "git_commit": git_commit()}


def stored_key(record: dict) -> str | None:
    """The key of the config a line stores (``recipes.recipe_key``); None for a line without one."""
    return recipe_key(record["config"]) if isinstance(record.get("config"), dict) else None


def today_key(record: dict) -> str | None:
    """The key its own recipe resolves to today with the line's run settings; None when the name no
    longer resolves or the line has no recipe."""
    try:
        return recipe_key(resolve(record["family"], record["recipe"], **record.get("settings", {})))
    except (KeyError, ValueError, TypeError):  # an unknown name, a setting the config rejects (FieldError)
        return None


def lines_of(records, family: str, name: str, **run) -> list:
    """The lines that trained what ``name`` resolves to today with ``run``'s settings (the seed is
    ignored): joined by stored config, whatever name they were recorded under."""
    want = recipe_key(resolve(family, name, **run))
    return [r for r in records if stored_key(r) == want]


def finished(records, family: str, name: str, where: dict | None = None, **run) -> bool:
    """Whether ``records`` hold a run of ``name`` with ``run``'s settings (same config, seed and
    the fields of ``where``, e.g. the log): the resume check."""
    return any(r.get("seed") == run.get("seed") and all(r.get(k) == v for k, v in (where or {}).items())
               for r in lines_of(records, family, name, **run))


def unjoined_note(records) -> str:
    """What a table leaves out: lines without a stored config, and lines whose stored config differs
    from what their recipe resolves to today (counted only under a recipe that resolves to it)."""
    records = list(records)
    unstored = [r for r in records if stored_key(r) is None]
    other = Counter(r.get("recipe") for r in records if stored_key(r) is not None and stored_key(r) != today_key(r))
    notes = []
    if unstored:
        notes.append(f"{len(unstored)} line(s) without a stored config (an older results file) are not joined "
                     f"to any recipe by name")
    if other:
        names = ", ".join(f"{name!r} x{n}" for name, n in sorted(other.items(), key=lambda kv: str(kv[0])))
        notes.append(f"{sum(other.values())} line(s) whose stored config is not what their recipe resolves to "
                     f"today (other config: {names}) count only under a recipe that resolves to their config")
    return "\n".join(f"note: {n}" for n in notes)
