"""The in-toto statement, DSSE's PAE and the strict envelope parser."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from evidence.canonical import canonical_bytes
from signing.dsse import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    Envelope,
    build_statement,
    pae,
    parse_envelope,
    parse_statement,
    sign_envelope,
    statement_subjects,
    verify_envelope_signature,
)
from signing.keys import certificate_sha256
from tests.helpers_bundle import signer_for


@pytest.fixture(scope="module")
def signer():
    return signer_for()


def test_pae_known_vector():
    # The example of the DSSE protocol specification.
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_utf8_bytes_and_empty_payload():
    assert pae("t\u00e9", b"") == b"DSSEv1 3 t\xc3\xa9 0 "
    assert pae(PAYLOAD_TYPE, b"{}") == b"DSSEv1 28 application/vnd.in-toto+json 2 {}"


def test_statement_is_canonical_with_sorted_subjects():
    statement = build_statement({"b.pdf": b"pdf", "a.json": b"{}"}, {"k": 1})
    assert statement == canonical_bytes(json.loads(statement))
    parsed = json.loads(statement)
    assert parsed["_type"] == STATEMENT_TYPE
    assert parsed["predicateType"] == PREDICATE_TYPE
    assert parsed["predicate"] == {"k": 1}
    assert parsed["subject"] == [
        {"name": "a.json", "digest": {"sha256": hashlib.sha256(b"{}").hexdigest()}},
        {"name": "b.pdf", "digest": {"sha256": hashlib.sha256(b"pdf").hexdigest()}},
    ]


def test_envelope_round_trip(signer):
    statement = build_statement({"a": b"1"}, {})
    raw = sign_envelope(statement, signer)
    assert raw == canonical_bytes(json.loads(raw))
    envelope = parse_envelope(raw)
    assert envelope.payload == statement
    assert envelope.payload_type == PAYLOAD_TYPE
    assert envelope.keyid == certificate_sha256(signer.certificate)
    assert verify_envelope_signature(envelope, signer.certificate)
    assert not verify_envelope_signature(envelope, signer_for("other").certificate)
    forged = Envelope(statement + b" ", envelope.payload_type, envelope.keyid, envelope.signature)
    assert not verify_envelope_signature(forged, signer.certificate)


def test_only_pss_with_32_byte_salt_verifies(signer):
    statement = b"{}"
    key = signer._key  # noqa: SLF001
    message = pae(PAYLOAD_TYPE, statement)
    keyid = certificate_sha256(signer.certificate)
    pkcs1 = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    long_salt = key.sign(
        message, padding.PSS(padding.MGF1(hashes.SHA256()), salt_length=64), hashes.SHA256()
    )
    for signature in (pkcs1, long_salt):
        envelope = Envelope(statement, PAYLOAD_TYPE, keyid, signature)
        assert not verify_envelope_signature(envelope, signer.certificate)


def _envelope(**changes) -> bytes:
    obj = {
        "payload": base64.b64encode(b"{}").decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": "a" * 64, "sig": base64.b64encode(b"sig").decode()}],
    }
    obj.update(changes)
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (_envelope(signatures=[]), "exactly one"),
        (_envelope(signatures=[{"keyid": "a" * 64, "sig": "c2ln"}] * 2), "exactly one"),
        (_envelope(extra=True), "unknown keys ['extra']"),
        (b'{"payload": "e30=", "payloadType": "x"}', "missing keys ['signatures']"),
        (_envelope(signatures=[{"keyid": "a" * 64, "sig": "c2ln", "x": 1}]), "unknown keys"),
        (_envelope(signatures=[{"keyid": "A" * 64, "sig": "c2ln"}]), "keyid"),
        (_envelope(payload="e30"), "base64"),
        (_envelope(payload="e3=="), "not canonical base64"),
        (_envelope(payload="e3 0="), "base64"),
        (_envelope(payloadType=1), "payloadType"),
        (b'{"payload": "e30=", "payload": "e30=", "payloadType": "x", "signatures": []}', "duplicate"),
    ],
)
def test_strict_envelope_parsing(raw, message):
    with pytest.raises(ValueError) as info:
        parse_envelope(raw)
    assert message in str(info.value)


def test_statement_parsing_and_subjects():
    statement = parse_statement(build_statement({"x": b"1"}, {}))
    assert statement_subjects(statement) == {"x": hashlib.sha256(b"1").hexdigest()}
    with pytest.raises(ValueError, match="unknown keys"):
        parse_statement(b'{"_type": 1, "subject": [], "predicateType": 1, "predicate": 1, "x": 1}')
    bad_subjects = [
        [],
        [{"name": "x", "digest": {"sha256": "0" * 64}}] * 2,
        [{"name": "x", "digest": {"sha256": "0" * 63}}],
        [{"name": "x", "digest": {"sha256": "0" * 64, "sha512": "0"}}],
        [{"name": ["x"], "digest": {"sha256": "0" * 64}}],
        [{"name": "x"}],
    ]
    for subjects in bad_subjects:
        with pytest.raises(ValueError):
            statement_subjects({"subject": subjects})
