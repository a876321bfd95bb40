"""The layers of docs/architecture.md, checked from the import graph (every import statement under iolab/,
inside functions and TYPE_CHECKING blocks too, read with ``ast``; nothing is imported).

    cli        may import every layer
    measure    analysis, results, outputs, errors (never report or cli)
    report     analysis, results, outputs, errors (never measure or cli)
    analysis   results, errors; the standard library and statistics packages (never demo, cli, click, rich)
    results    outputs, errors
    demo, logging   run inside the server under test: nothing of the lab (demo may use logging, the cure)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "iolab"

# Which layers each layer may import ("iolab" is the package root: __version__, the lazy public names).
ALLOWED: dict[str, set[str]] = {
    "measure": {"analysis", "results", "outputs", "errors", "iolab"},
    "report": {"analysis", "results", "outputs", "errors", "iolab"},
    "analysis": {"results", "errors"},
    "results": {"outputs", "errors", "iolab"},
    "outputs": {"errors"},
    "errors": set(),
    "demo": {"logging"},
    "logging": set(),
    "tryknobs": {"logging"},  # --try's bootstrap runs inside the server too; `batch` is iolab.logging's handler
}
# Single imports across a line, each with its reason.
EXCEPTIONS = {
    ("iolab.measure.sweep", "iolab.demo.scenarios"): "a sweep is a demo experiment: its axes are the demo's knobs",
}
# What analysis may import from outside iolab besides the standard library.
ANALYSIS_THIRD_PARTY = {"hdrh", "numpy", "scipy"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    return (PACKAGE / f"{name}.py").is_file() or (PACKAGE / name).is_dir()


def _layer(module: str) -> str:
    parts = module.split(".")
    return "iolab" if len(parts) == 1 or parts[1] in ("__main__", "__init__") else parts[1]


def import_graph() -> list[tuple[str, str, int]]:
    """(importing module, imported module, line) for every import in iolab/, relative ones resolved."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges += [(module, alias.name, node.lineno) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from iolab import results` imports the module iolab.results; `… import __version__` the root
                edges += [(module, f"{base}.{alias.name}" if base == "iolab" and _is_module(alias.name) else base,
                           node.lineno) for alias in node.names]
    return edges


def _violations(layer: str) -> list[str]:
    out = []
    for src, dst, line in import_graph():
        if _layer(src) != layer or not (dst == "iolab" or dst.startswith("iolab.")):
            continue
        target = _layer(dst)
        if target == layer or target in ALLOWED[layer] or (src, dst) in EXCEPTIONS:
            continue
        out.append(f"{src}:{line} imports {dst}")
    return out


def test_the_graph_is_read() -> None:
    """Imports at the top, inside functions and as `from iolab import x` are all edges (so a rule can fail)."""
    edges = {(src, dst) for src, dst, _ in import_graph()}
    assert ("iolab.cli.main", "iolab.errors") in edges
    assert ("iolab.cli.compare", "iolab.results") in edges  # `from iolab import results`, inside a function
    assert {_layer(src) for src, _ in edges} >= {"cli", *ALLOWED}


@pytest.mark.parametrize("layer", [
    "measure", "report", "analysis", "results", "outputs", "errors", "demo", "logging", "tryknobs",
])
def test_layer_imports_only_what_it_may(layer: str) -> None:
    assert _violations(layer) == []


def test_analysis_imports_no_cli_or_rendering_package() -> None:
    """Pure functions of result records: the standard library, statistics packages, results and errors."""
    bad = [f"{src}:{line} imports {dst}" for src, dst, line in import_graph()
           if _layer(src) == "analysis" and not dst.startswith("iolab")
           and dst.split(".")[0] not in sys.stdlib_module_names | ANALYSIS_THIRD_PARTY]
    assert bad == []


def test_only_main_exits() -> None:
    """Exit codes are chosen in one place: sys.exit only in a main() or under `if __name__ == "__main__"`.

    The demo app is left out: it runs inside the server under test, where a SystemExit on a bad knob is
    how a served app refuses to start.
    """
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "demo"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        allowed: set[int] = set()
        for node in ast.walk(tree):
            is_main = isinstance(node, ast.FunctionDef) and node.name == "main"
            is_guard = isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)
            if is_main or is_guard:
                allowed |= {id(n) for n in ast.walk(node)}
        for node in ast.walk(tree):
            exits = (isinstance(node, ast.Call) and ast.unparse(node.func) in ("sys.exit", "exit", "quit")
                     or isinstance(node, ast.Raise) and node.exc is not None
                     and ast.unparse(node.exc).startswith("SystemExit"))
            if exits and id(node) not in allowed:
                bad.append(f"{_module_name(path)}:{node.lineno}")
    assert bad == []
