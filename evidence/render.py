"""Render a dossier as a PDF/A-3a (PDF/UA-1) document with dossier.json embedded.

The PDF is the human-readable face of the dossier. It carries, on its first
page, the sha256 of the exact ``dossier.json`` bytes, and it embeds those bytes
as a PDF/A-3 associated file (``/AFRelationship /Data``), so that an auditor
can check that the document and the machine-readable dossier are one.

This is the only module that imports WeasyPrint, and it does so inside
:func:`render_pdf`: importing ``evidence.render`` stays cheap. The layout is
data: ``templates/dossier.html.j2`` (Jinja2, autoescaped) with the partials
it includes (``templates/_*.html.j2``), and ``templates/dossier.css``. Links
to records, verdicts and chapters print the page they point at; WeasyPrint
resolves those page numbers when it lays the document out.

The document uses only the fonts shipped in ``evidence/fonts/`` (DejaVu, and
Droid Sans Fallback for CJK, with their licences), never the machine's, so
that the same dossier.json renders to the same pages everywhere.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import gc
import json
import logging
import math
import mimetypes
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape as xml_escape

from evidence.canonical import sha256_hex
from evidence.errors import ConfigError, EvidenceError, RenderError, missing_extra
from evidence.procedure import STEPS
from evidence.records import (
    EXAMPLES_TABLE,
    ChangeEntry,
    ClauseIndexEntry,
    ConfidenceInterval,
    Criterion,
    CrossReference,
    Dossier,
    ErrorInfo,
    EvidenceRecord,
    Metric,
    Table,
    Threshold,
    ValidatedDetector,
    ValidationReport,
    Verdict,
)
from evidence.records.trend import MetricSeries, TrendDossier, VerdictSeries

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    import jinja2

__all__ = ["render_html", "render_pdf", "render_trend_pdf", "template_text"]

#: The page template and the stylesheet, inside ``templates/``.
TEMPLATE = "dossier.html.j2"
STYLESHEET = "dossier.css"
#: The trend dossier's page template, and what its stylesheet adds to the dossier's.
TREND_TEMPLATE = "trend.html.j2"
TREND_STYLESHEET = "trend.css"
#: The name under which the dossier is embedded in the PDF.
DOSSIER_JSON = "dossier.json"

#: The font families the document uses, all shipped in ``evidence/fonts/`` with their licences. Each
#: CSS generic family maps to one of them, and every family falls back to the CJK-capable one.
FONT_FAMILIES = {"sans-serif": "DejaVu Sans", "serif": "DejaVu Serif", "monospace": "DejaVu Sans Mono"}
FALLBACK_FONT_FAMILY = "Droid Sans Fallback"
#: The PDF/A part and level WeasyPrint writes: PDF/A-3 level A, tagged (a structure tree, reading
#: order, alternative texts); the finisher adds the PDF/UA-1 identification (see README, "The PDF").
PDF_VARIANT = "pdf/a-3a"
#: A render reports how far it got (the page it lays out) at most this often, in seconds.
PROGRESS_INTERVAL_S = 2.0

_VERDICT_ORDER = ("pass", "fail", "inconclusive", "n/a")
_CHANGE_AREAS = ("model", "suite", "policy", "verdicts")
_REINSTALL_HINT = "reinstall interp-dossier; the package must ship templates/"


def render_pdf(
    dossier: Dossier,
    dossier_json: bytes,
    *,
    attachments: Mapping[str, bytes] | None = None,
    progress: Callable[[str], None] | None = None,
) -> bytes:
    """Render ``dossier`` as PDF/A-3a (PDF/UA-1) bytes with ``dossier_json`` embedded.

    ``dossier_json`` must be the exact bytes of dossier.json (they are
    embedded verbatim and their sha256 is printed on page 1); they must
    encode ``dossier``. ``attachments`` (file name -> bytes) are embedded
    beside it, also as associated files: the standard exports with relationship
    ``Supplement``, anything else (the validation report) with ``Data``.
    ``progress``, when given, is told which page is being laid out (at most every
    :data:`PROGRESS_INTERVAL_S` seconds), each further layout pass, and when the pages are written.

    Raises :class:`~evidence.errors.RenderError` when the inputs disagree,
    the templates are missing or broken, or WeasyPrint cannot produce a
    valid PDF/A file.
    """
    extra = _checked_attachments(attachments)
    _check_json_encodes(dossier, dossier_json)
    digest = sha256_hex(dossier_json)
    with _collector_paused():
        html = _render_html(dossier, digest, _cited_report(dossier, extra), inline_figures=False)
        css = _read_template(STYLESHEET)
        files = {DOSSIER_JSON: dossier_json, **extra}
        return _write_pdf(html, css, files, dossier.created_at, progress)


def render_trend_pdf(
    trend: TrendDossier, trend_json: bytes, *, progress: Callable[[str], None] | None = None
) -> bytes:
    """Render a sweep's trend dossier as PDF/A-3a (PDF/UA-1) bytes with ``trend_json`` embedded as dossier.json.

    ``trend_json`` must be the exact bytes of the trend bundle's dossier.json (embedded verbatim,
    their sha256 printed on page 1), and must encode ``trend``. The document reuses the dossier's
    stylesheet, fonts and PDF/A machinery; its figures are drawn from the trend alone.

    ``progress`` and the errors raised are as for :func:`render_pdf`.
    """
    _check_json_encodes(trend, trend_json)
    digest = sha256_hex(trend_json)
    with _collector_paused():
        html = _render_template(TREND_TEMPLATE, lambda: _trend_context(trend, digest, inline_figures=False))
        css = _read_template(STYLESHEET) + "\n" + _read_template(TREND_STYLESHEET)
        return _write_pdf(html, css, {DOSSIER_JSON: trend_json}, trend.created_at, progress)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a document renders, one full collection after.

    Laying out a document allocates millions of small objects that live until it is written, and each
    of them made the collector's generational passes re-scan everything alive (in a run, the model and
    its tensors' Python objects too): a third of a render's CPU time went there
    (``benchmarks/render_pdf.py``). The document's own garbage is freed by the collection at the end;
    paused, a render of the default dossier holds about 50 MB more at its peak.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
            gc.collect()


# -- inputs --------------------------------------------------------------------------------


def _checked_attachments(attachments: Mapping[str, bytes] | None) -> dict[str, bytes]:
    checked: dict[str, bytes] = {}
    for name, data in (attachments or {}).items():
        if not isinstance(name, str) or not name or "/" in name or "\\" in name:
            raise RenderError(
                f"invalid attachment name {name!r}",
                hint="use a plain file name such as 'dossier.cdx.json'",
            )
        if name == DOSSIER_JSON:
            raise RenderError(
                f"{DOSSIER_JSON} is embedded from dossier_json and cannot be an extra attachment",
                hint="pass the dossier bytes as dossier_json only",
            )
        if not isinstance(data, bytes):
            raise RenderError(
                f"attachment {name!r} must be bytes, not {type(data).__name__}",
                hint="read the file in binary mode",
            )
        checked[name] = data
    return checked


def _cited_report(dossier: Dossier, attachments: Mapping[str, bytes]) -> ValidationReport | None:
    """The validation report the dossier cites, when it travels among the attachments.

    Its organism-by-organism results fill the validation chapter's tables; without it (a
    dossier rendered on its own) the chapter shows the summary the dossier carries.
    """
    cited = dossier.validation
    data = attachments.get(cited.file) if cited is not None else None
    if cited is None or data is None:
        return None
    if sha256_hex(data) != cited.report_sha256:
        raise RenderError(
            f"the attached {cited.file} is not the validation report the dossier cites",
            hint="attach the report whose sha256 the dossier records",
        )
    from evidence.validation_report import parse_report

    try:
        return parse_report(data, source=cited.file)
    except ConfigError as exc:
        raise RenderError(exc.message, hint=exc.hint) from None


def _check_json_encodes(document: Dossier | TrendDossier, data: bytes) -> None:
    """``data`` are bytes that encode ``document`` (a dossier, or a sweep's trend); RenderError otherwise.

    The PDF prints the digest of these bytes next to the document's content: both must describe the
    same document.
    """
    if isinstance(document, TrendDossier):
        argument, kind, file = "trend_json", "trend", "the trend bundle's dossier.json"
        model: type[Dossier] | type[TrendDossier] = TrendDossier
        valid = "a valid trend dossier"
    else:
        argument, kind, file, model, valid = "dossier_json", "dossier", "dossier.json", Dossier, "a valid dossier"
    if not isinstance(data, bytes):
        raise RenderError(f"{argument} must be bytes, not {type(data).__name__}",
                          hint=f"pass the exact bytes written to {file}")  # fmt: skip
    try:
        parsed = model.model_validate_json(data)
    except ValueError as exc:
        raise RenderError(f"{argument} is not {valid}", hint=f"pass the exact bytes written to {file}") from exc
    if parsed != document:
        raise RenderError(
            f"{argument} does not encode the {kind} being rendered",
            hint=f"render from the same {kind} that was serialised to dossier.json",
        )


# -- number and text formatting (Jinja filters) -------------------------------------------


def _format_number(value: Any) -> str:
    """A number for a table cell: integers exactly, floats to 4 significant digits."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if not isinstance(value, float):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0.0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e6 or magnitude < 1e-3:
        mantissa, exponent = f"{value:.3e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    if magnitude >= 1e3:
        return f"{value:.0f}"
    return f"{value:.4g}"


def _format_interval(lower: Any, upper: Any) -> str:
    """``[lower, upper]`` with both bounds formatted as numbers."""
    return f"[{_format_number(lower)}, {_format_number(upper)}]"


def _format_json(value: Any) -> str:
    """Compact JSON, keys in recorded order, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _format_short_hash(value: str, length: int = 16) -> str:
    """The first ``length`` hex digits of a digest, followed by an ellipsis."""
    return value if len(value) <= length else value[:length] + "\u2026"


def _format_utc(value: datetime) -> str:
    """An aware datetime as ``YYYY-MM-DD HH:MM:SS UTC``."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _format_percent(value: float) -> str:
    """A fraction as a percentage: ``0.95`` -> ``95%``."""
    return f"{value * 100:.4g}%"


def _format_grouped(value: int) -> str:
    """An integer with thin-space thousands separators, e.g. ``1 048 576``."""
    return f"{value:,}".replace(",", "\u2009")


def _format_bytes(value: int) -> str:
    """A size in bytes, e.g. ``1 048 576 B``."""
    return _format_grouped(value) + " B"


def _format_span(span: timedelta) -> str:
    """A non-negative duration in days, hours and minutes, e.g. ``12 days 21 h 30 min``."""
    minutes = int(abs(span).total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} day" if days == 1 else f"{days} days")
    if hours:
        parts.append(f"{hours} h")
    if minutes or not parts:
        parts.append(f"{minutes} min")
    return " ".join(parts)


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    """``1 disagreement``, ``2 disagreements``."""
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


#: Rows of a record's table printed in the PDF; longer tables are cut there (with a note), never in the JSON.
MAX_TABLE_ROWS = 60


def _numeric_columns(table: Table) -> list[bool]:
    """For each column of ``table``, whether it holds numbers only (and at least one)."""
    columns = list(zip(*table.rows, strict=True)) if table.rows else [()] * len(table.columns)
    return [
        any(cell is not None for cell in column)
        and all(cell is None or isinstance(cell, int | float) for cell in column)
        for column in columns
    ]


#: A data table's width in characters of its 7-point cells (170 mm of text), the room each cell's
#: right padding takes, and the most room a column asks for (see :func:`_column_widths`).
_TABLE_CHARS, _CELL_PADDING_CHARS, _COLUMN_MAX_CHARS = 100, 1.5, 32
#: What a column needs at least for its name's longest part and for its text, in characters.
_HEADER_NEED_CHARS, _TEXT_NEED_CHARS = 9, 10


def _column_widths(table: Table) -> list[float]:
    """Each column's share of a data table's width, in percent, from what its printed cells hold.

    The tables are laid out at fixed widths (quick to lay out, and the same on every page they run
    over). A column needs room for its widest number (numbers never wrap), for the longest part of
    its name up to 9 characters (names wrap after underscores) and for up to 10 characters of its
    text; it asks for room for its widest printed cell (of the rows shown), up to 32 characters.
    Every column gets what it needs (all of them shrunk alike when that is more than the page
    holds); what is left goes to the columns that ask for more, in proportion. Text wraps anywhere
    rather than overflow its column.
    """
    needs, asks = [], []
    for index, name in enumerate(table.columns):
        # A name breaks after its underscores: its longest part, with the underscore, in bold.
        need = min(max((len(part) + 1 for part in name.split("_")), default=1), _HEADER_NEED_CHARS)
        ask = need
        for row in table.rows[:MAX_TABLE_ROWS]:
            cell = row[index]
            if isinstance(cell, str):
                widest = max((len(line) for line in cell.splitlines()), default=0)
                need = max(need, min(widest, _TEXT_NEED_CHARS))
                ask = max(ask, min(widest, _COLUMN_MAX_CHARS))
            else:
                need = max(need, len(_format_number(cell)))
        needs.append(need + _CELL_PADDING_CHARS)
        asks.append(max(ask, need) + _CELL_PADDING_CHARS)
    if not needs:
        return []
    spare = _TABLE_CHARS - sum(needs)
    extra = [a - n for a, n in zip(asks, needs, strict=True)]
    widths = needs
    if spare > 0 and any(extra):
        share = min(1.0, spare / sum(extra))
        widths = [n + e * share for n, e in zip(needs, extra, strict=True)]
    total = sum(widths)
    return [round(100 * w / total, 2) for w in widths]


def _breakable(name: str) -> Any:
    """``name`` HTML-escaped, with a line-break opportunity after each underscore (long column names)."""
    import markupsafe

    return markupsafe.Markup("_<wbr>").join(markupsafe.escape(part) for part in name.split("_"))


@functools.cache
def _drawable() -> frozenset[int]:
    """Every code point some shipped font has a glyph for."""
    from fontTools.ttLib import TTFont

    from evidence.resources import shipped_fonts

    points: set[int] = set()
    for path in sorted(shipped_fonts().glob("*.ttf")):
        with TTFont(path, lazy=True) as font:
            points.update(font.getBestCmap() or {})
    return frozenset(points)


def _model_text(text: str) -> Any:
    r"""A model's own words, as printed: characters no shipped font can draw become ``\u{XXXX}`` escapes.

    The dossier keeps the exact text; only the document shows the escape, so that whatever a model
    says (an emoji, a rare script) never keeps its dossier from rendering.
    """
    import markupsafe

    drawable = _drawable()
    parts = []
    for ch in text:
        if ord(ch) in drawable or ch in " \n":
            parts.append(markupsafe.escape(ch))
        else:
            parts.append(markupsafe.Markup(f'<span class="escaped">\\u{{{ord(ch):x}}}</span>'))
    return markupsafe.Markup("").join(parts)


def _examples(dossier: Dossier) -> list[tuple[int, EvidenceRecord, list[dict[str, Any]]]]:
    """(record number, record, rows as dicts) of every record with an example-outputs table."""
    out = []
    for index, record in enumerate(dossier.records, start=1):
        for table in record.tables:
            if table.name == EXAMPLES_TABLE:
                out.append((index, record, [dict(zip(table.columns, row, strict=True)) for row in table.rows]))
    return out


_FILTERS: dict[str, Callable[..., Any]] = {
    "model_text": _model_text,
    "breakable": _breakable,
    "num": _format_number,
    "interval": _format_interval,
    "json": _format_json,
    "short_hash": _format_short_hash,
    "utc": _format_utc,
    "percent": _format_percent,
    "grouped": _format_grouped,
    "size": _format_bytes,
    "span": _format_span,
}


# -- HTML ---------------------------------------------------------------------------------


def _templates() -> Traversable:
    from evidence.resources import resource_dir

    try:
        return resource_dir("templates")
    except EvidenceError as exc:
        raise RenderError(f"cannot find the PDF templates: {exc}", hint=exc.hint) from exc


def _read_template(name: str) -> str:
    path = _templates() / name
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RenderError(
            f"cannot read the PDF template {name!r} from {_templates()}", hint=_REINSTALL_HINT
        ) from exc


def _jinja2() -> Any:
    try:
        import jinja2
    except ImportError as exc:
        raise missing_extra("render", exc) from None
    return jinja2


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates' environment, made once per process.

    Each template is compiled once, and again only when its text changes (Jinja checks that
    each time the template is used).
    """
    j2 = _jinja2()

    def load(name: str) -> tuple[str, None, Callable[[], bool]] | None:
        try:
            source = _read_template(name)
        except RenderError:
            return None  # Jinja turns this into TemplateNotFound

        def uptodate() -> bool:
            try:
                return _read_template(name) == source
            except RenderError:
                return False

        return source, None, uptodate

    env: jinja2.Environment = j2.Environment(
        loader=j2.FunctionLoader(load),
        autoescape=True,
        undefined=j2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(_FILTERS)
    env.globals["numeric_columns"] = _numeric_columns
    env.globals["column_widths"] = _column_widths
    env.globals["max_table_rows"] = MAX_TABLE_ROWS
    return env


def _sections(dossier: Dossier) -> list[tuple[str, str]]:
    """The chapters after the cover, in order, as (anchor, title); optional ones only when they apply."""
    sections = [("summary", "Executive summary")]
    if dossier.predecessor is not None:
        sections.append(("changelog", "Changes since the previous dossier"))
    sections.append(("records", "Evidence records"))
    if dossier.policy is not None:
        sections.append(("policy", "Policy"))
    if dossier.verdicts:
        sections.append(("verdicts", "Verdicts"))
    sections.append(("validation", "Validation of the instruments"))
    sections += [
        ("crossref", "Cross-reference with external evaluations"),
        ("clauses", "Clause index"),
    ]
    if _examples(dossier):
        sections.append(("examples", "Example outputs"))
    sections += [
        ("provenance", "Provenance"),
        ("verify", "How to verify"),
    ]
    return sections


def _clause_groups(entries: Sequence[ClauseIndexEntry]) -> list[tuple[str, list[ClauseIndexEntry]]]:
    """Consecutive clause-index entries that refer to the same text, in catalog order."""
    groups: list[tuple[str, list[ClauseIndexEntry]]] = []
    for entry in entries:
        if groups and groups[-1][0] == entry.text_version:
            groups[-1][1].append(entry)
        else:
            groups.append((entry.text_version, [entry]))
    return groups


def _changes_by_area(changelog: Sequence[ChangeEntry]) -> list[tuple[str, list[ChangeEntry]]]:
    """The changelog grouped by area, areas in a fixed order, empty areas left out."""
    return [
        (area, entries)
        for area in _CHANGE_AREAS
        if (entries := [c for c in changelog if c.area == area])
    ]


def _finding_label(cross_ref: CrossReference) -> str:
    """What a cross-referenced metric is, in words, without the numbers the row shows anyway."""
    if cross_ref.metric is not None and cross_ref.interpretability_value is not None:
        # A compared finding reads "<what the metric is>: <value and interval>".
        return cross_ref.finding.rsplit(": ", 1)[0]
    return cross_ref.finding


def _first_anchors(ids: Sequence[str], prefix: str) -> dict[str, str]:
    """Map each id to the element id ``prefix-N`` of its first occurrence (N counts from 1)."""
    anchors: dict[str, str] = {}
    for index, item in enumerate(ids, start=1):
        anchors.setdefault(item, f"{prefix}-{index}")
    return anchors


def _what_it_measures(dossier: Dossier) -> dict[str, str]:
    """The summary paragraph of each recorded measurement's method page, by id (none without a page)."""
    from evidence.errors import ConfigError
    from evidence.methods_docs import find_doc_page

    summaries: dict[str, str] = {}
    for measurement_id in sorted({r.measurement.id for r in dossier.records}):
        try:
            page = find_doc_page(measurement_id)
        except ConfigError as exc:
            raise RenderError(f"the method page of {measurement_id!r} is malformed: {exc}", hint=exc.hint) from exc
        if page is not None:
            summaries[measurement_id] = page.summary
    return summaries


#: The method page's section a record's chapter shows as its limitations.
LIMITATIONS_SECTION = "What it can and cannot show"


def _limitations(dossier: Dossier) -> dict[str, Any]:
    """The "What it can and cannot show" section of each recorded measurement's method page, as HTML, by id.

    The section's Markdown (paragraphs, lists, emphasis, code) is rendered by markdown-it in its
    CommonMark mode with raw HTML off, so the page's text can only be shown, never inject markup.
    """
    import markupsafe

    try:
        from markdown_it import MarkdownIt
    except ImportError as exc:
        raise missing_extra("render", exc) from None
    markdown = MarkdownIt("commonmark", {"html": False})
    return {
        measurement_id: markupsafe.Markup(markdown.render(text))  # raw HTML escaped
        for measurement_id, text in _method_sections(dossier, LIMITATIONS_SECTION).items()
        if text.strip()
    }


def _method_sections(dossier: Dossier, name: str) -> dict[str, str]:
    """Section ``name`` of each recorded measurement's method page, by id.

    None for a measurement without a page or that section; a malformed page is reported by
    :func:`_what_it_measures`, which reads every page first.
    """
    from evidence.methods_docs import find_doc_page

    sections: dict[str, str] = {}
    for measurement_id in sorted({r.measurement.id for r in dossier.records}):
        try:
            page = find_doc_page(measurement_id)
            if page is not None:
                sections[measurement_id] = page.section(name)
        except (ConfigError, KeyError):
            continue
    return sections


def _constructs(dossier: Dossier) -> dict[str, str]:
    """What each recorded measurement measures, in a few words, by id.

    The opening clause of the method page's "Construct" section (up to its first colon or full
    stop), Markdown emphasis removed; none for a measurement without a page or that section.
    """
    constructs: dict[str, str] = {}
    for measurement_id, text in _method_sections(dossier, "Construct").items():
        words = " ".join(text.replace("*", "").replace("`", "").split())
        cut = min((i for i in (words.find(": "), words.find(". ")) if i > 0), default=len(words))
        if words:
            constructs[measurement_id] = words[:cut].rstrip(".:")
    return constructs


# -- the executive summary ------------------------------------------------------------------

_COMPARATOR_SIGNS = {">=": "\u2265", ">": ">", "<=": "\u2264", "<": "<"}


def _criterion_cells(criterion: Criterion) -> tuple[str, str]:
    """A calibration criterion as (what is compared, with what): ``("CI lower bound \u2265", "0.5")``."""
    sign = _COMPARATOR_SIGNS[criterion.comparator]
    if criterion.rule == "ci-bound":
        side = "lower" if criterion.comparator in (">=", ">") else "upper"
        compared = f"CI {side} bound {sign}"
    elif criterion.rule == "ci-lower":
        compared = f"CI lower bound {sign}"
    elif criterion.rule == "ci-upper":
        compared = f"CI upper bound {sign}"
    else:
        compared = f"value {sign}"
    threshold = _format_number(criterion.threshold)
    if criterion.above_baseline:
        if criterion.threshold == 0:
            threshold = "baseline"
        else:
            sign_word = "+" if criterion.threshold > 0 else "\u2212"
            threshold = f"baseline {sign_word} {_format_number(abs(criterion.threshold))}"
    if criterion.margin:
        threshold += f", margin {_format_number(criterion.margin)}"
    return compared, threshold


def _check_rows(record: EvidenceRecord) -> list[dict[str, Any]]:
    """A record's calibration checks for a table: each criterion split into comparison and threshold."""
    rows = []
    for check in record.checks:
        rows.append(
            {
                "check": check,
                "role": "planted" if check.planted else "control",
                "criteria": [_criterion_cells(c) for c in check.criteria],
                "joiner": "and" if check.combine == "all" else "or",
                # A check that could not be evaluated says why in its criterion text.
                "why_not": check.criterion if check.value is None else None,
            }
        )
    return rows


def _verdict_words(verdict: Verdict) -> str:
    """``deception.probe on defection_state_evidence (observed 1, required \u2264 0)``."""
    observed = "not measured" if verdict.observed is None else f"observed {_format_number(verdict.observed)}"
    required = f"{_COMPARATOR_SIGNS[verdict.comparator]} {_format_number(verdict.threshold)}"
    if verdict.margin:
        required += f" with margin {_format_number(verdict.margin)}"
    return f"{verdict.measurement} on {verdict.metric} ({observed}, required {required})"


def _summary_sentences(dossier: Dossier, rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A few sentences that count what the records and verdicts say; every number comes from the dossier."""
    records = dossier.records
    if not records:
        return []
    failed = [r for r in records if r.status == "error"]
    sentences = [
        f"{_plural(len(records), 'measurement record')}: "
        + (
            f"{len(records) - len(failed)} ran to completion, {len(failed)} failed "
            f"({', '.join(r.measurement.id for r in failed)})."
            if failed
            else "every measurement ran to completion."
        )
    ]
    with_checks = [r for r in records if r.checks]
    if with_checks:
        total = sum(len(r.checks) for r in with_checks)
        missed = sum(_failed_checks(r) for r in with_checks)
        sentences.append(
            f"Calibration on planted ground truth: {total - missed} of {_plural(total, 'check')} held"
            + (f", {missed} did not." if missed else ".")
        )
    verdicts = dossier.verdicts
    if verdicts:
        counts = {v: sum(x.verdict == v for x in verdicts) for v in _VERDICT_ORDER}
        told = ", ".join(f"{counts[v]} {v}" for v in _VERDICT_ORDER if counts[v])
        decision = f"; the gate decision is {dossier.gate.decision.upper()}" if dossier.gate is not None else ""
        sentences.append(f"The policy set {_plural(len(verdicts), 'threshold')}: {told}{decision}.")
        for kind in ("fail", "inconclusive"):
            named = [_verdict_words(v) for v in verdicts if v.verdict == kind]
            if named:
                label = "Failed" if kind == "fail" else "Inconclusive"
                sentences.append(f"{label}: {'; '.join(named)}.")
    else:
        sentences.append("No policy was applied: no metric was judged against a threshold.")
    if dossier.validation is None:
        sentences.append("The dossier cites no validation report: no instrument's detection rate is on record.")
    else:
        headlines = [row for row in rows if row["record"].headline is not None]
        validated = [row for row in headlines if row["validated"]]
        meeting = [row for row in validated if row["meets_targets"]]
        sentences.append(
            f"{len(validated)} of {_plural(len(headlines), 'headline metric')} rest on an instrument the cited "
            f"validation report covers in this version and with these parameters; {len(meeting)} of them meet "
            "the detection and false-alarm targets."
        )
    return sentences



#: What the PDF says of a failure that is not one of the program's own, reader-facing errors: the
#: exception's text (kept verbatim in dossier.json) speaks of the program's internals, not of the model.
INTERNAL_ERROR_TEXT = (
    "The measurement stopped on an internal error before it produced a result. This is a fault of the "
    "measuring program or its environment, not a finding about the model; the technical error text is kept "
    "in the embedded dossier.json for the maintainers."
)
INTERNAL_ERROR_REMEDY = (
    "Run the measurement again with the parameters shown (interp-dossier reproduce re-runs it as recorded); "
    "if it fails again, report the fault with this dossier."
)


def _reader_facing_error_types() -> frozenset[str]:
    """The names of the program's own errors, whose messages are written for a reader."""
    from evidence.errors import UserFacingError

    names: set[str] = set()
    pending: list[type] = [UserFacingError]
    while pending:
        cls = pending.pop()
        names.add(cls.__name__)
        pending.extend(cls.__subclasses__())
    return frozenset(names)


def _error_text(error: ErrorInfo) -> dict[str, str | None]:
    """What went wrong and the remedy, in words for a reader; never an internal exception text."""
    if error.type not in _reader_facing_error_types():
        return {"what": INTERNAL_ERROR_TEXT, "remedy": INTERNAL_ERROR_REMEDY, "internal": "yes"}
    message, hint = error.message, error.hint
    if hint and message.endswith(f" ({hint})"):
        message = message[: -len(hint) - 3]
    return {"what": message, "remedy": hint, "internal": None}


def _failed_checks(record: EvidenceRecord) -> int:
    """How many of the record's calibration checks failed."""
    return sum(not check.passed for check in record.checks)


def _headline(record: EvidenceRecord) -> Metric | None:
    """The metric the record's measurement declared as its headline, when the record carries it."""
    if record.headline is None or record.status != "ok":
        return None
    return record.metric(record.headline)


def _validation_status(dossier: Dossier, measurement: str, metric: str | None) -> str:
    """How the instrument behind ``metric`` was validated, in a few words."""
    if metric is None:
        return "\u2014"
    if dossier.validation is None:
        return "no validation report cited"
    for detector in dossier.validation.detectors:
        if (detector.measurement, detector.metric) == (measurement, metric):
            words = (
                f"detection {detector.detection.k}/{detector.detection.n}, "
                f"false alarms {detector.false_alarms.k}/{detector.false_alarms.n}"
            )
            if detector.run != "same":
                words += f" (validated: {detector.run.replace('-', ' ')})"
            elif detector.target_shortfalls:
                words += " (misses its targets)"
            return words
    return "not validated"


def _summary_rows(dossier: Dossier) -> list[dict[str, Any]]:
    """One row per record: its headline metric, the verdicts on it and its instrument's validation."""
    rows = []
    for record in dossier.records:
        verdicts: list[Verdict] = [v for v in dossier.verdicts if v.record_id == record.record_id]
        # The verdict on the headline first, then the others in policy order.
        verdicts.sort(key=lambda v: v.metric != record.headline)
        detector = _detector(dossier, record.measurement.id, record.headline)
        rows.append(
            {
                "record": record,
                "headline": _headline(record),
                "verdicts": verdicts,
                "validation": _validation_status(dossier, record.measurement.id, record.headline),
                "validated": detector is not None and detector.run == "same",
                "meets_targets": detector is not None and detector.run == "same" and not detector.target_shortfalls,
                "failed_checks": _failed_checks(record),
                "error": _error_text(record.error) if record.error is not None else None,
            }
        )
    return rows


def _detector(dossier: Dossier, measurement: str, metric: str | None) -> ValidatedDetector | None:
    """The cited validation report's detector of ``metric``, if it has one."""
    if dossier.validation is None or metric is None:
        return None
    for detector in dossier.validation.detectors:
        if (detector.measurement, detector.metric) == (measurement, metric):
            return detector
    return None


_SVG_ID = re.compile(r'(\sid="|href="#|url\(#)([^")]+)')


def _scoped_svg(svg: str, prefix: str) -> str:
    """``svg`` with every element id, and every reference to one, prefixed.

    Inlined side by side in one document, figures must not share ids (matplotlib numbers its
    elements the same way in every figure).
    """
    return _SVG_ID.sub(lambda m: f"{m.group(1)}{prefix}-{m.group(2)}", svg)


def _figure_markup(name: str, svg: str, prefix: str, inline: bool) -> Any:
    """The figure's SVG to place in the page: inline (ids prefixed), or as an image of the same SVG.

    The PDF takes the image: WeasyPrint then draws the same SVG without matching the document's
    style sheet against each of its thousands of elements (each glyph of each label is one).
    """
    import markupsafe

    if inline:
        return markupsafe.Markup(_scoped_svg(svg, prefix))
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return markupsafe.Markup('<img class="figure-svg" alt="{}" src="data:image/svg+xml;base64,{}">').format(
        name, markupsafe.Markup(data)
    )


def _figures(dossier: Dossier, inline: bool = True) -> list[list[dict[str, Any]]]:
    """Each record's figures as ``{"name", "caption", "svg"}``, the SVG as markup to place in the page."""
    from evidence.figures import figures_for

    return [
        [
            {"name": f.name, "caption": f.caption, "svg": _figure_markup(f.name, f.svg, f"fig{i}-{j}", inline)}
            for j, f in enumerate(figures_for(record), start=1)
        ]
        for i, record in enumerate(dossier.records, start=1)
    ]


def _model_summary(dossier: Dossier) -> str:
    """The model in a few words for the cover: size, depth, and the dtype and device it was measured in."""
    model = dossier.model
    words = [f"{_format_grouped(model.n_parameters)} parameters"]
    layers = model.architecture.get("n_layers")
    if isinstance(layers, int) and not isinstance(layers, bool):
        words.append(_plural(layers, "layer"))
    dtype, device = model.processing.get("dtype"), model.processing.get("device")
    if isinstance(dtype, str):
        words.append(f"measured in {dtype}" + (f" on {device}" if isinstance(device, str) else ""))
    return ", ".join(words)


def _validation_figure(dossier: Dossier, inline: bool = True) -> dict[str, Any] | None:
    """The validation report's rates as a figure ``{"name", "caption", "svg"}``, when the dossier cites one."""
    from evidence.figures import validation_figure

    figure = validation_figure(dossier.validation) if dossier.validation is not None else None
    if figure is None:
        return None
    return {"name": figure.name, "caption": figure.caption,
            "svg": _figure_markup(figure.name, figure.svg, "figv", inline)}  # fmt: skip


def _context(
    dossier: Dossier, digest: str, report: ValidationReport | None = None, *, inline_figures: bool = True
) -> dict[str, Any]:
    from evidence.validation_report import TARGET_DETECTION, TARGET_FALSE_ALARMS

    counts = {v: 0 for v in _VERDICT_ORDER}
    for verdict in dossier.verdicts:
        counts[verdict.verdict] += 1
    # Verdicts point at records by digest; show which record that is.
    from evidence.dossier import record_digest

    by_digest = {record_digest(r): r.record_id for r in dossier.records}
    sections = _sections(dossier)
    policy = dossier.policy
    rows = _summary_rows(dossier)
    return {
        "dossier": dossier,
        "validation_report": report,
        "targets": {"detection": TARGET_DETECTION, "false_alarms": TARGET_FALSE_ALARMS},
        # Gated metrics the cited validation report does not cover: their verdicts rest on no validation.
        "unvalidated": _unvalidated(dossier),
        "title": f"Interpretability evidence dossier \u2014 {dossier.model.name}",
        "producer": f"{dossier.producer.name} {dossier.producer.version}",
        "model_summary": _model_summary(dossier),
        "created_w3c": dossier.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "json_sha256": digest,
        "json_name": DOSSIER_JSON,
        "verdict_counts": counts,
        "record_for_digest": by_digest,
        # Chapter numbers, and the anchors that links (and their page numbers) point at.
        "contents": [(anchor, i, title) for i, (anchor, title) in enumerate(sections, start=1)],
        "num": {anchor: i for i, (anchor, _) in enumerate(sections, start=1)},
        # "What this measures": from the method page of the record's measurement (docs/methods/<id>.md).
        "what_it_measures": _what_it_measures(dossier),
        # Its limitations: the method page's "What it can and cannot show", after the results.
        "limitations": _limitations(dossier),
        "summary_rows": rows,
        "summary_sentences": _summary_sentences(dossier, rows),
        "constructs": _constructs(dossier),
        "check_rows": _check_rows,
        # Figures drawn from each record (SVG, inlined), in the order of the records.
        "figures": _figures(dossier, inline_figures),
        # Example outputs of behaviour-based records, gathered in their own chapter.
        "examples": _examples(dossier),
        "validation_figure": _validation_figure(dossier, inline_figures),
        "error_text": _error_text,
        "failed_checks": _failed_checks,
        "record_anchor": _first_anchors([r.record_id for r in dossier.records], "record"),
        "verdict_anchor": _first_anchors([v.verdict_id for v in dossier.verdicts], "verdict"),
        "eval_label": {ev.eval_id: f"E{i}" for i, ev in enumerate(dossier.external_evals, start=1)},
        "flagged": [
            (i, x) for i, x in enumerate(dossier.cross_references, start=1) if x.flagged and not x.other_model
        ],
        "other_models": [(i, x) for i, x in enumerate(dossier.cross_references, start=1) if x.other_model],
        "finding_label": _finding_label,
        "plural": _plural,
        "clause_groups": _clause_groups(dossier.clause_index),
        "clauses_evidenced": sum(e.status == "evidenced" for e in dossier.clause_index),
        "changes_by_area": _changes_by_area(dossier.changelog),
        # Positive when the policy was set before the dossier was created, as it should be.
        "policy_lead": None if policy is None else dossier.created_at - policy.set_at,
        # The auditor's procedure, from its one definition (the README and `verify` use the same).
        "verification_steps": STEPS,
    }


def _unvalidated(dossier: Dossier) -> list[Threshold]:
    """The policy's thresholds whose metric the cited validation report does not cover."""
    if dossier.policy is None or dossier.validation is None:
        return []
    covered = {(v.measurement, v.metric) for v in dossier.validation.detectors}
    return [t for t in dossier.policy.thresholds if (t.measurement, t.metric) not in covered]


def _render_html(
    dossier: Dossier, digest: str, report: ValidationReport | None = None, *, inline_figures: bool = True
) -> str:
    return _render_template(TEMPLATE, lambda: _context(dossier, digest, report, inline_figures=inline_figures))


def _render_template(name: str, context: Callable[[], dict[str, Any]]) -> str:
    """The page template ``name`` rendered with ``context()``; one RenderError for whatever goes wrong."""
    j2 = _jinja2()
    env = _environment()
    try:
        html: str = env.get_template(name).render(context())
    except j2.TemplateNotFound as exc:
        raise RenderError(
            f"the PDF template {exc.name!r} is missing from {_templates()}", hint=_REINSTALL_HINT
        ) from exc
    except RenderError:
        raise
    except Exception as exc:  # a broken template: syntax, undefined names, bad filter input
        raise RenderError(
            f"the PDF template cannot be rendered: {type(exc).__name__}: {exc}",
            hint=_REINSTALL_HINT,
        ) from exc
    return html


# -- the trend dossier of a sweep ---------------------------------------------------------

#: How an auditor verifies a sweep, in the order ``interp-dossier verify`` runs it on a sweep directory.
TREND_VERIFICATION_STEPS = (
    "Run interp-dossier verify SWEEP_DIR --trust CERT.pem on the sweep directory, with the certificate of "
    "the issuer you trust.",
    "It verifies every checkpoint's bundle with the dossier procedure: signature, timestamp, the embedded "
    "dossier.json against the bundle's, and every record.",
    "It then verifies this trend bundle the same way: its signature, and the dossier.json embedded in this "
    "PDF against the bundle's (the digest on page 1).",
    "Its last step re-reads every checkpoint's dossier.json by its SHA-256 (the table of checkpoints) and "
    "recomputes every metric series, every verdict change and the gate series from them; the sweep verifies "
    "only if the trend is exactly what they yield.",
)

#: What a metric point's status means, in words.
_POINT_STATUS = {"ok": "ok", "error": "error: the measurement failed", "absent": "absent: no record carries it"}


def _decision_runs(labels: Sequence[str], decisions: Sequence[str | None]) -> list[dict[str, Any]]:
    """Consecutive checkpoints with the same decision, as ``{"decision", "where"}``: "on a, b", "from c"."""
    runs: list[tuple[str | None, list[str]]] = []
    for label, decision in zip(labels, decisions, strict=True):
        if runs and runs[-1][0] == decision:
            runs[-1][1].append(label)
        else:
            runs.append((decision, [label]))
    out = []
    for i, (decision, members) in enumerate(runs):
        if len(runs) == 1:
            where = "on every checkpoint" if len(members) > 1 else f"on {members[0]}"
        elif i == len(runs) - 1 and len(members) > 1:
            where = f"from {members[0]} on"
        elif i == len(runs) - 1:
            where = f"from {members[0]}"
        elif len(members) > 4:
            where = f"on {members[0]} to {members[-1]} ({len(members)} checkpoints)"
        else:
            where = "on " + ", ".join(members)
        out.append({"decision": decision, "where": where})
    return out


def _threshold_words(series: VerdictSeries) -> str:
    """``≥ 0.5`` (with its margin, if any)."""
    words = f"{_COMPARATOR_SIGNS[series.comparator]} {_format_number(series.threshold)}"
    return words + (f" (margin {_format_number(series.margin)})" if series.margin else "")


def _ci_heading(series: MetricSeries) -> str:
    """The interval column's heading: ``95% CI`` when every interval has that level."""
    levels = {p.ci.level for p in series.points if p.ci is not None}
    return f"{_format_percent(levels.pop())} CI" if len(levels) == 1 else "CI (level)"


def _ci_description(ci: ConfidenceInterval) -> str:
    """How an interval was obtained, as the dossier's tables say it: ``95% percentile bootstrap, n=8``."""
    words = f"{_format_percent(ci.level)} {ci.method}, n={ci.n}"
    return words + (f", {ci.resamples} resamples" if ci.resamples else "")


def _ci_shared(series: MetricSeries) -> str | None:
    """How every interval of the series was obtained, when that is the same for all of them (and there are some)."""
    described = {_ci_description(p.ci) for p in series.points if p.ci is not None}
    return described.pop() if len(described) == 1 else None


def _trend_figures(trend: TrendDossier, inline: bool) -> list[dict[str, Any] | None]:
    """Each metric series' figure as ``{"name", "caption", "svg"}`` (None where no checkpoint has a value)."""
    from evidence.figures import trend_figure

    out: list[dict[str, Any] | None] = []
    for i, series in enumerate(trend.metrics, start=1):
        figure = trend_figure(series, trend.verdicts)
        out.append(
            None
            if figure is None
            else {
                "name": figure.name,
                "caption": figure.caption,
                "svg": _figure_markup(figure.name, figure.svg, f"trend{i}", inline),
            }
        )
    return out


def _trend_context(trend: TrendDossier, digest: str, *, inline_figures: bool = True) -> dict[str, Any]:
    labels = [c.label for c in trend.checkpoints]
    gate = trend.gate
    return {
        "trend": trend,
        "title": f"Trend dossier — {trend.title}",
        "producer": f"{trend.producer.name} {trend.producer.version}",
        "created_w3c": trend.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "json_sha256": digest,
        "json_name": DOSSIER_JSON,
        "gate_runs": _decision_runs(labels, [p.decision for p in gate.points]) if gate is not None else [],
        "threshold_words": _threshold_words,
        "ci_heading": _ci_heading,
        "ci_shared": _ci_shared,
        "ci_description": _ci_description,
        "point_status": _POINT_STATUS,
        "figures": _trend_figures(trend, inline_figures),
        "changed": [v for v in trend.verdicts if v.first_change is not None],
        "verification_steps": TREND_VERIFICATION_STEPS,
        "plural": _plural,
    }


# -- PDF ----------------------------------------------------------------------------------


class _MissingGlyphsError(Exception):
    def __init__(self, codepoints: list[int]) -> None:
        super().__init__(codepoints)
        self.codepoints = codepoints


# WeasyPrint announces its steps on this logger (INFO), with these messages (checked by a test).
_PROGRESS_LOGGER = "weasyprint.progress"
_PAGE_STEP = "Step 5 - Creating layout - Page %d"
_PAGE_KEPT_STEP = "Step 5 - Creating layout - Page %d (up-to-date)"
_PASS_STEP = "Step 5 - Creating layout - Repagination #%d"
_WRITE_STEP = "Step 6 - Creating PDF"


class _ProgressRelay(logging.Handler):
    """Turns WeasyPrint's step announcements into a few lines for ``progress``.

    The first page of the layout, each further layout pass (links that print a later page's number
    send the pages that show them through layout again) and the writing are always told; the pages
    in between at most every :data:`PROGRESS_INTERVAL_S` seconds. A ``progress`` that raises is not
    called again: the render goes on without it.
    """

    def __init__(self, progress: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self._progress: Callable[[str], None] | None = progress
        self._thread = threading.get_ident()  # WeasyPrint lays out in the caller's thread
        self._told_at = -math.inf
        self._passes = 1
        self._pages = 0  # the last page number of the latest pass: the document's length

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread:  # another thread's render
            return
        if record.msg in (_PAGE_STEP, _PAGE_KEPT_STEP):
            args = record.args if isinstance(record.args, tuple) else ()
            page = args[0] if args and isinstance(args[0], int) else 0
            self._pages = page
            if record.msg == _PAGE_STEP and self._passes == 1:
                self._tell(f"PDF: laying out page {page}", always=page == 1)
        elif record.msg == _PASS_STEP:
            self._passes += 1
            self._tell(
                f"PDF: layout pass {self._passes}, for the pages whose links print a later page's number",
                always=True,
            )
        elif record.msg == _WRITE_STEP:
            self._tell(f"PDF: writing {self._pages} page{'' if self._pages == 1 else 's'}", always=True)

    def _tell(self, message: str, *, always: bool) -> None:
        now = time.monotonic()
        if self._progress is None or (not always and now - self._told_at < PROGRESS_INTERVAL_S):
            return
        self._told_at = now
        try:
            self._progress(message)
        except Exception:  # progress is a courtesy; a failing one (a closed terminal) must not fail the render
            self._progress = None


_RELAYS_LOCK = threading.Lock()
_relays_open = 0
_progress_logger_found: tuple[int, bool] = (logging.NOTSET, True)


@contextlib.contextmanager
def _layout_progress(progress: Callable[[str], None] | None) -> Iterator[None]:
    """Relay WeasyPrint's progress to ``progress`` while the block runs; its logger is left as found.

    Its announcements are INFO records, which the logging defaults drop: the logger is opened to INFO
    and kept from passing them on to the application's handlers while any render relays it (renders
    in several threads each hear their own), and set back as found after the last.
    """
    global _progress_logger_found, _relays_open
    if progress is None:
        yield
        return
    logger = logging.getLogger(_PROGRESS_LOGGER)
    relay = _ProgressRelay(progress)
    with _RELAYS_LOCK:
        if not _relays_open:
            _progress_logger_found = (logger.level, logger.propagate)
            logger.setLevel(logging.INFO)
            logger.propagate = False
        _relays_open += 1
        logger.addHandler(relay)
    try:
        yield
    finally:
        with _RELAYS_LOCK:
            logger.removeHandler(relay)
            _relays_open -= 1
            if not _relays_open:
                logger.setLevel(_progress_logger_found[0])
                logger.propagate = _progress_logger_found[1]


class _LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _finish(document: Any, pdf: Any) -> None:
    """WeasyPrint finisher: refuse .notdef glyphs, list each associated file once, open on the outline."""
    # PDF/A forbids .notdef; WeasyPrint draws it (and records the code point)
    # for characters that no installed font covers.
    missing = sorted({cp for font in document.fonts.values() for cp in font.missing})
    if missing:
        raise _MissingGlyphsError(missing)
    # WeasyPrint lists every file spec twice in the catalog's /AF.
    af = pdf.catalog.get("AF")
    if af is not None:
        af[:] = list(dict.fromkeys(af))
    # A viewer opens the document with its outline (the chapters and records) shown, and names the
    # window after the document's title rather than its file name.
    import pydyf

    pdf.catalog["PageMode"] = "/UseOutlines"
    viewer = pdf.catalog.get("ViewerPreferences")
    if viewer is None:
        pdf.catalog["ViewerPreferences"] = pydyf.Dictionary({"DisplayDocTitle": "true"})
    else:
        viewer["DisplayDocTitle"] = "true"
    _describe_links(document)
    _declare_pdf_ua(pdf)


def _describe_links(document: Any) -> None:
    """Give each link annotation the description PDF/UA-1 asks for: its text and the page it leads to.

    WeasyPrint describes a link by its target's anchor name (``record-3``); a reader of the tagged
    PDF hears the link's own words instead, and where it goes.
    """
    import pydyf

    first_page: dict[str, int] = {}
    for number, page in enumerate(document.pages, start=1):
        for name in page.anchors:
            first_page.setdefault(name, number)
    for page in document.pages:
        for kind, target, _, box in page.links:
            annotation = getattr(box, "link_annotation", None)
            if annotation is None:
                continue
            element = getattr(box, "element", None)
            text = " ".join("".join(element.itertext()).split()) if element is not None else ""
            where = f"page {first_page[target]}" if kind == "internal" and target in first_page else str(target)
            annotation["Contents"] = pydyf.String(f"{text} ({where})" if text else where)


#: The XMP that identifies the file as PDF/UA-1, with the PDF/A extension schema that declares
#: the ``pdfuaid`` namespace (PDF/A-3 admits no undeclared XMP property).
_PDF_UA_XMP = (
    b'<rdf:Description xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" rdf:about="" '
    b'xmlns:pdfaExtension="http://www.aiim.org/pdfa/ns/extension/" '
    b'xmlns:pdfaSchema="http://www.aiim.org/pdfa/ns/schema#" '
    b'xmlns:pdfaProperty="http://www.aiim.org/pdfa/ns/property#">'
    b"<pdfaExtension:schemas><rdf:Bag><rdf:li rdf:parseType=\"Resource\">"
    b"<pdfaSchema:schema>PDF/UA identification schema</pdfaSchema:schema>"
    b"<pdfaSchema:namespaceURI>http://www.aiim.org/pdfua/ns/id/</pdfaSchema:namespaceURI>"
    b"<pdfaSchema:prefix>pdfuaid</pdfaSchema:prefix>"
    b"<pdfaSchema:property><rdf:Seq><rdf:li rdf:parseType=\"Resource\">"
    b"<pdfaProperty:name>part</pdfaProperty:name>"
    b"<pdfaProperty:valueType>Integer</pdfaProperty:valueType>"
    b"<pdfaProperty:category>internal</pdfaProperty:category>"
    b"<pdfaProperty:description>The part of ISO 14289 the file conforms to</pdfaProperty:description>"
    b"</rdf:li></rdf:Seq></pdfaSchema:property>"
    b"</rdf:li></rdf:Bag></pdfaExtension:schemas></rdf:Description>"
    b'<rdf:Description xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" rdf:about="" '
    b'xmlns:pdfuaid="http://www.aiim.org/pdfua/ns/id/"><pdfuaid:part>1</pdfuaid:part></rdf:Description>'
)


def _declare_pdf_ua(pdf: Any) -> None:
    """Add the PDF/UA-1 identification to the XMP metadata WeasyPrint wrote (inside its one rdf:RDF)."""
    reference = pdf.catalog["Metadata"]
    number = int(reference.split()[0])
    stream = pdf.objects[number]
    content = b"".join(part if isinstance(part, bytes) else str(part).encode() for part in stream.stream)
    end = b"</rdf:RDF>"
    if content.count(end) != 1:
        raise RenderError("the PDF's XMP metadata is not one RDF document", hint=_REINSTALL_HINT)
    stream.stream = [content.replace(end, _PDF_UA_XMP + end)]


#: What an embedded file is, for a reader of the PDF's attachments.
_ATTACHMENT_DESCRIPTIONS = {
    DOSSIER_JSON: "The machine-readable dossier (canonical JSON) this document renders",
    "dossier.cdx.json": "The dossier exported as a CycloneDX ML-BOM (derived from dossier.json)",
    "model-index.yaml": "The dossier's metrics exported as a model-index (derived from dossier.json)",
}


def _relationship(name: str) -> str:
    """How an embedded file relates to the document (its ``/AFRelationship``, ISO 32000-2, 14.13).

    ``Data`` for what the pages are drawn from: dossier.json, and the validation report the
    calibration appendix shows. ``Supplement`` for the standard exports: the same dossier, written
    for other tools to read.
    """
    from evidence.export import CYCLONEDX_FILE, MODEL_INDEX_FILE

    return "Supplement" if name in (CYCLONEDX_FILE, MODEL_INDEX_FILE) else "Data"


def _mime_type(name: str) -> str:
    # Python's own table only, not the host's: the same name gives the same type everywhere.
    guessed = mimetypes.MimeTypes().guess_type(name, strict=False)[0]
    return guessed or "application/octet-stream"


# -- fonts --------------------------------------------------------------------------------
#
# The document must render the same on every machine, whatever fonts it has installed: WeasyPrint
# (through Pango and fontconfig) sees only the fonts shipped in evidence/fonts/. Fontconfig reads
# FONTCONFIG_FILE when WeasyPrint builds its font configuration, so the renderer points it, for
# that moment only, at a configuration that lists nothing but the shipped directory.

_FONTCONFIG_LOCK = threading.Lock()


def _fonts_conf(fonts: Path, cache: Path) -> str:
    """A fontconfig configuration that knows the shipped fonts only, generic families mapped to them."""

    def family(name: str) -> str:
        return f"<family>{xml_escape(name)}</family>"

    aliases = "".join(
        f'<alias binding="same">{family(generic)}<prefer>{family(name)}{family(FALLBACK_FONT_FAMILY)}</prefer></alias>'
        for generic, name in FONT_FAMILIES.items()
    )
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">\n<fontconfig>'
        f"<dir>{xml_escape(str(fonts))}</dir><cachedir>{xml_escape(str(cache))}</cachedir>"
        "<config><rescan><int>0</int></rescan></config>"
        f"{aliases}"
        # Any other family name (or none) ends in the sans-serif family, then the CJK fallback.
        '<match target="pattern"><edit name="family" mode="append_last">'
        f"<string>{xml_escape(FONT_FAMILIES['sans-serif'])}</string>"
        f"<string>{xml_escape(FALLBACK_FONT_FAMILY)}</string></edit></match>"
        "</fontconfig>\n"
    )


@contextlib.contextmanager
def _shipped_font_config() -> Iterator[Any]:
    """A WeasyPrint ``FontConfiguration`` that sees the shipped fonts and no others."""
    from weasyprint.text.fonts import FontConfiguration

    from evidence.resources import shipped_fonts

    try:
        fonts = shipped_fonts()
    except ConfigError as exc:
        raise RenderError(exc.message, hint=exc.hint) from None
    with tempfile.TemporaryDirectory(prefix="interp-dossier-fonts-") as tmp:
        conf = Path(tmp) / "fonts.conf"
        conf.write_text(_fonts_conf(fonts, Path(tmp) / "cache"), encoding="utf-8")
        names = ("FONTCONFIG_FILE", "FONTCONFIG_PATH", "FONTCONFIG_SYSROOT")
        with _FONTCONFIG_LOCK:
            saved = {name: os.environ.get(name) for name in names}
            try:
                for name in names:
                    os.environ.pop(name, None)
                os.environ["FONTCONFIG_FILE"] = str(conf)
                font_config = FontConfiguration()
            finally:
                for name, value in saved.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value
        yield font_config


def _write_pdf(
    html: str,
    css: str,
    files: Mapping[str, bytes],
    created: datetime,
    progress: Callable[[str], None] | None = None,
) -> bytes:
    try:
        import weasyprint
        from weasyprint.urls import URLFetcher
    except ImportError as exc:
        raise missing_extra("render", exc) from None
    except OSError as exc:  # its system libraries (Pango, HarfBuzz) are missing
        raise RenderError(
            f"WeasyPrint cannot load its system libraries: {exc}",
            hint="install Pango 1.44 or later and HarfBuzz (e.g. apt-get install libpango-1.0-0)",
        ) from exc

    # The document needs nothing from outside: refuse every fetch. The
    # attachments come in as data: URLs so that their MIME type is explicit.
    no_fetch = URLFetcher(allowed_protocols=())
    data_only = URLFetcher(allowed_protocols=("data",))
    when = created.astimezone(UTC)
    pdf_attachments = [
        weasyprint.Attachment(
            url=f"data:{_mime_type(name)};base64,{base64.b64encode(data).decode('ascii')}",
            url_fetcher=data_only,
            name=name,
            description=_ATTACHMENT_DESCRIPTIONS.get(name),
            created=when,
            modified=when,
            relationship=_relationship(name),
        )
        for name, data in files.items()
    ]

    collector = _LogCollector()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(collector)
    try:
        with _shipped_font_config() as font_config, _layout_progress(progress):
            # The figures come in as data: URLs (SVG); nothing else may be fetched.
            pdf: bytes = weasyprint.HTML(string=html, url_fetcher=data_only).write_pdf(
                stylesheets=[weasyprint.CSS(string=css, url_fetcher=no_fetch, font_config=font_config)],
                pdf_variant=PDF_VARIANT,
                attachments=pdf_attachments,
                finisher=_finish,
                font_config=font_config,
            )
    except _MissingGlyphsError as exc:
        chars = ", ".join(f"U+{cp:04X} {chr(cp)!r}" for cp in exc.codepoints[:8])
        raise RenderError(
            f"the dossier contains characters that none of the fonts shipped with interp-dossier can draw "
            f"({chars}); PDF/A forbids missing glyphs",
            hint="remove or replace those characters in the names and summaries; the PDF uses only the "
            "shipped fonts (DejaVu, and Droid Sans Fallback for CJK), never the machine's",
        ) from None
    except RenderError:
        raise
    except Exception as exc:  # WeasyPrint has no exception hierarchy of its own
        raise RenderError(
            f"WeasyPrint failed to render the dossier: {type(exc).__name__}: {exc}",
            hint="check the templates; rerun with a fresh install of interp-dossier[render]",
        ) from exc
    finally:
        logger.removeHandler(collector)

    errors = [r for r in collector.records if r.levelno >= logging.ERROR]
    if errors:
        raise RenderError(
            f"WeasyPrint reported an error while rendering: {errors[0].getMessage()}",
            hint="the templates must not refer to external resources",
        )
    return pdf



# -- the same document for a browser ------------------------------------------------------


def render_html(dossier: Dossier, digest: str, report: ValidationReport | None = None) -> str:
    """The document's HTML, from which the PDF is laid out; the browsable view (:mod:`evidence.view`) shows it."""
    return _render_html(dossier, digest, report)


def template_text(name: str) -> str:
    """A shipped file of ``templates/`` (e.g. the stylesheet), as text."""
    return _read_template(name)
