"""Signing keys: the :class:`Signer` abstraction, PKCS#12 key files, development identities.

Key material sits behind :class:`Signer`, so that a file key, a PKCS#12 file
or (later) a PKCS#11 token are interchangeable for both signatures a bundle
carries: the PAdES signature inside the PDF (through pyHanko) and the DSSE
signature over the in-toto statement (raw bytes).

Development keys are RSA-3072; a key file for filing may hold RSA (2048 bits
or more) or ECDSA on P-256 or P-384. DSSE signatures use RSASSA-PSS with
SHA-256, MGF1 with SHA-256 and a salt as long as the digest, or ECDSA with
SHA-256 (P-256) or SHA-384 (P-384), DER-encoded; verification accepts exactly
that (:func:`dsse_hash`). The PDF stays at version 1.7 with either (see
:mod:`signing.pades`).

Private keys never go into a bundle. A development key lives in the user's data
directory (:func:`development_key_path`), with file mode 0600, and its
certificate says "development key — not for filing" in its Organization.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from asn1crypto import keys as asn1_keys
from asn1crypto import pkcs12 as asn1_pkcs12
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from pyhanko.sign import signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from evidence.files import write_file_atomically
from evidence.records import DEVELOPMENT_KEY_NOTICE
from signing.errors import KeyLoadError, SigningError

__all__ = [
    "CERT_FILE_NAME",
    "DEVELOPMENT_ORGANIZATION",
    "HOME_ENV",
    "KEY_FILE_NAME",
    "PASSPHRASE_ENV",
    "RSA_KEY_SIZE",
    "FileSigner",
    "Signer",
    "certificate_chain_pem",
    "certificate_sha256",
    "describe_signer",
    "development_key_path",
    "dsse_padding",
    "ensure_development_signer",
    "generate_development_identity",
    "is_development_certificate",
    "keygen",
    "load_signer",
    "passphrase_from_env_or_prompt",
    "write_pkcs12",
]

#: Environment variable holding the key file's passphrase (empty: no passphrase).
PASSPHRASE_ENV = "INTERP_DOSSIER_KEY_PASSPHRASE"
#: Environment variable overriding where the development key is kept.
HOME_ENV = "INTERP_DOSSIER_HOME"
RSA_KEY_SIZE = 3072
#: The Organization of every development certificate; it is how they are recognised.
DEVELOPMENT_ORGANIZATION = f"interp-dossier {DEVELOPMENT_KEY_NOTICE}"
#: File names written by :func:`keygen`.
KEY_FILE_NAME = "signer.p12"
CERT_FILE_NAME = "signer.pem"

_DEV_KEY_FILE_NAME = "dev-key.p12"
_MIN_RSA_BITS = 2048
_PASSPHRASE_HINT = f"set {PASSPHRASE_ENV} or enter it at the prompt"
_PKCS12_KDF_ROUNDS = 100_000


def dsse_padding() -> padding.PSS:
    """The RSASSA-PSS parameters of DSSE signatures: MGF1-SHA-256, salt of 32 bytes."""
    return padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)


#: ECDSA curves a signer may use, and the digest its DSSE signatures are made with.
ECDSA_CURVES: dict[str, type[hashes.HashAlgorithm]] = {"secp256r1": hashes.SHA256, "secp384r1": hashes.SHA384}


def dsse_hash(public: object) -> hashes.HashAlgorithm | None:
    """The digest a DSSE signature by this public key is made with (None: not a key this project signs with)."""
    if isinstance(public, rsa.RSAPublicKey):
        return hashes.SHA256()
    if isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name in ECDSA_CURVES:
        return ECDSA_CURVES[public.curve.name]()
    return None


SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@runtime_checkable
class Signer(Protocol):
    """Key material that signs a bundle, wherever the private key lives."""

    @property
    def certificate(self) -> x509.Certificate:
        """The signer's (leaf) certificate."""
        ...

    @property
    def chain(self) -> list[x509.Certificate]:
        """The certificate chain, leaf first."""
        ...

    def sign(self, data: bytes) -> bytes:
        """A raw signature over ``data`` (for DSSE): RSASSA-PSS / SHA-256, or ECDSA (:func:`dsse_hash`)."""
        ...

    def pyhanko_signer(self) -> signers.Signer:
        """The same key as a pyHanko signer (for PAdES)."""
        ...


class FileSigner:
    """A :class:`Signer` whose RSA or ECDSA key is held in memory (loaded from a PKCS#12 file)."""

    def __init__(
        self,
        key: SigningKey,
        chain: Sequence[x509.Certificate],
        source: Path | None = None,
    ) -> None:
        if not chain:
            raise KeyLoadError("a signer needs at least its own certificate")
        if not _same_public_key(key, chain[0]):
            where = f" in {source}" if source else ""
            raise KeyLoadError(
                f"the private key{where} does not belong to its certificate",
                hint="export the key together with its own certificate",
            )
        self._key = key
        self._chain = list(chain)
        self.source = source

    @property
    def certificate(self) -> x509.Certificate:
        """The signer's (leaf) certificate."""
        return self._chain[0]

    @property
    def chain(self) -> list[x509.Certificate]:
        """The certificate chain, leaf first."""
        return list(self._chain)

    def sign(self, data: bytes) -> bytes:
        """A raw signature over ``data``: RSASSA-PSS / SHA-256, or DER ECDSA with the curve's digest."""
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            digest = dsse_hash(self._key.public_key())
            if digest is None:
                raise SigningError(f"ECDSA on {self._key.curve.name} is not supported", hint="use P-256 or P-384")
            return self._key.sign(data, ec.ECDSA(digest))
        return self._key.sign(data, dsse_padding(), hashes.SHA256())

    def pyhanko_signer(self) -> signers.Signer:
        """The same key as a pyHanko :class:`~pyhanko.sign.signers.SimpleSigner`."""
        der = serialization.Encoding.DER
        certs = [asn1_x509.Certificate.load(c.public_bytes(der)) for c in self._chain]
        key_info = asn1_keys.PrivateKeyInfo.load(
            self._key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return signers.SimpleSigner(
            signing_cert=certs[0],
            signing_key=key_info,
            cert_registry=SimpleCertificateStore.from_certs(certs),  # type: ignore[no-untyped-call]
        )


def _same_public_key(key: SigningKey, cert: x509.Certificate) -> bool:
    """Whether ``cert`` certifies ``key``'s public key."""
    der, info = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(der, info) == cert.public_key().public_bytes(der, info)


# --- identities -----------------------------------------------------------------------------


def generate_development_identity(
    common_name: str = "interp-dossier development signer",
    *,
    now: dt.datetime | None = None,
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """A fresh RSA-3072 key and a self-signed certificate marked as a development key.

    The certificate is valid from one day before ``now`` for two years, is not a
    CA, and asserts digitalSignature and nonRepudiation. Used as its own trust
    anchor, it validates for both PAdES and DSSE.
    """
    now = now or dt.datetime.now(dt.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, DEVELOPMENT_ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=730))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def is_development_certificate(cert: x509.Certificate) -> bool:
    """True if ``cert`` is marked as a development certificate (not for filing)."""
    orgs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return any(attr.value == DEVELOPMENT_ORGANIZATION for attr in orgs)


def certificate_sha256(cert: x509.Certificate) -> str:
    """Lower-case hex sha256 of the certificate's DER encoding."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def certificate_chain_pem(signer: Signer) -> bytes:
    """The signer's certificate chain as PEM, leaf first: public material only."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in signer.chain)


def describe_signer(signer: Signer) -> dict[str, str | bool | None]:
    """The fields of :class:`evidence.records.SignerInfo` for ``signer``."""
    cert = signer.certificate
    development = is_development_certificate(cert)
    return {
        "subject": cert.subject.rfc4514_string(),
        "certificate_sha256": certificate_sha256(cert),
        "development_key": development,
        "notice": DEVELOPMENT_KEY_NOTICE if development else None,
    }


# --- key files ------------------------------------------------------------------------------


def _write_new_file(path: Path, data: bytes, mode: int, *, overwrite: bool, what: str) -> None:
    """Write ``data`` to ``path`` through a temporary file; its mode is set before any byte."""
    parent = path.parent
    if not parent.is_dir():
        raise SigningError(
            f"cannot write {what} {path}: directory {parent} does not exist",
            hint="create the directory first or choose another location",
        )
    refusal = SigningError(
        f"refusing to overwrite existing {what} {path}",
        hint="choose another location or move the existing file away",
    )
    if path.exists() and not overwrite:
        raise refusal
    try:
        write_file_atomically(path, data, mode=mode, overwrite=overwrite)
    except FileExistsError:
        raise refusal from None
    except OSError as exc:
        raise SigningError(
            f"cannot write {what} {path}: {exc.strerror or exc}",
            hint="check the directory's permissions and free space",
        ) from exc


def write_pkcs12(
    path: Path,
    key: SigningKey,
    cert: x509.Certificate,
    passphrase: bytes | None,
    *,
    overwrite: bool = False,
    extra_certs: Sequence[x509.Certificate] = (),
) -> None:
    """Write ``key`` and ``cert`` as a PKCS#12 file with mode 0600, atomically.

    With a passphrase the file is encrypted with AES-256 (PBKDF2-SHA-256); with
    ``None`` it is not encrypted. An existing file is kept unless ``overwrite``.
    """
    encryption: serialization.KeySerializationEncryption
    if passphrase:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(_PKCS12_KDF_ROUNDS)
            .key_cert_algorithm(pkcs12.PBES.PBESv2SHA256AndAES256CBC)
            .hmac_hash(hashes.SHA256())
            .build(passphrase)
        )
    else:
        encryption = serialization.NoEncryption()
    data = pkcs12.serialize_key_and_certificates(
        b"interp-dossier signer", key, cert, list(extra_certs) or None, encryption
    )
    _write_new_file(Path(path), data, 0o600, overwrite=overwrite, what="key file")


def _is_pkcs12(data: bytes) -> bool:
    try:
        pfx = asn1_pkcs12.Pfx.load(data, strict=True)
        return bool(pfx["version"].native == "v3" and pfx["auth_safe"]["content_type"].native)
    except (ValueError, TypeError, KeyError):
        return False


def load_signer(path: Path, passphrase: bytes | None) -> FileSigner:
    """Load a signing key (RSA of 2048 bits or more, ECDSA P-256 or P-384) and its chain from a PKCS#12 file."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyLoadError(
            f"key file {path} does not exist",
            hint="create one with `interp-dossier keygen --out DIR` or pass another --key",
        ) from None
    except IsADirectoryError:
        raise KeyLoadError(f"key file {path} is a directory", hint="pass the .p12 file itself") from None
    except OSError as exc:
        raise KeyLoadError(
            f"cannot read key file {path}: {exc.strerror or exc}",
            hint="check the file's permissions",
        ) from exc
    if not _is_pkcs12(data):
        raise KeyLoadError(
            f"key file {path} is not a PKCS#12 (.p12) file",
            hint="pass a PKCS#12 file holding the key and its certificate, e.g. one written by `interp-dossier keygen`",
        )
    loaded = None
    # A passphrase given for an unencrypted file is not an error.
    for attempt in (passphrase, None) if passphrase else (None,):
        try:
            loaded = pkcs12.load_key_and_certificates(data, attempt)
            break
        except ValueError:
            continue
    if loaded is None:
        if passphrase:
            raise KeyLoadError(f"wrong passphrase for key file {path}", hint=_PASSPHRASE_HINT)
        raise KeyLoadError(f"key file {path} is protected by a passphrase", hint=_PASSPHRASE_HINT)
    key, cert, others = loaded
    if key is None or cert is None:
        missing = "private key" if key is None else "certificate"
        raise KeyLoadError(
            f"key file {path} holds no {missing}",
            hint="export the key together with its certificate into one PKCS#12 file",
        )
    usable = (isinstance(key, rsa.RSAPrivateKey) and key.key_size >= _MIN_RSA_BITS) or (
        isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in ECDSA_CURVES
    )
    if not usable:
        raise KeyLoadError(
            f"key file {path} does not hold an RSA key of at least {_MIN_RSA_BITS} bits or an ECDSA key on P-256 "
            "or P-384",
            hint="create a key with `interp-dossier keygen --csr` and have your CA certify it",
        )
    assert isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
    return FileSigner(key, [cert, *others], source=path)


def passphrase_from_env_or_prompt(confirm: bool) -> bytes | None:
    """The key passphrase: from the environment, else from the terminal.

    ``INTERP_DOSSIER_KEY_PASSPHRASE`` wins when set (set but empty: no
    passphrase). Otherwise, on a terminal, the passphrase is asked for (twice
    when ``confirm``, i.e. when creating a key); an empty answer means no
    passphrase. Without a terminal this raises :class:`KeyLoadError`.
    """
    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        return value.encode("utf-8") or None
    if not sys.stdin.isatty():
        raise KeyLoadError(
            "no passphrase for the key file, and standard input is not a terminal to ask",
            hint=f"set {PASSPHRASE_ENV}",
        )
    try:
        first = getpass.getpass("Key passphrase: ")
        if confirm and getpass.getpass("Repeat the passphrase: ") != first:
            raise KeyLoadError("the two passphrases differ", hint="run the command again")
    except EOFError:
        raise KeyLoadError("no passphrase was entered", hint=f"set {PASSPHRASE_ENV}") from None
    return first.encode("utf-8") or None


# --- the development key and keygen ---------------------------------------------------------


def development_key_path() -> Path:
    """Where the development key lives: outside any bundle, in the user's data directory."""
    home = os.environ.get(HOME_ENV)
    if home:
        return Path(home) / _DEV_KEY_FILE_NAME
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "interp-dossier" / _DEV_KEY_FILE_NAME


def ensure_development_signer() -> FileSigner:
    """Reuse the development key, or create it (unencrypted, mode 0600, directory 0700)."""
    path = development_key_path()
    if not path.exists():
        directory = path.parent
        if not directory.is_dir():
            try:
                directory.mkdir(parents=True, mode=0o700)
                directory.chmod(0o700)
            except OSError as exc:
                raise KeyLoadError(
                    f"cannot create the development key directory {directory}: {exc.strerror or exc}",
                    hint=f"set {HOME_ENV} to a writable directory",
                ) from exc
        key, cert = generate_development_identity()
        try:
            write_pkcs12(path, key, cert, None)
        except SigningError:
            if not path.is_file():  # not a lost race with another process
                raise
        else:
            return FileSigner(key, [cert], source=path)
    signer = load_signer(path, None)
    if not is_development_certificate(signer.certificate):
        raise KeyLoadError(
            f"{path} holds a key that is not marked as a development key",
            hint=f"pass a real key with --key, or move {path} away",
        )
    return signer


def _key_directory(out_dir: Path) -> Path:
    """``out_dir``, created with mode 0700 if its parent exists; an error if it cannot be a key directory."""
    if not out_dir.exists():
        if not out_dir.parent.is_dir():
            raise SigningError(
                f"cannot create {out_dir}: its parent directory {out_dir.parent} does not exist",
                hint="create the parent directory first or choose another --out",
            )
        try:
            out_dir.mkdir(mode=0o700)
        except OSError as exc:
            raise SigningError(
                f"cannot create {out_dir}: {exc.strerror or exc}",
                hint="choose another --out",
            ) from exc
    elif not out_dir.is_dir():
        raise SigningError(f"{out_dir} exists and is not a directory", hint="choose another --out")
    return out_dir


def keygen(out_dir: Path, passphrase: bytes | None) -> tuple[Path, Path]:
    """Write a development key and certificate: ``out_dir/signer.p12`` and ``out_dir/signer.pem``.

    ``out_dir`` is created (mode 0700) if its parent exists. Existing files are
    never overwritten.
    """
    out_dir = _key_directory(Path(out_dir))
    key_path, cert_path = out_dir / KEY_FILE_NAME, out_dir / CERT_FILE_NAME
    for existing in (key_path, cert_path):
        if existing.exists():
            raise SigningError(
                f"refusing to overwrite {existing}",
                hint="choose another --out directory or move the existing key away",
            )
    key, cert = generate_development_identity()
    write_pkcs12(key_path, key, cert, passphrase)
    try:
        _write_new_file(
            cert_path,
            cert.public_bytes(serialization.Encoding.PEM),
            0o644,
            overwrite=False,
            what="certificate file",
        )
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, cert_path


# --- keys for filing: a certificate signing request, then the CA's certificate ----------------

#: Extended key usage documentSigning (RFC 9336), which ``keygen --csr`` requests.
DOCUMENT_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")
#: Key algorithms ``keygen --csr`` makes.
KEY_ALGORITHMS = ("rsa-3072", "ecdsa-p256", "ecdsa-p384")
#: The private key ``keygen --csr`` writes (PKCS#8 PEM) and the request it writes beside it.
PRIVATE_KEY_FILE_NAME = "signer.key"
CSR_FILE_NAME = "signer.csr"


def _new_key(algorithm: str) -> SigningKey:
    if algorithm == "rsa-3072":
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    if algorithm == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    raise SigningError(f"there is no key algorithm {algorithm!r}", hint=f"choose one of {', '.join(KEY_ALGORITHMS)}")


def _subject(dn: str) -> x509.Name:
    try:
        name = x509.Name.from_rfc4514_string(dn)
    except ValueError as exc:
        raise SigningError(
            f"--subject {dn!r} is not an RFC 4514 distinguished name ({exc})",
            hint="e.g. 'CN=Example Lab dossier signer,O=Example Lab,C=DE'",
        ) from None
    if not name.get_attributes_for_oid(NameOID.COMMON_NAME):
        raise SigningError(f"--subject {dn!r} has no common name (CN)", hint="add CN=... naming the signer")
    return name


def make_csr(out_dir: Path, subject: str, algorithm: str, passphrase: bytes | None) -> tuple[Path, Path]:
    """A new signing key and a certificate signing request for it, for an organisation's CA.

    Writes ``out_dir/signer.key`` (PKCS#8 PEM, mode 0600, encrypted with the
    passphrase when one is given) and ``out_dir/signer.csr`` (PEM). The request asks
    for what verification requires of a signer (:mod:`signing.trust`): not a CA,
    key usage digitalSignature and nonRepudiation, extended key usage document
    signing. Once the CA has issued the certificate, :func:`pack_certificate`
    joins key and certificate into ``signer.p12``. Existing files are never
    overwritten.
    """
    out_dir = _key_directory(Path(out_dir))
    name = _subject(subject)
    key = _new_key(algorithm)
    key_path, csr_path = out_dir / PRIVATE_KEY_FILE_NAME, out_dir / CSR_FILE_NAME
    for existing in (key_path, csr_path):
        if existing.exists():
            raise SigningError(f"refusing to overwrite {existing}", hint="choose another --out directory")
    digest = (
        hashes.SHA384() if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256 else hashes.SHA256()
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([DOCUMENT_SIGNING_EKU]), critical=False)
        .sign(key, digest)
    )  # fmt: skip
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = serialization.Encoding.PEM
    _write_new_file(
        key_path, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, encryption), 0o600,
        overwrite=False, what="private key file",
    )  # fmt: skip
    try:
        _write_new_file(csr_path, csr.public_bytes(pem), 0o644, overwrite=False, what="certificate request")
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, csr_path


def pack_certificate(out_dir: Path, cert_path: Path, passphrase: bytes | None) -> Path:
    """Join ``out_dir/signer.key`` and the certificate(s) the CA issued into ``out_dir/signer.p12``.

    ``cert_path`` holds PEM certificates: the signer's first, then its issuers
    (they travel in the bundle's signer.pem). The certificate must certify the
    key; the key must be one a signer may use. The PKCS#12 file is encrypted with
    the passphrase when one is given.
    """
    out_dir = Path(out_dir)
    key_path = out_dir / PRIVATE_KEY_FILE_NAME
    try:
        key_pem = key_path.read_bytes()
    except OSError as exc:
        raise KeyLoadError(
            f"cannot read {key_path}: {exc.strerror or exc}",
            hint="pass the --out directory where `keygen --csr` wrote the key",
        ) from None
    try:
        key = serialization.load_pem_private_key(key_pem, passphrase or None)
    except TypeError:
        raise KeyLoadError(f"{key_path} is protected by a passphrase", hint=_PASSPHRASE_HINT) from None
    except ValueError:
        raise KeyLoadError(f"{key_path} cannot be read (wrong passphrase, or not a PEM private key)",
                           hint=_PASSPHRASE_HINT) from None  # fmt: skip
    try:
        certs = x509.load_pem_x509_certificates(Path(cert_path).read_bytes())
    except OSError as exc:
        raise KeyLoadError(f"cannot read {cert_path}: {exc.strerror or exc}", hint="pass the CA's PEM file") from None
    except ValueError:
        raise KeyLoadError(
            f"{cert_path} holds no PEM certificate", hint="pass the certificate the CA issued, as PEM"
        ) from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise KeyLoadError(f"{key_path} holds a key interp-dossier does not sign with", hint="use RSA or ECDSA")
    from signing.trust import signer_problems

    signer = FileSigner(key, certs, source=Path(cert_path))  # refuses a certificate of another key
    problems = signer_problems(signer.certificate, None)
    if problems:
        raise KeyLoadError(
            f"the certificate in {cert_path} may not sign dossiers: {'; '.join(problems)}",
            hint="ask the CA for a document-signing certificate (not a CA, no TLS server usage)",
        )
    p12 = out_dir / KEY_FILE_NAME
    write_pkcs12(p12, key, certs[0], passphrase, extra_certs=certs[1:])
    return p12
