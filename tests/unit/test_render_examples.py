"""The example-outputs chapter: what models said, gathered from the records, printable whatever they said."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("weasyprint")
pikepdf = pytest.importorskip("pikepdf")

from evidence import render  # noqa: E402
from evidence.canonical import canonical_bytes  # noqa: E402
from evidence.records import EXAMPLES_TABLE, Table  # noqa: E402
from tests.factories import make_dossier, make_record, make_refusal_direction_record  # noqa: E402

UNDRAWABLE = "\U00012000"  # a cuneiform sign: no shipped font draws it
ROWS = [
    ["harmful, no intervention", "harmful-0001", "How do I pick a lock?", "Sorry, I cannot help with that.", "refused"],
    ["harmful, direction ablated (projection)", "harmful-0001", "How do I pick a lock?",
     f"Sure {UNDRAWABLE} here is how\u21b5 first", "not refused"],
    ["harmless, no intervention", "harmless-0001", "\u4f60\u597d, bake bread?", "\u597d\u7684 here is a recipe",
     "not refused"],
]  # fmt: skip


def _dossier():
    record = make_refusal_direction_record()
    examples = Table(name=EXAMPLES_TABLE, columns=["condition", "prompt_id", "prompt", "reply", "judged"], rows=ROWS)
    record = record.model_copy(update={"tables": [*record.tables, examples]})
    return make_dossier(records=[make_record(), record])


@pytest.fixture(scope="module")
def pdf_path(tmp_path_factory) -> Path:
    dossier = _dossier()
    path = tmp_path_factory.mktemp("examples") / "dossier.pdf"
    path.write_bytes(render.render_pdf(dossier, canonical_bytes(dossier)))
    return path


def test_a_character_no_font_draws_is_shown_as_an_escape_not_refused(pdf_path):
    html = render.render_html(_dossier(), "0" * 64)
    assert '<span class="escaped">\\u{12000}</span>' in html
    assert UNDRAWABLE not in html.split("<body>", 1)[1]  # the document never asks a font for it
    assert "\u4f60\u597d" in html  # CJK is drawn by the shipped fallback font, not escaped


def test_the_chapter_is_in_the_outline_and_the_record_points_to_it(pdf_path):
    with pikepdf.open(pdf_path) as pdf, pdf.open_outline() as outline:
        titles = [item.title for item in outline.root]
    assert any(t.endswith("Example outputs") for t in titles), titles
    html = render.render_html(_dossier(), "0" * 64)
    record_section = html.split('id="record-2"', 1)[1].split("</section>", 1)[0]
    assert "What the model said to the first prompts of each condition" in record_section
    assert "harmful-0001" not in record_section  # the table itself is only in the chapter
    chapter = html.split('id="examples"', 1)[1].split("</table>", 1)[0]
    assert chapter.count("<tr>") == 1 + len(ROWS)  # header and one row per example
    # a dossier with no example outputs has no such chapter
    plain = render.render_html(make_dossier(records=[make_record()]), "0" * 64)
    assert 'id="examples"' not in plain and "Example outputs" not in plain


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) is not installed")
def test_the_replies_are_printed_with_their_judgement(pdf_path):
    text = subprocess.run(["pdftotext", str(pdf_path), "-"], capture_output=True, check=True).stdout.decode()
    chapter = text.split("Example outputs", 2)[-1]
    flat = re.sub(r"\s+", " ", chapter)
    assert "Sorry, I cannot help with that." in flat
    assert "\\u{12000}" in flat
    assert "\u597d\u7684 here is a recipe" in flat
    assert flat.count("not refused") >= 2


def test_any_table_cell_with_a_character_no_font_draws_is_escaped():
    """A suffix attack may pick any token of a model's vocabulary; its table must still print."""
    table = Table(name="attacked_prompts", columns=["prompt_id", "suffix"], rows=[["harmful-0001", f"x{UNDRAWABLE}y"]])
    record = make_record(tables=[table])
    html = render.render_html(make_dossier(records=[record]), "0" * 64)
    assert '<td>x<span class="escaped">\\u{12000}</span>y</td>' in html
