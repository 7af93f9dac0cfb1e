"""The trust decision: anchors that may vouch, signers fit to sign, and signed claims bound to the signature.

Each hostile case is a bundle signed correctly by a certificate of the test PKI
(tests/helpers_pki.py), so that only the check under test can stop it.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from evidence.cli import main
from signing import verify_bundle
from signing.bundle import DOSSIER_JSON, SIGNER_PEM
from signing.keys import certificate_sha256
from signing.trust import SignerPolicy, anchor_problems, signer_problems
from tests.helpers_bundle import dossier_bytes, dossier_data, make_bundle, reseal_envelope, write_files
from tests.helpers_pki import NOW, SERVER_AUTH, certificate, intermediate, root, signer


def pem(*identities) -> bytes:
    return b"".join(i.cert.public_bytes(Encoding.PEM) for i in identities)


def bundle_of(tmp_path: Path, signing, *, edit=None) -> Path:
    data = dossier_data(signing)
    if edit is not None:
        edit(data)
    files = make_bundle(signing, dossier_bytes(data))
    return write_files(files, tmp_path / "bundle")


def anchor_file(tmp_path: Path, *identities, name="anchor.pem") -> Path:
    path = tmp_path / name
    path.write_bytes(pem(*identities))
    return path


def failure(report) -> tuple[int, str]:
    failed = report.first_failure()
    assert failed is not None, "expected a failing step"
    return failed.number, failed.detail


@pytest.fixture(scope="module")
def good_leaf():
    return certificate("Example Lab signer", issuer=intermediate())


def test_a_signer_of_the_test_pki_verifies_against_its_root(tmp_path, good_leaf):
    bundle = bundle_of(tmp_path, signer(good_leaf, intermediate()))
    report = verify_bundle(bundle, [anchor_file(tmp_path, root())])
    assert report.bottom_line, report.first_failure()
    assert not report.development_key and report.warnings == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("expired-root", "is not valid at"),
        ("non-ca-anchor", "is not a CA"),
        ("anchor-without-keycertsign", "without keyCertSign"),
        ("tls-server-signer", "serverAuth (a TLS server certificate)"),
        ("ca-as-signer", "it is a CA certificate"),
        ("rsa-1024", "its RSA key has 1024 bits"),
    ],
)
def test_an_anchor_that_may_not_vouch_or_a_signer_unfit_to_sign_fails_step_1(tmp_path, case, expected):
    if case == "expired-root":
        old = certificate("Test Root CA expired", ca=True, not_before=NOW - dt.timedelta(days=900),
                          not_after=NOW - dt.timedelta(days=10))  # fmt: skip
        leaf = certificate("signer of an expired root", issuer=old)  # itself valid now
        signing, anchors = signer(leaf, old), [old]
    elif case == "non-ca-anchor":
        boss = certificate("A plain leaf that issues")
        signing, anchors = signer(certificate("child of a leaf", issuer=boss), boss), [boss]
    elif case == "anchor-without-keycertsign":
        ca = certificate("CA without keyCertSign", ca=True, key_cert_sign=False)
        signing, anchors = signer(certificate("child of that CA", issuer=ca), ca), [ca]
    elif case == "tls-server-signer":
        signing, anchors = signer(certificate("www.example.test", issuer=root(), ekus=(SERVER_AUTH,))), [root()]
    elif case == "ca-as-signer":
        ca = certificate("A CA that signs documents", issuer=root(), ca=True)
        signing, anchors = signer(ca), [root()]
    else:
        signing, anchors = signer(certificate("weak signer", issuer=root(), bits=1024)), [root()]
    report = verify_bundle(bundle_of(tmp_path, signing), [anchor_file(tmp_path, *anchors)])
    number, detail = failure(report)
    assert number == 1, detail
    assert expected in detail, detail


def test_a_leaf_trusted_directly_must_be_valid_now(tmp_path):
    expired = certificate("expired self-trusted signer", not_before=NOW - dt.timedelta(days=400),
                          not_after=NOW - dt.timedelta(days=1))  # fmt: skip
    report = verify_bundle(bundle_of(tmp_path, signer(expired)), [anchor_file(tmp_path, expired)])
    number, _detail = failure(report)
    assert number == 1


def test_the_rules_on_their_own():
    leaf, ca = certificate("Example Lab signer", issuer=intermediate()), intermediate()
    assert anchor_problems([root().cert, ca.cert, leaf.cert], NOW) == []
    assert anchor_problems([leaf.cert], NOW) == []  # a leaf trusted directly needs no CA rights
    assert "is not valid at" in anchor_problems([leaf.cert], NOW + dt.timedelta(days=400))[0]
    assert signer_problems(leaf.cert) == []
    no_eku = certificate("signer without EKU", issuer=root(), ekus=None)
    assert signer_problems(no_eku.cert) == []
    pinned = SignerPolicy.pinned(fingerprints=[certificate_sha256(leaf.cert).upper()])
    assert signer_problems(leaf.cert, pinned) == []
    assert "not the pinned signer" in signer_problems(no_eku.cert, pinned)[0]
    by_subject = SignerPolicy.pinned(subjects=[leaf.cert.subject.rfc4514_string()])
    assert signer_problems(leaf.cert, by_subject) == [] and signer_problems(no_eku.cert, by_subject)


def test_a_pinned_signer_is_required_when_the_auditor_pins_one(tmp_path, good_leaf, capsys):
    bundle = bundle_of(tmp_path, signer(good_leaf, intermediate()))
    anchors = [anchor_file(tmp_path, root())]
    other = "ab" * 32
    report = verify_bundle(bundle, anchors, signer_policy=SignerPolicy.pinned(fingerprints=[other]))
    number, detail = failure(report)
    assert number == 1 and "not the pinned signer" in detail
    fingerprint = certificate_sha256(good_leaf.cert)
    assert main(["verify", str(bundle), "--trust", str(anchors[0]), "--signer-fingerprint", fingerprint]) == 0
    assert main(["verify", str(bundle), "--trust", str(anchors[0]), "--signer-fingerprint", other]) == 1
    assert "not the pinned signer" in capsys.readouterr().out


def test_trusting_the_bundles_own_certificate_warns_what_it_does_not_prove(tmp_path, capsys):
    from tests.helpers_bundle import signer_for

    bundle = bundle_of(tmp_path, signer_for())
    report = verify_bundle(bundle, [bundle / SIGNER_PEM])
    assert report.bottom_line and len(report.warnings) == 1
    assert "the bundle's own signer.pem" in report.warnings[0] and "not who holds the key" in report.warnings[0]
    copy = anchor_file(tmp_path, name="obtained-elsewhere.pem")
    copy.write_bytes((bundle / SIGNER_PEM).read_bytes())
    assert verify_bundle(bundle, [copy]).warnings == []
    assert main(["verify", str(bundle), "--trust", str(bundle / SIGNER_PEM)]) == 0
    assert "WARNING: the trust anchor is the bundle's own signer.pem" in capsys.readouterr().out
    assert main(["verify", str(bundle), "--trust", str(bundle / SIGNER_PEM), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == report.warnings


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["signer"].update(subject="CN=EU AI Office"), "subject 'CN=EU AI Office'"),
        (lambda d: d["signer"].update(development_key=False, notice=None), "development key no"),
        (lambda d: d["signer"].update(certificate_sha256="0" * 64), "certificate fingerprint"),
        (lambda d: d.update(signer=None), "names no signer"),
    ],
)
def test_the_signer_dossier_json_names_must_be_the_one_that_signed(tmp_path, edit, expected):
    from tests.helpers_bundle import signer_for

    bundle = bundle_of(tmp_path, signer_for(), edit=edit)
    report = verify_bundle(bundle, [bundle / SIGNER_PEM])
    number, detail = failure(report)
    assert number == 4 and expected in detail, detail


def test_the_signed_predicate_must_describe_the_dossier_it_signs(tmp_path):
    """A statement claiming another model or dossier id fails, even when correctly signed."""
    from signing.bundle import DOSSIER_PDF, DSSE_ENVELOPE
    from signing.dsse import build_statement, sign_envelope
    from tests.helpers_bundle import predicate_for, signer_for

    signing = signer_for()
    files = make_bundle(signing, dossier_bytes(dossier_data(signing)))
    claimed = {**predicate_for(files[DOSSIER_JSON]), "model": {"name": "other", "weights_sha256": "1" * 64}}
    statement = build_statement({DOSSIER_JSON: files[DOSSIER_JSON], DOSSIER_PDF: files[DOSSIER_PDF]}, claimed)
    files = {**files, DSSE_ENVELOPE: sign_envelope(statement, signing)}
    bundle = write_files(files, tmp_path / "bundle")
    number, detail = failure(verify_bundle(bundle, [bundle / SIGNER_PEM]))
    assert number == 4 and "predicate disagrees with dossier.json on model" in detail
    # the same files with the statement the run signs verify
    resealed = write_files(reseal_envelope(files, signing), tmp_path / "ok")
    assert verify_bundle(resealed, [bundle / SIGNER_PEM]).bottom_line


def test_a_chain_that_reaches_no_supplied_anchor_fails_step_1_in_a_sentence(tmp_path, good_leaf):
    """The signer's chain (leaf and intermediate) is complete, but the auditor trusts an unrelated root."""
    bundle = bundle_of(tmp_path, signer(good_leaf, intermediate()))
    report = verify_bundle(bundle, [anchor_file(tmp_path, certificate("Unrelated Root CA", ca=True))])
    number, detail = failure(report)
    assert number == 1
    assert detail.startswith("the signer certificate (CN=Example Lab signer,O=Example Test PKI) does not chain to a "
                             "supplied trust anchor: "), detail  # fmt: skip


def test_a_pdf_signer_unfit_to_sign_is_named_as_such_not_as_untrusted(tmp_path):
    """pyHanko refuses a 1024-bit key as "untrusted"; step 5 says what is wrong with the signer."""
    from signing import sign_pdf, verify_pdf
    from tests.helpers_bundle import render_pdf

    weak = signer(certificate("weak signer", issuer=root(), bits=1024))
    pdf = tmp_path / "dossier.pdf"
    pdf.write_bytes(sign_pdf(render_pdf(dossier_bytes(dossier_data(weak))), weak))
    number, detail = failure(verify_pdf(pdf, [anchor_file(tmp_path, root())]))
    assert number == 5 and "its RSA key has 1024 bits" in detail, detail
