"""Figures drawn from the records: what they show, that they are deterministic and font-independent."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("weasyprint")
pypdf = pytest.importorskip("pypdf")

from evidence import figures, render  # noqa: E402
from evidence.canonical import canonical_bytes  # noqa: E402
from evidence.records import ErrorInfo  # noqa: E402
from tests.factories import (  # noqa: E402
    PROBE_CURVE_COLUMNS,
    make_dossier,
    make_heads_record,
    make_probe_record,
    make_record,
    make_refusal_direction_record,
    make_robustness_record,
)

REPO = Path(__file__).resolve().parents[2]


def test_the_factory_matches_the_probe_tables_columns():
    from evidence.measure.suite.deception_probe import _CURVE_COLUMNS

    assert PROBE_CURVE_COLUMNS == _CURVE_COLUMNS


def test_the_probe_record_draws_its_per_layer_auroc_with_bands_and_the_random_baseline():
    (figure,) = figures.figures_for(make_probe_record())
    assert figure.name == "per-layer probe AUROC"
    assert figure.svg.startswith("<svg")
    for colour in (figures.PALETTE["blue"], figures.PALETTE["orange"], figures.PALETTE["vermillion"]):
        assert colour.lower() in figure.svg.lower()
    assert "fill-opacity: 0.2" in figure.svg  # the AUROC interval bands
    assert "random-direction baseline" in figure.caption


def test_the_refusal_record_draws_six_rates_with_their_intervals():
    (figure,) = figures.figures_for(make_refusal_direction_record())
    assert figure.name == "refusal rates"
    # One bar per rate, each in a palette colour (grey for "no intervention").
    bars = re.findall(r'<g id="patch_\d+">', figure.svg)
    assert len(bars) >= 6
    assert figures.PALETTE["green"].lower() in figure.svg.lower()


def test_the_heads_record_draws_one_heat_map_panel_per_score():
    (figure,) = figures.figures_for(make_heads_record())
    assert figure.name == "head scores"
    assert "2 layers \u00d7 4 heads" in figure.caption
    assert "prev token, duplicate token, induction" in figure.caption
    assert len(re.findall(r'<g id="axes_\d+">', figure.svg)) == 4  # three panels and the colour bar
    assert "<image" not in figure.svg  # vector cells, no raster image


def test_the_robustness_record_draws_its_attack_budget_curve_without_inventing_intervals():
    (figure,) = figures.figures_for(make_robustness_record())
    assert figure.name == "attack budget" and "carries no intervals" in figure.caption
    assert figures.PALETTE["blue"].lower() in figure.svg.lower()
    assert figures.PALETTE["vermillion"].lower() in figure.svg.lower()
    assert "fill-opacity: 0.2" not in figure.svg  # no interval band: the table has no intervals


def test_the_heads_table_must_be_layer_by_head_to_be_drawn():
    record = make_heads_record()
    table = record.tables[0].model_copy(update={"columns": ["head", "layer", *record.tables[0].columns[2:]]})
    assert figures.figures_for(record.model_copy(update={"tables": [table]})) == []


def test_records_without_the_data_or_that_failed_draw_nothing():
    assert figures.figures_for(make_record()) == []  # heads.inventory: no figure yet
    bare = make_probe_record().model_copy(update={"tables": []})
    assert figures.figures_for(bare) == []
    failed = make_probe_record().model_copy(
        update={"status": "error", "metrics": [], "tables": [], "headline": None,
                "error": ErrorInfo(type="MeasurementError", message="x")})
    assert figures.figures_for(failed) == []


def _families(svg: str) -> set[str]:
    return set(re.findall(r"font-family: ([^;\"]+)", svg))


def test_svg_is_deterministic_and_writes_its_text_in_the_shipped_family_only():
    first = figures.figures_for(make_probe_record())[0].svg
    assert figures.figures_for(make_probe_record())[0].svg == first
    assert "<dc:date>" not in first
    # Labels are text (searchable, readable aloud), every one in the family of the shipped DejaVuSans.ttf,
    # which the PDF and the browsable view draw with the shipped fonts only.
    assert len(re.findall(r"<text\b", first)) >= 10
    assert _families(first) == {"'DejaVu Sans'"}
    assert figures.FONT_FAMILY == render.FONT_FAMILIES["sans-serif"]
    assert "<image" not in first and "@font-face" not in first and "url(" not in first.replace("url(#", "")


_DRAW = """
import sys
from evidence import figures
from tests.factories import (
    make_faithfulness_record, make_heads_record, make_probe_record, make_refusal_direction_record,
    make_robustness_record, make_stability_record,
)
for record in (make_probe_record(), make_refusal_direction_record(), make_heads_record(), make_robustness_record(),
               make_faithfulness_record(), make_stability_record()):
    sys.stdout.write(figures.figures_for(record)[0].svg)
"""


def test_the_svg_does_not_depend_on_the_machines_matplotlib_configuration(tmp_path: Path):
    # Another user's matplotlibrc: other fonts, other sizes, other salt.
    (tmp_path / "matplotlibrc").write_text(
        "font.family: serif\nfont.serif: DejaVu Serif\nfont.size: 14\nsvg.hashsalt: other\nsvg.fonttype: none\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "MATPLOTLIBRC": str(tmp_path / "matplotlibrc")}
    result = subprocess.run([sys.executable, "-c", _DRAW], cwd=REPO, env=env, capture_output=True, check=False,
                            timeout=300)
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    from tests.factories import make_faithfulness_record, make_stability_record

    records = (make_probe_record(), make_refusal_direction_record(), make_heads_record(), make_robustness_record(),
               make_faithfulness_record(), make_stability_record())
    expected = "".join(figures.figures_for(r)[0].svg for r in records)
    assert result.stdout.decode() == expected


def test_a_default_run_like_dossier_renders_with_its_figures():
    dossier = make_dossier(records=[make_refusal_direction_record(), make_probe_record(), make_heads_record()])
    pdf = render.render_pdf(dossier, canonical_bytes(dossier))
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages))
    for name in ("refusal rates", "per-layer probe AUROC", "head scores"):
        assert f"({name})" in text
    assert render.render_pdf(dossier, canonical_bytes(dossier)) == pdf  # deterministic with figures


# -- the faithfulness curve, the suffix attack's budget and the validation rates -----------------


def test_the_faithfulness_curve_shows_the_circuit_and_the_random_band_from_the_table():
    from tests.factories import make_faithfulness_record

    (figure,) = figures.figures_for(make_faithfulness_record())
    assert figure.name == "induction faithfulness curve"
    assert "with the confidence interval of that mean" in figure.caption
    assert figures.PALETTE["blue"].lower() in figure.svg.lower()
    assert figures.PALETTE["orange"].lower() in figure.svg.lower()
    assert "fill-opacity: 0.25" in figure.svg  # the random band
    assert "fill-opacity: 0.2;" in figure.svg or "fill-opacity: 0.2\"" in figure.svg  # the circuit's band


def test_a_curve_without_the_random_interval_says_so_and_draws_no_random_band():
    from tests.factories import make_faithfulness_record

    (figure,) = figures.figures_for(make_faithfulness_record(random_band=False))
    assert "carries no interval of the random rankings' mean" in figure.caption
    assert "fill-opacity: 0.25" not in figure.svg


def test_the_factory_matches_the_faithfulness_curves_columns():
    import inspect

    from evidence.measure.suite import circuit_faithfulness
    from tests.factories import FAITHFULNESS_CURVE_COLUMNS

    source = re.sub(r"\s+", "", inspect.getsource(circuit_faithfulness._curve_table))
    assert "columns=" + repr(FAITHFULNESS_CURVE_COLUMNS).replace(" ", "").replace("'", '"') in source


def test_the_stability_record_draws_its_suffix_attack_budget_with_intervals_and_baseline():
    from tests.factories import make_stability_record

    (figure,) = figures.figures_for(make_stability_record())
    assert figure.name == "suffix attack budget"
    assert "random-suffix baseline" in figure.caption
    assert figures.PALETTE["vermillion"].lower() in figure.svg.lower()
    assert figures.PALETTE["blue"].lower() in figure.svg.lower()
    assert "fill-opacity: 0.2" in figure.svg  # the Wilson band
    assert "<image" not in figure.svg and _families(figure.svg) == {"'DejaVu Sans'"}


def test_the_validation_report_draws_detection_and_false_alarm_rates_per_detector():
    from evidence.validation_report import cite, shipped_report

    shipped = shipped_report()
    if shipped is None:
        pytest.skip("this release ships no validation report")
    citation = cite(*shipped, [])
    figure = figures.validation_figure(citation)
    assert figure is not None and figure.name == "validation rates"
    assert f"{citation.organisms} organisms" in figure.caption
    # Two panels, one point with its interval per detector and rate.
    assert len(re.findall(r'<g id="axes_\d+">', figure.svg)) == 2
    assert figures.PALETTE["blue"].lower() in figure.svg.lower()
    assert figures.PALETTE["vermillion"].lower() in figure.svg.lower()
    empty = citation.model_copy(update={"detectors": []})
    assert figures.validation_figure(empty) is None


def test_new_figures_render_into_the_pdf():
    from tests.factories import make_faithfulness_record, make_stability_record

    dossier = make_dossier(records=[make_faithfulness_record(), make_stability_record()])
    pdf = render.render_pdf(dossier, canonical_bytes(dossier))
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages))
    for name in ("induction faithfulness curve", "suffix attack budget"):
        assert f"({name})" in text
    # The figures' labels are text in the PDF, drawn from the shipped fonts (the PDF/A check refuses any other).
    for record in dossier.records:
        for figure in figures.figures_for(record):
            labels = re.findall(r"<text\b[^>]*>([^<]{12,})</text>", figure.svg)
            assert labels and all(re.sub(r"\s+", " ", label) in text for label in labels), labels


def test_figures_side_by_side_share_no_element_ids_and_keep_their_references():
    from collections import Counter

    from tests.factories import make_faithfulness_record

    records = [make_faithfulness_record("circuit.faithfulness:a"), make_faithfulness_record("circuit.faithfulness:b")]
    html = render._render_html(make_dossier(records=records), "0" * 64)
    ids = Counter(re.findall(r'\sid="([^"]+)"', html))
    assert [name for name, count in ids.items() if count > 1] == []
    references = re.findall(r'(?:href="#|url\(#)([^")]+)', html)
    assert [ref for ref in references if ref not in ids] == []
    # Markers (the ticks) and clip paths of both figures are among them.
    markers = re.findall(r'xlink:href="#([^"]+)"', html)
    assert any(m.startswith("fig1-") for m in markers) and any(m.startswith("fig2-") for m in markers)
    assert any(ref.startswith("fig2-") for ref in re.findall(r"url\(#([^)]+)\)", html))


# -- calibration.organisms: PRI against the planted correlation ----------------------------------


def _calibration_record(rows: list[list[object]]):
    from evidence.measure.suite.calibration_organisms import PROXY_TABLE
    from evidence.records import CalibrationCheck, ConfidenceInterval, Criterion, MeasurementSpec, Metric, Table

    columns = ["organism", "proxy_rate", "rho", "pri", "pri_ci_lower", "pri_ci_upper", "note"]
    check = CalibrationCheck(
        measurement="goal.proxy_reliance", organism="proxy-r0", planted=True, metric="pri", value=0.98,
        ci=ConfidenceInterval(lower=0.96, upper=0.99, level=0.95, method="percentile bootstrap", n=64, resamples=200),
        criteria=[Criterion(comparator=">", threshold=0.5)], criterion="pri: CI lower bound > 0.5", passed=True,
    )  # fmt: skip
    return make_record(
        "calibration.organisms:toy",
        measurement=MeasurementSpec(id="calibration.organisms", version="1.4.0", params={}),
        metrics=[Metric(name="all_checks_passed", value=1, unit="0/1")],
        tables=[Table(name=PROXY_TABLE, columns=columns, rows=rows)],
        checks=[check],
    )


PROXY_ROWS = [
    ["proxy-r0", 0.0, 1.0, 0.98, 0.96, 0.99, None],
    ["proxy-r10", 0.1, 0.8, 0.61, 0.52, 0.7, None],
    ["proxy-r50", 0.5, 0.0, 0.03, 0.01, 0.06, None],
]


def test_the_calibration_record_draws_pri_against_rho_from_its_proxy_table():
    (figure,) = figures.figures_for(_calibration_record(PROXY_ROWS))
    assert figure.name == "PRI vs rho"
    assert figures.PALETTE["blue"].lower() in figure.svg.lower()
    assert "\u03c1" in figure.caption and "proxy_reliance_by_correlation" in figure.caption
    assert "not measured" not in figure.caption
    # The points are the table's: another PRI moves a point, so the drawing changes.
    moved = [row[:3] + [0.4, 0.3, 0.5] + row[6:] if row[0] == "proxy-r10" else row for row in PROXY_ROWS]
    assert figures.figures_for(_calibration_record(moved))[0].svg != figure.svg
    # An organism whose PRI was not measured is named, never drawn at a made-up value.
    failed = [*PROXY_ROWS[:2], ["proxy-r50", 0.5, 0.0, None, None, None, "not measured: boom"]]
    (partial,) = figures.figures_for(_calibration_record(failed))
    assert "not measured: proxy-r50" in partial.caption
    none = [[r[0], r[1], r[2], None, None, None, "not measured"] for r in PROXY_ROWS]
    assert figures.figures_for(_calibration_record(none)) == []


def test_the_pri_figure_renders_into_the_pdf():
    dossier = make_dossier(records=[_calibration_record(PROXY_ROWS)])
    pdf = render.render_pdf(dossier, canonical_bytes(dossier))
    text = re.sub(r"\s+", " ", " ".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages))
    assert "(PRI vs rho)" in text


def test_the_pdf_takes_figures_as_images_and_draws_the_same_pages_as_inline_svg(tmp_path: Path):
    dossier = make_dossier(records=[_calibration_record(PROXY_ROWS)])
    data = canonical_bytes(dossier)
    digest = render.sha256_hex(data)
    inline = render._render_html(dossier, digest)
    images = render._render_html(dossier, digest, inline_figures=False)
    assert "<svg" in inline and '<img class="figure-svg"' not in inline  # the browsable view
    assert "<svg" not in images and images.count('<img class="figure-svg" alt="PRI vs rho"') == 1
    css = render.template_text(render.STYLESHEET)
    files = {render.DOSSIER_JSON: data}
    pdf = render._write_pdf(images, css, files, dossier.created_at)
    assert pdf == render.render_pdf(dossier, data)
    # The tagged files differ in their structure (how each names the figure for a reader); the pages
    # they draw are the same, pixel for pixel.
    drawn = render._write_pdf(inline, css, files, dossier.created_at)
    assert _page_pixels(pdf, tmp_path / "image") == _page_pixels(drawn, tmp_path / "inline")


def _page_pixels(pdf: bytes, out: Path) -> list[tuple[int, int, bytes]]:
    """Every page of ``pdf`` in grey pixels (the page-image tests' pdftoppm rendering)."""
    from tests.unit.test_render_pages import _grey_pages

    if shutil.which("pdftoppm") is None:
        pytest.skip("poppler-utils (pdftoppm) is not installed")
    out.mkdir()
    (out / "doc.pdf").write_bytes(pdf)
    pages = _grey_pages(out / "doc.pdf", out)
    assert pages
    return pages
