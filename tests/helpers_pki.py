"""A small test PKI, built in memory: root and intermediate CAs and signers with chosen defects.

Every certificate is made here with the ``cryptography`` builder; nothing is
fetched. Keys are RSA (2048 bits unless a test asks for a weak one) and are
generated once per name and size, so a test session pays for each key once.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing import FileSigner

NOW = dt.datetime.now(dt.UTC)
DOCUMENT_SIGNING = x509.ObjectIdentifier("1.3.6.1.5.5.7.3.36")


@functools.cache
def key(name: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _name(common_name: str, organization: str = "Example Test PKI") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True)
class Identity:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate


def certificate(
    common_name: str,
    *,
    issuer: Identity | None = None,
    ca: bool = False,
    key_cert_sign: bool | None = None,
    ekus: tuple[x509.ObjectIdentifier, ...] | None = (DOCUMENT_SIGNING,),
    bits: int = 2048,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
    organization: str = "Example Test PKI",
) -> Identity:
    """A certificate for ``common_name``, issued by ``issuer`` (self-signed when None)."""
    own = key(common_name, bits)
    subject = _name(common_name, organization)
    signing_key = issuer.key if issuer is not None else own
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer is not None else subject)
        .public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or NOW - dt.timedelta(days=1))
        .not_valid_after(not_after or NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=not ca,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca if key_cert_sign is None else key_cert_sign,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(own.public_key()), critical=False)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False
        )
    if ekus and not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=False)
    return Identity(own, builder.sign(signing_key, hashes.SHA256()))


@functools.cache
def root() -> Identity:
    return certificate("Test Root CA", ca=True)


@functools.cache
def intermediate() -> Identity:
    return certificate("Test Intermediate CA", issuer=root(), ca=True)


def signer(leaf: Identity, *chain: Identity) -> FileSigner:
    """A signer holding ``leaf``'s key, with ``chain`` (issuers, nearest first) carried beside it."""
    return FileSigner(leaf.key, [leaf.cert, *(c.cert for c in chain)])


SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH


@functools.cache
def tsa(common_name: str = "Test TSA", issuer: Identity | None = None) -> Identity:
    """A timestamp authority (EKU timeStamping, critical, as RFC 3161 requires), of the test PKI's root by default."""
    own = key(common_name)
    issuer = issuer or root()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.cert.subject)
        .public_key(own.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        .sign(issuer.key, hashes.SHA256())
    )
    return Identity(own, cert)


def timestamper(authority: Identity | None = None, *, at: dt.datetime | None = None):
    """An in-process timestamp authority (pyHanko's DummyTimeStamper) signing with ``authority``.

    ``at`` fixes the time the tokens state (by default, the time of each request).
    """
    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives import serialization
    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    authority = authority or tsa()
    der = serialization.Encoding.DER
    key_info = asn1_keys.PrivateKeyInfo.load(
        authority.key.private_bytes(der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(authority.cert.public_bytes(der)),
        tsa_key=key_info,
        certs_to_embed=[asn1_x509.Certificate.load(authority.cert.public_bytes(der))],
        fixed_dt=at,
    )


class LocalTSA:
    """The in-process authority served over HTTP on 127.0.0.1 (``with LocalTSA() as url: ...``)."""

    def __enter__(self) -> str:
        import http.server
        import threading

        from asn1crypto import tsp

        stamper = timestamper()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                response = stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
                self.send_response(200)
                self.send_header("Content-Type", "application/timestamp-reply")
                self.send_header("Content-Length", str(len(response)))
                self.end_headers()
                self.wfile.write(response)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
