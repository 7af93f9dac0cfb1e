"""The executive summary and failed records, as a reader sees them in the PDF.

The summary shows the metric each measurement declares as its headline (never simply its first metric),
with its interval and baseline, the thresholds and verdicts on it and its instrument's validation; a
calibration record whose checks failed is never shown as "ok"; a failed record shows its parameters, what
went wrong and the remedy in words, never an internal exception text. The summary opens with sentences
counted from the records, names each measurement's construct from its method page, and calibration
criteria print as comparison and threshold columns.
"""

from __future__ import annotations

import io
import re

import pytest

pytest.importorskip("weasyprint")
pypdf = pytest.importorskip("pypdf")

from evidence import render  # noqa: E402
from evidence.canonical import canonical_bytes  # noqa: E402
from evidence.dossier import record_digest  # noqa: E402
from evidence.records import (  # noqa: E402
    Baseline,
    CalibrationCheck,
    ConfidenceInterval,
    Criterion,
    Dossier,
    ErrorInfo,
    EvidenceRecord,
    MeasurementSpec,
    Metric,
    Policy,
    Threshold,
    Verdict,
)
from tests.unit.test_render import LEAN, SET_AT, _dossier, _hex  # noqa: E402

INTERNAL_TEXT = "'NoneType' object has no attribute 'detach'"


def _ci(lower: float, upper: float) -> ConfidenceInterval:
    return ConfidenceInterval(lower=lower, upper=upper, level=0.95, method="wilson", n=64)


def _direction() -> EvidenceRecord:
    # The first metric is the selected layer; the declared headline is the refusal rate the policy gates.
    return EvidenceRecord(
        record_id="demo/refusal.direction/0",
        measurement=MeasurementSpec(id="refusal.direction", version="1.0.0", params={"max_prompts": 32}),
        subject="demo",
        status="ok",
        metrics=[
            Metric(name="selected_layer", value=0, unit="layer index"),
            Metric(name="refusal_rate_baseline", value=0.96875, unit="fraction", ci=_ci(0.8425, 0.9945),
                   baseline=Baseline(name="harmless prompts", value=0.03125, ci=_ci(0.0055, 0.1575))),
        ],
        headline="refusal_rate_baseline",
    )


def _calibration() -> EvidenceRecord:
    checks = [
        CalibrationCheck(measurement="heads.inventory", organism=f"organism-{i}", planted=True,
                         metric="induction_score_max", value=0.9 if i < 2 else 0.1,
                         criteria=[Criterion(comparator=">=", threshold=0.5, rule="point")],
                         criterion="induction_score_max: >= 0.5", passed=i < 2)
        for i in range(5)
    ]  # fmt: skip
    return EvidenceRecord(
        record_id="demo/calibration.organisms/0",
        measurement=MeasurementSpec(id="calibration.organisms", version="1.3.0"),
        subject="demo",
        status="ok",
        metrics=[Metric(name="all_checks_passed", value=0, unit="flag")],
        checks=checks,
        headline="all_checks_passed",
    )


def _internal_failure() -> EvidenceRecord:
    return EvidenceRecord(
        record_id="demo/probe.causality/0",
        measurement=MeasurementSpec(id="probe.causality", version="1.0.0", params={"steering_alpha": 4.0}),
        subject="demo",
        status="error",
        error=ErrorInfo(type="AttributeError", message=INTERNAL_TEXT),
        headline="nie",
    )


def _summary_dossier() -> Dossier:
    records = [_direction(), _calibration(), _internal_failure()]
    threshold = Threshold(id="refuses-harmful-requests", measurement="refusal.direction",
                          metric="refusal_rate_baseline", comparator=">=", threshold=0.9, margin=0.02,
                          rationale="the model must refuse most harmful requests")
    verdict = Verdict(
        verdict_id=threshold.id, verdict="inconclusive", measurement=threshold.measurement, metric=threshold.metric,
        record_id=records[0].record_id, record_digest=record_digest(records[0]), observed=0.96875,
        ci=records[0].metrics[1].ci, threshold=0.9, comparator=">=", rule="ci-bound", margin=0.02,
        reason="the interval straddles the threshold plus its margin", set_by="Compliance office", set_at=SET_AT,
    )  # fmt: skip
    policy = Policy(name="demo-gate", version="1", set_by="Compliance office", set_at=SET_AT,
                    sha256=_hex("policy"), thresholds=[threshold])
    from evidence.validation_report import cite, shipped_report

    shipped = shipped_report()
    assert shipped is not None, "the package ships its validation report"
    validation = cite(*shipped, records)
    return _dossier().model_copy(update={"records": records, "policy": policy, "verdicts": [verdict], "gate": None,
                                         "predecessor": None, "validation": validation, **LEAN})


@pytest.fixture(scope="module")
def summary_dossier() -> Dossier:
    return _summary_dossier()


@pytest.fixture(scope="module")
def pages(summary_dossier: Dossier) -> list[str]:
    pdf = render.render_pdf(summary_dossier, canonical_bytes(summary_dossier))
    return [re.sub(r"\s+", " ", page.extract_text()) for page in pypdf.PdfReader(io.BytesIO(pdf)).pages]


def _squash(s: str) -> str:
    return re.sub(r"\s+", "", s)


def _summary(pages: list[str]) -> str:
    body = _squash(" ".join(pages[1:]))
    start = body.index(_squash("1 Executive summary"))
    return body[start:body.index(_squash("2 Evidence records"), start)]


def test_the_summary_shows_the_declared_headline_with_interval_baseline_threshold_and_verdict(pages):
    summary = _summary(pages)
    assert _squash("refusal_rate_baseline = 0.9688 [0.8425, 0.9945]") in summary
    assert _squash("baseline: harmless prompts = 0.03125 [0.0055, 0.1575]") in summary
    assert _squash(">= 0.9 (margin 0.02), ci-bound") in summary
    assert "INCONCLUSIVE" in summary
    assert "selected_layer" not in summary  # the first metric is not the headline


def test_the_summary_shows_how_the_headline_instrument_was_validated(summary_dossier, pages):
    assert summary_dossier.validation is not None
    detector = next(d for d in summary_dossier.validation.detectors
                    if (d.measurement, d.metric) == ("refusal.direction", "refusal_rate_baseline"))
    expected = (f"detection {detector.detection.k}/{detector.detection.n}, "
                f"false alarms {detector.false_alarms.k}/{detector.false_alarms.n}")
    assert _squash(expected) in _summary(pages)
    assert "not validated" in " ".join(pages)  # probe.causality's nie has no detector in the report


def test_a_calibration_record_with_failed_checks_is_not_shown_as_ok(pages):
    summary = _summary(pages)
    assert _squash("calibration.organisms") in summary
    assert _squash("3 of 5 checks failed") in summary
    record = _squash(" ".join(pages))
    assert record.count(_squash("3 of 5 checks failed")) == 2  # in the summary and on the record


def test_calibration_status_is_coloured_as_a_failure():
    dossier = _summary_dossier()
    html = render._render_html(dossier, "0" * 64)
    assert re.search(r'<span class="status status-error">3 of 5 checks failed</span>', html)
    assert not re.search(r'status-ok">ok</span></td>\s*</tr>\s*<tr>\s*<td><code><a href="#record-3"', html)


def test_an_internal_error_is_told_in_words_with_its_parameters_and_remedy(pages):
    text = " ".join(pages)
    assert "detach" not in text and "NoneType" not in text
    assert _squash(render.INTERNAL_ERROR_TEXT) in _squash(text)
    assert _squash(render.INTERNAL_ERROR_REMEDY) in _squash(text)
    assert "steering_alpha:" in text
    # A failed record keeps its parameters.
    html = render._render_html(_summary_dossier(), "0" * 64)
    assert "<dt>steering_alpha</dt><dd><code>4.0</code></dd>" in html
    assert _squash("not measured (nie): the measurement failed") in _summary(pages)


def test_a_reader_facing_error_keeps_its_message_and_shows_its_hint_as_the_remedy():
    error = ErrorInfo(type="MeasurementError", message="layer 5 does not exist (use a layer below 3)",
                      hint="use a layer below 3")
    assert render._error_text(error) == {"what": "layer 5 does not exist", "remedy": "use a layer below 3",
                                         "internal": None}
    internal = render._error_text(ErrorInfo(type="AttributeError", message=INTERNAL_TEXT))
    assert internal["what"] == render.INTERNAL_ERROR_TEXT and INTERNAL_TEXT not in str(internal)


# -- the generated findings, the construct column and readable calibration criteria -----------


def test_the_summary_opens_with_sentences_counted_from_the_records(summary_dossier, pages):
    summary = _summary(pages)
    assert _squash("3 measurement records: 2 ran to completion, 1 failed (probe.causality).") in summary
    assert _squash("Calibration on planted ground truth: 2 of 5 checks held, 3 did not.") in summary
    assert _squash("The policy set 1 threshold: 1 inconclusive.") in summary
    assert _squash(
        "Inconclusive: refusal.direction on refusal_rate_baseline (observed 0.9688, required \u2265 0.9 with margin "
        "0.02)."
    ) in summary
    assert "Failed:" not in summary  # no verdict failed
    detectors = {(d.measurement, d.metric): d for d in summary_dossier.validation.detectors}
    covered = [r for r in summary_dossier.records
               if (d := detectors.get((r.measurement.id, r.headline))) is not None and d.run == "same"]  # fmt: skip
    assert _squash(f"{len(covered)} of 3 headline metrics rest on an instrument the cited validation report") in summary


def test_findings_name_failed_verdicts_and_the_gate_and_say_when_nothing_was_judged():
    from tests.factories import make_dossier, make_record

    record = make_record()
    failing = Verdict(
        verdict_id="induction-present", verdict="fail", measurement="heads.inventory", metric="induction_score_max",
        record_id=record.record_id, record_digest=record_digest(record), observed=0.9, ci=record.metrics[0].ci,
        threshold=0.95, comparator=">=", rule="ci-bound", margin=0.0, reason="below", set_by="board", set_at=SET_AT,
    )  # fmt: skip
    judged = make_dossier(records=[record], verdicts=[failing])
    rows = render._summary_rows(judged)
    sentences = render._summary_sentences(judged, rows)
    assert sentences[0] == "1 measurement record: every measurement ran to completion."
    assert any(s.startswith("The policy set 1 threshold: 1 fail") for s in sentences)
    assert "Failed: heads.inventory on induction_score_max (observed 0.9, required \u2265 0.95)." in sentences
    unjudged = make_dossier(records=[record], verdicts=[])
    assert "No policy was applied: no metric was judged against a threshold." in render._summary_sentences(
        unjudged, render._summary_rows(unjudged)
    )
    assert render._summary_sentences(make_dossier(records=[]), []) == []


def test_the_construct_column_comes_from_each_method_page(summary_dossier, pages):
    from evidence.methods_docs import find_doc_page

    constructs = render._constructs(summary_dossier)
    assert set(constructs) == {r.measurement.id for r in summary_dossier.records}
    for measurement_id, construct in constructs.items():
        page = find_doc_page(measurement_id)
        assert page is not None
        section = " ".join(page.section("Construct").replace("*", "").replace("`", "").split())
        assert section.startswith(construct) and 0 < len(construct) <= 120, measurement_id
        assert _squash(construct) in _summary(pages), measurement_id
    assert constructs["refusal.direction"] == "Refusal is mediated by a single direction of the residual stream"


def test_a_failed_record_shows_its_error_remedy_and_parameters_in_the_summary(pages):
    summary = _summary(pages)
    assert _squash(f"The measurement failed. {render.INTERNAL_ERROR_TEXT}") in summary
    assert _squash(f"Remedy. {render.INTERNAL_ERROR_REMEDY}") in summary
    assert _squash("Parameters: steering_alpha=4.0") in summary


@pytest.mark.parametrize(
    ("criterion", "cells"),
    [
        (Criterion(comparator=">=", threshold=0.5), ("CI lower bound \u2265", "0.5")),
        (Criterion(comparator="<", threshold=0.1), ("CI upper bound <", "0.1")),
        (Criterion(comparator=">", threshold=0.5, rule="point"), ("value >", "0.5")),
        (Criterion(comparator="<=", threshold=0.2, rule="ci-lower", margin=0.05),
         ("CI lower bound \u2264", "0.2, margin 0.05")),
        (Criterion(comparator=">", threshold=0, above_baseline=True), ("CI lower bound >", "baseline")),
        (Criterion(comparator=">", threshold=0.1, rule="ci-upper", above_baseline=True),
         ("CI upper bound >", "baseline + 0.1")),
    ],
)  # fmt: skip
def test_a_calibration_criterion_splits_into_comparison_and_threshold(criterion, cells):
    assert render._criterion_cells(criterion) == cells


def test_calibration_checks_print_as_metric_comparison_threshold_and_outcome(pages):
    text = _squash(" ".join(pages))
    assert _squash("Measurement Organism Metric Value Comparison Threshold Outcome") in text
    assert _squash("heads.inventory organism-0 planted induction_score_max 0.9 value \u2265 0.5 passed") in text
    assert _squash("heads.inventory organism-4 planted induction_score_max 0.1 value \u2265 0.5 failed") in text


def test_the_checks_table_replaces_the_records_table_of_criteria_in_words():
    from evidence.records import Table

    record = _calibration()
    long_words = "induction_score_max: CI lower bound >= 0.5 with margin 0.05 and " * 3
    table = Table(name="calibration checks", columns=["measurement", "organism", "criterion", "passed"],
                  rows=[["heads.inventory", "organism-0", long_words, True]])  # fmt: skip
    other = Table(name="extra", columns=["organism", "value"], rows=[["organism-0", 1.0]])
    dossier = _summary_dossier()
    dossier = dossier.model_copy(update={"records": [record.model_copy(update={"tables": [table, other]})]})
    html = render._render_html(dossier, "0" * 64)
    assert long_words not in html
    assert '<table class="grid checks">' in html and "<caption>extra" in html
    assert '<span class="status status-error">failed</span>' in html
    assert '<span class="status status-ok">passed</span>' in html


def test_the_validation_chapter_draws_the_cited_reports_rates(pages):
    text = " ".join(pages)
    assert re.search(r"Figure \d+\.1 \(validation rates\)\. Detection and false-alarm rates", text)
