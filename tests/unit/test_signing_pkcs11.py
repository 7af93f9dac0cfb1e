"""Signing with a key that stays on a PKCS#11 token: Debian's SoftHSM, with a token this test creates.

Skipped, with the reason shown, where SoftHSM or python-pkcs11 is not installed
(`make test` installs both where apt is available).
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from signing.errors import KeyLoadError
from signing.pkcs11 import MODULE_ENV, PIN_ENV, Pkcs11Signer, Pkcs11Uri
from tests.helpers_pki import DOCUMENT_SIGNING, NOW, intermediate, root

pkcs11 = pytest.importorskip("pkcs11", reason="python-pkcs11 is not installed (pip install 'interp-dossier[hsm]')")
SOFTHSM = next((p for p in ("/usr/lib/softhsm/libsofthsm2.so",) if Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(
    SOFTHSM is None or shutil.which("softhsm2-util") is None,
    reason="Debian's softhsm2 is not installed (apt-get install softhsm2)",
)
TOKEN, PIN, LABEL = "interp-dossier-test", "123456", "signer"


@pytest.fixture(scope="module")
def token(tmp_path_factory):
    """A fresh SoftHSM token holding an RSA key generated on it and its certificate from the test PKI."""
    home = tmp_path_factory.mktemp("softhsm")
    (home / "tokens").mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {home / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    patch = pytest.MonkeyPatch()
    patch.setenv("SOFTHSM2_CONF", str(conf))
    patch.setenv(MODULE_ENV, SOFTHSM)
    subprocess.run(
        ["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", "654321"],
        check=True, capture_output=True,
    )  # fmt: skip
    from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass

    lib = pkcs11.lib(SOFTHSM)
    with lib.get_token(token_label=TOKEN).open(user_pin=PIN, rw=True) as session:
        public, _private = session.generate_keypair(KeyType.RSA, 2048, label=LABEL, store=True)
        numbers = rsa.RSAPublicNumbers(
            int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"), int.from_bytes(public[Attribute.MODULUS], "big")
        )
        ca = intermediate()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Lab"),
                                     x509.NameAttribute(NameOID.COMMON_NAME, "Example Lab HSM signer")]))  # fmt: skip
            .issuer_name(ca.cert.subject)
            .public_key(numbers.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING]), critical=False)
            .sign(ca.key, hashes.SHA256())
        )
        for label, certificate in ((LABEL, cert), ("issuing-ca", ca.cert)):
            session.create_object({
                Attribute.CLASS: ObjectClass.CERTIFICATE,
                Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                Attribute.TOKEN: True,
                Attribute.LABEL: label,
                Attribute.SUBJECT: certificate.subject.public_bytes(),
                Attribute.VALUE: certificate.public_bytes(Encoding.DER),
            })  # fmt: skip
    yield cert
    patch.undo()


def test_a_bundle_signed_on_the_token_verifies_and_pdfsig_accepts_it(token, tmp_path):
    from signing import verify_bundle
    from tests.helpers_bundle import dossier_bytes, dossier_data, make_bundle, write_files

    signer = Pkcs11Signer(Pkcs11Uri.parse(f"pkcs11:token={TOKEN};object={LABEL}"), pin=PIN)
    assert signer.certificate == token and signer.chain[1] == intermediate().cert
    try:
        bundle = write_files(make_bundle(signer, dossier_bytes(dossier_data(signer))), tmp_path / "bundle")
    finally:
        signer.close()
    anchor = tmp_path / "root.pem"
    anchor.write_bytes(root().cert.public_bytes(Encoding.PEM))
    report = verify_bundle(bundle, [anchor])
    assert report.bottom_line, report.first_failure()
    assert report.signer_subject == "CN=Example Lab HSM signer,O=Example Lab" and not report.development_key
    if shutil.which("pdfsig"):
        out = subprocess.run(["pdfsig", str(bundle / "dossier.pdf")], capture_output=True, text=True).stdout
        assert "Signature is Valid." in out


def test_the_cli_signs_a_draft_with_the_token(token, tmp_path, monkeypatch, capsys):
    from evidence.cli import main
    from evidence.run import publish
    from signing import verify_bundle
    from tests.factories import make_dossier

    draft = tmp_path / "draft"
    publish(make_dossier(), draft, signer=None)
    monkeypatch.setenv(PIN_ENV, PIN)
    out = tmp_path / "signed"
    assert main(["sign", str(draft), "--out", str(out), "--key", f"pkcs11:token={TOKEN};object={LABEL}"]) == 0, (
        capsys.readouterr().err
    )
    anchor = tmp_path / "root.pem"
    anchor.write_bytes(root().cert.public_bytes(Encoding.PEM))
    assert verify_bundle(out, [anchor]).bottom_line
    monkeypatch.setenv(PIN_ENV, "000000")
    assert main(["sign", str(draft), "--out", str(tmp_path / "never"), "--key",
                 f"pkcs11:token={TOKEN};object={LABEL}"]) == 2  # fmt: skip
    assert "wrong PIN for token" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pkcs11:token=nope;object=signer", "no PKCS#11 token labelled 'nope'"),
        (f"pkcs11:token={TOKEN};object=absent", "holds no private key labelled 'absent'"),
        (f"pkcs11:token={TOKEN}", "names no object"),
        (f"pkcs11:token={TOKEN};object={LABEL};pin-value=1234", "keep the PIN out of command lines"),
        ("pkcs11:token=a;object=b;slot-id=3", "attributes this signer does not read: slot-id"),
    ],
)
def test_a_wrong_token_key_or_uri_is_a_clear_error(token, uri, message):
    with pytest.raises(KeyLoadError, match=message):
        Pkcs11Signer(Pkcs11Uri.parse(uri), pin=PIN)
