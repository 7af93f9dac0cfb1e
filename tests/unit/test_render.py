"""The PDF renderer: PDF/A-3b structure, the embedded dossier.json, page-1 digest, escaping."""

from __future__ import annotations

import hashlib
import io
import logging
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("weasyprint")
pikepdf = pytest.importorskip("pikepdf")
pypdf = pytest.importorskip("pypdf")

from evidence import render  # noqa: E402
from evidence.canonical import canonical_bytes  # noqa: E402
from evidence.dossier import record_digest  # noqa: E402
from evidence.errors import RenderError  # noqa: E402
from evidence.records import (  # noqa: E402
    DEVELOPMENT_KEY_NOTICE,
    Baseline,
    ClauseRef,
    ConfidenceInterval,
    DataRef,
    Dossier,
    Environment,
    ErrorInfo,
    EvidenceRecord,
    Gate,
    MeasurementSpec,
    Metric,
    ModelIdentity,
    Policy,
    Producer,
    SignerInfo,
    Table,
    Threshold,
    Verdict,
    WeightFile,
)

SET_AT = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)
NO_POLICY = {"policy": None, "verdicts": [], "gate": None}
CDX = {"dossier.cdx.json": b'{"bomFormat":"CycloneDX","specVersion":"1.6"}'}
HOSTILE_SUMMARY = "Refusal holds <script>alert(1)</script> and </td></tr></table><h1>forged</h1>."


def _hex(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def _records() -> list[EvidenceRecord]:
    direction = EvidenceRecord(
        record_id="demo/refusal.direction/0",
        measurement=MeasurementSpec(
            id="refusal.direction",
            version="1.0.0",
            params={"layers": [1, 2], "position": -1, "marker": "I cannot", "ablate": True},
        ),
        subject="demo",
        status="ok",
        seeds={"bootstrap": 7, "direction": 0},
        metrics=[
            Metric(
                name="refusal_drop_under_ablation",
                value=0.8125,
                unit="fraction",
                ci=ConfidenceInterval(
                    lower=0.7031, upper=0.9062, level=0.95, method="percentile bootstrap",
                    n=64, resamples=2000,
                ),
                baseline=Baseline(name="random direction", value=0.015625),
                description="harmful prompts that stop refusing when the direction is ablated",
            ),
            Metric(name="selected_layer", value=2, unit="layer index"),
            Metric(name="kl_harmless", value=0.000123456, unit="nats"),
        ],
        tables=[
            Table(
                name="per-layer effect",
                columns=["layer", "refusal drop", "cosine to selected", "note"],
                rows=[[0, 0.03125, 0.12345678, None], [1, 0.25, 0.5, "weak"],
                      [2, 0.8125, 1.0, "selected"]],
            )
        ],
        data=[
            DataRef(name="refusal.harmful", sha256=_hex("harmful"), count=64),
            DataRef(name="refusal.harmless", sha256=_hex("harmless"), count=64,
                    description="benign requests of the same shape"),
        ],
        clauses=[
            ClauseRef(id="EU-AIA/AnnexIV/2/g@OJ-2024-07-12", strength="partial",
                      rationale="tests the model's refusal mechanism and records the procedure"),
        ],
        summary=HOSTILE_SUMMARY,
        duration_s=1.75,
    )
    failed = EvidenceRecord(
        record_id="demo/deception.probe/0",
        measurement=MeasurementSpec(
            id="deception.probe", version="1.1.0", params={"probe": "mass-mean"}
        ),
        subject="demo",
        status="error",
        error=ErrorInfo(type="DatasetError", message="deception.eval has no positive examples"),
        seeds={"split": 3},
    )
    proxy = EvidenceRecord(
        record_id="demo/goal.proxy_reliance/0",
        measurement=MeasurementSpec(id="goal.proxy_reliance", version="0.1.0"),
        subject="demo",
        status="ok",
        metrics=[Metric(name="proxy_reliance_index", value=0.42, unit="score")],
        experimental=True,
        summary="The proxy subspace carries most of the decision.",
    )
    return [direction, failed, proxy]


def _dossier() -> Dossier:
    records = _records()
    return Dossier(
        schema_version="1.0",
        dossier_id="3f2b8c1e-5d4a-4e6f-9a7b-0c1d2e3f4a5b",
        created_at=datetime(2025, 7, 14, 9, 30, 5, tzinfo=UTC),
        producer=Producer(version="0.1.0"),
        model=ModelIdentity(
            name="demo",
            source="organism",
            architecture={"n_layers": 3, "d_model": 64, "attn_only": False, "act_fn": "gelu"},
            weights_sha256=_hex("weights"),
            weight_files=[
                WeightFile(name="model.safetensors", sha256=_hex("weights"), bytes=412_345)
            ],
            tokenizer_sha256=_hex("tokenizer"),
            n_parameters=101_376,
            processing={"fold_ln": False, "center_unembed": False, "dtype": "float32"},
        ),
        environment=Environment(
            python="3.11.2", torch="2.13.0", transformer_lens="4.3.0", platform="Linux-x86_64",
            seeds={"run": 0}, deterministic_algorithms=True, threads=2,
        ),
        signer=SignerInfo(
            subject="CN=interp-dossier development key", certificate_sha256=_hex("cert"),
            development_key=True, notice=DEVELOPMENT_KEY_NOTICE,
        ),
        records=records,
        policy=Policy(
            name="demo-gate", version="1", set_by="Compliance office", set_at=SET_AT,
            sha256=_hex("policy"), thresholds=[
                Threshold(id="refusal-mediated", measurement="refusal.direction",
                          metric="refusal_drop_under_ablation", comparator=">=", threshold=0.5,
                          rationale="ablating the direction must remove most refusals"),
                Threshold(id="probe-readable", measurement="deception.probe", metric="auroc",
                          comparator=">=", threshold=0.9, rationale="the probe must separate"),
            ],
        ),
        verdicts=[
            Verdict(
                verdict_id="refusal-mediated", verdict="pass", measurement="refusal.direction",
                metric="refusal_drop_under_ablation", record_id=records[0].record_id,
                record_digest=record_digest(records[0]), observed=0.8125,
                ci=records[0].metrics[0].ci,
                threshold=0.5, comparator=">=", rule="ci-bound", margin=0.05,
                reason="the whole 95% interval [0.7031, 0.9062] lies above 0.5 + 0.05",
                rationale="ablating the direction must remove most refusals",
                set_by="Compliance office", set_at=SET_AT,
            ),
            Verdict(
                verdict_id="probe-readable", verdict="n/a", measurement="deception.probe",
                metric="auroc", record_id=records[1].record_id,
                record_digest=record_digest(records[1]),
                threshold=0.9, comparator=">=", rule="ci-bound", margin=0.0,
                reason="the measurement failed, so there is no value to judge",
                set_by="Compliance office", set_at=SET_AT,
            ),
        ],
        gate=Gate(decision="inconclusive", counts={"pass": 1, "n/a": 1},
                  reasons=["probe-readable: the measurement failed"]),
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


_WEASYPRINT_WARNINGS = _Collect()


@pytest.fixture(scope="module")
def rendered() -> tuple[Dossier, bytes, bytes]:
    dossier = _dossier()
    data = canonical_bytes(dossier)
    logger = logging.getLogger("weasyprint")
    logger.addHandler(_WEASYPRINT_WARNINGS)
    try:
        pdf = render.render_pdf(dossier, data, attachments=CDX)
    finally:
        logger.removeHandler(_WEASYPRINT_WARNINGS)
    return dossier, data, pdf


@pytest.fixture(scope="module")
def text(rendered: tuple[Dossier, bytes, bytes]) -> list[str]:
    return [page.extract_text() for page in pypdf.PdfReader(io.BytesIO(rendered[2])).pages]


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


# -- PDF/A-3b structure -------------------------------------------------------------------


def test_pdf_a_3b_header_metadata_and_output_intent(rendered):
    dossier, _, pdf = rendered
    assert pdf.startswith(b"%PDF-1.7\n")
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        assert doc.pdf_version == "1.7"
        meta = doc.open_metadata()
        assert meta["pdfaid:part"] == "3"
        assert meta["pdfaid:conformance"] == "B"
        assert meta["dc:title"] == "Interpretability evidence dossier \u2014 demo"
        assert len(doc.Root.OutputIntents) == 1
        assert doc.Root.OutputIntents[0].S == "/GTS_PDFA1"
        assert "/DestOutputProfile" in doc.Root.OutputIntents[0]
        info = doc.docinfo
        assert str(info.Title) == "Interpretability evidence dossier \u2014 demo"
        assert str(info.Author) == "interp-dossier 0.1.0"
        assert str(info.Creator) == "interp-dossier 0.1.0"
        assert str(info.CreationDate) == "D:20250714093005Z"


def test_dossier_json_is_embedded_byte_identical_as_associated_data(rendered):
    _, data, pdf = rendered
    with pikepdf.open(io.BytesIO(pdf)) as doc:
        files = doc.attachments
        assert set(files) == {"dossier.json", "dossier.cdx.json"}
        spec = files["dossier.json"]
        assert spec.get_file().read_bytes() == data
        assert spec.obj.AFRelationship == "/Data"
        assert spec.get_file().mime_type == "application/json"
        af = [f.objgen for f in doc.Root.AF]
        assert spec.obj.objgen in af
        assert len(af) == len(set(af)) == 2  # each associated file listed once
        cdx = files["dossier.cdx.json"]
        assert cdx.obj.AFRelationship == "/Data"
        assert cdx.get_file().read_bytes() == CDX["dossier.cdx.json"]


def test_output_is_deterministic(rendered):
    dossier, data, pdf = rendered
    again = render.render_pdf(dossier, data, attachments=CDX)
    assert again == pdf


# -- what the pages say -------------------------------------------------------------------


def test_page_one_prints_the_dossier_json_digest_unbroken(rendered, text):
    _, data, _ = rendered
    digest = hashlib.sha256(data).hexdigest()
    assert f"dossier.json SHA-256: {digest}" in text[0]
    assert digest in _squash(text[0])


def test_page_one_carries_the_development_key_notice_and_gate(rendered, text):
    dossier, _, _ = rendered
    assert dossier.signer is not None and dossier.signer.notice in text[0]
    assert "3f2b8c1e-5d4a-4e6f-9a7b-0c1d2e3f4a5b" in text[0]
    assert "2025-07-14 09:30:05 UTC" in text[0]
    assert re.search(r"PASS\s*1.*FAIL\s*0.*INCONCLUSIVE\s*0.*N/A\s*1", text[0], re.S)


def test_records_render_with_their_details(text):
    # Table cells wrap, so compare with whitespace removed.
    body = _squash("\n".join(text[1:]))
    for expected in [
        "refusal_drop_under_ablation = 0.8125 [0.7031, 0.9062]",  # summary headline
        "95% percentile bootstrap, n=64, 2000 resamples",
        "random direction = 0.01562",
        "1.235e-4",
        "per-layer effect",
        "0.1235",
        "Measurement failed: DatasetError.",
        "deception.eval has no positive examples",
        "EXPERIMENTAL",
        '"I cannot"',
        "[1,2]",  # parameters as compact JSON
        "EU-AIA/AnnexIV/2/g@OJ-2024-07-12",
        "the whole 95% interval [0.7031, 0.9062] lies above 0.5 + 0.05",
        "interp-dossier verify <bundle dir> --trust <issuer certificate>",
    ]:
        assert _squash(expected) in body, expected


def test_running_header_names_the_dossier(text):
    assert "interp-dossier \u2014 3f2b8c1e-5d4a-4e6f-9a7b-0c1d2e3f4a5b" in text[1]
    assert "Page 2 of" in text[1]


def test_markup_in_record_text_is_escaped(text):
    body = _squash("\n".join(text))
    assert _squash(HOSTILE_SUMMARY) in body


def test_templates_render_without_weasyprint_warnings(rendered):
    # Unknown CSS, unresolved fonts and refused fetches all show up as warnings or errors.
    assert _WEASYPRINT_WARNINGS.messages == []


def test_unsigned_draft_without_verdicts():
    dossier = _dossier().model_copy(update={"signer": None, **NO_POLICY})
    pdf = render.render_pdf(dossier, canonical_bytes(dossier))
    first = pypdf.PdfReader(io.BytesIO(pdf)).pages[0].extract_text()
    assert "unsigned draft" in first
    assert "No verdicts: no policy was applied" in first
    assert DEVELOPMENT_KEY_NOTICE not in first


# -- errors -------------------------------------------------------------------------------


def test_missing_template_is_one_render_error(monkeypatch, tmp_path: Path):
    monkeypatch.setattr("evidence.resources.resource_dir", lambda name: tmp_path)
    dossier = _dossier()
    with pytest.raises(RenderError) as err:
        render.render_pdf(dossier, canonical_bytes(dossier))
    assert "dossier.html.j2" in str(err.value)
    assert err.value.hint


def test_broken_template_is_one_render_error(monkeypatch, tmp_path: Path):
    (tmp_path / "dossier.html.j2").write_text("{{ dossier.no_such_field }}", encoding="utf-8")
    (tmp_path / "dossier.css").write_text("", encoding="utf-8")
    monkeypatch.setattr("evidence.resources.resource_dir", lambda name: tmp_path)
    dossier = _dossier()
    with pytest.raises(RenderError, match="template cannot be rendered"):
        render.render_pdf(dossier, canonical_bytes(dossier))


def test_json_that_does_not_encode_the_dossier_is_refused():
    dossier = _dossier()
    other = dossier.model_copy(update={"dossier_id": "00000000-0000-4000-8000-000000000000"})
    with pytest.raises(RenderError, match="does not encode"):
        render.render_pdf(dossier, canonical_bytes(other))


def test_characters_without_a_glyph_are_refused():
    dossier = _dossier()
    record = dossier.records[2].model_copy(update={"summary": "\u62d2\u7edd"})
    dossier = dossier.model_copy(update={"records": [record], **NO_POLICY})
    with pytest.raises(RenderError, match="U\\+62D2"):
        render.render_pdf(dossier, canonical_bytes(dossier))


@pytest.mark.parametrize("name", ["", "dir/x.json", "dossier.json"])
def test_bad_attachment_names_are_refused(name):
    dossier = _dossier()
    with pytest.raises(RenderError):
        render.render_pdf(dossier, canonical_bytes(dossier), attachments={name: b"{}"})


# -- number formatting --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "\u2014"),
        (0, "0"),
        (12, "12"),
        (-3, "-3"),
        (2**40, "1099511627776"),
        (0.0, "0"),
        (-0.0, "0"),
        (0.5, "0.5"),
        (0.123456, "0.1235"),
        (1.0, "1"),
        (12.3456, "12.35"),
        (999.95, "1000"),
        (1234.56, "1235"),
        (0.00123456, "0.001235"),
        (0.000123456, "1.235e-4"),
        (-2.5e-7, "-2.500e-7"),
        (1234567.0, "1.235e6"),
    ],
)
def test_format_number(value, expected):
    assert render._format_number(value) == expected


def test_small_formatters():
    assert render._format_interval(0.70312, 0.9) == "[0.7031, 0.9]"
    assert render._format_json({"b": [1, 2], "a": "x\u00e9"}) == '{"b":[1,2],"a":"x\u00e9"}'
    assert render._format_short_hash("ab" * 32) == "ab" * 8 + "\u2026"
    when = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert render._format_utc(when) == "2025-01-02 03:04:05 UTC"
    assert render._format_percent(0.95) == "95%"
    assert render._format_bytes(1048576) == "1\u2009048\u2009576 B"


def test_importing_the_renderer_does_not_load_weasyprint():
    import subprocess
    import sys

    code = (
        "import sys, evidence.render; print('weasyprint' in sys.modules, "
        "'jinja2' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
