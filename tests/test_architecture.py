"""The package's shape matches docs/architecture.md: rooms import only the rooms the page allows,
no two modules import each other (directly or round a loop), files stay small."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rocket_ctr"
OUTSIDE = ("pipelines", "serving", "datagen")  # installed under rocket_ctr.*, but above the library


def allowed_imports() -> dict[str, set[str]]:
    """The room table of docs/architecture.md: ``| `room` | holds | `a`, `b` |`` rows."""
    rows = re.findall(r"^\| `(\w+)` \|[^|]*\| ([^|]*)\|", (ROOT / "docs" / "architecture.md").read_text(), re.M)
    return {room: set(re.findall(r"`(\w+)`", allowed)) for room, allowed in rows}


def drawn_rows() -> dict[str, int]:
    """``{room: row}`` of the drawing in docs/architecture.md (lines ``  N   room ──► ...   room ...``)."""
    rows = {}
    for row, rest in re.findall(r"^  (\d)   (.*)$", (ROOT / "docs" / "architecture.md").read_text(), re.M):
        for segment in re.split(r" {3,}", rest.strip()):
            rows[segment.split()[0]] = int(row)
    return rows


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every rocket_ctr module ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rocket_ctr")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rocket_ctr"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from package import module`
    modules = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {m for m in found if m in modules or (m.count(".") and m.split(".")[1] in OUTSIDE)}


def room_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def test_every_room_is_in_the_architecture_page_and_imports_only_what_it_allows():
    allowed = allowed_imports()
    rooms = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert rooms == set(allowed), f"rooms in the code {sorted(rooms)} vs the page {sorted(allowed)}"
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        module = module_name(path)
        if module == "rocket_ctr":
            continue  # the lazy public API names modules of every room
        for target in imports_of(path):
            source, room = room_of(module), room_of(target)
            if room != source and room not in allowed[source]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, wrong


def test_the_drawing_has_every_room_in_a_row_above_all_it_may_import():
    allowed, rows = allowed_imports(), drawn_rows()
    assert set(rows) == set(allowed)
    upward = [f"{room} (row {rows[room]}) may import {other} (row {rows[other]})"
              for room, others in allowed.items() for other in others if rows[other] >= rows[room]]
    assert not upward, upward


def test_no_import_loops_between_modules():
    graph = {module_name(p): {m for m in imports_of(p) if not m.endswith("__init__")} for p in PACKAGE.rglob("*.py")}
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    # importing a module runs its package's __init__: only that edge is implied, not the reverse
    loops, state = [], {}

    def visit(module, trail):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if target in packages and module.startswith(target + "."):
                continue  # a module of a package importing the package's re-exports
            if state.get(target) == "open":
                loops.append(trail[trail.index(target):] + [target])
            elif target not in state:
                visit(target, trail + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not loops, loops


def test_files_stay_small_and_the_top_level_holds_few_modules():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 300}
    assert not long, long
    top = [p.name for p in PACKAGE.glob("*.py")]
    assert len(top) <= 12, top
