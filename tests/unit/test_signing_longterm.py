"""PAdES B-B, B-T, B-LT and B-LTA with a complete test PKI on 127.0.0.1; long-term verification (``--at``, revocation).

The PKI (tests/helpers_pki.py, :class:`LocalPKI`) has a root, an intermediate, a
signer whose certificate names a CRL and an OCSP responder, and a timestamp
authority, all served on loopback: signing at B-LT fetches real CRLs and OCSP
responses from it, and verification then never fetches anything.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
from pathlib import Path

import pikepdf
import pytest
from pyhanko.pdf_utils.reader import PdfFileReader

from signing import SigningError, verify_bundle
from signing.bundle import DOSSIER_PDF, seal
from signing.longterm import load_revocation_data, read_dss
from signing.pades import LEVELS, check_level
from signing.timestamps import TIMESTAMP_FILE, http_timestamper
from signing.verify import verify_pdf
from tests.helpers_bundle import (
    dossier_bytes,
    dossier_data,
    pdf_incremental_update_title,
    pdf_overlay_in_update,
    pdf_xmp_title_in_update,
    predicate_for,
    render_pdf,
    signer_for,
    write_files,
)
from tests.helpers_pki import NOW, LocalPKI
from tests.pdf_structure import pdf_problems

DAY = dt.timedelta(days=1)


def _seal(pki: LocalPKI, level: str, directory: Path) -> Path:
    signer = pki.signer()
    dossier = dossier_bytes(dossier_data(signer))
    stamper = None if level == "B-B" else http_timestamper(pki.tsa_url)
    files = seal(dossier, render_pdf(dossier), signer, predicate_for(dossier), timestamper=stamper, level=level)
    return write_files(files, directory)


@pytest.fixture(scope="module")
def pki():
    # the signer's certificate expires in 3 days: verification at --at +10 days is after its expiry
    with LocalPKI(signer_not_after=NOW + 3 * DAY, tag="long-term") as running:
        yield running


@pytest.fixture(scope="module")
def bundles(pki, tmp_path_factory):
    root = tmp_path_factory.mktemp("levels")
    return {level: _seal(pki, level, root / level) for level in LEVELS}


@pytest.fixture(scope="module")
def anchor(pki, tmp_path_factory):
    return pki.anchor_pem(tmp_path_factory.mktemp("anchor") / "root.pem")


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_signs_and_verifies_with_the_test_pki(bundles, anchor, level):
    bundle = bundles[level]
    report = verify_bundle(bundle, [anchor])
    assert report.bottom_line, report.first_failure()
    numbers = [s.number for s in report.steps]
    assert numbers == ([1, 2, 3, 4, 5, 6, 7] if level == "B-B" else [1, 2, 3, 4, 5, 6, 7, 8])
    pdf_step = next(s for s in report.steps if s.number == 5)
    if level != "B-B":
        assert f"(PAdES {level})" in pdf_step.detail
    alone = verify_pdf(bundle / DOSSIER_PDF, [anchor])
    assert alone.bottom_line, alone.first_failure()


@pytest.mark.parametrize("level", LEVELS)
def test_every_level_stays_pdf_a_3a_and_pdf_ua_1_at_version_1_7(bundles, level):
    data = (bundles[level] / DOSSIER_PDF).read_bytes()
    assert data.startswith(b"%PDF-1.7")
    with pikepdf.open(io.BytesIO(data)) as pdf:
        assert pdf.pdf_version == "1.7"
        assert all(str(ext.BaseVersion) == "/1.7" for ext in pdf.Root.get("/Extensions", {}).values())
        meta = pdf.open_metadata()
        assert meta.get("pdfaid:part") == "3" and meta.get("pdfaid:conformance") == "A"
        assert meta.get("pdfuaid:part") == "1"
        # The signature's widget (and B-LTA's document timestamp's) sits in the structure tree, described.
        widgets = [a for a in pdf.pages[0].Annots if a.get("/Subtype") == "/Widget"]
        assert len(widgets) == (2 if level == "B-LTA" else 1)
        assert all("/StructParent" in w and str(w.TU) for w in widgets)
    assert pdf_problems(data) == []


def test_long_term_levels_embed_crls_and_ocsp_fetched_from_the_pki(bundles, pki):
    assert not read_dss((bundles["B-T"] / DOSSIER_PDF).read_bytes())
    for level in ("B-LT", "B-LTA"):
        data = read_dss((bundles[level] / DOSSIER_PDF).read_bytes())
        assert data.crls and data.ocsps, data.describe()
        subjects = {c.subject.human_friendly for c in data.certs}
        assert any("Intermediate CA" in s for s in subjects) and any("TSA" in s for s in subjects)
    assert any(r.startswith("POST /ocsp") for r in pki.requests)
    assert any(r.startswith("GET /intermediate.crl") or r.startswith("GET /root.crl") for r in pki.requests)


def test_b_lta_carries_a_document_timestamp_after_the_signature(bundles):
    signatures = PdfFileReader(io.BytesIO((bundles["B-LTA"] / DOSSIER_PDF).read_bytes())).embedded_signatures
    kinds = [(s.sig_object_type, s.signed_revision) for s in signatures]
    assert [k for k, _ in kinds] == ["/Sig", "/DocTimeStamp"]
    assert kinds[1][1] > kinds[0][1]


@pytest.mark.skipif(shutil.which("pdfsig") is None, reason="poppler-utils' pdfsig is not installed")
@pytest.mark.parametrize("level", LEVELS)
def test_pdfsig_reports_the_signature_valid_at_every_level(bundles, level):
    out = subprocess.run(["pdfsig", str(bundles[level] / DOSSIER_PDF)], capture_output=True, text=True).stdout
    first = out.split("Signature #2")[0]
    assert "Signature Validation: Signature is Valid." in first, out
    # poppler cannot validate RFC 3161 document timestamps; it lists B-LTA's and says so
    if level == "B-LTA":
        assert "Signature #2" in out and "InterpDossierArchiveTimestamp" in out


def test_after_the_signer_certificate_expires_a_timestamped_bundle_still_verifies(bundles, anchor):
    later = NOW + 10 * DAY  # the signer's certificate expired a week before
    for level in ("B-T", "B-LT", "B-LTA"):
        report = verify_bundle(bundles[level], [anchor], at=later)
        assert report.bottom_line, (level, report.first_failure())
        assert "judged as of the signature's timestamp" in report.steps[0].detail
    untimed = verify_bundle(bundles["B-B"], [anchor], at=later)
    failed = untimed.first_failure()
    assert failed is not None and failed.number == 1 and "expired" in failed.detail.lower()


def test_validation_as_of_a_time_before_the_signature_fails(bundles, anchor):
    earlier = NOW - DAY / 2  # the certificates were valid then; the signature did not exist yet
    failed = verify_pdf(bundles["B-T"] / DOSSIER_PDF, [anchor], at=earlier).first_failure()
    assert failed is not None and failed.number == 5 and "later than the validation time" in failed.detail
    failed = verify_bundle(bundles["B-T"], [anchor], at=earlier).first_failure()
    assert failed is not None and failed.number in (5, 8)


def test_a_pdf_verified_alone_after_expiry_uses_its_timestamp(bundles, anchor):
    later = NOW + 10 * DAY
    assert verify_pdf(bundles["B-LTA"] / DOSSIER_PDF, [anchor], at=later).bottom_line
    failed = verify_pdf(bundles["B-B"] / DOSSIER_PDF, [anchor], at=later).first_failure()
    assert failed is not None and failed.number == 5


def test_revocation_before_the_timestamp_fails_and_after_it_does_not(tmp_path):
    with LocalPKI(tag="revocation") as pki:
        bundle = _seal(pki, "B-LT", tmp_path / "bundle")
        anchor = pki.anchor_pem(tmp_path / "root.pem")
        signed_at = dt.datetime.now(dt.UTC)
        # the key was compromised an hour before signing: everything it signed since is suspect
        pki.revoke(pki.signer_identity, signed_at - dt.timedelta(hours=1))
        (tmp_path / "early.crl").write_bytes(pki.crl(pki.intermediate))
        # revoked well after signing: the signature was made while the certificate was good
        pki.revoke(pki.signer_identity, signed_at + dt.timedelta(hours=1))
        (tmp_path / "late.crl").write_bytes(pki.crl(pki.intermediate))
    early = [tmp_path / "early.crl"]
    for report in (
        verify_bundle(bundle, [anchor], revocation_data=early),
        verify_pdf(bundle / DOSSIER_PDF, [anchor], revocation_data=early),
    ):
        failed = report.first_failure()
        assert failed is not None and failed.number in (1, 5)
        assert "was revoked on" in failed.detail and "before the time of the signature's timestamp" in failed.detail
    late = [tmp_path / "late.crl"]
    assert verify_bundle(bundle, [anchor], revocation_data=late).bottom_line
    assert verify_pdf(bundle / DOSSIER_PDF, [anchor], revocation_data=late, at=NOW + 30 * DAY).bottom_line


def test_hard_fail_needs_revocation_data_for_certificates_that_name_a_source(bundles, anchor):
    failed = verify_bundle(bundles["B-T"], [anchor], revocation="hard-fail").first_failure()
    assert failed is not None and failed.number == 1
    assert "revocation policy is hard-fail" in failed.detail and "--revocation-data" in failed.detail
    for level in ("B-LT", "B-LTA"):
        report = verify_bundle(bundles[level], [anchor], revocation="hard-fail")
        assert report.bottom_line, (level, report.first_failure())
    # soft-fail (the default) passes the same B-T bundle: no data, no verdict on revocation
    assert verify_bundle(bundles["B-T"], [anchor]).bottom_line


def test_a_development_key_signs_at_b_lt_with_nothing_to_fetch(tmp_path, pki):
    signer = signer_for()
    dossier = dossier_bytes(dossier_data(signer))
    stamper = http_timestamper(pki.tsa_url)
    files = seal(dossier, render_pdf(dossier), signer, predicate_for(dossier), timestamper=stamper, level="B-LTA")
    bundle = write_files(files, tmp_path / "bundle")
    anchor = pki.anchor_pem(tmp_path / "tsa-root.pem")
    report = verify_bundle(bundle, [bundle / "signer.pem", anchor], revocation="hard-fail")
    assert report.bottom_line, report.first_failure()


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (pdf_incremental_update_title, "not validation data or a document timestamp"),
        (pdf_overlay_in_update, "not validation data or a document timestamp"),
        (pdf_xmp_title_in_update, "not validation data or a document timestamp"),
    ],
)
def test_updates_other_than_validation_data_fail_a_long_term_pdf(bundles, anchor, tmp_path, tamper, message):
    """pyHanko's default policy lets an update rewrite the title at the LTA level; ours does not."""
    for level in ("B-LT", "B-LTA"):
        target = tmp_path / f"{level}.pdf"
        target.write_bytes(tamper((bundles[level] / DOSSIER_PDF).read_bytes()))
        failed = verify_pdf(target, [anchor]).first_failure()
        assert failed is not None and failed.number == 5, (level, failed)
        assert message in failed.detail, failed.detail


def test_the_metadata_updates_pyhanko_writes_itself_are_allowed_and_nothing_more():
    """pyHanko rewrites the modification date in every update it writes (when a second has passed)."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader as Reader

    from signing.longterm import long_term_diff_policy

    pdf = render_pdf(dossier_bytes(dossier_data(signer_for())))
    signed = __import__("signing.pades", fromlist=["sign_pdf"]).sign_pdf(pdf, signer_for())

    def update(change) -> bytes:
        writer = IncrementalPdfFileWriter(io.BytesIO(signed))
        change(writer)
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    def dated(writer) -> None:
        info = writer.trailer.raw_get("/Info").get_object()
        info["/ModDate"] = generic.TextStringObject("D:20991231235959Z")
        writer.update_container(info)

    def authored(writer) -> None:
        info = writer.trailer.raw_get("/Info").get_object()
        info["/Author"] = generic.TextStringObject("Somebody else")
        writer.update_container(info)

    def review(data: bytes):
        reader = Reader(io.BytesIO(data))
        return long_term_diff_policy().review_file(reader, reader.embedded_signatures[0].signed_revision)

    assert getattr(review(update(dated)), "modification_level", None) is not None
    assert "document information changed" in str(review(update(authored)))
    assert "XMP metadata changed" in str(review(pdf_xmp_title_in_update(signed)))


def test_a_document_timestamp_by_an_untrusted_authority_fails(bundles, tmp_path):
    """The auditor trusts the signer's root but not the TSA's: B-LTA's archive timestamp cannot vouch."""
    from tests.helpers_pki import LocalPKI as Other

    with Other(tag="other") as other:
        foreign = other.anchor_pem(tmp_path / "other-root.pem")
    failed = verify_pdf(bundles["B-LTA"] / DOSSIER_PDF, [foreign]).first_failure()
    assert failed is not None and failed.number == 5


def test_levels_are_checked_before_any_work():
    assert check_level(None, False) == "B-B" and check_level(None, True) == "B-T"
    with pytest.raises(SigningError, match="PAdES B-LT needs a timestamp authority"):
        check_level("B-LT", False)
    with pytest.raises(SigningError, match="B-B has no timestamp"):
        check_level("B-B", True)
    with pytest.raises(SigningError, match="no PAdES level"):
        check_level("B-X", True)


def test_revocation_data_files_are_read_or_refused_in_a_sentence(pki, tmp_path):
    from cryptography.hazmat.primitives.serialization import Encoding

    der = pki.crl(pki.intermediate)
    (tmp_path / "a.crl").write_bytes(der)
    from cryptography import x509

    pem = x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)
    (tmp_path / "b.pem").write_bytes(pem)
    data = load_revocation_data([tmp_path / "a.crl", tmp_path / "b.pem"])
    assert len(data.crls) == 2 and not data.ocsps
    (tmp_path / "junk").write_bytes(b"not revocation data")
    from signing import TrustError

    with pytest.raises(TrustError, match="neither a CRL nor an OCSP response"):
        load_revocation_data([tmp_path / "junk"])
    with pytest.raises(TrustError, match="cannot read the revocation data file"):
        load_revocation_data([tmp_path / "missing.crl"])


def test_the_cli_signs_at_b_lta_and_verifies_as_of_a_later_time(tmp_path, capsys, pki):
    import json

    from evidence.cli import main
    from evidence.run import publish
    from tests.factories import make_dossier

    draft = tmp_path / "draft"
    publish(make_dossier(), draft, signer=None)
    out = tmp_path / "signed"
    code = main(["sign", str(draft), "--out", str(out), "--tsa", pki.tsa_url, "--level", "B-LTA"])
    assert code == 0, capsys.readouterr().err
    assert (out / TIMESTAMP_FILE).is_file()
    anchor = pki.anchor_pem(tmp_path / "tsa-root.pem")
    trust = ["--trust", str(out / "signer.pem"), "--trust", str(anchor)]
    capsys.readouterr()
    assert main(["verify", str(out), *trust, "--revocation", "hard-fail"]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), *trust, "--at", "2027-01-01", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["validated_at"] == "2027-01-01T00:00:00Z" and data["revocation_policy"] == "soft-fail"
    assert "(PAdES B-LTA)" in data["steps"][4]["detail"]
    # weeks later the embedded CRLs are past their nextUpdate: hard-fail wants current ones
    assert main(["verify", str(out), *trust, "--at", "2027-01-01", "--revocation", "hard-fail"]) == 1
    assert "out of date" in capsys.readouterr().out
    assert main(["verify", str(out), *trust, "--at", "next tuesday"]) == 2
    assert "--at expects an ISO 8601 date" in capsys.readouterr().err
    assert main(["sign", str(draft), "--out", str(tmp_path / "never"), "--level", "B-LT"]) == 2
    assert "needs a timestamp authority" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
