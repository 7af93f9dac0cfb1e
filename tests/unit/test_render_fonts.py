"""The PDF uses only the fonts shipped with the project, whatever fonts the machine has."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("weasyprint")
pikepdf = pytest.importorskip("pikepdf")
fontTools = pytest.importorskip("fontTools.ttLib")

from evidence import render  # noqa: E402
from evidence.canonical import canonical_bytes  # noqa: E402
from evidence.records import Dossier  # noqa: E402
from evidence.resources import shipped_fonts  # noqa: E402
from tests.unit.test_render import LEAN, NO_POLICY, _dossier  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

#: Renders the same dossier as ``_lean_dossier`` in a fresh interpreter and writes the PDF to stdout.
_RENDER_IN_SUBPROCESS = """
import sys
from evidence import render
from evidence.canonical import canonical_bytes
from tests.unit.test_render_fonts import _lean_dossier
dossier = _lean_dossier()
sys.stdout.buffer.write(render.render_pdf(dossier, canonical_bytes(dossier)))
"""


def _lean_dossier(summary: str | None = None) -> Dossier:
    from tests.factories import make_probe_record

    dossier = _dossier()
    # Four records of the rich dossier, and one that draws a figure (its labels are text in the PDF).
    records = [*dossier.records[:4], make_probe_record("deception.probe:figure")]
    if summary is not None:
        records[3] = records[3].model_copy(update={"summary": summary})
    return dossier.model_copy(update={"records": records, **NO_POLICY, **LEAN})


def _render_with_env(env: dict[str, str]) -> bytes:
    result = subprocess.run(
        [sys.executable, "-c", _RENDER_IN_SUBPROCESS],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout


def _impostor_font(directory: Path) -> None:
    """DejaVu Serif renamed "DejaVu Sans": a machine font that claims the family the stylesheet names."""
    font = fontTools.TTFont(shipped_fonts() / "DejaVuSerif.ttf")
    names = {1: "DejaVu Sans", 4: "DejaVu Sans", 6: "ImpostorSans", 16: "DejaVu Sans"}
    for record in font["name"].names:
        if record.nameID in names:
            record.string = names[record.nameID]
    font.save(directory / "ImpostorSans.ttf")


def _fonts_conf(path: Path, font_dir: Path | None) -> Path:
    body = f"<dir>{font_dir}</dir><cachedir>{path.parent / 'cache'}</cachedir>" if font_dir else ""
    path.write_text(f'<?xml version="1.0"?>\n<fontconfig>{body}</fontconfig>\n', encoding="utf-8")
    return path


def _plain(name: str) -> str:
    """A font name without separators: WeasyPrint writes ``DejaVu-Sans-Bold`` for ``DejaVuSans-Bold``."""
    return "".join(c for c in name if c.isalnum())


def _embedded_font_names(pdf: bytes) -> set[str]:
    """The names of the fonts embedded in ``pdf``, without subset tags and separators."""
    names: set[str] = set()
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        for page in doc.pages:
            for font in page.Resources.get("/Font", {}).values():
                for part in [font, *font.get("/DescendantFonts", [])]:
                    descriptor = part.get("/FontDescriptor")
                    if descriptor is not None:
                        assert "/FontFile2" in descriptor or "/FontFile3" in descriptor  # embedded
                    names.add(_plain(str(part.BaseFont).lstrip("/").split("+", 1)[-1]))
    return names


def _shipped_font_names() -> set[str]:
    fonts = shipped_fonts().glob("*.ttf")
    return {_plain(str(fontTools.TTFont(path)["name"].getDebugName(6))) for path in fonts}


@pytest.fixture(scope="module")
def reference() -> bytes:
    dossier = _lean_dossier()
    return render.render_pdf(dossier, canonical_bytes(dossier))


def test_the_shipped_fonts_come_with_their_licences():
    fonts = shipped_fonts()
    assert {p.name for p in fonts.glob("LICENSE-*.txt")} == {"LICENSE-DejaVu.txt", "LICENSE-DroidSansFallback.txt"}
    assert (fonts / "Apache-2.0.txt").is_file()
    families = {str(fontTools.TTFont(p)["name"].getDebugName(1)) for p in fonts.glob("*.ttf")}
    assert families == {*render.FONT_FAMILIES.values(), render.FALLBACK_FONT_FAMILY}


def test_only_shipped_fonts_are_embedded(reference):
    from evidence import figures

    assert any(figures.figures_for(r) for r in _lean_dossier().records)  # a figure's text is among it
    embedded = _embedded_font_names(reference)
    assert embedded
    assert embedded <= _shipped_font_names()


def test_an_impostor_font_on_the_machine_changes_nothing(reference, tmp_path: Path):
    # The machine's configuration offers a different font under the name the stylesheet asks for.
    impostors = tmp_path / "fonts"
    impostors.mkdir()
    _impostor_font(impostors)
    conf = _fonts_conf(tmp_path / "fonts.conf", impostors)
    assert _render_with_env({"FONTCONFIG_FILE": str(conf)}) == reference


def test_a_machine_without_fonts_renders_the_same_document(reference, tmp_path: Path):
    conf = _fonts_conf(tmp_path / "fonts.conf", None)
    assert _render_with_env({"FONTCONFIG_FILE": str(conf), "FONTCONFIG_PATH": str(tmp_path)}) == reference


def test_cjk_text_renders_with_the_shipped_fallback_font():
    dossier = _lean_dossier(summary="\u62d2\u7edd (refusal)")
    pdf = render.render_pdf(dossier, canonical_bytes(dossier))
    assert "DroidSansFallback" in _embedded_font_names(pdf)


def test_rendering_leaves_the_fontconfig_environment_as_it_was(monkeypatch):
    monkeypatch.setenv("FONTCONFIG_FILE", "/nonexistent/fonts.conf")
    monkeypatch.delenv("FONTCONFIG_PATH", raising=False)
    dossier = _lean_dossier()
    render.render_pdf(dossier, canonical_bytes(dossier))
    assert os.environ["FONTCONFIG_FILE"] == "/nonexistent/fonts.conf"
    assert "FONTCONFIG_PATH" not in os.environ
