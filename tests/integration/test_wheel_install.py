"""A non-editable install (a built wheel) ships schemas/, templates/ and the organisms."""

import email
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # No build isolation: hatchling comes from the dev install, so no network is needed.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "-q", "-w", str(out), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    (path,) = out.glob("interp_dossier-*.whl")
    return path


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
         str(wheel)],
        check=True, capture_output=True, text=True,
    )
    return target


def test_wheel_contains_data_directories(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "evidence/_resources/schemas/dossier.schema.json" in names
    assert any(n.startswith("evidence/_resources/templates/") for n in names)
    assert "evidence/_resources/docs/methods/refusal.direction.md" in names
    assert any(n.startswith("evidence/organisms/weights/") and n.endswith(".safetensors") for n in names)
    assert "evidence/specs/default.toml" in names
    assert "evidence/specs/natural-language.toml" in names
    assert "evidence/specs/natural-language/deception.control.jsonl" in names
    # The PDF's fonts and their licences.
    assert {"evidence/fonts/DejaVuSans.ttf", "evidence/fonts/DroidSansFallbackFull.ttf",
            "evidence/fonts/LICENSE-DejaVu.txt", "evidence/fonts/LICENSE-DroidSansFallback.txt"} <= set(names)
    # PEP 561: type checkers use the packages' own annotations.
    assert {"evidence/py.typed", "signing/py.typed"} <= set(names)


def test_light_install_requires_no_producer_stack(wheel):
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.message_from_bytes(zf.read(meta_name))
    required = [r for r in meta.get_all("Requires-Dist") if "extra ==" not in r]
    names = {r.split(";")[0].split("<")[0].split(">")[0].split("=")[0].strip().lower() for r in required}
    assert not names & {"torch", "transformer-lens", "weasyprint", "jinja2"}
    assert {"pyhanko", "cryptography", "jsonschema", "rfc8785", "pydantic"} <= names


def test_installed_package_finds_its_schemas_and_templates(installed):
    code = (
        "import json, evidence, evidence.resources as r, evidence.schema as s;"
        "from pathlib import Path;"
        "schemas = Path(str(r.resource_dir('schemas'))); templates = Path(str(r.resource_dir('templates')));"
        "print(json.dumps({'module': evidence.__file__, 'schemas': str(schemas), 'templates': str(templates),"
        " 'drift': s.check_schemas(schemas), 'n_templates': len(list(templates.iterdir())),"
        " 'docs': str(r.resource_dir('docs/methods'))}))"
    )
    env = {**os.environ, "PYTHONPATH": str(installed)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env, cwd=installed)
    found = json.loads(out.stdout)
    for key in ("module", "schemas", "templates", "docs"):
        assert found[key].startswith(str(installed)), (key, found[key])
    assert found["drift"] == []
    assert found["n_templates"] >= 1
