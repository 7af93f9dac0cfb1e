"""Key files, passphrases, the development key and keygen."""

from __future__ import annotations

import datetime as dt
import io
import os
import stat
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from evidence.records import DEVELOPMENT_KEY_NOTICE, SignerInfo
from signing import (
    FileSigner,
    KeyLoadError,
    Signer,
    SigningError,
    certificate_chain_pem,
    describe_signer,
    development_key_path,
    ensure_development_signer,
    generate_development_identity,
    is_development_certificate,
    keygen,
    load_signer,
    passphrase_from_env_or_prompt,
    write_pkcs12,
)
from signing.keys import PASSPHRASE_ENV, certificate_sha256, dsse_padding
from tests.helpers_bundle import signer_for


@pytest.fixture(scope="module")
def identity():
    signer = signer_for()
    return signer._key, signer.certificate  # noqa: SLF001 - reuse the session's key


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# --- identities -----------------------------------------------------------------------------


def test_development_identity_is_rsa_3072_marked_and_not_a_ca():
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    key, cert = generate_development_identity("someone", now=now)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    assert cert.not_valid_before_utc == now - dt.timedelta(days=1)
    assert cert.not_valid_after_utc == now + dt.timedelta(days=730)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and usage.content_commitment and not usage.key_cert_sign
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    assert orgs[0].value == f"interp-dossier {DEVELOPMENT_KEY_NOTICE}"
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "someone"


def test_dev_cert_detection(identity):
    key, cert = identity
    assert is_development_certificate(cert)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Lab")])
    now = dt.datetime.now(dt.UTC)
    real = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert not is_development_certificate(real)
    assert describe_signer(FileSigner(key, [real]))["development_key"] is False


def test_describe_signer_fills_signer_info(identity):
    signer = FileSigner(identity[0], [identity[1]])
    info = describe_signer(signer)
    assert set(info) == set(SignerInfo.model_fields)
    SignerInfo.model_validate(info)
    assert info["development_key"] is True and info["notice"] == DEVELOPMENT_KEY_NOTICE
    assert info["certificate_sha256"] == certificate_sha256(signer.certificate)
    assert "O=interp-dossier development key" in str(info["subject"])


def test_certificate_chain_pem_is_public_material_only(identity):
    pem = certificate_chain_pem(FileSigner(identity[0], [identity[1]]))
    assert pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" not in pem
    assert x509.load_pem_x509_certificates(pem) == [identity[1]]


def test_file_signer_signs_with_rsa_pss_sha256_salt_32(identity):
    key, cert = identity
    signer = FileSigner(key, [cert])
    assert isinstance(signer, Signer)
    signature = signer.sign(b"payload")
    cert.public_key().verify(signature, b"payload", dsse_padding(), hashes.SHA256())
    with pytest.raises(Exception):  # noqa: B017 - any verification failure
        cert.public_key().verify(signature, b"payload", padding.PKCS1v15(), hashes.SHA256())


def test_file_signer_refuses_a_key_that_does_not_match_its_certificate(identity):
    other_key = signer_for("other")._key  # noqa: SLF001
    with pytest.raises(KeyLoadError, match="does not belong"):
        FileSigner(other_key, [identity[1]])


# --- key files ------------------------------------------------------------------------------


def test_pkcs12_round_trip_with_passphrase_and_mode_0600(tmp_path, identity):
    path = tmp_path / "k.p12"
    old = os.umask(0)
    try:
        write_pkcs12(path, *identity, b"correct horse")
    finally:
        os.umask(old)
    assert mode_of(path) == 0o600
    signer = load_signer(path, b"correct horse")
    assert signer.certificate == identity[1]
    assert [p.name for p in tmp_path.iterdir()] == ["k.p12"]  # no temporary file left


def test_pkcs12_mode_is_set_before_key_bytes_are_written(tmp_path, identity, monkeypatch):
    calls: list[str] = []
    real_fchmod = os.fchmod

    def fchmod(fd, mode):
        calls.append(f"fchmod {oct(mode)} size={os.fstat(fd).st_size}")
        real_fchmod(fd, mode)

    monkeypatch.setattr(os, "fchmod", fchmod)
    write_pkcs12(tmp_path / "k.p12", *identity, None)
    assert calls == ["fchmod 0o600 size=0"]


def test_pkcs12_refuses_to_overwrite(tmp_path, identity):
    path = tmp_path / "k.p12"
    path.write_bytes(b"precious")
    with pytest.raises(SigningError, match="refusing to overwrite"):
        write_pkcs12(path, *identity, None)
    assert path.read_bytes() == b"precious"
    write_pkcs12(path, *identity, None, overwrite=True)
    assert load_signer(path, None).certificate == identity[1]


def test_wrong_passphrase(tmp_path, identity):
    path = tmp_path / "k.p12"
    write_pkcs12(path, *identity, b"right")
    with pytest.raises(KeyLoadError) as info:
        load_signer(path, b"wrong")
    assert info.value.one_line() == (
        f"wrong passphrase for key file {path} "
        "(set INTERP_DOSSIER_KEY_PASSPHRASE or enter it at the prompt)"
    )
    with pytest.raises(KeyLoadError, match="protected by a passphrase"):
        load_signer(path, None)


def test_passphrase_given_for_unencrypted_file_is_accepted(tmp_path, identity):
    path = tmp_path / "k.p12"
    write_pkcs12(path, *identity, None)
    assert load_signer(path, b"unused").certificate == identity[1]


def test_missing_key_file(tmp_path):
    with pytest.raises(KeyLoadError, match="does not exist") as info:
        load_signer(tmp_path / "absent.p12", None)
    assert "keygen" in (info.value.hint or "")


def test_key_file_is_a_directory(tmp_path):
    with pytest.raises(KeyLoadError, match="is a directory"):
        load_signer(tmp_path, None)


@pytest.mark.parametrize("content", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n"])
def test_non_pkcs12_key_file(tmp_path, content):
    path = tmp_path / "k.p12"
    path.write_bytes(content)
    with pytest.raises(KeyLoadError, match=r"is not a PKCS#12 \(.p12\) file"):
        load_signer(path, None)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads anything")
def test_unreadable_key_file(tmp_path, identity):
    path = tmp_path / "k.p12"
    write_pkcs12(path, *identity, None)
    path.chmod(0)
    with pytest.raises(KeyLoadError, match="cannot read key file"):
        load_signer(path, None)


def test_group_readable_key_file_is_accepted(tmp_path, identity):
    path = tmp_path / "k.p12"
    write_pkcs12(path, *identity, None)
    path.chmod(0o644)
    assert load_signer(path, None).certificate == identity[1]


# --- passphrases ----------------------------------------------------------------------------


def test_passphrase_from_env(monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "s3cret")
    assert passphrase_from_env_or_prompt(confirm=True) == b"s3cret"
    monkeypatch.setenv(PASSPHRASE_ENV, "")
    assert passphrase_from_env_or_prompt(confirm=False) is None


def test_passphrase_without_terminal_says_to_set_the_env_var(monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    with pytest.raises(KeyLoadError) as info:
        passphrase_from_env_or_prompt(confirm=False)
    assert PASSPHRASE_ENV in info.value.one_line()


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_passphrase_prompt_with_confirmation(monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr(sys, "stdin", _Tty())
    answers = iter(["pw", "pw", "pw", "other"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert passphrase_from_env_or_prompt(confirm=True) == b"pw"
    with pytest.raises(KeyLoadError, match="differ"):
        passphrase_from_env_or_prompt(confirm=True)


# --- development key and keygen -------------------------------------------------------------


def test_development_key_path_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERP_DOSSIER_HOME", str(tmp_path / "home"))
    assert development_key_path() == tmp_path / "home" / "dev-key.p12"
    monkeypatch.delenv("INTERP_DOSSIER_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert development_key_path() == tmp_path / "xdg" / "interp-dossier" / "dev-key.p12"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    expected = tmp_path / "user" / ".local" / "share" / "interp-dossier" / "dev-key.p12"
    assert development_key_path() == expected


def test_ensure_development_signer_creates_then_reuses(monkeypatch, tmp_path):
    home = tmp_path / "a" / "home"
    monkeypatch.setenv("INTERP_DOSSIER_HOME", str(home))
    first = ensure_development_signer()
    path = home / "dev-key.p12"
    assert mode_of(path) == 0o600 and mode_of(home) == 0o700
    assert is_development_certificate(first.certificate)
    second = ensure_development_signer()
    assert second.certificate == first.certificate


def test_ensure_development_signer_refuses_a_non_development_key(monkeypatch, tmp_path, identity):
    key = identity[0]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "production")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    monkeypatch.setenv("INTERP_DOSSIER_HOME", str(tmp_path))
    write_pkcs12(tmp_path / "dev-key.p12", key, cert, None)
    with pytest.raises(KeyLoadError, match="not marked as a development key"):
        ensure_development_signer()


def test_keygen_writes_key_0600_and_public_pem(tmp_path):
    key_path, cert_path = keygen(tmp_path / "keys", b"pw")
    assert (key_path.name, cert_path.name) == ("signer.p12", "signer.pem")
    assert mode_of(key_path) == 0o600
    assert mode_of(tmp_path / "keys") == 0o700
    pem = cert_path.read_bytes()
    assert b"PRIVATE KEY" not in pem
    signer = load_signer(key_path, b"pw")
    assert signer.certificate.public_bytes(Encoding.PEM) == pem
    assert is_development_certificate(signer.certificate)


def test_keygen_refuses_overwrite(tmp_path):
    key_path, cert_path = keygen(tmp_path, None)
    before = key_path.read_bytes(), cert_path.read_bytes()
    with pytest.raises(SigningError, match="refusing to overwrite"):
        keygen(tmp_path, None)
    assert (key_path.read_bytes(), cert_path.read_bytes()) == before


def test_keygen_needs_an_existing_parent(tmp_path):
    with pytest.raises(SigningError, match="parent directory .* does not exist") as info:
        keygen(tmp_path / "missing" / "keys", None)
    assert info.value.hint
    assert not (tmp_path / "missing").exists()
