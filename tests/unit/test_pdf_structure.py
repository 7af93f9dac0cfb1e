"""The structural PDF/A-3a and PDF/UA-1 checks (tests/pdf_structure.py) find what they look for.

A dossier rendered by the project passes them; each check then fails on a copy of that file
broken in the way it looks for, so that none of them passes whatever the file holds.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pikepdf
import pytest

pytest.importorskip("weasyprint")

from evidence import render  # noqa: E402
from evidence.canonical import canonical_bytes  # noqa: E402
from tests.factories import make_dossier, make_probe_record, make_record  # noqa: E402
from tests.pdf_structure import pdf_problems  # noqa: E402


@pytest.fixture(scope="module")
def pdf() -> bytes:
    dossier = make_dossier(records=[make_probe_record(), make_record()])
    return render.render_pdf(dossier, canonical_bytes(dossier))


def _broken(pdf: bytes, change: Callable[[pikepdf.Pdf], Any]) -> list[str]:
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        change(doc)
        out = io.BytesIO()
        doc.save(out)
    return pdf_problems(out.getvalue())


def _elements(doc: pikepdf.Pdf, tag: str) -> list[pikepdf.Dictionary]:
    from tests.pdf_structure import _elements as walk

    return [e for e in walk(doc.Root.StructTreeRoot) if e.S == tag]


def _first_annotation(doc: pikepdf.Pdf) -> pikepdf.Dictionary:
    return next(a for page in doc.pages for a in page.obj.get("/Annots", []))


def test_a_rendered_dossier_has_no_problem_and_carries_what_is_checked(pdf):
    assert pdf_problems(pdf) == []
    with pikepdf.open(io.BytesIO(pdf)) as doc:  # the checks below have something to break
        assert _elements(doc, "/Figure") and _elements(doc, "/TH") and _elements(doc, "/H2")
        assert any("/Annots" in page.obj for page in doc.pages)


def _drop_ua_identification(doc: pikepdf.Pdf) -> None:
    with doc.open_metadata(set_pikepdf_as_editor=False) as meta:
        del meta["pdfuaid:part"]


def _level_b(doc: pikepdf.Pdf) -> None:
    with doc.open_metadata(set_pikepdf_as_editor=False) as meta:
        meta["pdfaid:conformance"] = "B"


def _other_title(doc: pikepdf.Pdf) -> None:
    doc.docinfo["/Title"] = "Another title"


def _undeclared_namespace(doc: pikepdf.Pdf) -> None:
    raw = doc.Root.Metadata.read_bytes().replace(b"<pdfaSchema:prefix>pdfuaid<", b"<pdfaSchema:prefix>other<")
    doc.Root.Metadata.write(raw)


def _no_language(doc: pikepdf.Pdf) -> None:
    del doc.Root["/Lang"]


def _not_marked(doc: pikepdf.Pdf) -> None:
    doc.Root.MarkInfo.Marked = False


def _title_not_shown(doc: pikepdf.Pdf) -> None:
    del doc.Root.ViewerPreferences["/DisplayDocTitle"]


def _figure_without_alt(doc: pikepdf.Pdf) -> None:
    del _elements(doc, "/Figure")[0]["/Alt"]


def _header_without_id(doc: pikepdf.Pdf) -> None:
    del _elements(doc, "/TH")[0]["/ID"]


def _skipped_heading(doc: pikepdf.Pdf) -> None:
    _elements(doc, "/H2")[0].S = pikepdf.Name("/H4")


def _unknown_type(doc: pikepdf.Pdf) -> None:
    _elements(doc, "/P")[0].S = pikepdf.Name("/Paragraph")


def _annotation_outside_the_tree(doc: pikepdf.Pdf) -> None:
    del _first_annotation(doc)["/StructParent"]


def _link_without_contents(doc: pikepdf.Pdf) -> None:
    del _first_annotation(doc)["/Contents"]


def _no_tab_order(doc: pikepdf.Pdf) -> None:
    page = next(p for p in doc.pages if "/Annots" in p.obj)
    del page.obj["/Tabs"]


def _unmarked_text(doc: pikepdf.Pdf) -> None:
    page = doc.pages[0]
    font = next(iter(page.obj.Resources.Font.keys()))
    page.contents_add(doc.make_stream(f"BT {font} 8 Tf 10 10 Td <0001> Tj ET".encode()), prepend=False)


def _font_not_embedded(doc: pikepdf.Pdf) -> None:
    font = next(iter(doc.pages[0].obj.Resources.Font.values()))
    descriptor = (font.DescendantFonts[0] if "/DescendantFonts" in font else font).FontDescriptor
    for key in ("/FontFile", "/FontFile2", "/FontFile3"):
        if key in descriptor:
            del descriptor[key]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_drop_ua_identification, "no PDF/UA-1 identification"),
        (_level_b, "not PDF/A-3a"),
        (_other_title, "/Title ('Another title') differs from XMP dc:title"),
        (_undeclared_namespace, "the pdfuaid namespace is not declared"),
        (_no_language, "no document language"),
        (_not_marked, "MarkInfo /Marked is not true"),
        (_title_not_shown, "/DisplayDocTitle is not true"),
        (_figure_without_alt, "a Figure has no alternative text"),
        (_header_without_id, "a TH has neither an /ID"),
        (_skipped_heading, "heading level skipped"),
        (_unknown_type, "element type Paragraph is neither standard nor role-mapped"),
        (_annotation_outside_the_tree, "is outside the structure tree"),
        (_link_without_contents, "has no description (/Contents)"),
        (_no_tab_order, "has annotations but /Tabs is not /S"),
        (_unmarked_text, "page 1: content outside marked content (Tj)"),
        (_font_not_embedded, "is not embedded"),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else None,
)
def test_each_check_finds_the_problem_it_looks_for(pdf, change, problem):
    problems = _broken(pdf, change)
    assert any(problem in p for p in problems), problems
