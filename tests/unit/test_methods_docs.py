"""Method pages read as data: title, summary paragraph, the six sections in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from evidence.errors import ConfigError
from evidence.methods_docs import SECTIONS, DocPage, doc_page, doc_path, find_doc_page, parse_doc_page

SUMMARY = "Whether the model's refusals run through\none direction of its residual stream."


def page(title: str = "refusal.direction", summary: str = SUMMARY, sections=SECTIONS, body="Text.") -> str:
    parts = [f"# {title}", "", summary, ""]
    for name in sections:
        parts += [f"## {name}", "", f"{body} ({name})", ""]
    return "\n".join(parts)


def test_a_page_parses_into_title_summary_and_sections():
    parsed = parse_doc_page(page(), measurement_id="refusal.direction")
    assert parsed == DocPage(
        title="refusal.direction",
        summary="Whether the model's refusals run through one direction of its residual stream.",
        sections=tuple((name, f"Text. ({name})") for name in SECTIONS),
    )
    assert parsed.section("Known failure modes") == "Text. (Known failure modes)"
    with pytest.raises(KeyError):
        parsed.section("Nope")


def test_subsections_lists_and_code_stay_in_their_section():
    body = "Intro.\n\n### Numbers\n\n- 0.93 AUROC\n\n```\n## not a section\n# not a title\n```"
    parsed = parse_doc_page(page(body=body), measurement_id="refusal.direction")
    assert [name for name, _ in parsed.sections] == list(SECTIONS)
    assert "## not a section" in parsed.section("Validation evidence")
    assert "### Numbers" in parsed.section("Construct")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with the title '# refusal.direction'"),
        (page().replace("# refusal.direction", "## refusal.direction", 1), "must start with the title"),
        (page(title="refusal.directions"), "the title is 'refusal.directions'"),
        (page(summary=""), "no summary paragraph"),
        (page(summary="One.\n\nTwo."), "2 paragraphs under the title"),
        (page(sections=SECTIONS[:-1]), "the sections are"),
        (page(sections=(SECTIONS[1], SECTIONS[0], *SECTIONS[2:])), "the sections are"),
        (page(sections=(*SECTIONS, "Appendix")), "the sections are"),
        (page().replace("Text. (Parameters)", ""), "empty section(s): Parameters"),
        (page() + "\n# another title\n", "a second title"),
    ],
)
def test_a_malformed_page_is_a_config_error_naming_the_file(text: str, message: str):
    with pytest.raises(ConfigError) as info:
        parse_doc_page(text, measurement_id="refusal.direction", source="docs/methods/refusal.direction.md")
    assert str(info.value).startswith("docs/methods/refusal.direction.md: ")
    assert message in str(info.value)


def test_pages_are_found_by_id_in_a_directory(tmp_path: Path):
    (tmp_path / "refusal.direction.md").write_text(page(), encoding="utf-8")
    assert find_doc_page("refusal.direction", directory=tmp_path).summary.startswith("Whether")
    assert find_doc_page("heads.inventory", directory=tmp_path) is None
    with pytest.raises(ConfigError, match=r"'heads.inventory' has no method page docs/methods/heads.inventory.md"):
        doc_page("heads.inventory", directory=tmp_path)
    assert doc_path("heads.inventory") == "docs/methods/heads.inventory.md"


def test_the_shipped_pages_are_found_in_the_source_tree():
    from evidence import methods_docs

    directory = methods_docs._directory()
    root = Path(__file__).resolve().parents[2]
    assert directory is None or Path(str(directory)) == root / "docs" / "methods"


def test_the_loader_is_light():
    import subprocess
    import sys

    code = "import sys, evidence.methods_docs; print(sorted(m for m in ('torch', 'jinja2') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == "[]\n"
