"""The trend dossier's PDF: PDF/A-3a (PDF/UA-1), its dossier.json embedded, the digest on page 1, verdicts, figures."""

from __future__ import annotations

import hashlib
import html
import io
import re
import uuid
from datetime import UTC, datetime

import pytest

pytest.importorskip("weasyprint")
pikepdf = pytest.importorskip("pikepdf")
pypdf = pytest.importorskip("pypdf")

from evidence import figures, render  # noqa: E402
from evidence.canonical import canonical_bytes  # noqa: E402
from evidence.dossier import dossier_bytes  # noqa: E402
from evidence.errors import RenderError  # noqa: E402
from evidence.policy import evaluate, roll_up  # noqa: E402
from evidence.records import DEVELOPMENT_KEY_NOTICE, ConfidenceInterval, ErrorInfo, Metric, SignerInfo  # noqa: E402
from evidence.records.trend import TrendDossier  # noqa: E402
from evidence.trend import Checkpoint, build_trend  # noqa: E402
from tests.factories import make_dossier, make_policy, make_record  # noqa: E402
from tests.pdf_structure import pdf_problems  # noqa: E402

AFTER = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
TREND_ID = "5f0c8a52-8d0e-4f5e-9a57-2b8f3c1d4e6a"


def _checkpoint(label: str, score: float, *, gated: bool = True, status: str = "ok") -> Checkpoint:
    """A checkpoint whose heads.inventory record reads ``score`` (interval +-0.05), gated by the test policy."""
    if status == "ok":
        ci = ConfidenceInterval(lower=max(score - 0.05, 0.0), upper=min(score + 0.05, 1.0), level=0.95,
                                method="percentile bootstrap", n=8, resamples=100)  # fmt: skip
        record = make_record(metrics=[Metric(name="induction_score_max", value=score, unit="score", ci=ci)],
                             headline="induction_score_max")  # fmt: skip
    else:
        record = make_record(status="error", metrics=[], error=ErrorInfo(type="ModelLoadError", message="no"))
    # a dossier id fixed by the label: the same checkpoint renders the same pages in every session
    fixed = {"dossier_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"checkpoint/{label}/{score}/{status}"))}
    if gated:
        policy = make_policy()
        verdicts = evaluate(policy, [record], subject="toy")
        dossier = make_dossier(records=[record], policy=policy, verdicts=verdicts, gate=roll_up(verdicts), **fixed)
    else:
        dossier = make_dossier(records=[record], **fixed)
    return Checkpoint(label=label, bundle=f"../checkpoints/{label}", data=dossier_bytes(dossier), dossier=dossier)


CHECKPOINTS = [
    _checkpoint("step-1", 0.9),
    _checkpoint("step-2", 0.8),
    _checkpoint("step-3", 0.2),
    _checkpoint("step-4", 0.9, status="error"),
]


def _trend(checkpoints: list[Checkpoint] = CHECKPOINTS, **changes) -> TrendDossier:
    return build_trend(checkpoints, title="run-2026", order="natural", created_at=AFTER, trend_id=TREND_ID, **changes)


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _pages(pdf: bytes) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


@pytest.fixture(scope="module")
def rendered() -> tuple[TrendDossier, bytes, bytes]:
    trend = _trend()
    data = canonical_bytes(trend)
    return trend, data, render.render_trend_pdf(trend, data)


@pytest.fixture(scope="module")
def text(rendered) -> list[str]:
    return _pages(rendered[2])


def _page_of(text: list[str], words: str) -> int:
    """The 0-based index of the only page after the cover that prints ``words``."""
    pages = [i for i, page in enumerate(text) if i and _squash(words) in _squash(page)]
    assert len(pages) == 1, (words, pages)
    return pages[0]


# -- the PDF/A-3a (PDF/UA-1) file -------------------------------------------------------------


def test_the_trend_pdf_is_pdf_a_3a_and_pdf_ua_1_with_an_output_intent_and_its_title(rendered):
    _, _, pdf = rendered
    assert pdf.startswith(b"%PDF-1.7\n")
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        meta = doc.open_metadata()
        assert meta["pdfaid:part"] == "3"
        assert meta["pdfaid:conformance"] == "A"
        assert meta["pdfuaid:part"] == "1"
        assert meta["dc:title"] == "Trend dossier \u2014 run-2026"
        assert len(doc.Root.OutputIntents) == 1
        assert doc.Root.OutputIntents[0].S == "/GTS_PDFA1"
        assert "/DestOutputProfile" in doc.Root.OutputIntents[0]
        assert str(doc.docinfo.CreationDate) == "D:20261201083000Z"
        assert doc.Root.Lang == "en"
    assert pdf_problems(pdf) == []


def test_the_trend_json_is_embedded_byte_identical_as_associated_data(rendered):
    _, data, pdf = rendered
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        files = doc.attachments
        assert set(files) == {"dossier.json"}
        spec = files["dossier.json"]
        assert spec.get_file().read_bytes() == data
        assert spec.obj.AFRelationship == "/Data"
        assert spec.get_file().mime_type == "application/json"
        assert [f.objgen for f in doc.Root.AF] == [spec.obj.objgen]


def test_the_outline_follows_the_chapters_and_the_metrics(rendered):
    with pikepdf.open(io.BytesIO(rendered[2])) as doc, doc.open_outline() as outline:
        titles = [_squash(item.title) for item in outline.root]
        metrics = [_squash(child.title) for child in outline.root[2].children]
    assert titles == ["1Checkpoints", "2Verdictsacrosscheckpoints", "3Metricsacrosscheckpoints", "4Howtoverify"]
    assert metrics[0] == _squash("3.1 heads.inventory \u00b7 induction_score_max (score)")


def test_the_trend_pdf_is_deterministic(rendered):
    trend, data, pdf = rendered
    assert render.render_trend_pdf(trend, data) == pdf


# -- what the pages say -------------------------------------------------------------------------


def test_page_one_prints_the_digest_and_the_cover(rendered, text):
    trend, data, _ = rendered
    cover = _squash(text[0])
    assert hashlib.sha256(data).hexdigest() in cover
    for words in (
        "Trend dossier",
        "run-2026",
        f"Trend ID {TREND_ID}",
        "2026-12-01 08:30:00 UTC",
        "interp-dossier 0.1.0",
        "Checkpoints 4",
        "profile standard, no prompt limit",
        "test policy version 1",
        "unsigned draft",
        # the gate in words, and where it first changes
        "Gate INCONCLUSIVE on step-1, step-2; FAIL on step-3; INCONCLUSIVE from step-4",
        "first change: step-3 (inconclusive \u2192 fail)",
    ):
        assert _squash(words) in cover, words
    assert "None" not in text[0]


def test_the_checkpoints_table_names_each_dossier_by_sha256(text):
    page = _page_of(text, "1 Checkpoints")
    body = _squash(text[page])
    for checkpoint in CHECKPOINTS:
        assert hashlib.sha256(checkpoint.data).hexdigest() in body
        assert _squash(f"../checkpoints/{checkpoint.label}") in body
    assert "aaaaaaaaaaaaaaaa\u2026" in body  # the weights, short
    assert _squash("Each checkpoint has its own signed dossier") in body
    assert _squash("computed only from those dossiers") in body
    assert "heads.inventory" in body  # failed on step-4


def test_the_verdicts_show_every_checkpoint_and_where_each_first_changes(text):
    page = _page_of(text, "2 Verdicts across checkpoints")
    body = _squash(text[page])
    assert (
        _squash("induction-present heads.inventory \u00b7 induction_score_max \u2265 0.5 (margin 0.05), ci-bound")
        in body
    )
    assert _squash("PASS PASS FAIL INCONCLUSIVE") in body
    assert _squash("induction-present: first change: step-3 (pass \u2192 fail), after step-2") in body
    assert _squash("absent-measurement: unchanged on every checkpoint") in body


def test_each_metric_has_its_figure_and_table_without_none(rendered, text):
    page = _page_of(text, "3.1 heads.inventory")
    body = _squash(text[page])
    assert _squash("(induction_score_max across checkpoints)") in body
    assert _squash("step-1 0.9 [0.85, 0.95]") in body
    assert _squash("95% CI") in body
    assert _squash("step-4 \u2014 \u2014 error: the measurement failed") in body
    # the metric no checkpoint measured: a table of absent points, and no figure
    assert _squash("No figure: no checkpoint has a value of this metric") in body
    assert _squash("absent: no record carries it") in body
    assert not any("None" in page_text for page_text in text)
    # the figure is drawn on that page: its verdict colours (pass green, fail vermillion) fill its markers
    with pikepdf.open(io.BytesIO(rendered[2])) as doc:
        colours = {
            tuple(round(float(v), 3) for v in op.operands)
            for op in pikepdf.parse_content_stream(doc.pages[page])
            if str(op.operator) in ("rg", "RG")
        }
    assert (0.0, 0.62, 0.451) in colours  # #009E73
    assert (0.835, 0.369, 0.0) in colours  # #D55E00


def test_how_to_verify_names_the_sweep_command_and_the_recomputation(text):
    body = _squash(text[_page_of(text, "4 How to verify")])
    assert _squash("interp-dossier verify SWEEP_DIR --trust CERT.pem") in body
    assert _squash("re-reads every checkpoint's dossier.json by its SHA-256") in body
    assert _squash("recomputes every metric series, every verdict change and the gate series") in body


def test_a_trend_signed_with_a_development_key_says_so_with_the_certificate():
    signer = SignerInfo(subject="CN=dev signer", certificate_sha256="d" * 64, development_key=True,
                        notice=DEVELOPMENT_KEY_NOTICE)  # fmt: skip
    trend = _trend(CHECKPOINTS[:2], signer=signer)
    text = _pages(render.render_trend_pdf(trend, canonical_bytes(trend)))
    cover = _squash(text[0])
    for words in (DEVELOPMENT_KEY_NOTICE, "CN=dev signer", "d" * 64, "Gate INCONCLUSIVE on every checkpoint"):
        assert _squash(words) in cover, words
    assert "unsigneddraft" not in cover
    assert _squash(DEVELOPMENT_KEY_NOTICE) in _squash(text[1])  # the running header


def test_a_trend_without_a_policy_says_so():
    checkpoints = [_checkpoint("a", 0.9, gated=False), _checkpoint("b", 0.4, gated=False)]
    trend = _trend(checkpoints)
    text = _pages(render.render_trend_pdf(trend, canonical_bytes(trend)))
    assert _squash("no policy applied") in _squash(text[0])
    assert _squash("No gate: no policy was applied") in _squash(text[0])
    body = _squash("\n".join(text[1:]))
    assert _squash("No policy was applied: no metric was judged against a threshold") in body
    assert _squash("(induction_score_max across checkpoints)") in body


# -- refused inputs -------------------------------------------------------------------------------


def test_json_that_does_not_encode_the_trend_is_refused(rendered):
    trend, data, _ = rendered
    other = _trend(CHECKPOINTS[:2])
    with pytest.raises(RenderError, match="does not encode the trend"):
        render.render_trend_pdf(trend, canonical_bytes(other))
    with pytest.raises(RenderError, match="not a valid trend dossier"):
        render.render_trend_pdf(trend, dossier_bytes(CHECKPOINTS[0].dossier))
    with pytest.raises(RenderError, match="must be bytes"):
        render.render_trend_pdf(trend, data.decode())  # type: ignore[arg-type]


# -- the figure ---------------------------------------------------------------------------------


def _svg_texts(svg: str) -> dict[str, str]:
    """Each text of a figure's SVG, with its transform."""
    return {html.unescape(text): transform
            for transform, text in re.findall(r'<text\b[^>]*?transform="([^"]*)"[^>]*>([^<]*)</text>', svg)}


def test_the_trend_figure_marks_thresholds_verdicts_and_gaps(rendered):
    trend = rendered[0]
    series = next(s for s in trend.metrics if s.metric == "induction_score_max")
    figure = figures.trend_figure(series, trend.verdicts)
    assert figure is not None and figure.svg.startswith("<svg")
    svg = figure.svg
    for label in ("step-1", "step-4", "checkpoint (in sweep order)", "induction_score_max (score)",
                  "threshold \u2265 0.5 (induction-present)", "induction-present: pass", "induction-present: fail",
                  "measurement"):  # fmt: skip
        assert label in _svg_texts(svg), label
    for colour in (figures.PALETTE["green"], figures.PALETTE["vermillion"]):
        assert colour.lower() in svg.lower()
    assert "<image" not in svg
    assert set(re.findall(r"font-family: ([^;\"]+)", svg)) == {"'DejaVu Sans'"}  # the shipped family only
    assert "step-4 (measurement failed)" in figure.caption
    assert figures.trend_figure(series, trend.verdicts).svg == svg  # deterministic


def test_no_trend_figure_without_a_value_and_long_labels_are_rotated(rendered):
    trend = rendered[0]
    absent = next(s for s in trend.metrics if s.metric == "refusal_rate_ablated")
    assert figures.trend_figure(absent, trend.verdicts) is None
    long = [_checkpoint(f"checkpoint-{n:06d}", 0.9, gated=False) for n in (100, 2000)]
    series = _trend(long).metrics[0]
    figure = figures.trend_figure(series, [])
    assert figure is not None and "no threshold of the policy gates this metric" in figure.caption
    texts = _svg_texts(figure.svg)
    assert texts["checkpoint-000100"].endswith("rotate(-30)") and texts["checkpoint-002000"].endswith("rotate(-30)")
    assert figure.svg.count("rotate(-30)") == 2  # the two checkpoint labels; the y label is rotate(-90 ...)


def test_a_long_sweep_splits_the_verdicts_into_tables_of_five_checkpoints():
    checkpoints = [_checkpoint(f"step-{n}", 0.9 if n < 6 else 0.2) for n in range(1, 8)]
    trend = _trend(checkpoints)
    text = _pages(render.render_trend_pdf(trend, canonical_bytes(trend)))
    body = _squash("\n".join(text[1:]))
    verdicts = body[body.index("2Verdictsacrosscheckpoints") : body.index("3Metricsacrosscheckpoints")]
    # two tables (a table that breaks across a page repeats its header, so headers are not counted)
    assert _squash("Threshold step-1 step-2 step-3 step-4 step-5") in verdicts
    assert _squash("Threshold step-6 step-7") in verdicts
    assert _squash("step-5 step-6") not in verdicts
    assert _squash("induction-present: first change: step-6 (pass \u2192 fail), after step-5") in verdicts
