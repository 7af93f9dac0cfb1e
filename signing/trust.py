"""What a verifier demands of certificates beyond a chain that validates.

A certificate path that pyHanko's validator accepts is necessary, not
sufficient. This module adds the checks a trust decision needs and that path
validation leaves to the relying party:

* the **trust anchor** must be valid at the validation time, and when it issues
  the next certificate of the path it must be a CA allowed to sign
  certificates (basicConstraints CA=true, keyCertSign when keyUsage is
  present); trusting a leaf certificate directly means the path is that leaf;
* the **signer** must be fit to sign documents (:class:`SignerPolicy`): not a
  CA, an extended key usage that is absent or names document or code signing
  (never e.g. a TLS server certificate), an RSA key of at least 2048 bits or
  an elliptic-curve key on P-256 or a stronger curve (or Ed25519 / Ed448), and,
  when the auditor pins one, the expected subject or certificate fingerprint.

Every check returns sentences a person understands; the verifier turns them
into a failed step.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

__all__ = [
    "DOCUMENT_SIGNING_EKUS",
    "MIN_RSA_BITS",
    "SignerPolicy",
    "anchor_problems",
    "signer_problems",
]

#: Extended key usages that make a certificate fit to sign a document (when it names any EKU).
DOCUMENT_SIGNING_EKUS: dict[str, str] = {
    "1.3.6.1.5.5.7.3.36": "documentSigning (RFC 9336)",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "codeSigning",
    "1.3.6.1.4.1.311.10.3.12": "Microsoft document signing",
    "1.2.840.113583.1.1.5": "Adobe Authentic Documents Trust",
    ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE.dotted_string: "anyExtendedKeyUsage",
}
#: The smallest RSA modulus a signer may use.
MIN_RSA_BITS = 2048
#: Elliptic curves a signer may use: P-256 and stronger NIST curves.
_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth (a TLS server certificate)",
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth (a TLS client certificate)",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING.dotted_string: "timeStamping (a timestamp authority)",
    ExtendedKeyUsageOID.OCSP_SIGNING.dotted_string: "OCSPSigning",
}


@dataclass(frozen=True)
class SignerPolicy:
    """What the auditor requires of the signer, beyond fitness to sign documents.

    ``fingerprints``: sha256 of the signer certificate's DER (hex, any case, colons
    allowed); ``subjects``: RFC 4514 subject names. When either is given, the
    signer must match one of them.
    """

    fingerprints: frozenset[str] = field(default_factory=frozenset)
    subjects: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def pinned(cls, fingerprints: Iterable[str] = (), subjects: Iterable[str] = ()) -> SignerPolicy:
        """A policy pinning the signer to these fingerprints or subjects (normalised)."""
        return cls(
            fingerprints=frozenset(f.replace(":", "").strip().lower() for f in fingerprints),
            subjects=frozenset(s.strip() for s in subjects),
        )


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _extension(cert: x509.Certificate, kind: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(cert: x509.Certificate) -> bool:
    constraints = _extension(cert, x509.BasicConstraints)
    return isinstance(constraints, x509.BasicConstraints) and constraints.ca


def _key_problem(cert: x509.Certificate) -> str | None:
    try:
        key = cert.public_key()
    except (ValueError, TypeError, UnsupportedAlgorithm):  # an unsupported or malformed key
        return "its public key is of a kind this verifier does not accept"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return f"its RSA key has {key.key_size} bits, fewer than the {MIN_RSA_BITS} a signer needs"
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVES:
            return f"its elliptic-curve key is on {key.curve.name}; P-256 or a stronger NIST curve is required"
        return None
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return None
    if isinstance(key, dsa.DSAPublicKey):
        return "its key is a DSA key, which is deprecated for signatures"
    return f"its key type ({type(key).__name__}) is not accepted for signatures"


def signer_problems(cert: x509.Certificate, policy: SignerPolicy | None = None) -> list[str]:
    """Why ``cert`` may not sign a dossier (empty when it may)."""
    subject = cert.subject.rfc4514_string()
    problems = []
    if _is_ca(cert):
        problems.append("it is a CA certificate (basicConstraints CA=true); a CA issues certificates, it does "
                        "not sign documents")  # fmt: skip
    eku = _extension(cert, x509.ExtendedKeyUsage)
    if isinstance(eku, x509.ExtendedKeyUsage):
        names = [oid.dotted_string for oid in eku]
        if not any(oid in DOCUMENT_SIGNING_EKUS for oid in names):
            shown = ", ".join(_EKU_NAMES.get(oid, oid) for oid in names) or "none"
            problems.append(
                f"its extended key usage ({shown}) does not allow signing documents "
                "(absent, documentSigning or codeSigning are accepted)"
            )
    usage = _extension(cert, x509.KeyUsage)
    if isinstance(usage, x509.KeyUsage) and not (usage.digital_signature or usage.content_commitment):
        problems.append("its key usage allows neither digitalSignature nor nonRepudiation")
    key = _key_problem(cert)
    if key is not None:
        problems.append(key)
    if policy is not None and (policy.fingerprints or policy.subjects):
        if _fingerprint(cert) not in policy.fingerprints and subject not in policy.subjects:
            pins = sorted(policy.fingerprints) + sorted(policy.subjects)
            problems.append(f"it is not the pinned signer ({'; '.join(pins)})")
    return [f"the signer certificate ({subject}) is not acceptable: {p}" for p in problems]


def anchor_problems(path: Sequence[x509.Certificate], at: dt.datetime) -> list[str]:
    """Why the trust anchor that begins ``path`` (anchor first, signer last) may not vouch for it.

    A path of one certificate is a leaf trusted directly: it must be valid at
    ``at`` and needs no CA rights. An anchor that issues the next certificate
    must be a CA allowed to sign certificates.
    """
    if not path:
        return ["no certificate path was built"]
    anchor = path[0]
    name = anchor.subject.rfc4514_string()
    problems = []
    if not anchor.not_valid_before_utc <= at <= anchor.not_valid_after_utc:
        problems.append(
            f"the trust anchor ({name}) is not valid at {at:%Y-%m-%d %H:%M} UTC: it is valid from "
            f"{anchor.not_valid_before_utc:%Y-%m-%d} to {anchor.not_valid_after_utc:%Y-%m-%d}"
        )
    if len(path) > 1:
        if not _is_ca(anchor):
            problems.append(
                f"the trust anchor ({name}) issues {path[1].subject.rfc4514_string()} but is not a CA "
                "(basicConstraints CA=true is required to issue certificates)"
            )
        usage = _extension(anchor, x509.KeyUsage)
        if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
            problems.append(f"the trust anchor ({name}) issues certificates without keyCertSign in its key usage")
    return problems
