"""The auditor's verification: the happy path, and one test per attack, by failing step."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from evidence.canonical import canonical_bytes
from signing import (
    BundleError,
    TrustError,
    VerificationError,
    VerificationReport,
    sign_pdf,
    verify_bundle,
)
from signing.bundle import DOSSIER_JSON, DOSSIER_PDF, DSSE_ENVELOPE, SIGNER_PEM
from signing.dsse import PAYLOAD_TYPE, pae, sign_envelope
from tests.helpers_bundle import (
    dossier_bytes,
    dossier_data,
    dossier_with_calibration,
    make_bundle,
    pdf_appended_junk,
    pdf_byte_flipped_in_signed_range,
    pdf_embedded_file_swapped_in_update,
    pdf_incremental_update_title,
    render_pdf,
    reseal_envelope,
    signer_for,
    write_files,
)

STEPS = [1, 2, 3, 4, 5, 6, 7]
_PEM = Encoding.PEM


@pytest.fixture(scope="module")
def signer():
    return signer_for()


@pytest.fixture(scope="module")
def dossier_json(signer) -> bytes:
    return dossier_bytes(dossier_data(signer))


@pytest.fixture(scope="module")
def files(signer, dossier_json) -> dict[str, bytes]:
    return make_bundle(signer, dossier_json)


@pytest.fixture(scope="module")
def anchor(tmp_path_factory, files) -> Path:
    path = tmp_path_factory.mktemp("anchor") / "trusted.pem"
    path.write_bytes(files[SIGNER_PEM])
    return path


def verify(tmp_path: Path, files: dict[str, bytes], anchor: Path) -> VerificationReport:
    return verify_bundle(write_files(files, tmp_path / "bundle"), [anchor])


def first_failure(report: VerificationReport) -> int:
    failed = report.first_failure()
    assert failed is not None, "expected a failing step"
    return failed.number


def assert_fails_first_at(report: VerificationReport, number: int) -> None:
    assert not report.bottom_line
    assert first_failure(report) == number
    assert all(s.passed for s in report.steps if s.number < number)


def assert_not_evaluated(report: VerificationReport, numbers: list[int], *, because: int) -> None:
    for number in numbers:
        result = step(report, number)
        assert result.status == "not evaluated" and not result.passed, result
        assert result.blocked_by == because
        assert result.detail == f"not evaluated (step {because} failed)"


def step(report: VerificationReport, number: int):
    return next(s for s in report.steps if s.number == number)


def test_happy_path_all_steps_pass(tmp_path, files, anchor):
    report = verify(tmp_path, files, anchor)
    assert [s.number for s in report.steps] == STEPS
    assert all(s.passed and not s.skipped for s in report.steps)
    assert report.bottom_line
    assert report.development_key
    assert report.notice == "development key \u2014 not for filing"
    report.raise_for_failure()


def test_step_8_is_not_reported_without_timestamps(tmp_path, files, anchor):
    numbers = [s["number"] for s in verify(tmp_path, files, anchor).to_json()["steps"]]
    assert 8 not in numbers


def test_report_to_json(tmp_path, files, anchor):
    data = verify(tmp_path, files, anchor).to_json()
    json.dumps(data)
    assert data["bottom_line"] is True
    assert set(data["steps"][0]) == {"number", "title", "status", "passed", "blocked_by", "detail"}
    assert {s["status"] for s in data["steps"]} == {"pass"}
    assert set(data) == {
        "bottom_line", "development_key", "error", "notice", "revocation_policy", "signer_subject", "steps",
        "validated_at", "warnings",
    }  # fmt: skip
    assert data["error"] is None
    assert data["revocation_policy"] == "soft-fail" and data["validated_at"].endswith("Z")


def test_bottom_line_is_computed_from_the_steps():
    from signing import StepResult

    passed = StepResult(number=1, title="envelope", passed=True, detail="ok")
    failed = StepResult(number=2, title="statement", passed=False, detail="wrong type")
    assert VerificationReport(steps=[passed], development_key=False).bottom_line
    report = VerificationReport(steps=[passed, failed], development_key=False)
    assert not report.bottom_line and report.to_json()["bottom_line"] is False
    with pytest.raises(VerificationError, match=r"step \(2\) statement"):
        report.raise_for_failure()
    empty = VerificationReport(steps=[], development_key=False)
    assert not empty.bottom_line
    with pytest.raises(VerificationError):
        empty.raise_for_failure()


def test_steps_after_a_failed_step_are_not_evaluated_and_say_why(tmp_path, files, anchor):
    """An unsigned change to dossier.json: nothing read from the bundle after step 3 is judged."""
    tampered = {**files, DOSSIER_JSON: files[DOSSIER_JSON].replace(b'"toy"', b'"toz"', 1)}
    data = verify(tmp_path, tampered, anchor).to_json()
    assert data["bottom_line"] is False
    assert [s["status"] for s in data["steps"]] == ["pass", "pass", "fail"] + ["not evaluated"] * 4
    assert [s["blocked_by"] for s in data["steps"]] == [None, None, None, 3, 3, 3, 3]


def test_verification_works_inside_a_running_event_loop(tmp_path, files, anchor):
    bundle = write_files(files, tmp_path / "bundle")

    async def inside() -> VerificationReport:
        return verify_bundle(bundle, [anchor])

    assert asyncio.run(inside()).bottom_line


# --- tampering with the files ---------------------------------------------------------------


def test_pdf_byte_flipped_in_signed_range(tmp_path, files, anchor):
    tampered = {**files, DOSSIER_PDF: pdf_byte_flipped_in_signed_range(files[DOSSIER_PDF])}
    report = verify(tmp_path, tampered, anchor)
    assert_fails_first_at(report, 3)
    assert_not_evaluated(report, [4, 5, 6, 7], because=3)


def test_pdf_byte_flipped_in_signed_range_with_resealed_envelope(tmp_path, signer, files, anchor):
    tampered = {**files, DOSSIER_PDF: pdf_byte_flipped_in_signed_range(files[DOSSIER_PDF])}
    report = verify(tmp_path, reseal_envelope(tampered, signer), anchor)
    assert_fails_first_at(report, 5)


def test_pdf_incremental_update_title(tmp_path, files, anchor):
    tampered = {**files, DOSSIER_PDF: pdf_incremental_update_title(files[DOSSIER_PDF])}
    report = verify(tmp_path, tampered, anchor)
    assert_fails_first_at(report, 3)
    assert not step(report, 5).passed


def test_pdf_incremental_update_title_with_resealed_envelope(tmp_path, signer, files, anchor):
    tampered = {**files, DOSSIER_PDF: pdf_incremental_update_title(files[DOSSIER_PDF])}
    report = verify(tmp_path, reseal_envelope(tampered, signer), anchor)
    assert_fails_first_at(report, 5)
    assert "something was added after the signed revision" in step(report, 5).detail
    assert_not_evaluated(report, [6], because=5)


def test_pdf_embedded_file_swapped_in_update(tmp_path, signer, files, anchor):
    forged = files[DOSSIER_JSON].replace(b'"toy"', b'"toz"', 1)
    pdf = pdf_embedded_file_swapped_in_update(files[DOSSIER_PDF], forged)
    tampered = {**files, DOSSIER_JSON: forged, DOSSIER_PDF: pdf}
    assert_fails_first_at(verify(tmp_path / "a", tampered, anchor), 3)
    report = verify(tmp_path / "b", reseal_envelope(tampered, signer), anchor)
    assert_fails_first_at(report, 5)
    assert "something was added after the signed revision" in step(report, 5).detail


def test_pdf_appended_junk(tmp_path, signer, files, anchor):
    tampered = {**files, DOSSIER_PDF: pdf_appended_junk(files[DOSSIER_PDF])}
    assert_fails_first_at(verify(tmp_path / "a", tampered, anchor), 3)
    report = verify(tmp_path / "b", reseal_envelope(tampered, signer), anchor)
    assert_fails_first_at(report, 5)
    assert "something was added after the signed revision" in step(report, 5).detail


def test_dossier_json_byte_changed(tmp_path, files, anchor):
    tampered = {**files, DOSSIER_JSON: files[DOSSIER_JSON].replace(b'"toy"', b'"toz"', 1)}
    assert tampered[DOSSIER_JSON] != files[DOSSIER_JSON]
    report = verify(tmp_path, tampered, anchor)
    assert_fails_first_at(report, 3)
    assert "dossier.json" in step(report, 3).detail
    assert_not_evaluated(report, [4, 5, 6, 7], because=3)


def test_record_removed_and_resigned_by_other_key(tmp_path, signer, anchor):
    attacker = signer_for("attacker")
    fewer = dossier_bytes(dossier_data(signer, n_records=1))
    report = verify(tmp_path, make_bundle(attacker, fewer), anchor)
    assert_fails_first_at(report, 1)
    assert "does not chain" in step(report, 1).detail
    for later in (2, 3, 5, 6):
        assert not step(report, later).passed


def test_pdf_signed_by_other_trusted_key(tmp_path, signer, dossier_json, files, anchor):
    other = signer_for("second trusted signer")
    other_anchor = tmp_path / "other.pem"
    other_anchor.write_bytes(other.certificate.public_bytes(_PEM))
    pdf = sign_pdf(render_pdf(dossier_json), other)
    tampered = reseal_envelope({**files, DOSSIER_PDF: pdf}, signer)
    report = verify_bundle(write_files(tampered, tmp_path / "bundle"), [anchor, other_anchor])
    assert_fails_first_at(report, 5)
    assert "different certificate" in step(report, 5).detail


def _altered_statement(files: dict[str, bytes]) -> bytes:
    envelope = json.loads(files[DSSE_ENVELOPE])
    statement = json.loads(base64.b64decode(envelope["payload"]))
    for subject in statement["subject"]:
        if subject["name"] == DOSSIER_JSON:
            subject["digest"]["sha256"] = "0" * 64
    return canonical_bytes(statement)


def test_subject_digest_altered(tmp_path, files, anchor):
    envelope = json.loads(files[DSSE_ENVELOPE])
    envelope["payload"] = base64.b64encode(_altered_statement(files)).decode()
    tampered = {**files, DSSE_ENVELOPE: canonical_bytes(envelope)}
    report = verify(tmp_path, tampered, anchor)
    assert_fails_first_at(report, 1)
    assert "does not verify" in step(report, 1).detail
    assert_not_evaluated(report, [2, 3, 4, 5, 6, 7], because=1)


def test_subject_digest_altered_and_resigned_with_right_key(tmp_path, signer, files, anchor):
    tampered = {**files, DSSE_ENVELOPE: sign_envelope(_altered_statement(files), signer)}
    report = verify(tmp_path, tampered, anchor)
    assert_fails_first_at(report, 3)


def test_schema_version_from_future(tmp_path, signer, anchor):
    data = dossier_data(signer)
    data["schema_version"] = "2.0"
    future = dossier_bytes(data)
    report = verify(tmp_path, make_bundle(signer, future), anchor)
    assert_fails_first_at(report, 4)
    assert "'2.0'" in step(report, 4).detail and "1.0" in step(report, 4).detail
    assert step(report, 5).passed and step(report, 6).passed
    assert_not_evaluated(report, [7], because=4)


def test_dossier_json_not_valid_against_schema(tmp_path, signer, anchor):
    data = dossier_data(signer)
    data["unexpected_field"] = 1
    report = verify(tmp_path, make_bundle(signer, dossier_bytes(data)), anchor)
    assert_fails_first_at(report, 4)
    assert "does not validate" in step(report, 4).detail


def test_wrong_trust_anchor(tmp_path, files):
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(signer_for("stranger").certificate.public_bytes(_PEM))
    report = verify(tmp_path, files, stranger)
    assert_fails_first_at(report, 1)
    assert not any(s.passed for s in report.steps if s.number in (2, 3, 5, 6))


@pytest.mark.parametrize(
    ("attack", "mutate", "message"),
    [
        ("envelope_two_signatures", lambda e: e["signatures"].append(e["signatures"][0]), "exactly one"),
        ("envelope_no_signature", lambda e: e["signatures"].clear(), "exactly one"),
        ("envelope_unknown_key", lambda e: e.update(extra=1), "unknown keys"),
        ("envelope_bad_base64", lambda e: e.update(payload=e["payload"] + "!"), "base64"),
        ("envelope_keyid_other", lambda e: e["signatures"][0].update(keyid="0" * 64), "keyid"),
    ],
)
def test_malformed_envelope_fails_step_1(tmp_path, files, anchor, attack, mutate, message):
    envelope = json.loads(files[DSSE_ENVELOPE])
    mutate(envelope)
    report = verify(tmp_path, {**files, DSSE_ENVELOPE: canonical_bytes(envelope)}, anchor)
    assert_fails_first_at(report, 1)
    assert message in step(report, 1).detail, attack


def test_wrong_payload_type_fails_step_2(tmp_path, signer, files, anchor):
    envelope = json.loads(files[DSSE_ENVELOPE])
    statement = base64.b64decode(envelope["payload"])
    envelope["payloadType"] = "application/json"
    signature = signer.sign(pae("application/json", statement))
    envelope["signatures"][0]["sig"] = base64.b64encode(signature).decode()
    report = verify(tmp_path, {**files, DSSE_ENVELOPE: canonical_bytes(envelope)}, anchor)
    assert_fails_first_at(report, 2)
    assert PAYLOAD_TYPE in step(report, 2).detail


def test_signer_pem_garbage_fails_step_1(tmp_path, files, anchor):
    report = verify(tmp_path, {**files, SIGNER_PEM: b"not a certificate"}, anchor)
    assert_fails_first_at(report, 1)


# --- material that cannot be evaluated ------------------------------------------------------


def test_no_trust_anchor(tmp_path, files):
    bundle = write_files(files, tmp_path / "bundle")
    with pytest.raises(TrustError, match="no trust anchor given: pass --trust CERT.pem") as info:
        verify_bundle(bundle, [])
    assert info.value.exit_code == 2


def test_unreadable_trust_anchor(tmp_path, files):
    bundle = write_files(files, tmp_path / "bundle")
    with pytest.raises(TrustError, match="cannot read trust anchor"):
        verify_bundle(bundle, [tmp_path / "missing.pem"])
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"hello")
    with pytest.raises(TrustError, match="holds no X.509 certificate"):
        verify_bundle(bundle, [garbage])


@pytest.mark.parametrize("missing", [DOSSIER_JSON, DOSSIER_PDF, DSSE_ENVELOPE, SIGNER_PEM])
def test_missing_file_is_a_bundle_error(tmp_path, files, anchor, missing):
    bundle = write_files({k: v for k, v in files.items() if k != missing}, tmp_path / "bundle")
    with pytest.raises(BundleError, match=f"missing {missing}") as info:
        verify_bundle(bundle, [anchor])
    assert info.value.exit_code == 2


def test_missing_bundle_directory(tmp_path, anchor):
    with pytest.raises(BundleError, match="does not exist"):
        verify_bundle(tmp_path / "nowhere", [anchor])


def test_raise_for_failure_names_the_step(tmp_path, files, anchor):
    tampered = {**files, DOSSIER_JSON: files[DOSSIER_JSON].replace(b'"toy"', b'"toz"', 1)}
    report = verify(tmp_path, tampered, anchor)
    with pytest.raises(VerificationError, match=r"step \(3\)") as info:
        report.raise_for_failure()
    assert info.value.exit_code == 1


# --- (7) judgement recomputes from evidence and policy ---------------------------------------


def _resealed_with(signer, dossier_json: bytes, mutate) -> dict[str, bytes]:
    data = json.loads(dossier_json)
    mutate(data)
    return make_bundle(signer, dossier_bytes(data))


def test_happy_path_recomputes_verdicts(tmp_path, files, anchor):
    report = verify(tmp_path, files, anchor)
    # the factory policy gates a measurement the dossier did not run: that leaves the gate open
    assert step(report, 7).passed and "gate INCONCLUSIVE" in step(report, 7).detail


def test_verdict_flipped_and_resealed_fails_at_step_7(tmp_path, signer, dossier_json, anchor):
    def flip(data):
        data["verdicts"][0]["verdict"] = "fail"
    report = verify(tmp_path, _resealed_with(signer, dossier_json, flip), anchor)
    assert_fails_first_at(report, 7)
    assert "recomputes as 'pass'" in step(report, 7).detail


def test_gate_flipped_and_resealed_fails_at_step_7(tmp_path, signer, dossier_json, anchor):
    def flip(data):
        data["gate"]["decision"] = "fail"
    report = verify(tmp_path, _resealed_with(signer, dossier_json, flip), anchor)
    assert_fails_first_at(report, 7)
    assert "gate" in step(report, 7).detail


def test_metric_changed_without_its_verdict_fails_at_step_7(tmp_path, signer, dossier_json, anchor):
    def weaken(data):
        metric = data["records"][0]["metrics"][0]
        metric["value"], metric["ci"]["lower"], metric["ci"]["upper"] = 0.2, 0.1, 0.3
    report = verify(tmp_path, _resealed_with(signer, dossier_json, weaken), anchor)
    assert_fails_first_at(report, 7)


def test_clause_index_forged_and_resealed_fails_at_step_7(tmp_path, signer, dossier_json, anchor):
    def forge(data):
        entry = next(e for e in data["clause_index"] if e["status"] != "evidenced")
        entry["status"], entry["records"] = "evidenced", ["heads.inventory:toy-0"]
    report = verify(tmp_path, _resealed_with(signer, dossier_json, forge), anchor)
    assert_fails_first_at(report, 7)
    assert "clause index" in step(report, 7).detail


def test_calibration_checks_recompute_at_step_7(tmp_path, signer, anchor):
    report = verify(tmp_path, make_bundle(signer, dossier_with_calibration(signer)), anchor)
    assert step(report, 7).passed, step(report, 7).detail
    assert "1 calibration checks recomputed" in step(report, 7).detail


def test_calibration_check_flipped_to_passed_and_resealed_fails_at_step_7(tmp_path, signer, anchor):
    def flip(data):
        data["records"][1]["checks"][0]["passed"] = True
    report = verify(tmp_path, _resealed_with(signer, dossier_with_calibration(signer), flip), anchor)
    assert_fails_first_at(report, 7)
    detail = step(report, 7).detail
    assert "'calibration.organisms:toy'" in detail and "'induction#untrained'" in detail
    assert "'induction_score_max'" in detail and "recorded as passed, but recomputes as failed" in detail


# --- export files: signed, embedded, nothing unsigned ----------------------------------------

EXPORT = {"dossier.cdx.json": b'{"bomFormat":"CycloneDX"}'}


def _bundle_with_export(signer, dossier_json, *, embed=True):
    from signing.bundle import seal
    from tests.helpers_bundle import predicate_for

    pdf = render_pdf(dossier_json, EXPORT if embed else None)
    return seal(dossier_json, pdf, signer, predicate_for(dossier_json), extra=EXPORT)


def test_bundle_with_export_verifies(tmp_path, signer, dossier_json, anchor):
    report = verify(tmp_path, _bundle_with_export(signer, dossier_json), anchor)
    assert report.bottom_line, report.first_failure()
    assert "dossier.cdx.json" in step(report, 3).detail and "dossier.cdx.json" in step(report, 6).detail


def test_unsigned_file_added_to_bundle_fails_at_step_3(tmp_path, files, anchor):
    report = verify(tmp_path, {**files, "notes.txt": b"trust me"}, anchor)
    assert_fails_first_at(report, 3)
    assert "notes.txt" in step(report, 3).detail


def test_signed_export_removed_from_bundle_fails_at_step_3(tmp_path, signer, dossier_json, anchor):
    files = _bundle_with_export(signer, dossier_json)
    del files["dossier.cdx.json"]
    report = verify(tmp_path, files, anchor)
    assert_fails_first_at(report, 3)
    assert "lacks" in step(report, 3).detail


def test_export_not_embedded_in_pdf_fails_at_step_6(tmp_path, signer, dossier_json, anchor):
    report = verify(tmp_path, _bundle_with_export(signer, dossier_json, embed=False), anchor)
    assert_fails_first_at(report, 6)


def test_export_may_not_shadow_a_core_file(signer, dossier_json):
    from signing.bundle import seal
    from signing.errors import BundleError

    with pytest.raises(BundleError, match="may not be named"):
        seal(dossier_json, render_pdf(dossier_json), signer, {}, extra={"signer.pem": b"x"})


def test_hidden_unsigned_file_in_bundle_fails_at_step_3(tmp_path, files, anchor):
    report = verify(tmp_path, {**files, ".notes": b"trust me"}, anchor)
    assert_fails_first_at(report, 3)
    assert ".notes" in step(report, 3).detail and "not covered" in step(report, 3).detail


def test_subdirectory_in_bundle_fails_at_step_3(tmp_path, files, anchor):
    bundle = write_files(files, tmp_path / "bundle")
    (bundle / "extra").mkdir()
    (bundle / "extra" / "dossier.json").write_bytes(b"{}")
    report = verify_bundle(bundle, [anchor])
    assert_fails_first_at(report, 3)
    assert step(report, 3).detail == "the bundle holds entries that are not signed files: extra is a subdirectory"


def test_hidden_subdirectory_in_bundle_fails_at_step_3(tmp_path, files, anchor):
    bundle = write_files(files, tmp_path / "bundle")
    (bundle / ".git").mkdir()
    report = verify_bundle(bundle, [anchor])
    assert_fails_first_at(report, 3)
    assert ".git is a subdirectory" in step(report, 3).detail


def test_huge_extra_file_is_not_read_and_fails_step_3(tmp_path, files, anchor, monkeypatch):
    from signing.bundle import MAX_FILE_BYTES

    bundle = write_files(files, tmp_path / "bundle")
    huge = bundle / "padding.bin"
    with huge.open("wb") as handle:  # sparse: takes no disk space
        handle.truncate(MAX_FILE_BYTES + 1)
    opened: list[str] = []
    real_open, real_read_bytes = Path.open, Path.read_bytes

    def spy_open(self, *args, **kwargs):
        opened.append(self.name)
        return real_open(self, *args, **kwargs)

    def spy_read_bytes(self):
        opened.append(self.name)
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "open", spy_open)
    monkeypatch.setattr(Path, "read_bytes", spy_read_bytes)
    report = verify_bundle(bundle, [anchor])
    assert_fails_first_at(report, 3)
    assert step(report, 3).detail == (
        "the bundle holds entries that are not signed files: padding.bin is a file of 64.0 MiB, larger than "
        "the 64 MiB a bundle file may have (it was not read)"
    )
    assert "padding.bin" not in opened


@pytest.mark.parametrize(("name", "number"), [(DSSE_ENVELOPE, 1), (SIGNER_PEM, 1), (DOSSIER_PDF, 3)])
def test_an_oversized_bundle_file_is_not_read_and_fails_its_step(tmp_path, files, anchor, name, number):
    from signing.bundle import MAX_FILE_BYTES

    bundle = write_files(files, tmp_path / "bundle")
    with (bundle / name).open("r+b") as handle:  # sparse: takes no disk space
        handle.truncate(MAX_FILE_BYTES + 1)
    report = verify_bundle(bundle, [anchor])
    assert_fails_first_at(report, number)
    assert f"{name} " in step(report, number).detail and "larger than the 64 MiB" in step(report, number).detail


def test_bundle_file_size_limit_is_generous():
    from signing.bundle import MAX_FILE_BYTES

    assert MAX_FILE_BYTES == 64 * 1024 * 1024


# --- step 4: strict parsing and canonical bytes ---------------------------------------------


def test_dossier_json_not_canonical_and_resealed_fails_at_step_4(tmp_path, signer, dossier_json, anchor):
    pretty = json.dumps(json.loads(dossier_json), indent=2, sort_keys=True).encode()
    report = verify(tmp_path, make_bundle(signer, pretty), anchor)
    assert_fails_first_at(report, 4)
    assert "is not in canonical form (RFC 8785" in step(report, 4).detail
    assert_not_evaluated(report, [7], because=4)


def test_dossier_json_keys_reordered_and_resealed_fails_at_step_4(tmp_path, signer, dossier_json, anchor):
    doc = json.loads(dossier_json)
    reordered = json.dumps(dict(reversed(list(doc.items()))), separators=(",", ":"), ensure_ascii=False).encode()
    report = verify(tmp_path, make_bundle(signer, reordered), anchor)
    assert_fails_first_at(report, 4)
    assert "canonical form" in step(report, 4).detail


@pytest.mark.parametrize(
    ("attack", "old", "new", "message"),
    [
        ("infinity_as_1e400", b'"value":0.9', b'"value":1e400',
         "dossier.json holds the number 1e400, which is too large to be finite"),
        ("nan_literal", b'"value":0.9', b'"value":NaN', "dossier.json holds NaN, which is not a number JSON allows"),
        ("lone_surrogate", b'"rationale":"r"', b'"rationale":"r\\ud800"',
         "dossier.json holds a lone surrogate (\\ud800), which is not a Unicode character"),
    ],
)
def test_unrepresentable_value_resealed_fails_at_step_4(tmp_path, signer, dossier_json, anchor, attack, old, new,
                                                         message):
    assert old in dossier_json
    hostile = dossier_json.replace(old, new, 1)
    report = verify(tmp_path, make_bundle(signer, hostile), anchor)
    assert_fails_first_at(report, 4)
    assert step(report, 4).detail == message
    assert_not_evaluated(report, [7], because=4)


# --- step 7: the policy applies to this run and this model --------------------------------------


def _judged_dossier(signer, *, records=None, policy=None) -> bytes:
    """A dossier whose verdicts, gate and clause index follow honestly from its records and policy."""
    from evidence.policy import evaluate, roll_up
    from evidence.records import SignerInfo
    from signing import describe_signer
    from tests.factories import make_dossier, make_policy, make_record

    records = records if records is not None else [make_record()]
    policy = policy if policy is not None else make_policy()
    verdicts = evaluate(policy, records, subject="toy")
    dossier = make_dossier(
        records=records, policy=policy, verdicts=verdicts, gate=roll_up(verdicts),
        signer=SignerInfo.model_validate(describe_signer(signer)),
    )
    return dossier_bytes(dossier.model_dump(mode="json"))


def test_policy_set_after_the_run_fails_at_step_7(tmp_path, signer, anchor):
    from datetime import UTC, datetime

    from tests.factories import make_policy

    late = make_policy(set_at=datetime(2026, 12, 1, tzinfo=UTC))  # the dossier is created 2026-11-24
    report = verify(tmp_path, make_bundle(signer, _judged_dossier(signer, policy=late)), anchor)
    assert_fails_first_at(report, 7)
    assert step(report, 7).detail == (
        "the policy was set at 2026-12-01T00:00:00+00:00, not before the dossier was created "
        "(2026-11-24T12:00:00+00:00): thresholds must be fixed before the run they judge"
    )


def test_policy_set_before_the_run_verifies(tmp_path, signer, anchor):
    report = verify(tmp_path, make_bundle(signer, _judged_dossier(signer)), anchor)
    assert report.bottom_line, report.first_failure()


def test_clause_index_emptied_and_resealed_fails_at_step_7(tmp_path, signer, anchor):
    data = dossier_data(signer)
    assert data["clause_index"]
    data["clause_index"] = []
    report = verify(tmp_path, make_bundle(signer, dossier_bytes(data)), anchor)
    assert_fails_first_at(report, 7)
    assert "the clause index is empty, but the records and verdicts yield" in step(report, 7).detail


def test_record_subject_with_confusable_character_fails_at_step_7(tmp_path, signer, anchor):
    """Greek omicron for 'o': the record escapes the threshold on its measurement."""
    from tests.factories import make_record

    spoofed = make_record("heads.inventory:toy", subject="t\u03bfy")
    report = verify(tmp_path, make_bundle(signer, _judged_dossier(signer, records=[spoofed])), anchor)
    assert_fails_first_at(report, 7)
    assert step(report, 7).detail == (
        "record 'heads.inventory:toy' is of subject 't\\u03bfy', not of the model 'toy', yet the policy "
        "has a threshold on its measurement heads.inventory: a judged record must name the model exactly"
    )


def test_the_coverage_spoof_that_pyhanko_reads_as_entire_file_fails_step_5(tmp_path, signer, files, anchor):
    """An update swaps the embedded dossier and redefines the signature dictionary so that the file's size
    equals pyHanko's "entire file" sum; the envelope is re-signed, so only step 5 can stop it."""
    import io

    from pyhanko.pdf_utils.reader import PdfFileReader

    from tests.helpers_bundle import pdf_coverage_spoof

    forged = files[DOSSIER_JSON].replace(b'"pass"', b'"fail"', 1)
    spoof = pdf_coverage_spoof(files[DOSSIER_PDF], forged)
    embedded = PdfFileReader(io.BytesIO(spoof)).embedded_signatures[0]
    _, len1, _, len2 = embedded.byte_range
    assert len(spoof) == len1 + len2 + 2 * len(embedded.pkcs7_content) + 2  # what pyHanko takes for coverage
    report = verify(tmp_path, reseal_envelope({**files, DOSSIER_PDF: spoof}, signer), anchor)
    assert_fails_first_at(report, 5)
    assert "something was added after the signed revision" in step(report, 5).detail


def test_an_edit_in_the_unsigned_gap_fails_step_5(tmp_path, signer, files, anchor):
    from tests.helpers_bundle import pdf_gap_edited

    edited = {**files, DOSSIER_PDF: pdf_gap_edited(files[DOSSIER_PDF])}
    report = verify(tmp_path, reseal_envelope(edited, signer), anchor)
    assert_fails_first_at(report, 5)
    assert "not one hex string" in step(report, 5).detail


# --- a PDF verified on its own ------------------------------------------------------------------


def test_a_dossier_pdf_verifies_on_its_own(tmp_path, files, anchor, capsys):
    from evidence.cli import main
    from signing import verify_pdf

    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(files[DOSSIER_PDF])
    report = verify_pdf(pdf, [anchor])
    assert [s.number for s in report.steps] == [4, 5, 6, 7]
    assert report.bottom_line, report.first_failure()
    assert main(["verify", str(pdf), "--trust", str(anchor)]) == 0
    out = capsys.readouterr().out
    assert "steps 1-3 (the bundle's DSSE envelope) do not apply" in out and "OK:" in out


def test_the_coverage_spoof_fails_a_pdf_verified_on_its_own(tmp_path, files, anchor, capsys):
    """The attack that only the DSSE digest used to catch: a regulator holding the PDF alone now sees it."""
    from evidence.cli import main
    from signing import verify_pdf
    from tests.helpers_bundle import pdf_coverage_spoof

    forged = files[DOSSIER_JSON].replace(b'"toy"', b'"toz"', 1)
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(pdf_coverage_spoof(files[DOSSIER_PDF], forged))
    report = verify_pdf(pdf, [anchor])
    assert report.first_failure().number == 5
    assert "something was added after the signed revision" in step(report, 5).detail
    for number in (4, 6, 7):
        assert step(report, number).blocked_by == 5
    assert main(["verify", str(pdf), "--trust", str(anchor)]) == 1
    assert "first failure at step (5)" in capsys.readouterr().out


def test_a_pdf_alone_is_checked_against_its_embedded_dossier(tmp_path, signer, anchor):
    """A PDF signed by a trusted key whose embedded dossier's verdicts do not recompute fails step 7."""
    from signing import sign_pdf, verify_pdf

    data = dossier_data(signer)
    data["verdicts"][0]["verdict"] = "fail" if data["verdicts"][0]["verdict"] != "fail" else "pass"
    forged = dossier_bytes(data)
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(sign_pdf(render_pdf(forged), signer))
    report = verify_pdf(pdf, [anchor])
    assert report.first_failure().number == 7, report.first_failure()


def test_a_pdf_that_is_not_one_fails_step_5_in_a_sentence(tmp_path, anchor):
    from signing import verify_pdf

    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(b"%PDF-1.7\nnot really a pdf\n%%EOF\n")
    report = verify_pdf(pdf, [anchor])
    failed = report.first_failure()
    assert failed.number == 5 and failed.detail.startswith("could not be evaluated: the file is malformed")


@pytest.mark.parametrize("keep", [-7, 0.5])
def test_a_truncated_pdf_fails_step_5_saying_so(tmp_path, files, anchor, keep):
    from signing import verify_pdf
    from tests.helpers_bundle import pdf_truncated

    signed = files[DOSSIER_PDF]
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(pdf_truncated(signed, keep if isinstance(keep, int) else int(len(signed) * keep)))
    failed = verify_pdf(pdf, [anchor]).first_failure()
    assert failed.number == 5 and "it is truncated, or not a complete PDF" in failed.detail, failed.detail
