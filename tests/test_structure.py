"""The package's floors: every import (at module level or inside a function) goes to the same floor or one below,
and no module imports itself back through others. Ground: classes, errors, TTA views; then the torch-free runtime
(which the package ships on its own), data, models, tracking, and on top the entry flows (train, predict, audit,
export) with the CLI helpers."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from helpers import ROOT

FLOORS = {  # module prefix -> floor; the longest matching prefix wins
    "fer": 0, "fer.classes": 0, "fer.errors": 0, "fer.tta": 0, "fer.devices": 0, "fer.capabilities": 0,
    "fer.config_values": 0,
    "fer.runtime": 1,
    "fer.data": 2,
    "fer.models": 3,
    "fer.tracking": 4, "fer.inference": 4,
    "fer.training": 5, "fer.predict": 5, "fer.audit": 5, "fer.cli": 5, "fer.export": 5, "fer.tuning": 5,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> int:
    matches = [p for p in FLOORS if module == p or module.startswith(p + ".")]
    assert matches, f"{module} is on no floor: add it to FLOORS"
    return FLOORS[max(matches, key=len)]


def _imports() -> dict[str, set[str]]:
    """fer module -> the fer modules it imports (anywhere in it)."""
    modules = {_module_name(p): p for p in (ROOT / "fer").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.split(".")[0] == "fer"}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                if base.split(".")[0] != "fer":
                    continue
                for alias in node.names:  # `from fer.data import duplicates` imports a module
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {m for m in found if m != name}
    return graph


GRAPH = _imports()


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_only_go_down_a_floor_or_stay(module):
    up = [m for m in GRAPH[module] if _floor(m) > _floor(module)]
    assert not up, f"{module} (floor {_floor(module)}) imports from a higher floor: {up}"


def test_the_runtime_needs_nothing_of_the_training_side():
    """The torch-free boundary is the layout: fer.runtime imports only itself and the torch-free ground floor
    (classes, errors), so `pip install fer-toolkit` without torch can run all of it."""
    allowed = ("fer.runtime", "fer.classes", "fer.errors", "fer")
    outside = {m: sorted(i for i in GRAPH[m] if not any(i == a or i.startswith(a + ".") for a in allowed[:-1])
                         and i != "fer")
               for m in GRAPH if m.startswith("fer.runtime")}
    assert not {m: i for m, i in outside.items() if i}, outside


def test_no_import_cycles():
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = stack[stack.index(node):] + [node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for nxt in sorted(GRAPH.get(node, ())):
            # a package's __init__ importing its own submodules is how packages export; not a cycle
            if not nxt.startswith(node + "."):
                visit(nxt, stack + [node])
        done.add(node)

    for module in sorted(GRAPH):
        visit(module, [])


def test_modules_stay_small():
    """One job per module: none grows past ~300 lines (a longer one is a room that holds several jobs)."""
    big = {_module_name(p): n for p in (ROOT / "fer").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 300}
    assert not big, big


# What would break silently on a Lightning or PyTorch upgrade, or hide what a model declares (fer.capabilities).
_PRIVATE_LIBRARY_STATE = re.compile(
    r"_schedule_phases|os\._exit\(|optim_step_progress|epoch_loop\.|\._results\b|_logger_connector|"
    r"getattr\(.*?[\"'](onnx_exportable|onnx_refusal|train_augmentation|mirror_invariant|val_split_record)[\"']")


def test_no_private_library_state_and_no_capability_probes():
    """Private scheduler or loop fields, os._exit, and getattr probes of a model's declared capabilities."""
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in sorted((ROOT / "fer").rglob("*.py"))
             for i, line in enumerate(p.read_text().splitlines(), 1) if _PRIVATE_LIBRARY_STATE.search(line)]
    assert not found, "\n".join(found)


_RENAME = re.compile(r"\bos\.(rename|replace)\(")


def test_files_are_published_only_through_the_atomic_helpers():
    """Every file or folder fer publishes goes through fer.runtime.atomic (flushed to disk, then renamed). The
    cache's other renames move no new data into view: a file inside its unpublished build folder, and a damaged
    entry set aside."""
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in sorted((ROOT / "fer").rglob("*.py"))
             if p != ROOT / "fer" / "runtime" / "atomic.py"
             for i, line in enumerate(p.read_text().splitlines(), 1) if _RENAME.search(line)
             and not (p.name == "cache.py" and ("tmp / " in line or ".damaged-" in line))]
    assert not found, "\n".join(found)
