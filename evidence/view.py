"""A browsable view of a dossier: the PDF's own HTML, for people who would rather drill in.

``interp-dossier view BUNDLE`` writes a directory that a browser opens from
disk, with no server and no network: ``index.html`` (the same Jinja templates
and inline SVG figures as the PDF, from :func:`evidence.render.render_html`),
the PDF's stylesheet with a screen stylesheet over it, a small script that
makes the tables searchable and long tables expandable, and the shipped fonts,
so that the view looks the same on every machine.

The view shows a dossier; it does not verify one. It says so at the top, with
the sha256 of the ``dossier.json`` it was made from, and names the command that
verifies the bundle.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from evidence.canonical import sha256_hex
from evidence.errors import ConfigError, RecordError
from evidence.files import write_directory_atomically
from evidence.records import Dossier, ValidationReport

__all__ = ["VIEW_FILES", "ViewSource", "check_view_dir", "load_view_source", "view_files", "write_view"]

#: The files of a view besides the fonts: a directory holding ``VIEW_MARKER`` is a view ``--force`` may replace.
VIEW_FILES = ("index.html", "dossier.css", "view.css", "view.js")
VIEW_MARKER = "view.js"

#: The shipped fonts the view's stylesheet declares (``evidence/fonts/``): family, weight, style, file.
_FONT_FACES = (
    ("DejaVu Sans", "normal", "normal", "DejaVuSans.ttf"),
    ("DejaVu Sans", "bold", "normal", "DejaVuSans-Bold.ttf"),
    ("DejaVu Sans", "normal", "italic", "DejaVuSans-Oblique.ttf"),
    ("DejaVu Sans", "bold", "italic", "DejaVuSans-BoldOblique.ttf"),
    ("DejaVu Sans Mono", "normal", "normal", "DejaVuSansMono.ttf"),
    ("DejaVu Sans Mono", "bold", "normal", "DejaVuSansMono-Bold.ttf"),
    ("DejaVu Serif", "normal", "normal", "DejaVuSerif.ttf"),
    ("DejaVu Serif", "bold", "normal", "DejaVuSerif-Bold.ttf"),
    ("Droid Sans Fallback", "normal", "normal", "DroidSansFallbackFull.ttf"),
)


@dataclass(frozen=True)
class ViewSource:
    """A dossier to show: its exact bytes, parsed, and the validation report it cites when at hand."""

    path: Path
    data: bytes
    dossier: Dossier
    report: ValidationReport | None
    #: why the cited validation report is not shown, when it is not
    report_note: str | None = None

    @property
    def sha256(self) -> str:
        """The sha256 of the dossier.json bytes (the digest the signatures cover)."""
        return sha256_hex(self.data)


def load_view_source(target: Path) -> ViewSource:
    """Read a bundle directory's dossier.json, or a dossier.json file, and the report it cites."""
    from evidence.dossier import parse_dossier
    from evidence.validation_report import parse_report

    path = target / "dossier.json" if target.is_dir() else target
    if not path.is_file():
        what = f"{target} holds no dossier.json" if target.is_dir() else f"{target} does not exist"
        raise ConfigError(what, hint="give a bundle directory (written by `run`) or a dossier.json")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path} cannot be read: {exc.strerror}") from None
    try:
        dossier = parse_dossier(data)
    except RecordError as exc:
        raise ConfigError(f"{path} is not a dossier this release can show: {exc}", hint=exc.hint) from None
    report, note = None, None
    if dossier.validation is not None:
        cited = path.parent / dossier.validation.file
        if not cited.is_file():
            note = f"the validation report it cites ({dossier.validation.file}) is not beside it"
        else:
            raw = cited.read_bytes()
            if sha256_hex(raw) != dossier.validation.report_sha256:
                note = f"{dossier.validation.file} beside it is not the report it cites (its sha256 differs)"
            else:
                report = parse_report(raw, source=str(cited))
    return ViewSource(path=path, data=data, dossier=dossier, report=report, report_note=note)


def _asset(name: str) -> bytes:
    from evidence.render import template_text

    return template_text(name).encode("utf-8")


def _font_faces() -> str:
    rules = [
        f'@font-face {{ font-family: "{family}"; font-weight: {weight}; font-style: {style}; '
        f'src: url("{file}") format("truetype"); }}'
        for family, weight, style, file in _FONT_FACES
    ]
    return "\n".join(rules) + "\n"


def _banner(source: ViewSource) -> str:
    lines = [
        '<div class="view-banner" role="note">',
        "<p><strong>A view of the dossier, not a verification.</strong> It shows "
        f"<code>{html.escape(source.path.name)}</code> with sha256 "
        f'<code class="digest">{source.sha256}</code>. Whether the bundle is intact and signed by whom it says '
        "is established by <code>interp-dossier verify BUNDLE --trust CA.pem</code> alone.</p>",
    ]
    if source.report_note:
        lines.append(f"<p>The calibration appendix is not shown: {html.escape(source.report_note)}.</p>")
    lines.append("</div>")
    return "\n".join(lines)


def _page(source: ViewSource) -> str:
    from evidence.render import render_html

    page = render_html(source.dossier, source.sha256, source.report)
    head = (
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<link rel="stylesheet" href="dossier.css">\n<link rel="stylesheet" href="view.css">\n'
        '<script src="view.js" defer></script>\n</head>'
    )
    if page.count("</head>") != 1 or page.count("<body>") != 1:
        raise ConfigError("the dossier's HTML has no single head and body", hint="reinstall interp-dossier")
    page = page.replace("</head>", head, 1)
    return page.replace("<body>", "<body>\n" + _banner(source), 1)


def view_files(source: ViewSource) -> dict[str, bytes]:
    """Every file of the view, by name."""
    files = {
        "index.html": _page(source).encode("utf-8"),
        "dossier.css": _asset("dossier.css"),
        "view.css": _font_faces().encode("utf-8") + _asset("view.css"),
        "view.js": _asset("view.js"),
    }
    files.update(_font_bytes())
    return files


def _font_bytes() -> Mapping[str, bytes]:
    from evidence.resources import shipped_fonts

    directory = shipped_fonts()
    out = {}
    for *_, name in _FONT_FACES:
        try:
            out[name] = (directory / name).read_bytes()
        except OSError:
            raise ConfigError(f"the shipped font {name} is missing", hint="reinstall interp-dossier") from None
    return out


def check_view_dir(out_dir: Path, *, force: bool) -> Path:
    """Refuse, before any work, an output directory the view may not be written to; returns it absolute."""
    out_dir = out_dir.expanduser().absolute()
    if not out_dir.parent.is_dir():
        raise ConfigError(
            f"cannot write the view to {out_dir}: its parent directory does not exist", hint="choose another --out"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"cannot write the view to {out_dir}: it is not a directory", hint="choose another --out")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / VIEW_MARKER).is_file():
            raise ConfigError(
                f"refusing to write the view into {out_dir}: it is not empty and is not a view",
                hint="choose a new or empty --out directory",
            )
        if not force:
            raise ConfigError(
                f"refusing to replace the view in {out_dir}", hint="choose another --out, or pass --force"
            )
    return out_dir


def write_view(target: Path, out_dir: Path, *, force: bool = False) -> Path:
    """Write the view of the bundle (or dossier.json) ``target`` into ``out_dir``; returns its index.html."""
    out_dir = check_view_dir(out_dir, force=force)
    source = load_view_source(target)
    files = view_files(source)
    try:
        write_directory_atomically(files, out_dir, replaceable=set(files))
    except OSError as exc:
        raise ConfigError(f"cannot write the view to {out_dir}: {exc.strerror or exc}") from None
    return out_dir / "index.html"
