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
        "signing.bundle",
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
    # torch and TransformerLens: model loading, measurements, and organism training only.
    return rel == "evidence/model.py" or rel.startswith(("evidence/measure/", "evidence/organisms/"))


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
