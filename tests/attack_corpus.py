"""The attack corpus: named hostile bundles and PDFs, each of which verification must stop at a named step.

Every attack starts from the same clean material (:class:`Clean`): a dossier signed
by a certificate of the test PKI (``Example Lab signer``, issued by the test
intermediate CA; the auditor trusts the test root). An attack that has to
re-sign the DSSE envelope re-signs it with that same trusted key, so that only
the step under test can stop it. Each :class:`Attack` names the step that must
be the first to fail and a fragment of the sentence that step reports.

``tests/unit/test_attack_corpus.py`` runs them all; the hostile builders reuse
``tests/helpers_bundle.py`` (bundles and PDF mutations) and ``tests/helpers_pki.py``
(certificates with chosen defects, timestamp authorities).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.records import DEVELOPMENT_KEY_NOTICE
from signing import FileSigner, VerificationReport, sign_pdf, verify_bundle, verify_pdf
from signing.bundle import DOSSIER_JSON, DOSSIER_PDF, DSSE_ENVELOPE, MAX_FILE_BYTES, SIGNER_PEM, seal
from signing.dsse import build_statement, pae, parse_envelope, sign_envelope
from signing.keys import certificate_sha256
from signing.timestamps import TIMESTAMP_FILE, timestamp_signature
from signing.trust import SignerPolicy
from tests import helpers_bundle as hb
from tests import helpers_pki as pki

BUNDLE, PDF = "bundle", "pdf"


@dataclass(frozen=True)
class Hostile:
    """What an attack hands the verifier: the files, the anchors the auditor trusts, and the auditor's pins."""

    files: dict[str, bytes]
    #: trust anchors, PEM (the test root unless the attack is about the anchor)
    anchors: tuple[bytes, ...]
    policy: SignerPolicy | None = None
    #: called on the bundle directory after the files are written (subdirectories, FIFOs, sparse files)
    arrange: Callable[[Path], None] | None = None


@dataclass(frozen=True)
class Attack:
    """One named attack: how to build it, and where and how verification must refuse it."""

    name: str
    description: str
    target: str  # BUNDLE (verify_bundle on a directory) or PDF (verify_pdf on the PDF alone)
    build: Callable[[Clean], Hostile] = field(repr=False)
    #: the step that must be the first to fail
    step: int
    #: a fragment of that step's detail: the sentence a person reads
    message: str

    def run(self, clean: Clean, workdir: Path) -> VerificationReport:
        """Build the hostile material in ``workdir`` and verify it."""
        hostile = self.build(clean)
        anchors = []
        for i, data in enumerate(hostile.anchors):
            path = workdir / f"anchor-{i}.pem"
            path.write_bytes(data)
            anchors.append(path)
        if self.target == PDF:
            pdf = workdir / DOSSIER_PDF
            pdf.write_bytes(hostile.files[DOSSIER_PDF])
            return verify_pdf(pdf, anchors, signer_policy=hostile.policy)
        bundle = hb.write_files(hostile.files, workdir / "bundle")
        if hostile.arrange is not None:
            hostile.arrange(bundle)
        return verify_bundle(bundle, anchors, signer_policy=hostile.policy)


def pem(*identities: pki.Identity) -> bytes:
    return b"".join(i.cert.public_bytes(Encoding.PEM) for i in identities)


class Clean:
    """The clean material every attack starts from, built lazily and once per instance."""

    @cached_property
    def leaf(self) -> pki.Identity:
        return pki.certificate("Example Lab signer", issuer=pki.intermediate())

    @cached_property
    def signer(self) -> FileSigner:
        return pki.signer(self.leaf, pki.intermediate())

    @cached_property
    def other_signer(self) -> FileSigner:
        """A second signer the auditor also trusts (same root)."""
        return pki.signer(pki.certificate("Example Lab second signer", issuer=pki.intermediate()), pki.intermediate())

    @cached_property
    def anchors(self) -> tuple[bytes, ...]:
        return (pem(pki.root()),)

    @cached_property
    def data(self) -> dict[str, Any]:
        return hb.dossier_data(self.signer)

    @cached_property
    def dossier_json(self) -> bytes:
        return hb.dossier_bytes(self.data)

    @cached_property
    def files(self) -> dict[str, bytes]:
        return hb.make_bundle(self.signer, self.dossier_json)

    @property
    def pdf(self) -> bytes:
        return self.files[DOSSIER_PDF]

    def edited(self, edit: Callable[[dict[str, Any]], None]) -> dict[str, bytes]:
        """A bundle of a dossier edited by ``edit`` and then sealed honestly by the trusted signer."""
        data = json.loads(self.dossier_json)
        edit(data)
        return hb.make_bundle(self.signer, hb.dossier_bytes(data))

    def resealed(self, **changes: bytes) -> dict[str, bytes]:
        """The clean files with ``changes`` (name=bytes, ``dossier_pdf`` for dossier.pdf), envelope re-signed."""
        names = {"dossier_json": DOSSIER_JSON, "dossier_pdf": DOSSIER_PDF}
        files = {**self.files, **{names[k]: v for k, v in changes.items()}}
        return hb.reseal_envelope(files, self.signer)

    def hostile(self, files: dict[str, bytes], **kwargs: Any) -> Hostile:
        return Hostile(files=files, anchors=kwargs.pop("anchors", self.anchors), **kwargs)


ATTACKS: list[Attack] = []
#: names of the attacks that failed at their named step in this test session (for the terminal summary)
STOPPED: set[str] = set()


def attack(name: str, *, step: int, message: str, description: str, target: str = BUNDLE):
    """Register the decorated builder as the attack ``name``."""

    def register(build: Callable[[Clean], Hostile]) -> Callable[[Clean], Hostile]:
        ATTACKS.append(Attack(name, description, target, build, step, message))
        return build

    return register


def _envelope(files: dict[str, bytes]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(files[DSSE_ENVELOPE])
    return loaded


def _statement(files: dict[str, bytes]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(base64.b64decode(_envelope(files)["payload"]))
    return loaded


def _signed_envelope(statement: dict[str, Any] | bytes, signer: FileSigner, payload_type: str | None = None) -> bytes:
    """An envelope over ``statement``, correctly signed by ``signer`` (with another payloadType if given)."""
    payload = statement if isinstance(statement, bytes) else canonical_bytes(statement)
    if payload_type is None:
        return sign_envelope(payload, signer)
    envelope = json.loads(sign_envelope(payload, signer))
    envelope["payloadType"] = payload_type
    envelope["signatures"][0]["sig"] = base64.b64encode(signer.sign(pae(payload_type, payload))).decode()
    return canonical_bytes(envelope)


# --- step 1: the envelope, its signature and the signer's trust -------------------------------------


@attack("envelope-two-signatures", step=1, message="exactly one",
        description="The envelope carries a second valid signature, by another trusted key, beside the signer's.")
def _(c: Clean) -> Hostile:
    envelope = _envelope(c.files)
    second = _envelope({DSSE_ENVELOPE: sign_envelope(base64.b64decode(envelope["payload"]), c.other_signer)})
    envelope["signatures"].append(second["signatures"][0])
    return c.hostile({**c.files, DSSE_ENVELOPE: canonical_bytes(envelope)})


@attack("envelope-no-signature", step=1, message="exactly one",
        description="The envelope's signature list is emptied.")
def _(c: Clean) -> Hostile:
    envelope = _envelope(c.files)
    envelope["signatures"].clear()
    return c.hostile({**c.files, DSSE_ENVELOPE: canonical_bytes(envelope)})


@attack("envelope-unknown-key", step=1, message="unknown keys",
        description="The envelope carries a key DSSE does not define.")
def _(c: Clean) -> Hostile:
    return c.hostile({**c.files, DSSE_ENVELOPE: canonical_bytes({**_envelope(c.files), "extra": 1})})


@attack("envelope-payload-bad-base64", step=1, message="base64",
        description="The envelope's payload is not valid base64.")
def _(c: Clean) -> Hostile:
    envelope = _envelope(c.files)
    envelope["payload"] += "!"
    return c.hostile({**c.files, DSSE_ENVELOPE: canonical_bytes(envelope)})


@attack("envelope-keyid-of-another-key", step=1, message="keyid does not name the signer certificate",
        description="The signature's keyid names another key than the certificate that made it.")
def _(c: Clean) -> Hostile:
    envelope = _envelope(c.files)
    envelope["signatures"][0]["keyid"] = certificate_sha256(c.other_signer.certificate)
    return c.hostile({**c.files, DSSE_ENVELOPE: canonical_bytes(envelope)})


@attack("statement-edited-without-signing", step=1, message="does not verify with the signer's key",
        description="The statement's digest of dossier.json is changed in the envelope, and the signature kept.")
def _(c: Clean) -> Hostile:
    envelope, statement = _envelope(c.files), _statement(c.files)
    statement["subject"][0]["digest"]["sha256"] = "0" * 64
    envelope["payload"] = base64.b64encode(canonical_bytes(statement)).decode()
    return c.hostile({**c.files, DSSE_ENVELOPE: canonical_bytes(envelope)})


@attack("signer-pem-swapped", step=1, message="does not verify with the signer's key",
        description="signer.pem is replaced by another trusted certificate that did not make the signature.")
def _(c: Clean) -> Hostile:
    from signing.keys import certificate_chain_pem

    return c.hostile({**c.files, SIGNER_PEM: certificate_chain_pem(c.other_signer)})


@attack("signer-pem-garbage", step=1, message="holds no readable certificate",
        description="signer.pem holds no certificate at all.")
def _(c: Clean) -> Hostile:
    return c.hostile({**c.files, SIGNER_PEM: b"not a certificate"})


@attack("wrong-anchor", step=1, message="does not chain to a supplied trust anchor",
        description="The auditor's anchor is an unrelated root that never issued the signer's chain.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.files, anchors=(pem(pki.certificate("Unrelated Root CA", ca=True)),))


@attack("resigned-by-untrusted-key", step=1, message="does not chain to a supplied trust anchor",
        description="A record is removed and the bundle re-sealed by a key outside the auditor's trust.")
def _(c: Clean) -> Hostile:
    attacker = hb.signer_for("attacker")
    return c.hostile(hb.make_bundle(attacker, hb.dossier_bytes(hb.dossier_data(c.signer, n_records=1))))


def _signed_by(signer: FileSigner) -> dict[str, bytes]:
    return hb.make_bundle(signer, hb.dossier_bytes(hb.dossier_data(signer)))


@attack("expired-anchor", step=1, message="is not valid at",
        description="The signer chains to a root that has expired, though the signer itself is valid.")
def _(c: Clean) -> Hostile:
    old = pki.certificate("Test Root CA expired", ca=True, not_before=pki.NOW - dt.timedelta(days=900),
                          not_after=pki.NOW - dt.timedelta(days=10))  # fmt: skip
    return c.hostile(_signed_by(pki.signer(pki.certificate("signer of an expired root", issuer=old), old)),
                     anchors=(pem(old),))  # fmt: skip


@attack("expired-self-signed-anchor", step=1, message="is not valid at",
        description="An expired self-signed certificate is trusted as its own anchor.")
def _(c: Clean) -> Hostile:
    expired = pki.certificate("expired self-trusted signer", not_before=pki.NOW - dt.timedelta(days=400),
                              not_after=pki.NOW - dt.timedelta(days=1))  # fmt: skip
    return c.hostile(_signed_by(pki.signer(expired)), anchors=(pem(expired),))


@attack("non-ca-anchor-issues-a-child", step=1, message="is not a CA",
        description="A plain leaf certificate, trusted as an anchor, issues the signer's certificate.")
def _(c: Clean) -> Hostile:
    boss = pki.certificate("A plain leaf that issues")
    return c.hostile(_signed_by(pki.signer(pki.certificate("child of a leaf", issuer=boss), boss)),
                     anchors=(pem(boss),))  # fmt: skip


@attack("anchor-without-keycertsign", step=1, message="without keyCertSign",
        description="The anchor is a CA whose key usage does not allow it to sign certificates.")
def _(c: Clean) -> Hostile:
    ca = pki.certificate("CA without keyCertSign", ca=True, key_cert_sign=False)
    return c.hostile(_signed_by(pki.signer(pki.certificate("child of that CA", issuer=ca), ca)), anchors=(pem(ca),))


@attack("tls-server-certificate-as-signer", step=1, message="serverAuth (a TLS server certificate)",
        description="The bundle is signed with a TLS server certificate (EKU serverAuth) of the trusted PKI.")
def _(c: Clean) -> Hostile:
    tls = pki.certificate("www.example.test", issuer=pki.root(), ekus=(pki.SERVER_AUTH,))
    return c.hostile(_signed_by(pki.signer(tls)))


@attack("ca-certificate-as-signer", step=1, message="it is a CA certificate",
        description="The bundle is signed with a CA certificate of the trusted PKI.")
def _(c: Clean) -> Hostile:
    return c.hostile(_signed_by(pki.signer(pki.certificate("A CA that signs documents", issuer=pki.root(), ca=True))))


@attack("rsa-1024-signer", step=1, message="its RSA key has 1024 bits",
        description="The bundle is signed with a 1024-bit RSA key certified by the trusted PKI.")
def _(c: Clean) -> Hostile:
    return c.hostile(_signed_by(pki.signer(pki.certificate("weak signer", issuer=pki.root(), bits=1024))))


@attack("signer-not-the-pinned-one", step=1, message="not the pinned signer",
        description="A trusted signer who is not the one the auditor pinned by fingerprint.")
def _(c: Clean) -> Hostile:
    pinned = SignerPolicy.pinned(fingerprints=[certificate_sha256(c.other_signer.certificate)])
    return c.hostile(c.files, policy=pinned)


# --- step 2: the statement's type -------------------------------------------------------------------


@attack("payload-type-not-in-toto", step=2, message="expected 'application/vnd.in-toto+json'",
        description="The envelope is re-signed with a payloadType other than in-toto's.")
def _(c: Clean) -> Hostile:
    payload = base64.b64decode(_envelope(c.files)["payload"])
    return c.hostile({**c.files, DSSE_ENVELOPE: _signed_envelope(payload, c.signer, "application/json")})


@attack("statement-v0.1", step=2, message="statement _type is",
        description="The envelope is re-signed over an in-toto Statement of an older version.")
def _(c: Clean) -> Hostile:
    statement = {**_statement(c.files), "_type": "https://in-toto.io/Statement/v0.1"}
    return c.hostile({**c.files, DSSE_ENVELOPE: _signed_envelope(statement, c.signer)})


@attack("foreign-predicate-type", step=2, message="predicateType is",
        description="The envelope is re-signed over a statement with another tool's predicateType.")
def _(c: Clean) -> Hostile:
    statement = {**_statement(c.files), "predicateType": "https://slsa.dev/provenance/v1"}
    return c.hostile({**c.files, DSSE_ENVELOPE: _signed_envelope(statement, c.signer)})


# --- step 3: the bundle's files are the signed ones, and nothing else -----------------------------


@attack("pdf-byte-flip-in-signed-range", step=3, message="sha256 of dossier.pdf is",
        description="One bit of the PDF, inside the range its signature covers, is flipped.")
def _(c: Clean) -> Hostile:
    return c.hostile({**c.files, DOSSIER_PDF: hb.pdf_byte_flipped_in_signed_range(c.pdf)})


@attack("dossier-json-edited", step=3, message="sha256 of dossier.json is",
        description="dossier.json is edited after signing (the model's name changes).")
def _(c: Clean) -> Hostile:
    return c.hostile({**c.files, DOSSIER_JSON: c.dossier_json.replace(b'"toy"', b'"toz"', 1)})


@attack("subject-digest-mismatch", step=3, message="but the signed statement says",
        description="The envelope is re-signed by the trusted key over a statement with a wrong dossier.json digest.")
def _(c: Clean) -> Hostile:
    statement = _statement(c.files)
    for subject in statement["subject"]:
        if subject["name"] == DOSSIER_JSON:
            subject["digest"]["sha256"] = "0" * 64
    return c.hostile({**c.files, DSSE_ENVELOPE: _signed_envelope(statement, c.signer)})


@attack("unsigned-extra-file", step=3, message="notes.txt are not covered by the signed statement",
        description="A file the statement does not name is added to the bundle.")
def _(c: Clean) -> Hostile:
    return c.hostile({**c.files, "notes.txt": b"trust me"})


@attack("hidden-unsigned-file", step=3, message=".notes are not covered by the signed statement",
        description="A hidden file the statement does not name is added to the bundle.")
def _(c: Clean) -> Hostile:
    return c.hostile({**c.files, ".notes": b"trust me"})


def _subdirectory(name: str) -> Callable[[Path], None]:
    def arrange(bundle: Path) -> None:
        (bundle / name).mkdir()
        (bundle / name / DOSSIER_JSON).write_bytes(b"{}")

    return arrange


@attack("subdirectory-in-bundle", step=3, message="extra is a subdirectory",
        description="A subdirectory holding another dossier.json is added to the bundle.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.files, arrange=_subdirectory("extra"))


@attack("hidden-subdirectory-in-bundle", step=3, message=".git is a subdirectory",
        description="A hidden subdirectory is added to the bundle.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.files, arrange=_subdirectory(".git"))


@attack("fifo-in-bundle", step=3, message="pipe is not a regular file",
        description="A named pipe, which would block a reader, is added to the bundle.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.files, arrange=lambda bundle: os.mkfifo(bundle / "pipe"))


def _sparse(bundle: Path) -> None:
    with (bundle / "padding.bin").open("wb") as handle:  # sparse: takes no disk space
        handle.truncate(MAX_FILE_BYTES + 1)


@attack("oversized-file", step=3, message="padding.bin is a file of 64.0 MiB, larger than the 64 MiB",
        description="A file larger than any bundle file may be is added; it must be refused without being read.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.files, arrange=_sparse)


@attack("signed-export-removed", step=3, message="which the bundle lacks",
        description="An export the statement names is deleted from the bundle.")
def _(c: Clean) -> Hostile:
    export = {"dossier.cdx.json": b'{"bomFormat":"CycloneDX"}'}
    files = seal(c.dossier_json, hb.render_pdf(c.dossier_json, export), c.signer, hb.predicate_for(c.dossier_json),
                 extra=export)  # fmt: skip
    return c.hostile({k: v for k, v in files.items() if k not in export})


# --- step 4: dossier.json parses strictly, is canonical, valid, and agrees with what was signed ----


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit setting the JSON value at ``path`` (keys and indices separated by '/')."""

    def edit(data: dict[str, Any]) -> None:
        *parents, last = (int(p) if p.isdigit() else p for p in path.split("/"))
        node: Any = data
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


def _replaced(c: Clean, old: bytes, new: bytes) -> Hostile:
    """dossier.json with ``old`` replaced by ``new`` in its bytes, sealed honestly by the trusted key."""
    assert old in c.dossier_json, old
    return c.hostile(hb.make_bundle(c.signer, c.dossier_json.replace(old, new, 1)))


@attack("schema-version-from-the-future", step=4, message="has schema_version '2.0'; this release supports",
        description="dossier.json, signed honestly, claims a schema version newer than this verifier knows.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("schema_version", "2.0")))


@attack("nan-smuggled-as-string", step=4, message="does not validate at records/0/metrics/0/value",
        description="A metric's value is the string \"NaN\" where the schema expects a number, and re-sealed.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("records/0/metrics/0/value", "NaN")))


@attack("nan-literal", step=4, message="holds NaN, which is not a number JSON allows",
        description="A metric's value is the bare literal NaN, which strict JSON does not allow.")
def _(c: Clean) -> Hostile:
    return _replaced(c, b'"value":0.9', b'"value":NaN')


@attack("infinity-as-1e400", step=4, message="holds the number 1e400, which is too large to be finite",
        description="A metric's value is 1e400, which a float parser reads as infinity.")
def _(c: Clean) -> Hostile:
    return _replaced(c, b'"value":0.9', b'"value":1e400')


@attack("lone-surrogate", step=4, message="holds a lone surrogate (\\ud800), which is not a Unicode character",
        description="A string holds a lone UTF-16 surrogate, which no Unicode text can contain.")
def _(c: Clean) -> Hostile:
    return _replaced(c, b'"rationale":"r"', b'"rationale":"r\\ud800"')


@attack("duplicate-key", step=4, message="duplicate",
        description="dossier.json names a key twice, so that two readers may see two different dossiers.")
def _(c: Clean) -> Hostile:
    return _replaced(c, b'"schema_version":"1.0"', b'"schema_version":"1.0","schema_version":"1.0"')


@attack("non-canonical-pretty-printed", step=4, message="is not in canonical form (RFC 8785",
        description="dossier.json is pretty-printed, not its one canonical serialization, and sealed so.")
def _(c: Clean) -> Hostile:
    pretty = json.dumps(json.loads(c.dossier_json), indent=2, sort_keys=True).encode()
    return c.hostile(hb.make_bundle(c.signer, pretty))


@attack("non-canonical-keys-reordered", step=4, message="is not in canonical form (RFC 8785",
        description="dossier.json has its keys in reverse order, compact otherwise, and is sealed so.")
def _(c: Clean) -> Hostile:
    doc = json.loads(c.dossier_json)
    reordered = json.dumps(dict(reversed(list(doc.items()))), separators=(",", ":"), ensure_ascii=False).encode()
    return c.hostile(hb.make_bundle(c.signer, reordered))


@attack("non-canonical-trailing-newline", step=4, message="is not in canonical form (RFC 8785",
        description="dossier.json gains a trailing newline before sealing.")
def _(c: Clean) -> Hostile:
    return c.hostile(hb.make_bundle(c.signer, c.dossier_json + b"\n"))


@attack("schema-invalid-extra-field", step=4, message="does not validate at (root)",
        description="dossier.json carries a field the schema does not allow.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("unexpected_field", 1)))


@attack("statement-predicate-differs", step=4, message="predicate disagrees with dossier.json on model",
        description="The trusted key signs a statement whose predicate names another model than dossier.json.")
def _(c: Clean) -> Hostile:
    claimed = {**hb.predicate_for(c.dossier_json), "model": {"name": "other", "weights_sha256": "1" * 64}}
    statement = build_statement({DOSSIER_JSON: c.dossier_json, DOSSIER_PDF: c.pdf}, claimed)
    return c.hostile({**c.files, DSSE_ENVELOPE: _signed_envelope(statement, c.signer)})


@attack("signer-names-someone-else", step=4, message="subject 'CN=EU AI Office'",
        description="dossier.json (and so the PDF's cover) names another signer than the certificate that signed.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("signer/subject", "CN=EU AI Office")))


@attack("wrong-development-flag", step=4, message="development key yes",
        description="dossier.json says a development key signed it, while the certificate is a real one.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(lambda d: d["signer"].update(development_key=True, notice=DEVELOPMENT_KEY_NOTICE)))


@attack("signer-fingerprint-wrong", step=4, message="certificate fingerprint",
        description="dossier.json names the signer's subject but another certificate's fingerprint.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("signer/certificate_sha256", "0" * 64)))


@attack("signer-missing", step=4, message="names no signer",
        description="dossier.json names no signer, though the bundle is signed.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("signer", None)))


# --- step 5: the PDF signature, read from the file itself -----------------------------------------


@attack("pdf-byte-flip-resealed", step=5, message="the signed bytes of the PDF have changed",
        description="One bit inside the PDF's signed range is flipped, and the envelope re-signed over the result.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=hb.pdf_byte_flipped_in_signed_range(c.pdf)))


_ADDED = "something was added after the signed revision"


@attack("incremental-update-changes-title", step=5, message=_ADDED,
        description="An incremental update after the signature changes the document's title.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=hb.pdf_incremental_update_title(c.pdf)))


@attack("incremental-update-swaps-embedded-file", step=5, message=_ADDED,
        description="An incremental update swaps the embedded dossier.json, and the bundle's copy with it.")
def _(c: Clean) -> Hostile:
    forged = c.dossier_json.replace(b'"toy"', b'"toz"', 1)
    return c.hostile(c.resealed(dossier_json=forged, dossier_pdf=hb.pdf_embedded_file_swapped_in_update(c.pdf, forged)))


@attack("incremental-update-adds-second-signature", step=5, message="the PDF carries 2 signatures",
        description="A second signature, by another trusted key, is added in an incremental update.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=hb.pdf_second_signature_in_update(c.pdf, c.other_signer)))


@attack("overlay-revealed-by-later-update", step=5, message=_ADDED,
        description="An incremental update after signing draws new text over page 1.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=hb.pdf_overlay_in_update(c.pdf)))


@attack("bytes-appended-after-eof", step=5, message=_ADDED,
        description="Bytes are appended after the signed revision's %%EOF.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=hb.pdf_appended_junk(c.pdf)))


@attack("coverage-spoof", step=5, message=_ADDED,
        description="An update swaps the embedded dossier and redefines the signature dictionary with a padded "
                    "literal /Contents, so that pyHanko's size-only test reads 'entire file'.")  # fmt: skip
def _(c: Clean) -> Hostile:
    forged = c.dossier_json.replace(b'"pass"', b'"fail"', 1)
    return c.hostile(c.resealed(dossier_pdf=hb.pdf_coverage_spoof(c.pdf, forged)))


@attack("edit-in-unsigned-gap", step=5, message="is not one hex string",
        description="A key is written into the unsigned gap where the signature value's padding was.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=hb.pdf_gap_edited(c.pdf)))


@attack("truncated-pdf", step=5, message="it is truncated, or not a complete PDF",
        description="The signed PDF loses its last bytes (the final %%EOF), and the envelope is re-signed.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=hb.pdf_truncated(c.pdf, -7)))


@attack("truncated-pdf-half", step=5, message="it is truncated, or not a complete PDF",
        description="The signed PDF is cut in half, and the envelope is re-signed.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=hb.pdf_truncated(c.pdf, len(c.pdf) // 2)))


@attack("pdf-unsigned", step=5, message="the PDF carries 0 signatures",
        description="The PDF carries no signature at all; the envelope signs it as it is.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=hb.render_pdf(c.dossier_json)))


@attack("pdf-signed-by-another-trusted-key", step=5, message="signed with a different certificate",
        description="The PDF is signed by another key the auditor trusts, not the envelope's signer.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=sign_pdf(hb.render_pdf(c.dossier_json), c.other_signer)))


@attack("pdf-signed-by-tls-server-certificate", step=5, message="serverAuth (a TLS server certificate)",
        description="The PDF is signed with a TLS server certificate of the trusted PKI.")
def _(c: Clean) -> Hostile:
    tls = pki.signer(pki.certificate("www.example.test", issuer=pki.root(), ekus=(pki.SERVER_AUTH,)))
    return c.hostile(c.resealed(dossier_pdf=sign_pdf(hb.render_pdf(c.dossier_json), tls)))


def _untrusted_tsa() -> pki.Identity:
    return pki.tsa("Untrusted TSA", pki.certificate("Untrusted TSA Root", ca=True))


@attack("pdf-timestamp-by-untrusted-authority", step=5, message="timestamp authority's certificate does not chain",
        description="The bundle is timestamped (PAdES B-T, DSSE token) by an authority the auditor does not trust.")
def _(c: Clean) -> Hostile:
    stamper = pki.timestamper(_untrusted_tsa())
    files = seal(c.dossier_json, hb.render_pdf(c.dossier_json), c.signer, hb.predicate_for(c.dossier_json),
                 timestamper=stamper)  # fmt: skip
    return c.hostile(files)


# --- step 6: the PDF embeds this dossier.json and prints its digest --------------------------------


@attack("pdf-embeds-another-dossier", step=6, message="embedded in the PDF differs from the bundle's",
        description="A PDF, signed by the trusted key, embeds another dossier.json than the bundle's.")
def _(c: Clean) -> Hostile:
    other = hb.dossier_bytes(hb.dossier_data(c.signer, n_records=1))
    return c.hostile(c.resealed(dossier_pdf=sign_pdf(hb.render_pdf(other), c.signer)))


@attack("cover-prints-another-digest", step=6, message="page 1 of the PDF does not print the sha256",
        description="The PDF embeds the right dossier.json but prints another digest on its cover.")
def _(c: Clean) -> Hostile:
    pdf = hb.render_pdf(c.dossier_json, printed_digest="0" * 64)
    return c.hostile(c.resealed(dossier_pdf=sign_pdf(pdf, c.signer)))


@attack("pdf-embeds-no-dossier", step=6, message="the PDF embeds no file named dossier.json",
        description="The PDF, signed by the trusted key, embeds no dossier.json at all.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.resealed(dossier_pdf=sign_pdf(hb.render_pdf(c.dossier_json, embed_dossier=False), c.signer)))


@attack("export-not-embedded", step=6, message="does not embed the bundle's dossier.cdx.json",
        description="A signed export of the bundle is missing from the PDF's embedded files.")
def _(c: Clean) -> Hostile:
    export = {"dossier.cdx.json": b'{"bomFormat":"CycloneDX"}'}
    return c.hostile(seal(c.dossier_json, hb.render_pdf(c.dossier_json), c.signer, hb.predicate_for(c.dossier_json),
                          extra=export))  # fmt: skip


# --- step 7: the judgement recomputes from the records and the policy ------------------------------


@attack("verdict-flipped", step=7, message="is recorded as 'fail', but recomputes as 'pass'",
        description="A verdict is flipped to fail and the dossier sealed honestly.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("verdicts/0/verdict", "fail")))


@attack("gate-flipped", step=7, message="the gate is recorded as 'fail'",
        description="The gate decision is changed and the dossier sealed honestly.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("gate/decision", "fail")))


@attack("metric-weakened-without-its-verdict", step=7, message="recomputes as",
        description="A metric's value is lowered while its verdict is kept.")
def _(c: Clean) -> Hostile:
    def weaken(data: dict[str, Any]) -> None:
        metric = data["records"][0]["metrics"][0]
        metric["value"], metric["ci"]["lower"], metric["ci"]["upper"] = 0.2, 0.1, 0.3

    return c.hostile(c.edited(weaken))


@attack("clause-index-forged", step=7, message="the clause index does not follow from the records and verdicts",
        description="A clause is marked evidenced in the index without the verdicts that would evidence it.")
def _(c: Clean) -> Hostile:
    def forge(data: dict[str, Any]) -> None:
        entry = next(e for e in data["clause_index"] if e["status"] != "evidenced")
        entry["status"], entry["records"] = "evidenced", ["heads.inventory:toy-0"]

    return c.hostile(c.edited(forge))


@attack("clause-index-emptied", step=7, message="the clause index is empty, but the records and verdicts yield",
        description="The clause index is emptied, hoping an empty index is not checked.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("clause_index", [])))


@attack("policy-set-after-the-run", step=7, message="thresholds must be fixed before the run they judge",
        description="The recorded policy was set after the dossier was created.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("policy/set_at", "2026-12-01T00:00:00Z")))


@attack("confusable-record-subject", step=7, message="is of subject 't\\u03bfy', not of the model 'toy'",
        description="A judged record's subject is spelled with a Greek omicron, escaping its threshold.")
def _(c: Clean) -> Hostile:
    return c.hostile(c.edited(_edit("records/0/subject", "t\u03bfy")))


@attack("calibration-check-flipped", step=7, message="recorded as passed, but recomputes as failed",
        description="A calibration check that failed by its own criteria is recorded as passed.")
def _(c: Clean) -> Hostile:
    data = json.loads(hb.dossier_with_calibration(c.signer))
    data["records"][1]["checks"][0]["passed"] = True
    return c.hostile(hb.make_bundle(c.signer, hb.dossier_bytes(data)))


# --- step 8: the DSSE signature's timestamp --------------------------------------------------------


def _with_token(c: Clean, token: bytes) -> Hostile:
    return c.hostile({**c.files, TIMESTAMP_FILE: token})


def _token(c: Clean, authority: pki.Identity | None = None, at: dt.datetime | None = None) -> bytes:
    signature = parse_envelope(c.files[DSSE_ENVELOPE]).signature
    return timestamp_signature(signature, pki.timestamper(authority, at=at))


@attack("token-over-another-signature", step=8, message="does not name this signature",
        description="The timestamp token is a valid token over some other signature.")
def _(c: Clean) -> Hostile:
    return _with_token(c, timestamp_signature(b"another signature", pki.timestamper()))


@attack("garbage-token", step=8, message="the timestamp token cannot be read",
        description="dossier.dsse.tst holds bytes that are no timestamp token.")
def _(c: Clean) -> Hostile:
    return _with_token(c, b"not a token")


@attack("token-by-non-tsa-certificate", step=8, message="lacks the timeStamping extended key usage",
        description="The token is signed by a certificate of the trusted PKI without the timeStamping usage.")
def _(c: Clean) -> Hostile:
    return _with_token(c, _token(c, pki.certificate("Not a TSA", issuer=pki.root())))


@attack("token-by-untrusted-authority", step=8, message="does not chain to a supplied trust anchor",
        description="The DSSE signature's token comes from an authority the auditor does not trust.")
def _(c: Clean) -> Hostile:
    return _with_token(c, _token(c, _untrusted_tsa()))


@attack("token-dated-in-the-future", step=8, message="dates the signature in the future",
        description="The token states a time two days from now.")
def _(c: Clean) -> Hostile:
    return _with_token(c, _token(c, at=dt.datetime.now(dt.UTC) + dt.timedelta(days=2)))


@attack("token-before-the-signer-existed", step=8, message="outside the signer certificate's validity",
        description="The token dates the signature before the signer's certificate was valid.")
def _(c: Clean) -> Hostile:
    return _with_token(c, _token(c, at=c.leaf.cert.not_valid_before_utc - dt.timedelta(hours=6)))


# --- a PDF verified on its own (steps 5, 6, 4, 7) --------------------------------------------------


def _pdf(c: Clean, pdf: bytes, **kwargs: Any) -> Hostile:
    return c.hostile({DOSSIER_PDF: pdf}, **kwargs)


def _signed_pdf(c: Clean, edit: Callable[[dict[str, Any]], None]) -> bytes:
    data = json.loads(c.dossier_json)
    edit(data)
    return sign_pdf(hb.render_pdf(hb.dossier_bytes(data)), c.signer)


@attack("pdf-alone-coverage-spoof", target=PDF, step=5, message=_ADDED,
        description="The coverage spoof, sent to a regulator as the PDF alone.")
def _(c: Clean) -> Hostile:
    return _pdf(c, hb.pdf_coverage_spoof(c.pdf, c.dossier_json.replace(b'"toy"', b'"toz"', 1)))


@attack("pdf-alone-second-signature", target=PDF, step=5, message="the PDF carries 2 signatures",
        description="A PDF alone with a second signature added in an incremental update.")
def _(c: Clean) -> Hostile:
    return _pdf(c, hb.pdf_second_signature_in_update(c.pdf, c.other_signer))


@attack("pdf-alone-overlay", target=PDF, step=5, message=_ADDED,
        description="A PDF alone with text drawn over page 1 by a later update.")
def _(c: Clean) -> Hostile:
    return _pdf(c, hb.pdf_overlay_in_update(c.pdf))


@attack("pdf-alone-truncated", target=PDF, step=5, message="it is truncated, or not a complete PDF",
        description="A PDF alone that lost its last bytes.")
def _(c: Clean) -> Hostile:
    return _pdf(c, hb.pdf_truncated(c.pdf, -7))


@attack("pdf-alone-not-a-pdf", target=PDF, step=5, message="could not be evaluated: the file is malformed",
        description="A file that only looks like a PDF.")
def _(c: Clean) -> Hostile:
    return _pdf(c, b"%PDF-1.7\nnot really a pdf\n%%EOF\n")


@attack("pdf-alone-wrong-anchor", target=PDF, step=5, message="does not chain to a supplied trust anchor",
        description="A PDF alone checked against an anchor that did not issue its signer.")
def _(c: Clean) -> Hostile:
    return _pdf(c, c.pdf, anchors=(pem(pki.certificate("Unrelated Root CA", ca=True)),))


@attack("pdf-alone-rsa-1024-signer", target=PDF, step=5, message="its RSA key has 1024 bits",
        description="A PDF alone signed with a 1024-bit RSA key certified by the trusted PKI.")
def _(c: Clean) -> Hostile:
    weak = pki.signer(pki.certificate("weak signer", issuer=pki.root(), bits=1024))
    return _pdf(c, sign_pdf(hb.render_pdf(c.dossier_json), weak))


@attack("pdf-alone-two-differing-dossiers", target=PDF, step=6, message="several dossier.json files that differ",
        description="A signed PDF embeds two files named dossier.json with different contents.")
def _(c: Clean) -> Hostile:
    other = c.dossier_json.replace(b'"toy"', b'"toz"', 1)
    return _pdf(c, sign_pdf(hb.render_pdf(c.dossier_json, {DOSSIER_JSON: other}), c.signer))


@attack("pdf-alone-cover-prints-another-digest", target=PDF, step=6, message="does not print the sha256",
        description="A signed PDF alone whose cover prints another digest than its embedded dossier's.")
def _(c: Clean) -> Hostile:
    return _pdf(c, sign_pdf(hb.render_pdf(c.dossier_json, printed_digest=sha256_hex(b"other")), c.signer))


@attack("pdf-alone-schema-from-the-future", target=PDF, step=4, message="has schema_version '2.0'",
        description="A signed PDF alone embedding a dossier of a schema version newer than this verifier knows.")
def _(c: Clean) -> Hostile:
    return _pdf(c, _signed_pdf(c, _edit("schema_version", "2.0")))


@attack("pdf-alone-signer-names-someone-else", target=PDF, step=4, message="subject 'CN=EU AI Office'",
        description="A signed PDF alone whose embedded dossier names another signer than the PDF's certificate.")
def _(c: Clean) -> Hostile:
    return _pdf(c, _signed_pdf(c, _edit("signer/subject", "CN=EU AI Office")))


@attack("pdf-alone-verdict-flipped", target=PDF, step=7, message="is recorded as 'fail', but recomputes as 'pass'",
        description="A signed PDF alone whose embedded dossier records a flipped verdict.")
def _(c: Clean) -> Hostile:
    return _pdf(c, _signed_pdf(c, _edit("verdicts/0/verdict", "fail")))


@attack("pdf-alone-policy-set-after-the-run", target=PDF, step=7, message="not before the dossier was created",
        description="A signed PDF alone whose embedded dossier's policy was set after the run.")
def _(c: Clean) -> Hostile:
    return _pdf(c, _signed_pdf(c, _edit("policy/set_at", "2026-12-01T00:00:00Z")))


def by_name(name: str) -> Attack:
    """The attack called ``name``."""
    return next(a for a in ATTACKS if a.name == name)
