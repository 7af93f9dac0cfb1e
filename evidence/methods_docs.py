"""The method pages: one Markdown page per measurement, ``docs/methods/<id>.md``, read as data.

Each page has the same shape, so that the PDF and the command line can use
its parts::

    # <id>
    <one paragraph: what the measurement measures, in plain words>
    ## Construct
    ## Method and references
    ## Parameters
    ## What it can and cannot show
    ## Known failure modes
    ## Validation evidence

The paragraph under the title is the page's *summary*; the PDF shows it as
"What this measures" in the measurement's chapter. The pages ship with the
package (``evidence/_resources/docs/methods`` in a wheel, ``docs/methods`` in a
source checkout; see :mod:`evidence.resources`). Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

from evidence.errors import ConfigError, EvidenceError

__all__ = ["DOCS_DIR", "SECTIONS", "DocPage", "doc_page", "doc_path", "find_doc_page", "parse_doc_page"]

#: Where the pages live in the repository.
DOCS_DIR = "docs/methods"

#: The sections every page has, in this order, after the summary paragraph.
SECTIONS = (
    "Construct",
    "Method and references",
    "Parameters",
    "What it can and cannot show",
    "Known failure modes",
    "Validation evidence",
)

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass(frozen=True)
class DocPage:
    """One method page: its title (the measurement id), summary paragraph and sections in order."""

    title: str
    summary: str
    sections: tuple[tuple[str, str], ...]

    def section(self, name: str) -> str:
        """The Markdown text of section ``name`` (KeyError when the page has none)."""
        for heading, text in self.sections:
            if heading == name:
                return text
        raise KeyError(name)


def doc_path(measurement_id: str) -> str:
    """The page's path in the repository, e.g. ``docs/methods/refusal.direction.md``."""
    return f"{DOCS_DIR}/{measurement_id}.md"


def parse_doc_page(text: str, *, measurement_id: str, source: str = "") -> DocPage:
    """Parse a page; a page without the title, the summary or the sections in order is a ConfigError."""
    where = source or doc_path(measurement_id)
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    title_match = _HEADING.match(lines[first]) if first < len(lines) else None
    if title_match is None or len(title_match.group(1)) != 1:
        raise ConfigError(f"{where}: the page must start with the title '# {measurement_id}'")
    title = title_match.group(2)
    if title != measurement_id:
        raise ConfigError(f"{where}: the title is {title!r}, not the measurement id {measurement_id!r}")

    blocks: list[tuple[str, list[str]]] = [("", [])]  # ("", ...) is what precedes the first section
    in_code = False
    for line in lines[first + 1 :]:
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
        heading = None if in_code else _HEADING.match(line)
        if heading is not None and len(heading.group(1)) == 1:
            raise ConfigError(f"{where}: a second title {line.strip()!r}; a page has one '# ' title")
        if heading is not None and len(heading.group(1)) == 2:
            blocks.append((heading.group(2), []))
        else:
            blocks[-1][1].append(line)

    summary = _first_paragraph(blocks[0][1], where)
    names = tuple(name for name, _ in blocks[1:])
    if names != SECTIONS:
        raise ConfigError(
            f"{where}: the sections are {list(names)}",
            hint="a method page has exactly these '## ' sections, in this order: " + "; ".join(SECTIONS),
        )
    sections = tuple((name, "\n".join(body).strip()) for name, body in blocks[1:])
    empty = [name for name, body in sections if not body]
    if empty:
        raise ConfigError(f"{where}: empty section(s): {', '.join(empty)}", hint="write them, or say why not")
    return DocPage(title=title, summary=summary, sections=sections)


def _first_paragraph(lines: list[str], where: str) -> str:
    """The paragraph directly under the title, as one line; nothing else may precede the first section."""
    text = "\n".join(lines).strip()
    if not text:
        raise ConfigError(f"{where}: no summary paragraph under the title", hint="say what it measures, in plain words")
    paragraphs = re.split(r"\n\s*\n", text)
    if len(paragraphs) > 1:
        raise ConfigError(
            f"{where}: {len(paragraphs)} paragraphs under the title; the summary is one paragraph",
            hint="move the rest into the sections",
        )
    return " ".join(line.strip() for line in paragraphs[0].splitlines())


def _directory() -> Traversable | None:
    from evidence.resources import resource_dir

    try:
        return resource_dir("docs/methods")
    except EvidenceError:
        return None


def find_doc_page(measurement_id: str, *, directory: Traversable | Path | None = None) -> DocPage | None:
    """The page of ``measurement_id`` from ``directory`` (default: the shipped pages); None when it has none.

    A page that exists but is malformed is a ConfigError naming the file.
    """
    base = directory if directory is not None else _directory()
    if base is None:
        return None
    page = base / f"{measurement_id}.md"
    if not page.is_file():
        return None
    try:
        text = page.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{doc_path(measurement_id)} cannot be read: {exc}") from None
    return parse_doc_page(text, measurement_id=measurement_id, source=str(page))


def doc_page(measurement_id: str, *, directory: Traversable | Path | None = None) -> DocPage:
    """The page of ``measurement_id``; a missing page is a ConfigError naming the file that should exist."""
    page = find_doc_page(measurement_id, directory=directory)
    if page is None:
        raise ConfigError(
            f"measurement {measurement_id!r} has no method page {doc_path(measurement_id)}",
            hint="write it (see CONTRIBUTING.md), or reinstall interp-dossier",
        )
    return page
