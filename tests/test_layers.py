"""The package's layers: imports flow downward only, and no module imports itself in a circle.

Every import counts, also those inside functions (deferred for start-up speed, they are dependencies all
the same). Packages on one row are independent of each other.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

#: top first; a package may import from its own package and from rows below its own
LAYERS = [
    ("cli",),
    ("demos",),
    ("workflows",),
    ("engine", "gui"),
    ("inference",),
    ("reports",),
    ("data", "losses", "metrics", "nn", "postprocess"),
    ("config", "io"),
    ("registry",),
    ("errors",),
]
RANK = {name: len(LAYERS) - i for i, row in enumerate(LAYERS) for name in row}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The bioseg modules (or packages) that ``path`` imports, anywhere in the file."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if _is_module(f"{base}.{a.name}")}
    return {m for m in found if m.split(".")[0] == "bioseg" and _is_module(m)}


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted((SRC / "bioseg").rglob("*.py"))}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in RANK else None


def test_every_package_has_a_layer():
    packages = {p.name for p in (SRC / "bioseg").iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    packages |= {p.stem for p in (SRC / "bioseg").glob("*.py")} - {"__init__", "__main__"}
    assert packages - set(RANK) == set(), "put the new package in LAYERS (and in README's Development diagram)"


def test_imports_flow_downward_only():
    upward = []
    for module, targets in graph().items():
        own = layer(module)
        for target in targets:
            other = layer(target)
            if own is None or other is None or other == own:
                continue
            if RANK[other] >= RANK[own]:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_the_package_root_and_entry_point_import_only_downward():
    # bioseg/__init__.py resolves its public names lazily (by name), so importing bioseg stays cheap
    assert imports_of(SRC / "bioseg" / "__init__.py") == set()
    assert imports_of(SRC / "bioseg" / "__main__.py") <= {"bioseg.cli"}


def test_no_import_cycles():
    edges = graph()
    # an import of a package runs its __init__: a module importing its own package's __init__ is not a cycle
    # unless that __init__ imports it back, which the search below sees
    state: dict[str, int] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if target == module or module.startswith(target + "."):
                continue  # a module reading its parent package's names
            if state.get(target) == 1:
                cycles.append(" -> ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_test_modules_mirror_the_source_modules():
    """``tests/<package>/test_<module>[_<aspect>].py`` for ``src/bioseg/<package>/<module>.py``."""
    tests = Path(__file__).resolve().parent
    strays = []
    for path in sorted(tests.rglob("test_*.py")):
        folder = path.parent.relative_to(tests)
        if folder == Path("."):
            continue  # the package as a whole (this module)
        package = SRC / "bioseg" / folder
        stem = path.stem.removeprefix("test_")
        modules = {p.stem for p in package.glob("*.py")} if package.is_dir() else set()
        if not any(stem == m or stem.startswith(m + "_") for m in modules):
            strays.append(str(path.relative_to(tests)))
    assert strays == [], "name each test module after the source module it tests, in its package's folder"
