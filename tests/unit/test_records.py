import json
import math
from datetime import datetime

import pytest
from pydantic import ValidationError

from evidence.canonical import canonical_bytes
from evidence.dossier import build_dossier, parse_dossier
from evidence.errors import RecordError, UnsupportedVersionError
from evidence.records import (
    ConfidenceInterval,
    EvidenceRecord,
    MeasurementSpec,
    Metric,
    SignerInfo,
    Table,
)
from tests.factories import make_dossier, make_record


def test_metric_rejects_nan_and_inf():
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValidationError):
            Metric(name="m", value=bad, unit="score")


def test_models_are_frozen_and_reject_unknown_keys():
    m = Metric(name="m", value=1.0, unit="score")
    with pytest.raises(ValidationError):
        m.value = 2.0  # type: ignore[misc]
    with pytest.raises(ValidationError, match="extra"):
        Metric(name="m", value=1.0, unit="score", colour="red")


def test_ci_must_be_ordered_and_contain_the_value():
    with pytest.raises(ValidationError, match="exceeds"):
        ConfidenceInterval(lower=1.0, upper=0.0, level=0.95, method="percentile bootstrap", n=10)
    ci = ConfidenceInterval(lower=0.1, upper=0.2, level=0.95, method="percentile bootstrap", n=10)
    with pytest.raises(ValidationError, match="outside its CI"):
        Metric(name="m", value=0.5, unit="score", ci=ci)


def test_error_status_requires_error_and_ok_forbids_it():
    spec = MeasurementSpec(id="heads.inventory", version="1.0.0")
    with pytest.raises(ValidationError, match="requires an 'error'"):
        EvidenceRecord(record_id="r1", measurement=spec, subject="m", status="error")
    with pytest.raises(ValidationError, match="must not carry"):
        EvidenceRecord(
            record_id="r1", measurement=spec, subject="m", status="ok",
            error={"type": "X", "message": "y"},
        )


def test_an_ok_record_headlines_one_of_its_own_metrics():
    spec = MeasurementSpec(id="heads.inventory", version="1.0.0")
    metric = Metric(name="induction_score_max", value=0.9, unit="score")
    record = EvidenceRecord(record_id="r1", measurement=spec, subject="m", status="ok", metrics=[metric],
                            headline="induction_score_max")
    assert record.metric(record.headline).value == 0.9
    with pytest.raises(ValidationError, match="headline 'auroc' is not one of its metrics"):
        EvidenceRecord(record_id="r1", measurement=spec, subject="m", status="ok", metrics=[metric],
                       headline="auroc")
    failed = EvidenceRecord(record_id="r1", measurement=spec, subject="m", status="error",
                            error={"type": "X", "message": "y"}, headline="induction_score_max")
    assert failed.metrics == [] and failed.headline == "induction_score_max"


def test_measurement_id_and_version_are_checked():
    with pytest.raises(ValidationError):
        MeasurementSpec(id="NoDots", version="1.0.0")
    with pytest.raises(ValidationError):
        MeasurementSpec(id="heads.inventory", version="1.0")


def test_table_must_be_rectangular():
    with pytest.raises(ValidationError, match="row 0 has 1 cells"):
        Table(name="t", columns=["a", "b"], rows=[[1]])


def test_created_at_must_be_timezone_aware():
    with pytest.raises(RecordError):
        make_dossier(created_at=datetime(2026, 1, 1, 12, 0))  # noqa: DTZ001 - the point of the test


def test_development_key_must_carry_the_notice():
    with pytest.raises(ValidationError, match="notice"):
        SignerInfo(subject="CN=x", certificate_sha256="0" * 64, development_key=True, notice=None)


def test_duplicate_record_ids_are_refused():
    r = make_record()
    with pytest.raises(RecordError, match="duplicate record ids"):
        make_dossier(records=[r, r])


def test_canonical_bytes_are_rfc8785_and_round_trip():
    d = make_dossier()
    data = canonical_bytes(d)
    # Sorted keys, no insignificant whitespace (for this data, plain JSON agrees with RFC 8785).
    plain = json.dumps(json.loads(data), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert data == plain.encode("utf-8")
    again = parse_dossier(data)
    assert canonical_bytes(again) == data


def test_parse_refuses_a_schema_version_from_the_future():
    data = canonical_bytes(make_dossier()).replace(b'"schema_version":"1.0"', b'"schema_version":"9.0"')
    with pytest.raises(UnsupportedVersionError, match="9.0"):
        parse_dossier(data)


def test_build_dossier_gives_fresh_ids():
    a, b = make_dossier(), build_dossier(**_parts())
    assert a.dossier_id != b.dossier_id


def _parts():
    d = make_dossier()
    return {"model": d.model, "environment": d.environment, "records": d.records}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (b'"value":0.9', b'"value":1e400', r"the number 1e400, which is too large to be finite"),
        (b'"value":0.9', b'"value":-Infinity', r"holds -Infinity, which is not a number JSON allows"),
        (b'"rationale":"r"', b'"rationale":"\\ud800"', r"a lone surrogate \(\\ud800\)"),
        (b'"status":"ok"', b'"status":"ok","status":"ok"', r"has a duplicate key 'status'"),
    ],
)
def test_parse_refuses_what_canonical_json_cannot_hold(old, new, message):
    data = canonical_bytes(make_dossier())
    assert old in data
    with pytest.raises(RecordError, match=message):
        parse_dossier(data.replace(old, new, 1))
