"""The import boundaries of DESIGN.md, checked in fresh interpreters and in the source."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformer_lens", "weasyprint")


def loaded_after_import(module: str) -> set[str]:
    code = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return {m.split(".")[0] for m in json.loads(out.stdout)}


@pytest.mark.parametrize(
    "module",
    [
        "signing",
        "signing.verify",
        "signing.sweep",
        "signing.bundle",
        "evidence.trend",
        "evidence.sweep",
        "evidence",
        "evidence.records",
        "evidence.dossier",
        "evidence.canonical",
        "evidence.errors",
        "evidence.runspec",
        "evidence.schema",
        "evidence.cli",
        "evidence.run",
        "evidence.render",
        "evidence.population",
    ],
)
def test_light_modules_load_no_heavy_library(module):
    heavy = loaded_after_import(module) & {*HEAVY, "jinja2"}
    assert not heavy, f"importing {module} loaded {sorted(heavy)}"


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def owner_may_import(rel: str, library: str) -> bool:
    if library == "weasyprint":
        return rel == "evidence/render.py"
    # torch and TransformerLens: model loading, measurements, and organism and population training only.
    trainers = ("evidence/measure/", "evidence/organisms/", "evidence/population/")
    return rel == "evidence/model.py" or rel.startswith(trainers)


def test_heavy_libraries_are_imported_only_where_allowed():
    offenders = []
    for package in ("evidence", "signing"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for library in HEAVY:
                if library in imports_of(path) and not owner_may_import(rel, library):
                    offenders.append(f"{rel} imports {library}")
    assert not offenders


def test_signing_never_imports_torch_transformer_lens_or_weasyprint():
    for path in sorted((ROOT / "signing").rglob("*.py")):
        assert not imports_of(path) & set(HEAVY), path


# --- the auditor's trust boundary and the module graph ------------------------------------------

#: What `signing` may use of `evidence`: the data model and the pure functions that check it.
#: Never the producer (evidence.measure, .model, .run, .render, .runspec, .external, .organisms, .cli, ...).
LIGHT_CORE = (
    "evidence",
    "evidence.canonical",
    "evidence.clauses",
    "evidence.dossier",
    "evidence.errors",
    "evidence.files",
    "evidence.policy",
    "evidence.procedure",
    "evidence.records",
    "evidence.resources",
    "evidence.schema",
    "evidence.trend",
    "evidence.validation_report",
)


def in_light_core(module: str) -> bool:
    return module in LIGHT_CORE or module.startswith("evidence.records.")


def project_modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of evidence/ and signing/."""
    modules = {}
    for package in ("evidence", "signing"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def project_imports(module: str, path: Path, modules: dict[str, Path], *, type_checking: bool) -> set[str]:
    """The project modules ``module`` imports, at any depth of its code (functions too).

    ``from a import b`` counts as importing ``a`` and also ``a.b`` when that is a module. Imports
    under ``if TYPE_CHECKING:`` count only when ``type_checking`` (they never run).
    """
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def resolve(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        return ".".join(parts) or None

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child) and not type_checking:
                for stmt in child.orelse:
                    visit_statement(stmt)
                continue
            visit_statement(child)

    def visit_statement(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(m for alias in node.names if (m := resolve(alias.name)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # ``from a import b`` runs ``a`` (a package's __init__) and, when b is a module, ``a.b``.
            if origin := resolve(source):
                found.add(origin)
            found.update(f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in modules)
        visit(node)

    visit(ast.parse(path.read_text(), filename=str(path)))
    found.discard(module)
    return found


def import_graph(*, type_checking: bool) -> dict[str, set[str]]:
    modules = project_modules()
    return {m: project_imports(m, p, modules, type_checking=type_checking) for m, p in modules.items()}


def test_signing_imports_only_the_light_core_of_evidence():
    graph = import_graph(type_checking=True)
    offenders = [
        f"{module} imports {target}"
        for module, targets in sorted(graph.items())
        if module.split(".")[0] == "signing"
        for target in sorted(targets)
        if target.split(".")[0] == "evidence" and not in_light_core(target)
    ]
    assert not offenders, offenders


def test_the_light_core_reaches_nothing_of_the_producer():
    """What signing imports, and all that imports in turn, stays inside signing and the light core."""
    graph = import_graph(type_checking=False)
    reached: set[str] = set()
    todo = [m for m in graph if m.split(".")[0] == "signing"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module])
    outside = sorted(m for m in reached if m.split(".")[0] != "signing" and not in_light_core(m))
    assert not outside, outside


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_the_project_has_no_import_cycle():
    assert not _cycles(import_graph(type_checking=False))


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from pkg import other\n")
    modules = {"pkg.m": source, "pkg.other": source, "pkg": source}
    assert project_imports("pkg.m", source, modules, type_checking=False) == {"pkg", "pkg.other"}
