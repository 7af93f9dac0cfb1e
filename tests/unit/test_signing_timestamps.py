"""Timestamps (RFC 3161): PAdES B-T on the PDF and a token over the DSSE signature, checked by step 8.

The authority is the test PKI's (tests/helpers_pki.py), in process or served on 127.0.0.1.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from signing import verify_bundle
from signing.bundle import DOSSIER_JSON, DSSE_ENVELOPE, SIGNER_PEM, seal
from signing.timestamps import TIMESTAMP_FILE
from tests.helpers_bundle import dossier_bytes, dossier_data, predicate_for, render_pdf, signer_for, write_files
from tests.helpers_pki import LocalTSA, certificate, root, timestamper


def anchors(tmp_path: Path, *identities) -> list[Path]:
    path = tmp_path / "tsa-root.pem"
    path.write_bytes(b"".join(i.cert.public_bytes(Encoding.PEM) for i in identities))
    return [path]


@pytest.fixture(scope="module")
def stamped(tmp_path_factory):
    signer = signer_for()
    dossier = dossier_bytes(dossier_data(signer))
    files = seal(dossier, render_pdf(dossier), signer, predicate_for(dossier), timestamper=timestamper())
    return write_files(files, tmp_path_factory.mktemp("stamped") / "bundle")


def test_a_timestamped_bundle_passes_eight_steps(stamped, tmp_path):
    report = verify_bundle(stamped, [stamped / SIGNER_PEM, *anchors(tmp_path, root())])
    assert report.bottom_line, report.first_failure()
    assert [s.number for s in report.steps] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert "(PAdES B-T)" in report.steps[4].detail
    assert "the DSSE signature existed at" in report.steps[7].detail and "Test TSA" in report.steps[7].detail
    import shutil
    import subprocess

    if shutil.which("pdfsig"):  # an independent reader of the B-T signature
        out = subprocess.run(["pdfsig", str(stamped / "dossier.pdf")], capture_output=True, text=True).stdout
        assert "Signature is Valid." in out and "Total document signed" in out


def test_an_authority_the_auditor_does_not_trust_fails_steps_5_and_8(stamped):
    report = verify_bundle(stamped, [stamped / SIGNER_PEM])
    failed = {s.number: s.detail for s in report.steps if not s.passed}
    assert set(failed) == {5, 6, 8}  # 6 is not evaluated, as it rests on 5
    assert "timestamp authority's certificate does not chain" in failed[5]
    assert "timestamp authority's certificate does not chain" in failed[8]


def test_a_token_over_another_signature_fails_step_8(stamped, tmp_path):
    other = dossier_bytes(dossier_data(signer_for()) | {"dossier_id": "1f8fad5b-d9cb-469f-a165-70867728950e"})
    foreign = seal(other, render_pdf(other), signer_for(), predicate_for(other), timestamper=timestamper())
    files = {p.name: p.read_bytes() for p in stamped.iterdir()}
    files[TIMESTAMP_FILE] = foreign[TIMESTAMP_FILE]
    bundle = write_files(files, tmp_path / "swapped")
    report = verify_bundle(bundle, [bundle / SIGNER_PEM, *anchors(tmp_path, root())])
    failed = report.first_failure()
    assert failed.number == 8 and "does not name this signature" in failed.detail
    files[TIMESTAMP_FILE] = b"not a token"
    bundle = write_files(files, tmp_path / "garbage")
    failed = verify_bundle(bundle, [bundle / SIGNER_PEM, *anchors(tmp_path, root())]).first_failure()
    assert failed.number == 8 and "cannot be read" in failed.detail


def test_a_token_from_a_non_tsa_certificate_fails_step_8(tmp_path):
    """A certificate without the timeStamping EKU may not act as a timestamp authority."""
    impostor = certificate("Not a TSA", issuer=root())
    signer = signer_for()
    dossier = dossier_bytes(dossier_data(signer))
    files = seal(dossier, render_pdf(dossier), signer, predicate_for(dossier))
    from signing.dsse import parse_envelope
    from signing.timestamps import timestamp_signature

    files[TIMESTAMP_FILE] = timestamp_signature(parse_envelope(files[DSSE_ENVELOPE]).signature, timestamper(impostor))
    bundle = write_files(files, tmp_path / "bundle")
    failed = verify_bundle(bundle, [bundle / SIGNER_PEM, *anchors(tmp_path, root())]).first_failure()
    assert failed is not None and failed.number == 8
    assert "lacks the timeStamping extended key usage: it is not a timestamp authority" in failed.detail


def test_the_cli_timestamps_through_an_authority_on_loopback(tmp_path, capsys):
    from evidence.cli import main
    from evidence.run import publish
    from tests.factories import make_dossier

    draft = tmp_path / "draft"
    publish(make_dossier(), draft, signer=None)
    out = tmp_path / "signed"
    with LocalTSA() as url:
        assert main(["sign", str(draft), "--out", str(out), "--tsa", url]) == 0, capsys.readouterr().err
    assert (out / TIMESTAMP_FILE).is_file() and (out / DOSSIER_JSON).is_file()
    trust = anchors(tmp_path, root())
    assert main(["verify", str(out), "--trust", str(out / SIGNER_PEM), "--trust", str(trust[0])]) == 0
    assert "[PASS] (8)" in capsys.readouterr().out
    assert main(["sign", str(draft), "--out", str(tmp_path / "never"), "--tsa", "http://127.0.0.1:9/"]) == 2
    assert "did not issue a timestamp" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    assert main(["run", "--no-sign", "--tsa", "http://x/", "--out", str(tmp_path / "x")]) == 2
    assert "drop --no-sign" in capsys.readouterr().err
