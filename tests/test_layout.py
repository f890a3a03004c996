"""The package's layout, read from its own imports with `ast`: no import cycle between its modules
(module-level or inside functions), no module over 450 lines, no Keras or TensorFlow in the CLI, and the
floors of the house (config below data below training) only ever looked down."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dltrain"
MAX_LINES = 450


def _modules(package: Path) -> dict[str, Path]:
    root = package.parent
    found = {}
    for file in package.rglob("*.py"):
        name = ".".join(file.relative_to(root).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = file
    return found


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module an imported name lives in (`dltrain.data.Split` -> `dltrain.data`), or None outside."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str, file: Path) -> list[str]:
    """Every name `module` imports, anywhere in the file, as absolute dotted names."""
    package = module if file.name == "__init__.py" else module.rpartition(".")[0]
    names = []
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    return names


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    modules = _modules(package)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, file in modules.items():
        for name in _imported(module, file):
            target = _resolve(name, modules)
            if target is not None and target != module:
                graph[module].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            advanced = False
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_module_over_450_lines():
    long = {str(f.relative_to(PACKAGE.parent)): n for f in PACKAGE.rglob("*.py")
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_cli_imports_no_keras_or_tensorflow():
    heavy = [n for n in _imported("dltrain.cli", PACKAGE / "cli.py") if n.split(".")[0] in ("keras", "tensorflow")]
    assert heavy == []


@pytest.mark.parametrize("lower, upper", [
    ("dltrain.config", "dltrain.data"),       # the config is validated before any data is read
    ("dltrain.config", "dltrain.registry"),   # ... and names no Keras object
    ("dltrain.data", "dltrain.training"),     # data gives fit its datasets; it never calls fit
    ("dltrain.data", "dltrain.model"),
    ("dltrain.model", "dltrain.training"),    # the model is built before anything trains it
])
def test_lower_floors_never_import_upper_ones(lower, upper):
    graph = import_graph()
    looked_up = sorted(f"{m} -> {t}" for m, targets in graph.items() if m == lower or m.startswith(lower + ".")
                       for t in targets if t == upper or t.startswith(upper + "."))
    assert looked_up == []


def test_the_walker_finds_a_cycle_through_function_level_and_relative_imports(tmp_path):
    """The walker itself: a cycle through a function-level import and a relative import is found."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.b import x\n")
    (package / "b.py").write_text("def f():\n    from . import c\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("from pkg import a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b", "pkg.c"]]
