"""Keys for filing: ECDSA (P-256, P-384) beside RSA, and `keygen --csr` / `keygen --cert` with an organisation's CA.

The CA is the test PKI's root (tests/helpers_pki.py); it issues the certificate
from the request as a real CA would, copying the extensions the request asks for.
"""

from __future__ import annotations

import datetime as dt
import io
import shutil
import subprocess
from pathlib import Path

import pikepdf
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from signing import FileSigner, KeyLoadError, verify_bundle
from signing.bundle import DSSE_ENVELOPE, seal
from signing.dsse import pae, parse_envelope
from signing.keys import load_signer, write_pkcs12
from tests.helpers_bundle import dossier_bytes, dossier_data, predicate_for, render_pdf, write_files
from tests.helpers_pki import NOW, SERVER_AUTH, Identity, root

PEM = serialization.Encoding.PEM


def issue(csr: x509.CertificateSigningRequest, ca: Identity, *, ekus: list | None = None) -> x509.Certificate:
    """What a CA does with a request: its subject and key, the extensions it asks for (or ``ekus`` instead)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca.cert.subject)
        .public_key(csr.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
    )
    for extension in csr.extensions:
        if ekus is not None and isinstance(extension.value, x509.ExtendedKeyUsage):
            continue
        builder = builder.add_extension(extension.value, critical=extension.critical)
    if ekus is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def ec_signer(curve: ec.EllipticCurve) -> FileSigner:
    key = ec.generate_private_key(curve)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, f"EC signer {curve.name}")])
    )
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=True, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
    )  # fmt: skip
    csr = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return FileSigner(key, [issue(csr, root()), root().cert])


def anchor(tmp_path: Path) -> Path:
    path = tmp_path / "root.pem"
    path.write_bytes(root().cert.public_bytes(PEM))
    return path


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1()], ids=["P-256", "P-384"])
def test_an_ecdsa_key_signs_a_bundle_that_verifies_and_stays_pdf_1_7(tmp_path, curve):
    signer = ec_signer(curve)
    dossier = dossier_bytes(dossier_data(signer))
    files = seal(dossier, render_pdf(dossier), signer, predicate_for(dossier))
    bundle = write_files(files, tmp_path / "bundle")
    report = verify_bundle(bundle, [anchor(tmp_path)])
    assert report.bottom_line, report.first_failure()
    pdf = files["dossier.pdf"]
    assert pdf.startswith(b"%PDF-1.7")
    with pikepdf.open(io.BytesIO(pdf)) as opened:
        extensions = opened.Root.get("/Extensions", {})
        assert set(extensions.keys()) == {"/ESIC"} and str(extensions["/ESIC"].BaseVersion) == "/1.7"
    if shutil.which("pdfsig"):
        out = subprocess.run(["pdfsig", str(bundle / "dossier.pdf")], capture_output=True, text=True).stdout
        assert "Signature is Valid." in out


def test_an_ecdsa_envelope_signature_with_another_digest_fails_step_1(tmp_path):
    """P-384 signs DSSE with SHA-384; the same key's signature over SHA-256 is refused."""
    signer = ec_signer(ec.SECP384R1())
    dossier = dossier_bytes(dossier_data(signer))
    files = seal(dossier, render_pdf(dossier), signer, predicate_for(dossier))
    envelope = parse_envelope(files[DSSE_ENVELOPE])
    wrong = signer._key.sign(pae(envelope.payload_type, envelope.payload), ec.ECDSA(hashes.SHA256()))  # noqa: SLF001
    import base64
    import json

    data = json.loads(files[DSSE_ENVELOPE])
    data["signatures"][0]["sig"] = base64.b64encode(wrong).decode()
    files[DSSE_ENVELOPE] = json.dumps(data).encode()
    failed = verify_bundle(write_files(files, tmp_path / "b"), [anchor(tmp_path)]).first_failure()
    assert failed is not None and failed.number == 1 and "does not verify" in failed.detail


@pytest.mark.parametrize("curve", [ec.SECP521R1(), ec.SECP256K1()], ids=["P-521", "secp256k1"])
def test_key_files_on_other_curves_are_refused_when_loaded(tmp_path, curve):
    key = ec.generate_private_key(curve)
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "other curve")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(NOW - dt.timedelta(days=1)).not_valid_after(NOW + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    write_pkcs12(tmp_path / "k.p12", key, cert, None)
    with pytest.raises(KeyLoadError, match="ECDSA key on P-256 or P-384"):
        load_signer(tmp_path / "k.p12", None)


@pytest.mark.parametrize("algorithm", ["rsa-3072", "ecdsa-p256"])
def test_keygen_csr_then_the_cas_certificate_gives_a_key_for_filing(tmp_path, capsys, monkeypatch, algorithm):
    from evidence.cli import main
    from evidence.run import publish
    from tests.factories import make_dossier

    monkeypatch.setenv("INTERP_DOSSIER_KEY_PASSPHRASE", "correct horse")
    keys = tmp_path / "keys"
    subject = "CN=Example Lab dossier signer,O=Example Lab,C=DE"
    assert main(["keygen", "--out", str(keys), "--csr", "--subject", subject, "--algorithm", algorithm]) == 0
    said = capsys.readouterr().out
    assert "signer.csr" in said and "--cert CERT.pem" in said
    assert (keys / "signer.key").stat().st_mode & 0o777 == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in (keys / "signer.key").read_bytes()
    csr = x509.load_pem_x509_csr((keys / "signer.csr").read_bytes())
    assert csr.is_signature_valid and csr.subject.rfc4514_string() == subject
    usage = csr.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36") in usage
    # a second request into the same directory would replace the key: refused
    assert main(["keygen", "--out", str(keys), "--csr", "--subject", subject]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err

    issued = tmp_path / "issued.pem"
    issued.write_bytes(issue(csr, root()).public_bytes(PEM) + root().cert.public_bytes(PEM))
    assert main(["keygen", "--out", str(keys), "--cert", str(issued)]) == 0
    assert (keys / "signer.p12").stat().st_mode & 0o777 == 0o600
    capsys.readouterr()

    draft, out = tmp_path / "draft", tmp_path / "signed"
    publish(make_dossier(), draft, signer=None)
    assert main(["sign", str(draft), "--out", str(out), "--key", str(keys / "signer.p12")]) == 0
    assert "development key" not in capsys.readouterr().out
    report = verify_bundle(out, [anchor(tmp_path)])
    assert report.bottom_line, report.first_failure()
    assert report.signer_subject == subject and not report.development_key


def test_keygen_cert_refuses_a_certificate_of_another_key_or_a_tls_certificate(tmp_path, capsys, monkeypatch):
    from evidence.cli import main

    monkeypatch.setenv("INTERP_DOSSIER_KEY_PASSPHRASE", "")  # empty: an unencrypted key
    keys = tmp_path / "keys"
    assert main(["keygen", "--out", str(keys), "--csr", "--subject", "CN=Lab", "--algorithm", "ecdsa-p256"]) == 0
    csr = x509.load_pem_x509_csr((keys / "signer.csr").read_bytes())
    other = ec_signer(ec.SECP256R1()).certificate
    (tmp_path / "other.pem").write_bytes(other.public_bytes(PEM))
    assert main(["keygen", "--out", str(keys), "--cert", str(tmp_path / "other.pem")]) == 2
    assert "does not belong to its certificate" in capsys.readouterr().err
    (tmp_path / "tls.pem").write_bytes(issue(csr, root(), ekus=[SERVER_AUTH]).public_bytes(PEM))
    assert main(["keygen", "--out", str(keys), "--cert", str(tmp_path / "tls.pem")]) == 2
    assert "may not sign dossiers" in capsys.readouterr().err
    assert not (keys / "signer.p12").exists()
    assert main(["keygen", "--out", str(keys), "--csr"]) == 2
    assert "--csr needs --subject" in capsys.readouterr().err
    assert main(["keygen", "--out", str(keys), "--subject", "CN=x"]) == 2
    assert main(["keygen", "--out", str(tmp_path / "k2"), "--csr", "--subject", "O=no common name"]) == 2
    assert "no common name" in capsys.readouterr().err
