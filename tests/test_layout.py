"""The package's layout, read from its own imports with `ast`: one package per pipeline stage and only the
shared modules beside them; no import cycle between modules (module-level or inside functions) nor between
packages; each package imports only the floors below it, and other packages only through its face; no module
over 450 lines; no Keras or TensorFlow in the CLI."""

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


def face_names(face: str, file: Path) -> dict[str, str]:
    """A package face's public names -> the inner module that defines each: its own `from face.inner import`
    lines and the table it hands `lazy_face` (`name: "module"` or `"module:name"`)."""
    names = {}
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(face + "."):
            names.update({alias.asname or alias.name: node.module for alias in node.names})
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_face":
            table = ast.literal_eval(node.args[1])
            names.update({name: f"{face}.{target.partition(':')[0]}" for name, target in table.items()})
    return names


def _imported(module: str, file: Path) -> list[str]:
    """Every name `module` imports, anywhere in the file, as absolute dotted names: `from a import b` imports
    `a.b` (a module or a name in `a`), and `a` itself only where it names nothing else."""
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
            names += [f"{base}.{alias.name}" for alias in node.names] or [base]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_face":
            names += [f"{module}.{target.partition(':')[0]}" for target in ast.literal_eval(node.args[1]).values()]
    return names


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports; a name taken from a package's face counts as an import of
    the inner module that defines it."""
    modules = _modules(package)
    faces = {m: face_names(m, f) for m, f in modules.items() if f.name == "__init__.py"}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, file in modules.items():
        for name in _imported(module, file):
            target = _resolve(name, modules)
            if target in faces and name != target:
                target = faces[target].get(name.rpartition(".")[2], target)
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


# The house's floors, lowest first: a package may import only packages on floors below its own. Packages on
# one floor never import each other. The top-level modules every floor shares stand beside them.
FLOORS = [
    ["config"],                     # YAML -> a validated config; no TensorFlow
    ["runs", "data"],               # the run folder's files; sources -> splits -> tf.data
    ["model"],                      # names -> Keras objects -> a built, compiled keras.Model
    ["predict"],                    # raw inputs -> model inputs -> answers
    ["distribute"],                 # tf.distribute around a fit
    ["training"],                   # prepare -> fit -> finish, resume, evaluate
    ["export"],                     # formats, each checked against the Keras model
    ["serve"],                      # the HTTP server, on predict (and export's runtimes)
    ["sweep", "cv"],                # many runs from one config
    ["cli"],                        # the thin Typer app
]
SHARED = {"dltrain", "dltrain.__main__", "dltrain.errors", "dltrain.backend", "dltrain.trust", "dltrain.load"}


def unit(module: str) -> str:
    """The top-level unit a module belongs to: its package (`dltrain.runs.best` -> `runs`), or the module."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Top-level unit -> the units it imports (packages and the shared modules)."""
    units: dict[str, set[str]] = {}
    for module, targets in graph.items():
        units.setdefault(unit(module), set()).update(unit(t) for t in targets if unit(t) != unit(module))
    return units


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_import_cycle_between_packages():
    assert cycles(package_graph(import_graph())) == []


def test_the_top_folder_holds_only_packages_and_the_shared_modules():
    loose = sorted(f"dltrain.{f.stem}" for f in PACKAGE.glob("*.py") if f"dltrain.{f.stem}" not in SHARED
                   and f.stem != "__init__")
    assert loose == []
    packages = sorted(f.name for f in PACKAGE.iterdir() if (f / "__init__.py").exists())
    assert packages == sorted(p for floor in FLOORS for p in floor)


def test_every_package_face_says_what_its_stage_does():
    for face in PACKAGE.glob("*/__init__.py"):
        doc = ast.get_docstring(ast.parse(face.read_text()))
        assert doc and len(doc.split()) >= 8, f"{face.parent.name}/__init__.py needs a docstring for its stage"


def test_no_lazy_face_name_is_also_a_module_name():
    """Importing `pkg.name` the module would shadow a lazily loaded `pkg.name` function: such names are bound
    eagerly in the face, or the module is named otherwise."""
    clashes = []
    for face in PACKAGE.glob("*/__init__.py"):
        for node in ast.walk(ast.parse(face.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lazy_face":
                clashes += [f"{face.parent.name}.{n}" for n in ast.literal_eval(node.args[1])
                            if (face.parent / f"{n}.py").exists() or (face.parent / n).is_dir()]
    assert clashes == []


def test_packages_import_only_floors_below_their_own():
    floor = {p: i for i, names in enumerate(FLOORS) for p in names}
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                    if unit(m) in floor and unit(t) in floor and unit(m) != unit(t) and floor[unit(t)] >= floor[unit(m)])
    assert upward == []


def test_other_packages_import_a_package_through_its_face():
    """`from dltrain.runs import run_file`, never `from dltrain.runs.folders import ...` from outside runs/."""
    modules = _modules(PACKAGE)
    faces = {m: face_names(m, f) for m, f in modules.items() if f.name == "__init__.py" and m != "dltrain"}
    inner = []
    for module, file in modules.items():
        for name in _imported(module, file):
            face, _, public = name.rpartition(".")
            if face in faces and public in faces[face]:
                continue
            target = _resolve(name, modules)
            if target and target.count(".") > 1 and unit(target) != unit(module):
                inner.append(f"{module} imports {target}")
    assert sorted(set(inner)) == []


def test_inner_modules_import_their_siblings_not_their_own_face():
    """`from dltrain.runs import history` inside runs/ imports the face, which imports runs/ back: a cycle to any
    reader of imports. Siblings are imported by their own path (`import dltrain.runs.history as history`)."""
    through_face = []
    for module, file in _modules(PACKAGE).items():
        package = module.rpartition(".")[0]
        if file.name == "__init__.py" or package == "dltrain":
            continue
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module == package:
                through_face.append(f"{module}:{node.lineno}")
    assert through_face == []


def test_no_module_over_450_lines():
    long = {str(f.relative_to(PACKAGE.parent)): n for f in PACKAGE.rglob("*.py")
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_cli_imports_no_keras_or_tensorflow():
    heavy = [n for f in (PACKAGE / "cli").glob("*.py") for n in _imported(f"dltrain.cli.{f.stem}", f)
             if n.split(".")[0] in ("keras", "tensorflow")]
    assert heavy == []


@pytest.mark.parametrize("lower, upper", [
    ("dltrain.config", "dltrain.data"),       # the config is validated before any data is read
    ("dltrain.config", "dltrain.model"),      # ... and names no Keras object
    ("dltrain.data", "dltrain.training"),     # data gives fit its datasets; it never calls fit
    ("dltrain.data", "dltrain.model"),
    ("dltrain.model", "dltrain.training"),    # the model is built before anything trains it
    ("dltrain.predict", "dltrain.export"),    # exports are checked with predict's inputs, never the reverse
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
