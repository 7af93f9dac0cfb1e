"""The PDF as a reader's viewer shows it: outline, language, title, running header and footer, page images.

One dossier with figures is rendered once for the module; the pages are read back with pikepdf,
poppler's pdftotext (text and word boxes) and pdftoppm (low-resolution grey images).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("weasyprint")
pytest.importorskip("matplotlib")
pikepdf = pytest.importorskip("pikepdf")

from evidence import render  # noqa: E402
from evidence.canonical import canonical_bytes  # noqa: E402
from evidence.records import Dossier  # noqa: E402
from tests.factories import (  # noqa: E402
    make_dossier,
    make_faithfulness_record,
    make_probe_record,
    make_refusal_direction_record,
    make_stability_record,
)

POPPLER = all(shutil.which(tool) for tool in ("pdftotext", "pdftoppm"))
needs_poppler = pytest.mark.skipif(not POPPLER, reason="poppler-utils (pdftotext, pdftoppm) is not installed")
#: Resolution of the page images: enough to see ink, cheap to read.
DPI = 24


def _dossier() -> Dossier:
    from evidence.validation_report import cite, shipped_report

    records = [make_faithfulness_record(), make_stability_record(), make_probe_record(),
               make_refusal_direction_record()]  # fmt: skip
    shipped = shipped_report()
    validation = cite(*shipped, records) if shipped is not None else None
    return make_dossier(records=records, validation=validation)


@pytest.fixture(scope="module")
def dossier() -> Dossier:
    return _dossier()


@pytest.fixture(scope="module")
def pdf_path(dossier: Dossier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pages") / "dossier.pdf"
    path.write_bytes(render.render_pdf(dossier, canonical_bytes(dossier)))
    return path


@pytest.fixture(scope="module")
def page_texts(pdf_path: Path) -> list[str]:
    with pikepdf.open(pdf_path) as pdf:
        n = len(pdf.pages)
    return [_pdftotext(pdf_path, page) for page in range(1, n + 1)]


def _pdftotext(path: Path, page: int, *extra: str) -> str:
    out = subprocess.run(["pdftotext", "-f", str(page), "-l", str(page), *extra, str(path), "-"],
                         capture_output=True, check=True, timeout=60)  # fmt: skip
    return out.stdout.decode("utf-8")


def _squash(s: str) -> str:
    return re.sub(r"\s+", " ", s).strip()


# -- outline, language, title ------------------------------------------------------------------


def test_the_outline_lists_every_chapter_and_each_record_under_its_chapter(dossier, pdf_path):
    with pikepdf.open(pdf_path) as pdf, pdf.open_outline() as outline:
        top = [_squash(item.title) for item in outline.root]
        chapters = [_squash(f"{number} {title}") for number, (_, title) in enumerate(render._sections(dossier), 1)]
        assert top == chapters
        records = next(item for item in outline.root if "Evidence records" in item.title)
        children = [_squash(child.title) for child in records.children]
        assert [c.split(" ")[1] for c in children] == [r.measurement.id for r in dossier.records]
        assert pdf.Root.PageMode == "/UseOutlines"


def test_the_outline_points_at_the_pages_that_carry_the_headings(dossier, pdf_path, page_texts):
    with pikepdf.open(pdf_path) as pdf, pdf.open_outline() as outline:
        pages = {page.objgen: number for number, page in enumerate(pdf.pages, start=1)}
        for item in outline.root:
            destination = item.destination
            assert destination is not None, item.title
            page = pages[destination[0].objgen]
            assert _squash(item.title) in _squash(page_texts[page - 1]), item.title


@needs_poppler
def test_language_and_title_are_declared_for_the_reader(dossier, pdf_path):
    title = f"Interpretability evidence dossier \u2014 {dossier.model.name}"
    with pikepdf.open(pdf_path) as pdf:
        assert pdf.Root.Lang == "en"
        assert str(pdf.docinfo["/Title"]) == title
        assert bool(pdf.Root.ViewerPreferences.DisplayDocTitle) is True
        with pdf.open_metadata() as xmp:
            assert xmp.get("dc:title") == title
    info = subprocess.run(["pdfinfo", str(pdf_path)], capture_output=True, check=True, timeout=60).stdout.decode()
    assert re.search(rf"^Title:\s+{re.escape(title)}$", info, re.M)


# -- running header and footer -------------------------------------------------------------------


@needs_poppler
def test_every_page_after_the_cover_names_the_dossier_and_says_page_x_of_y(dossier, page_texts):
    total = len(page_texts)
    assert total >= 3
    for number, text in enumerate(page_texts[1:], start=2):
        flat = _squash(text)
        assert f"interp-dossier \u2014 {dossier.dossier_id}" in flat, number
        assert f"Page {number} of {total}" in flat, number
    assert f"Page 1 of {total}" in _squash(page_texts[0])


# -- page images -----------------------------------------------------------------------------------


def _grey_pages(path: Path, out: Path) -> list[tuple[int, int, bytes]]:
    """Every page as (width, height, 8-bit grey pixels), from pdftoppm's PGM files."""
    subprocess.run(["pdftoppm", "-r", str(DPI), "-gray", str(path), str(out / "p")], check=True, timeout=120)
    images = []
    for file in sorted(out.glob("p-*.pgm"), key=lambda p: int(p.stem.split("-")[1])):
        data = file.read_bytes()
        # P5 header: magic, width, height, maxval, each followed by whitespace.
        fields = re.match(rb"P5\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
        assert fields is not None and int(fields.group(3)) == 255
        width, height = int(fields.group(1)), int(fields.group(2))
        images.append((width, height, data[fields.end() :]))
    return images


def _ink(image: tuple[int, int, bytes], top: float, bottom: float) -> float:
    """The share of pixels darker than near-white between ``top`` and ``bottom`` (fractions of the height)."""
    width, height, pixels = image
    rows = pixels[int(top * height) * width : int(bottom * height) * width]
    return sum(1 for value in rows if value < 200) / max(len(rows), 1)


@pytest.fixture(scope="module")
def images(pdf_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, int, bytes]]:
    if not POPPLER:
        pytest.skip("poppler-utils (pdftotext, pdftoppm) is not installed")
    return _grey_pages(pdf_path, tmp_path_factory.mktemp("images"))


def test_no_page_is_blank_between_its_header_and_footer(images, page_texts):
    assert len(images) == len(page_texts)
    for number, image in enumerate(images, start=1):
        # The body of the page, the running header and footer left out.
        assert _ink(image, 0.08, 0.92) > 0.002, f"page {number} is blank"


def _figure_captions(path: Path, page: int) -> list[float]:
    """The top of each figure caption ("Figure N.N.N (...)") on ``page``, as a fraction of the page height."""
    boxes = _pdftotext(path, page, "-bbox")
    height = float(re.search(r'<page width="[\d.]+" height="([\d.]+)"', boxes).group(1))  # type: ignore[union-attr]
    words = re.findall(r'<word xMin="[\d.]+" yMin="([\d.]+)" xMax="[\d.]+" yMax="[\d.]+">([^<]*)</word>', boxes)
    return [float(y) / height for (y, word), (_, after) in zip(words, words[1:], strict=False)
            if word == "Figure" and re.fullmatch(r"\d+(\.\d+)+", after)]  # fmt: skip


@needs_poppler
def test_pages_with_figures_have_ink_in_the_figure_above_each_caption(pdf_path, images, page_texts):
    seen = 0
    for number in range(1, len(page_texts) + 1):
        for caption_top in _figure_captions(pdf_path, number):
            seen += 1
            # The drawing sits right above its caption: a band of about 5 cm of the page's 29.7.
            band = _ink(images[number - 1], max(caption_top - 0.17, 0.0), caption_top - 0.005)
            assert band > 0.02, f"the figure above the caption at {caption_top:.2f} on page {number} has no ink"
    # The faithfulness curve, the suffix attack budget, the probe's per-layer AUROC, the refusal rates,
    # and the validation rates when the release ships a report.
    assert seen >= 4


def test_the_ink_measure_tells_a_blank_band_from_a_drawn_one():
    width, height = 10, 20
    white = bytes([255]) * (width * height)
    drawn = bytes([255]) * (width * 10) + bytes([30]) * (width * 2) + bytes([255]) * (width * 8)
    assert _ink((width, height, white), 0.0, 1.0) == 0.0
    assert _ink((width, height, drawn), 0.0, 0.5) == 0.0
    assert _ink((width, height, drawn), 0.5, 0.6) == 1.0
