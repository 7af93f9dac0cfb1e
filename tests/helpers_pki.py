"""A small test PKI, built in memory: root and intermediate CAs and signers with chosen defects.

Every certificate is made here with the ``cryptography`` builder; nothing is
fetched. Keys are RSA (2048 bits unless a test asks for a weak one) and are
generated once per name and size, so a test session pays for each key once.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
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
    crl_url: str | None = None,
    ocsp_url: str | None = None,
) -> Identity:
    """A certificate for ``common_name``, issued by ``issuer`` (self-signed when None).

    ``crl_url`` and ``ocsp_url`` name where its revocation status is published. An
    extended key usage of timeStamping alone is marked critical, as RFC 3161 requires.
    """
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
        critical = list(ekus) == [ExtendedKeyUsageOID.TIME_STAMPING]
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(ekus)), critical=critical)
    if crl_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    if ocsp_url is not None:
        access = x509.AccessDescription(
            x509.oid.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess([access]), critical=False)
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


def timestamper(authority: Identity | None = None, *, at: dt.datetime | None = None, chain: tuple[Identity, ...] = ()):
    """An in-process timestamp authority (pyHanko's DummyTimeStamper) signing with ``authority``.

    ``at`` fixes the time the tokens state (by default, the time of each request);
    ``chain``: the issuers it sends with its certificate in every token.
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
        certs_to_embed=[asn1_x509.Certificate.load(c.cert.public_bytes(der)) for c in (authority, *chain)],
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


class LocalPKI:
    """A complete test PKI served on 127.0.0.1: root and intermediate CAs, a signer, a TSA, CRLs and OCSP.

    ``with LocalPKI() as pki:`` starts one HTTP server that answers

    * ``POST /tsa``: RFC 3161 timestamps by :attr:`tsa` (issued by the root);
    * ``GET /root.crl`` and ``GET /intermediate.crl``: each CA's current CRL;
    * ``POST /ocsp``: OCSP responses signed by the intermediate CA for the certificates it issued.

    Certificates name these places (CRL distribution points, OCSP in the authority
    information access), so a PAdES B-LT signer fetches its validation data from here.
    :meth:`revoke` revokes a certificate as of a given time: later CRLs and OCSP
    responses say so. ``signer_not_after`` sets when the signer's certificate expires.
    """

    def __init__(self, *, signer_not_after: dt.datetime | None = None, tag: str = "LT") -> None:
        self.signer_not_after = signer_not_after or NOW + dt.timedelta(days=30)
        self.tag = tag
        self.revoked: dict[int, dt.datetime] = {}
        self.requests: list[str] = []

    # -- the PKI -------------------------------------------------------------------------------

    def _issue(
        self,
        common_name: str,
        issuer: Identity | None,
        *,
        ca: bool,
        ekus: list[x509.ObjectIdentifier] | None,
        crl: str | None,
        ocsp: bool = False,
        not_after: dt.datetime | None = None,
    ) -> Identity:
        return certificate(
            f"{common_name} ({self.tag})",
            issuer=issuer,
            ca=ca,
            ekus=tuple(ekus) if ekus else None,
            not_before=NOW - dt.timedelta(days=2),
            not_after=not_after or NOW + dt.timedelta(days=3650),
            crl_url=f"{self.url}{crl}" if crl is not None else None,
            ocsp_url=f"{self.url}ocsp" if ocsp else None,
        )

    def _build(self) -> None:
        self.root = self._issue("Root CA", None, ca=True, ekus=None, crl=None)
        self.intermediate = self._issue("Intermediate CA", self.root, ca=True, ekus=None, crl="root.crl")
        self.signer_identity = self._issue(
            "Signer", self.intermediate, ca=False, ekus=[DOCUMENT_SIGNING], crl="intermediate.crl", ocsp=True,
            not_after=self.signer_not_after,
        )  # fmt: skip
        self.tsa = self._issue("TSA", self.root, ca=False, ekus=[ExtendedKeyUsageOID.TIME_STAMPING], crl="root.crl")
        self._issued = {
            c.cert.serial_number: (c, issuer)
            for c, issuer in (
                (self.intermediate, self.root),
                (self.signer_identity, self.intermediate),
                (self.tsa, self.root),
            )
        }

    def signer(self) -> FileSigner:
        """The signer, with its chain up to the root (as a PKCS#12 file for filing would carry it)."""
        return signer(self.signer_identity, self.intermediate, self.root)

    def revoke(self, identity: Identity, at: dt.datetime) -> None:
        """Revoke ``identity``'s certificate with effect from ``at`` (a key compromise dated then)."""
        self.revoked[identity.cert.serial_number] = at

    def crl(self, issuer: Identity) -> bytes:
        """``issuer``'s current CRL (DER), listing what it issued and :meth:`revoke` revoked."""
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.cert.subject)
            .last_update(dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))
            .next_update(dt.datetime.now(dt.UTC) + dt.timedelta(days=7))
            .add_extension(x509.CRLNumber(len(self.requests) + 1), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        )
        for serial, when in self.revoked.items():
            cert, by = self._issued[serial]
            if by.cert == issuer.cert:
                entry = (
                    x509.RevokedCertificateBuilder()
                    .serial_number(serial)
                    .revocation_date(when)
                    .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
                    .build()
                )
                builder = builder.add_revoked_certificate(entry)
        return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def ocsp_response(self, request_der: bytes) -> bytes:
        from cryptography.x509 import ocsp

        request = ocsp.load_der_ocsp_request(request_der)
        issued = self._issued.get(request.serial_number)
        if issued is None:
            return ocsp.OCSPResponseBuilder.build_unsuccessful(ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(
                serialization.Encoding.DER
            )
        cert, issuer = issued
        now = dt.datetime.now(dt.UTC)
        when = self.revoked.get(request.serial_number)
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert.cert,
            issuer=issuer.cert,
            algorithm=request.hash_algorithm,
            cert_status=ocsp.OCSPCertStatus.REVOKED if when else ocsp.OCSPCertStatus.GOOD,
            this_update=now - dt.timedelta(minutes=1),
            next_update=now + dt.timedelta(days=1),
            revocation_time=when,
            revocation_reason=x509.ReasonFlags.key_compromise if when else None,
        )
        builder = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, issuer.cert)
        return builder.sign(issuer.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def anchor_pem(self, path: Path) -> Path:
        """The root's certificate written to ``path`` (the auditor's trust anchor)."""
        path.write_bytes(self.root.cert.public_bytes(serialization.Encoding.PEM))
        return path

    # -- the server ----------------------------------------------------------------------------

    def __enter__(self) -> LocalPKI:
        import http.server
        import threading

        from asn1crypto import tsp

        pki = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: bytes, kind: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                pki.requests.append(f"GET {self.path}")
                issuer = {"/root.crl": pki.root, "/intermediate.crl": pki.intermediate}.get(self.path)
                if issuer is None:
                    self.send_error(404)
                    return
                self._answer(pki.crl(issuer), "application/pkix-crl")

            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                pki.requests.append(f"POST {self.path}")
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.path == "/tsa":
                    reply = pki.stamper.request_tsa_response(tsp.TimeStampReq.load(body)).dump()
                    self._answer(reply, "application/timestamp-reply")
                elif self.path == "/ocsp":
                    self._answer(pki.ocsp_response(body), "application/ocsp-response")
                else:
                    self.send_error(404)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._build()
        self.stamper = timestamper(self.tsa, chain=(self.root,))
        self.tsa_url = f"{self.url}tsa"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
