"""The in-toto Statement v1 over the bundle, in a DSSE envelope.

The statement names ``dossier.json`` and the signed ``dossier.pdf`` by sha256.
It is serialised with the one canonical serializer (RFC 8785), signed over
DSSE's pre-authentication encoding (PAE) and kept as bytes throughout.

Parsing is strict: unknown or duplicate keys, invalid or non-canonical base64
and anything but exactly one signature are refused. Parsers raise
:class:`ValueError` with a sentence for the verification report.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from evidence.canonical import canonical_bytes, sha256_hex
from signing._json import parse_object
from signing.keys import Signer, certificate_sha256, dsse_hash, dsse_padding

__all__ = [
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "TREND_PREDICATE_TYPE",
    "Envelope",
    "build_statement",
    "pae",
    "parse_envelope",
    "parse_statement",
    "sign_envelope",
    "statement_subjects",
    "verify_envelope_signature",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://interp-dossier.dev/attestation/dossier/v1"
#: The predicate type of a sweep's trend dossier (``interp-dossier sweep``).
TREND_PREDICATE_TYPE = "https://interp-dossier.dev/attestation/trend/v1"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ENVELOPE_KEYS = {"payload", "payloadType", "signatures"}
_SIGNATURE_KEYS = {"keyid", "sig"}
_STATEMENT_KEYS = {"_type", "subject", "predicateType", "predicate"}


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of ``payload``; lengths count UTF-8 bytes."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def build_statement(
    subjects: Mapping[str, bytes], predicate: Mapping[str, Any], predicate_type: str = PREDICATE_TYPE
) -> bytes:
    """Canonical bytes of an in-toto Statement v1 naming each file (name -> bytes) by sha256."""
    return canonical_bytes(
        {
            "_type": STATEMENT_TYPE,
            "subject": [
                {"name": name, "digest": {"sha256": sha256_hex(data)}}
                for name, data in sorted(subjects.items())
            ],
            "predicateType": predicate_type,
            "predicate": dict(predicate),
        }
    )


def sign_envelope(statement: bytes, signer: Signer) -> bytes:
    """Canonical bytes of a DSSE envelope carrying ``statement``, signed by ``signer``."""
    signature = signer.sign(pae(PAYLOAD_TYPE, statement))
    return canonical_bytes(
        {
            "payload": _b64(statement),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [
                {"keyid": certificate_sha256(signer.certificate), "sig": _b64(signature)}
            ],
        }
    )


@dataclass(frozen=True)
class Envelope:
    """A parsed DSSE envelope with its single signature."""

    payload: bytes
    payload_type: str
    keyid: str
    signature: bytes


def parse_envelope(data: bytes) -> Envelope:
    """Parse a DSSE envelope strictly; :class:`ValueError` says what is wrong."""
    obj = parse_object(data, "the envelope")
    _exact_keys(obj, _ENVELOPE_KEYS, "the envelope")
    signatures = obj["signatures"]
    if not isinstance(signatures, list) or len(signatures) != 1:
        count = len(signatures) if isinstance(signatures, list) else "no list of"
        raise ValueError(f"the envelope carries {count} signatures; exactly one is expected")
    sig = signatures[0]
    _exact_keys(sig, _SIGNATURE_KEYS, "the envelope's signature")
    payload_type, keyid = obj["payloadType"], sig["keyid"]
    if not isinstance(payload_type, str):
        raise ValueError("the envelope's payloadType is not a string")
    if not isinstance(keyid, str) or not _HEX64.match(keyid):
        raise ValueError("the signature's keyid is not a sha256 hex digest")
    return Envelope(
        payload=_unb64(obj["payload"], "payload"),
        payload_type=payload_type,
        keyid=keyid,
        signature=_unb64(sig["sig"], "sig"),
    )


def verify_envelope_signature(envelope: Envelope, cert: x509.Certificate) -> bool:
    """True if the envelope's signature over the PAE verifies with ``cert``'s key.

    RSA: RSASSA-PSS with SHA-256 (:func:`signing.keys.dsse_padding`); ECDSA: DER
    signatures with the curve's digest (:func:`signing.keys.dsse_hash`). Any
    other key, or other parameters, do not verify.
    """
    public = cert.public_key()
    digest = dsse_hash(public)
    message = pae(envelope.payload_type, envelope.payload)
    try:
        if isinstance(public, rsa.RSAPublicKey):
            public.verify(envelope.signature, message, dsse_padding(), hashes.SHA256())
        elif isinstance(public, ec.EllipticCurvePublicKey) and digest is not None:
            public.verify(envelope.signature, message, ec.ECDSA(digest))
        else:
            return False
    except (InvalidSignature, ValueError):  # ValueError: not a DER ECDSA signature
        return False
    return True


def parse_statement(payload: bytes) -> dict[str, Any]:
    """Parse an in-toto statement strictly (exactly its four fields); values are not checked."""
    obj = parse_object(payload, "the statement")
    _exact_keys(obj, _STATEMENT_KEYS, "the statement")
    return obj


def statement_subjects(statement: Mapping[str, Any]) -> dict[str, str]:
    """The statement's subjects as name -> sha256 hex; :class:`ValueError` if malformed."""
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        raise ValueError("the statement's subject is not a non-empty list")
    out: dict[str, str] = {}
    for entry in subjects:
        _exact_keys(entry, {"name", "digest"}, "a subject")
        name, digest = entry["name"], entry["digest"]
        if not isinstance(name, str):
            raise ValueError(f"subject name {name!r} is not a string")
        if name in out:
            raise ValueError(f"subject {name!r} appears twice")
        _exact_keys(digest, {"sha256"}, f"the digest of subject {name!r}")
        if not isinstance(digest["sha256"], str) or not _HEX64.match(digest["sha256"]):
            raise ValueError(f"the sha256 of subject {name!r} is not 64 lower-case hex digits")
        out[name] = digest["sha256"]
    return out


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"the envelope's {field} is not a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the envelope's {field} is not valid base64") from None
    if _b64(raw) != value:
        raise ValueError(f"the envelope's {field} is not canonical base64")
    return raw


def _exact_keys(obj: object, expected: set[str], what: str) -> None:
    if not isinstance(obj, dict):
        raise ValueError(f"{what} is not a JSON object")
    if set(obj) != expected:
        extra, missing = sorted(set(obj) - expected), sorted(expected - set(obj))
        parts = [f"unknown keys {extra}"] if extra else []
        parts += [f"missing keys {missing}"] if missing else []
        raise ValueError(f"{what} has " + " and ".join(parts))
