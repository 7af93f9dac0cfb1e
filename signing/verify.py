"""The auditor's check of a bundle: numbered steps, one bottom line.

The step numbers and titles are those of the verification procedure, defined
once in :mod:`evidence.procedure` (which the README's "Verification procedure"
and the PDF's "How to verify" list), and appear as ``# (N)`` below in the order
they run:

1. the envelope parses, carries exactly one signature, the signer's certificate
   chains to a trust anchor the auditor supplied, the anchor may vouch for it
   (valid; a CA with keyCertSign if it issues) and the signer may sign
   documents (:mod:`signing.trust`), and the signature over the DSSE PAE is
   valid (with a keyid naming that certificate); the chain is judged as of the
   validation time, or of the DSSE signature's timestamp when it has a valid
   one, and nothing in it may have been revoked before then
   (:mod:`signing.longterm`);
2. payloadType is in-toto, the statement is v1, the predicateType is ours;
3. the subject digests equal sha256 of the bundle's dossier.json and dossier.pdf,
   and the bundle holds nothing else than the statement's subjects, the
   envelope and signer.pem (hidden files and subdirectories included);
4. dossier.json parses strictly (no duplicate keys, non-finite numbers or lone
   surrogates), is exactly its canonical RFC 8785 bytes, has a supported
   schema_version and validates against the schema; the statement's predicate
   is the one dossier.json yields, and the signer it names (subject,
   fingerprint, development flag) is the certificate that signed;
5. the PDF's one signature is intact, valid, trusted and covers the entire
   file (or, at PAdES B-LT/B-LTA, its revision, followed only by validation
   data and document timestamps, themselves valid and trusted), and was made
   with the DSSE signer's certificate;
6. the PDF embeds a byte-identical dossier.json and prints its digest on page 1;
7. the recorded policy was set before the dossier was created, and every
   record of a measurement it has a threshold on is of the model (exact name);
   every verdict, the gate decision and the clause index (even an empty one)
   recompute from the records and the policy recorded in dossier.json, and
   every calibration check's outcome recomputes from the value, interval,
   baseline and criteria it records;
8. (a timestamped bundle only) ``dossier.dsse.tst`` is an RFC 3161 token over the
   envelope's signature by a timestamp authority that chains to a supplied
   anchor, dated within the signer certificate's validity.

Steps depend on each other (``_DEPENDS_ON``)::

    1 -> 2 -> 3 -> 4 -> 7
              3 -> 5 -> 6
    1 -> 8

Step 3 establishes that the bytes of every bundle file are the signed ones, so
no later step reads a file before it (revocation data excepted: CRLs and OCSP
responses are signed by their issuers and validated as such wherever they
come from, so step 1 may read them from the PDF's document security store); step 5 needs the signer found in step 1
(through 3); step 6 reads the embedded file of a PDF whose signature step 5
established; step 7 interprets a dossier.json that step 4 validated. A step
whose dependency did not pass is not run: it is reported with the status
``not evaluated`` and names the step that failed; the bottom line is then
failure.

The trend dossier of a sweep (``interp-dossier sweep``) is a bundle of the same
four files and is verified by the same steps, with steps 2, 4 and 7 reading a
trend (:data:`evidence.procedure.TREND_STEPS`): the trend predicate, the trend
schema, and the trend recomputed from the checkpoints' dossiers beside it,
each named by sha256 (:func:`evidence.trend.check_trend`). A whole sweep
directory is verified by :func:`signing.sweep.verify_sweep`.

Verification never raises for a bundle that fails a check: it returns a
:class:`VerificationReport`. Exceptions are only for material that cannot be
evaluated at all (:class:`BundleError`, :class:`TrustError`).
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pypdf
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import SignatureCoverageLevel, async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import InsufficientRevinfoError, PathError, RevokedError
from pyhanko_certvalidator.errors import ValidationError as CertValidationError

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.clauses import build_clause_index
from evidence.dossier import parse_dossier, statement_predicate
from evidence.errors import EvidenceError
from evidence.policy import check_passes, evaluate, roll_up
from evidence.procedure import TREND_STEPS, step_titles
from evidence.records import (
    DEVELOPMENT_KEY_NOTICE,
    SUPPORTED_SCHEMA_VERSIONS,
    VALIDATION_REPORT_FILE,
    Dossier,
    ValidationReport,
)
from evidence.records.trend import TrendDossier
from evidence.schema import load_schema
from evidence.trend import check_trend, is_trend_document, parse_trend, trend_predicate
from evidence.validation_report import cite, parse_report
from signing._aio import run_sync
from signing._json import parse_object
from signing.bundle import (
    BUNDLE_FILES,
    DOSSIER_JSON,
    DOSSIER_PDF,
    DSSE_ENVELOPE,
    MAX_FILE_BYTES,
    SIGNER_PEM,
    TIMESTAMP_FILE,
    UNSIGNED_FILES,
)
from signing.dsse import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    TREND_PREDICATE_TYPE,
    Envelope,
    parse_envelope,
    parse_statement,
    statement_subjects,
    verify_envelope_signature,
)
from signing.errors import BundleError, TrustError, VerificationError
from signing.keys import certificate_sha256, is_development_certificate
from signing.longterm import (
    RevocationPolicy,
    ValidationData,
    context,
    latest_revocation,
    load_revocation_data,
    long_term_diff_policy,
    read_dss,
    why_untrusted,
)
from signing.timestamps import TimestampCheck, check_signature_timestamp
from signing.trust import SignerPolicy, anchor_problems, signer_problems

__all__ = [
    "CHECKPOINTS_DIR",
    "STEP_TITLES",
    "TREND_STEP_TITLES",
    "StepResult",
    "VerificationReport",
    "load_trust_anchors",
    "verify_bundle",
    "verify_pdf",
]

#: The directory of a sweep that holds the checkpoints' bundles, beside the trend's bundle.
CHECKPOINTS_DIR = "checkpoints"
#: The steps' names, from the procedure's one definition (:mod:`evidence.procedure`).
STEP_TITLES: dict[int, str] = step_titles()
#: The steps' names for a sweep's trend dossier.
TREND_STEP_TITLES: dict[int, str] = step_titles(TREND_STEPS)
#: The trend schema versions this release verifies.
SUPPORTED_TREND_VERSIONS = frozenset({"1.0"})
#: The largest checkpoint dossier.json a trend's step 7 reads.
_MAX_CHECKPOINT_DOSSIER = MAX_FILE_BYTES
#: step -> the steps whose results it relies on (see the module docstring).
_DEPENDS_ON: dict[int, tuple[int, ...]] = {1: (), 2: (1,), 3: (2,), 4: (3,), 5: (3,), 6: (3, 5), 7: (3, 4), 8: (1,)}
#: A step's status: it passed, it failed, or it was not run because a step it depends on did not pass.
PASS, FAIL, NOT_EVALUATED = "pass", "fail", "not evaluated"
_PADES_SUBFILTER = "/ETSI.CAdES.detached"
_KEY_USAGE = "digital_signature"


@dataclass(frozen=True)
class StepResult:
    """The outcome of one numbered verification step."""

    number: int
    title: str
    passed: bool
    detail: str
    #: the failed step that kept this one from running (then ``passed`` is false)
    blocked_by: int | None = None

    @property
    def skipped(self) -> bool:
        """True if the step was not evaluated because a step it depends on did not pass."""
        return self.blocked_by is not None

    @property
    def status(self) -> str:
        """``pass``, ``fail`` or ``not evaluated``."""
        if self.blocked_by is not None:
            return NOT_EVALUATED
        return PASS if self.passed else FAIL

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        return {
            "number": self.number,
            "title": self.title,
            "status": self.status,
            "passed": self.passed,
            "blocked_by": self.blocked_by,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class VerificationReport:
    """Every step's result and one bottom line: true only if every step passed."""

    steps: list[StepResult]
    development_key: bool
    signer_subject: str | None = None
    notice: str | None = field(default=None)
    #: what the auditor must know though no step failed, e.g. that the bundle vouched for itself
    warnings: list[str] = field(default_factory=list)
    #: the validation time, and how missing revocation data was treated
    validated_at: dt.datetime | None = None
    revocation_policy: str | None = None

    @property
    def bottom_line(self) -> bool:
        """True only if there are steps and every one of them passed."""
        return bool(self.steps) and all(s.passed for s in self.steps)

    def first_failure(self) -> StepResult | None:
        """The lowest-numbered step that failed (was evaluated and did not pass), if any.

        A step that was not evaluated is named only when no evaluated step failed
        (steps of a PDF verified alone run out of numeric order).
        """
        evaluated = next((s for s in self.steps if not s.passed and not s.skipped), None)
        return evaluated or next((s for s in self.steps if not s.passed), None)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data, for ``verify --json`` (schemas/verify-output.schema.json)."""
        return {
            "bottom_line": self.bottom_line,
            "development_key": self.development_key,
            "error": None,
            "notice": self.notice,
            "revocation_policy": self.revocation_policy,
            "signer_subject": self.signer_subject,
            "steps": [s.to_json() for s in self.steps],
            "validated_at": self.validated_at.isoformat().replace("+00:00", "Z") if self.validated_at else None,
            "warnings": list(self.warnings),
        }

    def raise_for_failure(self) -> None:
        """Raise :class:`VerificationError` naming the first failed step, if any failed."""
        failed = self.first_failure()
        if failed is not None:
            raise VerificationError(f"verification failed at step ({failed.number}) {failed.title}: {failed.detail}")
        if not self.bottom_line:  # no steps at all: nothing was verified
            raise VerificationError("verification failed")


class _Failed(Exception):
    """A step's check did not hold; the message is the report's detail."""


@dataclass
class _State:
    """What earlier steps established, for later ones."""

    files: dict[str, bytes]
    anchors: list[asn1_x509.Certificate]
    #: bundle entries that are not regular files (subdirectories, sockets, ...) -> what they are
    others: dict[str, str] = field(default_factory=dict)
    chain: list[x509.Certificate] = field(default_factory=list)
    envelope: Envelope | None = None
    statement: dict[str, Any] | None = None
    #: what the auditor requires of the signer, and the time the certificates are judged at
    policy: SignerPolicy | None = None
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    #: how missing revocation data is treated, and the CRLs / OCSP responses the auditor supplied
    revocation: RevocationPolicy = "soft-fail"
    supplied: ValidationData = field(default_factory=ValidationData)
    _validation_data: ValidationData | None = None
    #: what the auditor must know though no step failed (e.g. the bundle vouches for itself)
    warnings: list[str] = field(default_factory=list)
    #: a PDF verified on its own: its embedded files stand in for the bundle's, and no envelope exists
    pdf_only: bool = False
    #: the bundle holds a sweep's trend dossier, not a model's dossier
    trend: bool = False
    #: the bundle's directory (a trend's step 7 reads the checkpoints' dossiers beside it)
    bundle_dir: Path | None = None

    def validation_data(self) -> ValidationData:
        """The PDF's DSS and what the auditor supplied: revocation data, signed by its issuers, so usable before (3)."""
        if self._validation_data is None:
            pdf = self.files.get(DOSSIER_PDF)
            self._validation_data = (read_dss(pdf) if pdf is not None else ValidationData()) + self.supplied
        return self._validation_data

    def context(self, moment: dt.datetime, other_certs: Sequence[asn1_x509.Certificate] = ()) -> ValidationContext:
        """Certificates judged as of ``moment`` against the auditor's anchors, with all validation data at hand."""
        return context(self.anchors, self.validation_data(), moment=moment, policy=self.revocation,
                       other_certs=other_certs)  # fmt: skip


# --- inputs ---------------------------------------------------------------------------------


def load_trust_anchors(paths: Sequence[Path]) -> list[x509.Certificate]:
    """Read the auditor's trust anchors (PEM, possibly several per file, or DER)."""
    if not paths:
        raise TrustError(
            "no trust anchor given: pass --trust CERT.pem (the signer's certificate "
            "or the CA you trust); verification never trusts a bundle's own certificate",
            hint="for a development bundle, --trust BUNDLE/signer.pem after checking "
            "that it is the certificate you expect",
        )
    anchors: list[x509.Certificate] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise TrustError(
                f"cannot read trust anchor {path}: {exc.strerror or exc}",
                hint="pass a readable PEM or DER certificate file",
            ) from exc
        certs = _parse_certificates(data)
        if not certs:
            raise TrustError(
                f"trust anchor {path} holds no X.509 certificate",
                hint="pass a PEM or DER certificate file",
            )
        anchors.extend(certs)
    return anchors


def _parse_certificates(data: bytes) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        return []


def _read_bundle(bundle_dir: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """Every regular file of the bundle by name, hidden ones included, and its other entries.

    Each file's size is checked before it is read: a file larger than
    :data:`~signing.bundle.MAX_FILE_BYTES` is not read. It is returned with the
    other entries (subdirectories and the like), by name with what they are,
    for step (3) to refuse (or step (1), if it is the envelope or signer.pem).
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(
            f"bundle directory {bundle_dir} does not exist",
            hint="pass the directory that `interp-dossier run` wrote",
        )
    missing = [name for name in BUNDLE_FILES if not (bundle_dir / name).is_file()]
    if missing:
        raise BundleError(
            f"bundle {bundle_dir} is incomplete: missing {', '.join(missing)}",
            hint="a signed bundle has dossier.json, dossier.pdf, dossier.dsse.json and signer.pem",
        )
    files: dict[str, bytes] = {}
    others: dict[str, str] = {}
    for path in sorted(bundle_dir.iterdir()):
        try:
            info = path.stat()
        except OSError:
            others[path.name] = "an entry that cannot be read (a broken link?)"
            continue
        if stat.S_ISDIR(info.st_mode):
            others[path.name] = "a subdirectory"
            continue
        if not stat.S_ISREG(info.st_mode):
            others[path.name] = "not a regular file"
            continue
        if info.st_size > MAX_FILE_BYTES:  # refused at step (3), like any entry that is not a signed file
            others[path.name] = (
                f"a file of {_mib(info.st_size)}, larger than the {_mib(MAX_FILE_BYTES)} a bundle file may have "
                "(it was not read)"
            )
            continue
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise BundleError(
                f"cannot read {path}: {exc.strerror or exc}",
                hint="check the file's permissions",
            ) from exc
        if len(data) > MAX_FILE_BYTES:  # it grew after it was measured
            raise BundleError(f"bundle file {path} grew beyond {_mib(MAX_FILE_BYTES)} while it was read")
        files[path.name] = data
    return files, others


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB" if size % (1024 * 1024) else f"{size // (1024 * 1024)} MiB"


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@contextmanager
def _quiet_pyhanko() -> Iterator[None]:
    """Keep pyHanko's own error logging (tracebacks of hostile input) off stderr."""
    logger = logging.getLogger("pyhanko")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


# --- the steps ------------------------------------------------------------------------------


# (1)
def _step1_envelope_signature(st: _State) -> str:
    for name in (DSSE_ENVELOPE, SIGNER_PEM):
        if name not in st.files:
            raise _Failed(f"{name} was not read: it is {st.others.get(name, 'not a regular file')}")
    try:
        envelope = parse_envelope(st.files[DSSE_ENVELOPE])
    except ValueError as exc:
        raise _Failed(f"{DSSE_ENVELOPE} is not a valid DSSE envelope: {exc}") from None
    chain = _parse_certificates(st.files[SIGNER_PEM])
    if not chain:
        raise _Failed(f"{SIGNER_PEM} holds no readable certificate")
    st.chain = chain
    leaf = chain[0]
    subject = leaf.subject.rfc4514_string()
    stamped = _envelope_timestamp(st, envelope.signature)
    if stamped is not None and not leaf.not_valid_before_utc <= stamped.time <= leaf.not_valid_after_utc:
        stamped = None  # a timestamp outside the certificate's life proves nothing; step 8 says so
    moment = stamped.time.astimezone(dt.UTC) if stamped is not None else st.at
    ctx = st.context(moment, other_certs=[_asn1(c) for c in chain[1:]])
    validator = CertificateValidator(_asn1(leaf), validation_context=ctx)

    async def _validate() -> Any:
        try:
            return await validator.async_validate_path()
        finally:
            await ctx.aclose()  # type: ignore[no-untyped-call]

    try:
        path = run_sync(_validate)
    except RevokedError as exc:
        raise _Failed(_revoked(subject, exc, moment, stamped is not None)) from None
    except InsufficientRevinfoError:
        raise _Failed(_no_revocation_data(subject, st)) from None
    except (CertValidationError, PathError) as exc:  # PathError: no path to any anchor could be built
        raise _Failed(
            f"the signer certificate ({subject}) does not chain to a supplied trust anchor: {exc} "
            f"(judged {_as_of(moment, stamped is not None)})"
        ) from None
    _check_trust(path, leaf, st, moment, stamped is not None)
    usage = _key_usage(leaf)
    if usage is not None and not usage.digital_signature:
        raise _Failed(f"the signer certificate ({subject}) is not valid for digitalSignature")
    if not verify_envelope_signature(envelope, leaf):
        raise _Failed("the DSSE signature over the statement does not verify with the signer's key")
    if envelope.keyid != certificate_sha256(leaf):
        raise _Failed("the signature's keyid does not name the signer certificate")
    st.envelope = envelope
    if stamped is not None:
        return f"signed by {subject}; the chain judged as of the signature's timestamp ({moment:%Y-%m-%d %H:%M:%S} UTC)"
    return f"signed by {subject}"


def _envelope_timestamp(st: _State, signature: bytes) -> TimestampCheck | None:
    """The DSSE signature's timestamp, if the bundle has one that verifies (step 8 reports on it either way)."""
    token = st.files.get(TIMESTAMP_FILE)
    if token is None:
        return None
    try:
        return check_signature_timestamp(token, signature, st.context(st.at))
    except ValueError:
        return None


def _as_of(moment: dt.datetime, stamped: bool) -> str:
    what = "the time of the signature's timestamp" if stamped else "the validation time"
    return f"as of {what}, {moment:%Y-%m-%d %H:%M:%S} UTC"


def _revoked(subject: str, exc: RevokedError, moment: dt.datetime, stamped: bool) -> str:
    """Why a revoked certificate fails: when it was revoked, and that this was before the signature's time."""
    when = exc.revocation_dt.astimezone(dt.UTC)
    reason = exc.reason.human_friendly if exc.reason is not None else "an unspecified reason"
    return (
        f"a certificate of the chain of {subject} was revoked on {when:%Y-%m-%d %H:%M:%S} UTC ({reason}), before "
        f"{_as_of(moment, stamped)[6:]}: the signature cannot be trusted"
    )


def _no_revocation_data(subject: str, st: _State) -> str:
    return (
        f"the revocation status of the chain of {subject} cannot be established from the validation data at hand "
        f"({st.validation_data().describe()}; missing, or out of date at the time of judgement) and the revocation "
        "policy is hard-fail: sign at PAdES B-LT or B-LTA, or pass the CA's current CRL or an OCSP response with "
        "--revocation-data"
    )


def _check_trust(path: Any, leaf: x509.Certificate, st: _State, moment: dt.datetime, stamped: bool) -> None:
    """The path's anchor may vouch for it at ``moment``, the signer may sign documents, and nothing was revoked.

    Revocation is read from every CRL and OCSP response at hand
    (:func:`signing.longterm.latest_revocation`), not only the first that answers.
    """
    certs = [x509.load_der_x509_certificate(c.dump()) for c in path.iter_certs(include_root=True)]
    if len(certs) > 1 and certs[0] == certs[-1]:  # a leaf trusted directly is its own path
        certs = certs[:1]
    problems = anchor_problems(certs, moment) + signer_problems(leaf, st.policy)
    if problems:
        raise _Failed("; ".join(problems))
    for issuer, cert in zip(certs, certs[1:], strict=False):
        revoked = latest_revocation(cert, issuer, st.validation_data())
        if revoked is not None and revoked.date < moment:
            raise _Failed(
                f"the certificate {cert.subject.rfc4514_string()} was revoked on {revoked.date:%Y-%m-%d %H:%M:%S} UTC "
                f"({revoked.reason}, says a {revoked.source} of {issuer.subject.rfc4514_string()}), before "
                f"{_as_of(moment, stamped)[6:]}: the signature cannot be trusted"
            )


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None


# (2)
def _step2_statement_type(st: _State) -> str:
    if st.envelope is None:
        raise _Failed("no verified envelope")
    if st.envelope.payload_type != PAYLOAD_TYPE:
        raise _Failed(f"payloadType is {st.envelope.payload_type!r}, expected {PAYLOAD_TYPE!r}")
    try:
        statement = parse_statement(st.envelope.payload)
    except ValueError as exc:
        raise _Failed(str(exc)) from None
    if statement["_type"] != STATEMENT_TYPE:
        raise _Failed(f"statement _type is {statement['_type']!r}, expected {STATEMENT_TYPE!r}")
    expected = TREND_PREDICATE_TYPE if st.trend else PREDICATE_TYPE
    if statement["predicateType"] != expected:
        raise _Failed(f"predicateType is {statement['predicateType']!r}, expected {expected!r}")
    st.statement = statement
    return f"in-toto Statement v1, interp-dossier {'trend' if st.trend else 'dossier'} predicate v1"


# (3)
def _step3_subject_digests(st: _State) -> str:
    if st.statement is None:
        raise _Failed("no verified statement")
    try:
        signed = statement_subjects(st.statement)
    except ValueError as exc:
        raise _Failed(str(exc)) from None
    if st.others:
        listed = "; ".join(f"{name} is {what}" for name, what in sorted(st.others.items()))
        raise _Failed(f"the bundle holds entries that are not signed files: {listed}")
    actual = {name: sha256_hex(data) for name, data in st.files.items() if name not in UNSIGNED_FILES}
    unsigned = sorted(set(actual) - set(signed))
    if unsigned:
        raise _Failed(f"bundle file(s) {', '.join(unsigned)} are not covered by the signed statement")
    absent = sorted(set(signed) - set(actual))
    if absent:
        raise _Failed(f"the signed statement names {', '.join(absent)}, which the bundle lacks")
    for name in sorted(actual):
        if signed[name] != actual[name]:
            raise _Failed(f"sha256 of {name} is {actual[name]}, but the signed statement says {signed[name]}")
    others = sorted(set(actual) - {DOSSIER_JSON})
    return f"sha256 of {DOSSIER_JSON} = {actual[DOSSIER_JSON]}; also {', '.join(others)}"


# (4)
def _step4_schema(st: _State) -> str:
    data = st.files[DOSSIER_JSON]
    try:
        doc = parse_object(data, DOSSIER_JSON)
    except ValueError as exc:
        raise _Failed(str(exc)) from None
    try:
        canonical = canonical_bytes(doc)
    except EvidenceError as exc:
        raise _Failed(f"{DOSSIER_JSON} cannot be written as canonical JSON: {exc.one_line()}") from None
    if canonical != data:
        at = next((i for i, (a, b) in enumerate(zip(canonical, data, strict=False)) if a != b), None)
        at = min(len(canonical), len(data)) if at is None else at
        raise _Failed(
            f"{DOSSIER_JSON} is not in canonical form (RFC 8785; its bytes first differ at offset {at}): "
            "a dossier is signed as its one canonical serialization"
        )
    version = doc.get("schema_version")
    versions = SUPPORTED_TREND_VERSIONS if st.trend else SUPPORTED_SCHEMA_VERSIONS
    supported = ", ".join(sorted(versions))
    if version not in versions:
        raise _Failed(
            f"{DOSSIER_JSON} has schema_version {version!r}; this release supports {supported} "
            "only (upgrade interp-dossier to verify newer dossiers)"
        )
    schema = "trend.schema.json" if st.trend else "dossier.schema.json"
    validator = jsonschema.Draft202012Validator(load_schema(schema))
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        where = "/".join(map(str, errors[0].absolute_path)) or "(root)"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise _Failed(f"{DOSSIER_JSON} does not validate at {where}: {errors[0].message}{more}")
    _check_binding(st)
    agrees = "the PDF's signer" if st.pdf_only else "the signed statement and signer"
    return f"schema_version {version}, valid against {schema}; agrees with {agrees}"


def _check_binding(st: _State) -> None:
    """What the signed statement and dossier.json say of each other and of the signer agrees.

    The statement's predicate must be the one dossier.json yields, and the signer
    dossier.json names (which the PDF cover prints) must be the certificate that
    signed, development flag included.
    """
    try:
        dossier: Dossier | TrendDossier = (
            parse_trend(st.files[DOSSIER_JSON]) if st.trend else parse_dossier(st.files[DOSSIER_JSON])
        )
    except EvidenceError as exc:
        raise _Failed(exc.one_line()) from None
    if st.statement is not None:
        says = trend_predicate(dossier) if isinstance(dossier, TrendDossier) else statement_predicate(dossier)
        signed = st.statement.get("predicate")
        if signed != says:
            keys = sorted(set(says) | set(signed or {}))
            differ = [k for k in keys if not isinstance(signed, dict) or signed.get(k) != says.get(k)]
            raise _Failed(
                f"the signed statement's predicate disagrees with {DOSSIER_JSON} on {', '.join(differ)}: "
                "the statement must describe the dossier it signs"
            )
    if not st.chain:
        return
    leaf = st.chain[0]
    signer = dossier.signer
    if signer is None:
        raise _Failed(f"{DOSSIER_JSON} names no signer, yet the bundle is signed; a signed dossier names its signer")
    mismatches = []
    if signer.subject != leaf.subject.rfc4514_string():
        mismatches.append(f"subject {ascii(signer.subject)} (the certificate's is {leaf.subject.rfc4514_string()})")
    if signer.certificate_sha256 != certificate_sha256(leaf):
        mismatches.append("certificate fingerprint")
    development = is_development_certificate(leaf)
    if signer.development_key != development:
        mismatches.append(
            f"development key {'yes' if signer.development_key else 'no'} (the certificate is "
            f"{'a development' if development else 'not a development'} certificate)"
        )
    if mismatches:
        raise _Failed(
            f"the signer named in {DOSSIER_JSON} (and printed on the PDF) is not the certificate that signed: "
            + "; ".join(mismatches)
        )


# (5)
def _step5_pdf_signature(st: _State) -> str:
    pdf = st.files[DOSSIER_PDF]
    try:
        reader = PdfFileReader(io.BytesIO(pdf))
        embedded_all = reader.embedded_signatures
    except Exception:
        if not pdf.rstrip(b"\r\n").endswith(b"%%EOF"):
            raise _Failed(
                "the PDF cannot be read and does not end with an %%EOF marker: it is truncated, or not a complete PDF"
            ) from None
        raise  # reported as a file that cannot be read (see _run_step)
    signatures = [s for s in embedded_all if s.sig_object_type != "/DocTimeStamp"]
    archive_stamps = [s for s in embedded_all if s.sig_object_type == "/DocTimeStamp"]
    if len(signatures) != 1:
        raise _Failed(f"the PDF carries {len(signatures)} signatures; exactly one is expected")
    embedded = signatures[0]
    subfilter = embedded.sig_object.get("/SubFilter")
    if subfilter != _PADES_SUBFILTER:
        raise _Failed(f"the PDF signature's SubFilter is {subfilter}, expected {_PADES_SUBFILTER}")
    if any(stamp.signed_revision < embedded.signed_revision for stamp in archive_stamps):
        raise _Failed("the PDF has a document timestamp older than its signature: it was added before signing")
    _check_pdf_structure(pdf, embedded, reader, archive_stamps)
    # Document timestamps (B-LTA) are judged now (or --at); the latest one dates everything it covers.
    archived_at = _archive_timestamps(st, archive_stamps)
    # The signature's own timestamp (B-T) is judged as of the archive timestamp that covers it, if any.
    status = _validate_pdf_signature(st, embedded, signer_moment=st.at, ts_moment=archived_at or st.at)
    signature_time = None
    timestamp = status.timestamp_validity
    if timestamp is not None:
        if not (timestamp.intact and timestamp.valid):
            raise _Failed("the PDF signature's timestamp is not intact or not valid")
        if not timestamp.trusted:
            raise _Failed(
                "the PDF signature's timestamp authority's certificate "
                + why_untrusted(timestamp.trust_problem_indic, archived_at or st.at)
            )
        signature_time = timestamp.timestamp.astimezone(dt.UTC)
        if signature_time > st.at + dt.timedelta(minutes=5):
            raise _Failed(
                f"the PDF signature's timestamp ({signature_time:%Y-%m-%d %H:%M:%S} UTC) is later than the "
                f"validation time ({st.at:%Y-%m-%d %H:%M:%S} UTC)"
            )
        # the signer's certificates are judged as of the time the signature is proven to have existed
        status = _validate_pdf_signature(st, embedded, signer_moment=signature_time, ts_moment=archived_at or st.at)
    if not status.intact:
        raise _Failed("the signed bytes of the PDF have changed (digest mismatch)")
    if not status.valid:
        raise _Failed("the PDF's CMS signature is not valid")
    pdf_leaf = x509.load_der_x509_certificate(embedded.signer_cert.dump())
    unfit = signer_problems(pdf_leaf, st.policy)
    if unfit:  # before pyHanko's trust verdict, which refuses e.g. a 1024-bit key as merely "untrusted"
        raise _Failed("; ".join(unfit))
    moment = signature_time or st.at
    subject = pdf_leaf.subject.rfc4514_string()
    details = status.revocation_details
    if details is not None:
        when = details.revocation_date.astimezone(dt.UTC)
        raise _Failed(
            f"a certificate of the chain of the PDF's signer {subject} was revoked on {when:%Y-%m-%d %H:%M:%S} UTC, "
            f"before {_as_of(moment, signature_time is not None)[6:]}: the signature cannot be trusted"
        )
    if not status.trusted:
        reason = why_untrusted(status.trust_problem_indic, moment)
        raise _Failed(f"the PDF signer's certificate {reason} (judged {_as_of(moment, signature_time is not None)})")
    level = _check_coverage(status, archive_stamps)
    if status.validation_path is not None:
        _check_trust(status.validation_path, pdf_leaf, st, moment, signature_time is not None)
    stamped = ""
    if signature_time is not None:
        stamped = f"; timestamped {signature_time:%Y-%m-%d %H:%M:%S} UTC"
    if level != "B-B":
        stamped += f" (PAdES {level})"
    if st.pdf_only:
        st.chain = [pdf_leaf]
        return f"PAdES signature by {subject}: intact, valid, trusted, covering the entire {_covered(level)}{stamped}"
    if not st.chain or pdf_leaf != st.chain[0]:
        raise _Failed("the PDF was signed with a different certificate than the DSSE envelope")
    return f"PAdES signature intact, valid, trusted, covering the entire {_covered(level)}{stamped}"


def _covered(level: str) -> str:
    return "file" if level in ("B-B", "B-T") else "signed revision; later revisions add only validation data"


def _validate_pdf_signature(st: _State, embedded: Any, *, signer_moment: dt.datetime, ts_moment: dt.datetime) -> Any:
    """The signature's status (pyHanko): its signer judged as of ``signer_moment``, its timestamp at ``ts_moment``."""
    signer_context = st.context(signer_moment)
    ts_context = st.context(ts_moment)

    async def _validate() -> Any:
        try:
            return await async_validate_pdf_signature(
                embedded,
                signer_validation_context=signer_context,
                ts_validation_context=ts_context,
                diff_policy=long_term_diff_policy(),
                key_usage_settings=KeyUsageConstraints(key_usage={_KEY_USAGE}),
            )
        finally:
            await signer_context.aclose()  # type: ignore[no-untyped-call]
            await ts_context.aclose()  # type: ignore[no-untyped-call]

    return run_sync(_validate)


def _archive_timestamps(st: _State, stamps: Sequence[Any]) -> dt.datetime | None:
    """Check every document timestamp (B-LTA) as of the validation time; the earliest one's time, if any.

    Each must be intact, valid, by a trusted timestamp authority, and structurally
    sound like the signature (its gap one hex string). The earliest covers the
    signature and its validation data: from then on they are proven to exist.
    """
    times = []
    for stamp in stamps:
        context_now = st.context(st.at)

        async def _validate(stamp: Any = stamp, ctx: Any = context_now) -> Any:
            try:
                return await async_validate_pdf_timestamp(
                    stamp, validation_context=ctx, diff_policy=long_term_diff_policy()
                )
            finally:
                await ctx.aclose()

        status = run_sync(_validate)
        if not (status.intact and status.valid):
            raise _Failed("a document timestamp of the PDF (PAdES B-LTA) is not intact or not valid")
        if not status.trusted:
            raise _Failed(
                "the certificate of the authority of a document timestamp of the PDF (PAdES B-LTA) "
                + why_untrusted(status.trust_problem_indic, st.at)
            )
        times.append(status.timestamp.astimezone(dt.UTC))
    return min(times) if times else None


def _check_coverage(status: Any, archive_stamps: Sequence[Any]) -> str:
    """The PAdES level the file shows, if what follows the signed revision is allowed; fails otherwise.

    B-B and B-T: the signature covers the entire file. B-LT and B-LTA: it covers
    its revision, and pyHanko's difference analysis, under a policy that allows
    only validation data and document timestamps (:func:`signing.longterm.long_term_diff_policy`),
    finds nothing else in the later revisions.
    """
    from pyhanko.sign.diff_analysis.policy_api import ModificationLevel

    has_timestamp = status.timestamp_validity is not None
    if status.coverage == SignatureCoverageLevel.ENTIRE_FILE:
        return "B-T" if has_timestamp else "B-B"
    if status.coverage == SignatureCoverageLevel.ENTIRE_REVISION and status.modification_level is not None:
        if status.modification_level <= ModificationLevel.LTA_UPDATES and status.docmdp_ok is not False:
            if not has_timestamp:
                raise _Failed(
                    "the PDF has revisions after its signature but the signature has no timestamp: long-term "
                    "validation data is added only to a timestamped (B-T) signature"
                )
            return "B-LTA" if archive_stamps else "B-LT"
    coverage = status.coverage.name if status.coverage is not None else "unknown"
    changes = status.modification_level.name if status.modification_level is not None else "not analysed"
    raise _Failed(
        f"the PDF signature does not cover the entire file (coverage {coverage}, later changes {changes}): "
        "bytes or an incremental update were added after signing that are not validation data or a document timestamp"
    )


# (8)
def _step8_envelope_timestamp(st: _State) -> str:
    if st.envelope is None or not st.chain:
        raise _Failed("no verified envelope")
    try:
        check = check_signature_timestamp(st.files[TIMESTAMP_FILE], st.envelope.signature, st.context(st.at))
    except ValueError as exc:
        raise _Failed(f"{TIMESTAMP_FILE}: {exc}") from None
    leaf = st.chain[0]
    when = check.time.astimezone(dt.UTC)
    if not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc:
        raise _Failed(
            f"{TIMESTAMP_FILE} dates the signature {when:%Y-%m-%d %H:%M:%S} UTC, outside the signer certificate's "
            f"validity ({leaf.not_valid_before_utc:%Y-%m-%d} to {leaf.not_valid_after_utc:%Y-%m-%d})"
        )
    if when > st.at + dt.timedelta(minutes=5):
        raise _Failed(f"{TIMESTAMP_FILE} dates the signature in the future ({when:%Y-%m-%d %H:%M:%S} UTC)")
    return f"the DSSE signature existed at {when:%Y-%m-%d %H:%M:%S} UTC, attested by {check.authority}"


def _check_pdf_structure(pdf: bytes, embedded: Any, reader: PdfFileReader, archive_stamps: Sequence[Any]) -> None:
    """The signature's byte ranges, read from the file itself, cover all of its revision but the signature value.

    pyHanko (0.38) reports "covers the entire file" when the file's size equals the
    two signed ranges plus twice the declared /Contents plus two, without looking at
    where the ranges are or what lies between them: an incremental update that
    redefines the signature dictionary, with /Contents as a literal string padded
    to the right length, satisfies that equation while the update swaps the
    embedded dossier. These checks do not trust the equation:

    * the ByteRange is ``[0 a b c]`` with ``a < b``, and the gap ``[a, b)`` is
      exactly one hex string: the signature value the signature dictionary
      declares (so the dictionary read is the one signed);
    * the signed bytes end with the revision's ``%%EOF``, and the signature
      dictionary was not redefined by a later revision;
    * nothing follows the signed revision, unless the file is long-term (B-LT,
      B-LTA): then what follows is judged by the difference analysis
      (:func:`_check_coverage`), and the same structure is demanded of every
      document timestamp, the last of which covers the file to its end or is
      followed by validation data only.
    """
    last = reader.xrefs.total_revisions - 1
    long_term = bool(archive_stamps) or _has_dss(reader)
    _check_range_form(pdf, embedded, "signature")
    end = _signed_end(embedded)
    if end != len(pdf) and (embedded.signed_revision == last or not long_term):
        raise _Failed(
            f"the PDF signature covers the file up to byte {end}, but the file has {len(pdf)} bytes: "
            "something was added after the signed revision"
        )
    _check_byte_range(pdf, embedded, reader, "signature")
    if embedded.signed_revision != last and not long_term:
        raise _Failed(
            f"the PDF signature belongs to revision {embedded.signed_revision + 1} of {last + 1}: "
            "revisions were added after signing"
        )
    for stamp in archive_stamps:
        _check_byte_range(pdf, stamp, reader, "document timestamp")
    if archive_stamps:
        latest = max(archive_stamps, key=lambda s: s.signed_revision)
        if latest.signed_revision == last and _signed_end(latest) != len(pdf):
            raise _Failed("bytes were appended to the PDF after its last document timestamp")


def _signed_end(embedded: Any) -> int:
    _, _, start2, len2 = (int(x) for x in embedded.byte_range)
    return start2 + len2


def _has_dss(reader: PdfFileReader) -> bool:
    try:
        return "/DSS" in reader.root
    except Exception:  # an unreadable catalog has no DSS to speak of
        return False


def _check_range_form(pdf: bytes, embedded: Any, what: str) -> None:
    """``embedded``'s ByteRange is ``[0 a b c]``: two ranges around a gap, inside the file."""
    byte_range = [int(x) for x in embedded.byte_range]
    if len(byte_range) != 4 or byte_range[0] != 0:
        raise _Failed(f"the PDF {what}'s ByteRange {byte_range} is not of the form [0 a b c]")
    _, len1, start2, len2 = byte_range
    if not 0 < len1 < start2 or len2 < 0 or start2 + len2 > len(pdf):
        raise _Failed(f"the PDF {what}'s ByteRange {byte_range} does not describe two ranges around a gap")


def _check_byte_range(pdf: bytes, embedded: Any, reader: PdfFileReader, what: str) -> None:
    """``embedded``'s ByteRange is ``[0 a b c]`` around one hex string, its declared value, ending at an %%EOF."""
    _check_range_form(pdf, embedded, what)
    _, len1, start2, len2 = (int(x) for x in embedded.byte_range)
    gap = pdf[len1:start2]
    value = re.fullmatch(rb"<([0-9A-Fa-f]*)>", gap)
    if value is None or len(value.group(1)) % 2:
        raise _Failed(
            f"the unsigned gap between the PDF {what}'s two byte ranges is not one hex string: it holds "
            f"something besides the {what} value"
        )
    if bytes.fromhex(value.group(1).decode("ascii")) != bytes(embedded.pkcs7_content):
        raise _Failed(
            f"the {what} value the PDF's signature dictionary declares is not the one in the signed file's "
            "gap: the signature dictionary was redefined after signing"
        )
    if not pdf[: start2 + len2].rstrip(b"\r\n").endswith(b"%%EOF"):
        raise _Failed(f"the PDF's {what}'s signed bytes do not end with the revision's %%EOF marker")
    reference = embedded.sig_field.raw_get("/V")
    if isinstance(reference, generic.IndirectObject):
        changed = reader.xrefs.get_last_change(reference.reference)
        if changed != embedded.signed_revision:
            raise _Failed(
                f"the PDF {what}'s dictionary was redefined in revision {changed + 1}, after the revision it signs"
            )


# (6)
def _step6_embedded_dossier(st: _State) -> str:
    reader = pypdf.PdfReader(io.BytesIO(st.files[DOSSIER_PDF]))
    copies = list(_embedded_files(reader, DOSSIER_JSON))
    if not copies:
        raise _Failed(f"the PDF embeds no file named {DOSSIER_JSON}")
    if st.pdf_only and any(copy != copies[0] for copy in copies):
        raise _Failed(f"the PDF embeds several {DOSSIER_JSON} files that differ")
    if any(copy != st.files.get(DOSSIER_JSON) for copy in copies):
        raise _Failed(f"the {DOSSIER_JSON} embedded in the PDF differs from the bundle's")
    exports = sorted(set(st.files) - {DOSSIER_JSON, DOSSIER_PDF, *UNSIGNED_FILES})
    for name in exports:
        embedded = list(_embedded_files(reader, name))
        if not embedded:
            raise _Failed(f"the PDF does not embed the bundle's {name}")
        if any(copy != st.files[name] for copy in embedded):
            raise _Failed(f"the {name} embedded in the PDF differs from the bundle's")
    digest = sha256_hex(st.files[DOSSIER_JSON])
    text = re.sub(r"\s+", "", reader.pages[0].extract_text() or "")
    if digest not in text:
        raise _Failed(f"page 1 of the PDF does not print the sha256 of {DOSSIER_JSON} ({digest})")
    also = f" (and {', '.join(exports)})" if exports else ""
    return f"embedded {DOSSIER_JSON}{also} identical; page 1 prints {digest}"


def _cited_validation(dossier: Dossier, files: Mapping[str, bytes]) -> tuple[ValidationReport, str] | None:
    """The validation report the dossier cites, read from the bundle (never from this verifier's release).

    The citation's summary must follow from the report, and every verdict that
    rests on a validation must rest on the cited report.
    """
    cited_by_verdicts = {v.validation_report for v in dossier.verdicts if v.validation_report is not None}
    citation = dossier.validation
    if citation is None:
        if cited_by_verdicts:
            raise _Failed("verdicts rest on a validation report that the dossier does not cite")
        if VALIDATION_REPORT_FILE in files:
            raise _Failed(f"the bundle holds {VALIDATION_REPORT_FILE}, but the dossier cites no validation report")
        return None
    data = files.get(VALIDATION_REPORT_FILE)
    if data is None:
        raise _Failed(
            f"the dossier cites validation report {citation.report_sha256[:16]}, "
            f"but the bundle has no {VALIDATION_REPORT_FILE}"
        )
    if sha256_hex(data) != citation.report_sha256:
        raise _Failed(f"the bundle's {VALIDATION_REPORT_FILE} is not the report the dossier cites (sha256 differs)")
    stray = cited_by_verdicts - {citation.report_sha256}
    if stray:
        raise _Failed(
            f"verdicts rest on validation report {', '.join(sorted(c[:16] for c in stray))}, not the cited one"
        )
    try:
        report = parse_report(data, source=VALIDATION_REPORT_FILE)
    except EvidenceError as exc:
        raise _Failed(exc.one_line()) from None
    if cite(report, citation.report_sha256, dossier.records) != citation:
        raise _Failed("the dossier's summary of its validation report does not follow from the report")
    return report, citation.report_sha256


# (7)
def _step7_recompute_judgement(st: _State) -> str:
    if st.trend:
        return _step7_recompute_trend(st)
    try:
        dossier = parse_dossier(st.files[DOSSIER_JSON])
    except EvidenceError as exc:
        raise _Failed(exc.one_line()) from None
    if dossier.policy is None:
        if dossier.verdicts or dossier.gate is not None:
            raise _Failed("verdicts or a gate decision are present, but no policy is recorded")
        verdicts_note = "no policy recorded, no verdicts"
    else:
        _check_policy_applies(dossier)
        recorded_dtype = dossier.model.processing.get("dtype")
        recorded_batching = dossier.model.processing.get("batching")
        recomputed = evaluate(
            dossier.policy,
            dossier.records,
            subject=dossier.model.name,
            validation=_cited_validation(dossier, st.files),
            dtype=recorded_dtype if isinstance(recorded_dtype, str) else "float32",
            batching=recorded_batching if isinstance(recorded_batching, str) else None,
        )
        if len(recomputed) != len(dossier.verdicts):
            raise _Failed(f"the policy yields {len(recomputed)} verdicts, the dossier records {len(dossier.verdicts)}")
        for mine, theirs in zip(recomputed, dossier.verdicts, strict=True):
            if mine != theirs:
                raise _Failed(
                    f"verdict {theirs.verdict_id!r} is recorded as {theirs.verdict!r}, "
                    f"but recomputes as {mine.verdict!r}: {mine.reason}"
                )
        gate = roll_up(recomputed)
        if gate != dossier.gate:
            recorded = dossier.gate.decision if dossier.gate else None
            raise _Failed(f"the gate is recorded as {recorded!r} but recomputes as {gate.decision!r}")
        verdicts_note = f"{len(recomputed)} verdicts and gate {gate.decision.upper()} recomputed"
    # the index is recomputed even when the dossier's is empty: emptying it is no way around the check
    try:
        index = build_clause_index(dossier.records, dossier.verdicts)
    except EvidenceError as exc:
        raise _Failed(exc.one_line()) from None
    if index != dossier.clause_index:
        if not dossier.clause_index:
            raise _Failed(f"the clause index is empty, but the records and verdicts yield {len(index)} clause entries")
        raise _Failed("the clause index does not follow from the records and verdicts")
    n_checks = 0
    for record in dossier.records:
        for check in record.checks:
            recomputed_pass = check_passes(check)
            if recomputed_pass != check.passed:
                raise _Failed(
                    f"record {record.record_id!r}: the calibration check of {check.metric!r} on "
                    f"{check.organism!r} is recorded as {'passed' if check.passed else 'failed'}, "
                    f"but recomputes as {'passed' if recomputed_pass else 'failed'} from its criteria"
                )
            n_checks += 1
    if n_checks:
        verdicts_note += f"; {n_checks} calibration checks recomputed"
    return verdicts_note


def _step7_recompute_trend(st: _State) -> str:
    """A trend: the checkpoints' dossiers beside it are the ones it names, and it recomputes from them."""
    try:
        trend = parse_trend(st.files[DOSSIER_JSON])
    except EvidenceError as exc:
        raise _Failed(exc.one_line()) from None
    if st.bundle_dir is None:
        raise _Failed(
            "a trend recomputes only from its checkpoints' dossiers, which a PDF on its own does not carry: "
            "verify the sweep directory"
        )
    sweep = st.bundle_dir.resolve().parent
    dossiers: dict[str, bytes] = {}
    named: set[Path] = set()
    for ref in trend.checkpoints:
        where = (st.bundle_dir / ref.bundle).resolve()
        if where.parent != sweep / CHECKPOINTS_DIR:
            raise _Failed(
                f"checkpoint {ref.label!r}: its bundle {ref.bundle!r} is not a directory of the sweep's "
                f"{CHECKPOINTS_DIR}/"
            )
        named.add(where)
        data = _read_small(where / DOSSIER_JSON)
        if data is not None:
            dossiers[ref.label] = data
    folder = sweep / CHECKPOINTS_DIR
    present = {p.resolve() for p in folder.iterdir()} if folder.is_dir() else set()
    extra = sorted(p.name for p in present - named)
    if extra:
        raise _Failed(f"the sweep's {CHECKPOINTS_DIR}/ holds {', '.join(extra)}, which the trend does not name")
    try:
        return check_trend(trend, dossiers)
    except EvidenceError as exc:
        raise _Failed(exc.one_line()) from None


def _read_small(path: Path) -> bytes | None:
    """A checkpoint's dossier.json, or None when it is missing; a file too large to be one is a failure."""
    try:
        info = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    if info.st_size > _MAX_CHECKPOINT_DOSSIER:
        raise _Failed(f"{path} is {_mib(info.st_size)}, larger than a dossier.json may be; it was not read")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise _Failed(f"cannot read {path}: {exc.strerror or exc}") from None


def _check_policy_applies(dossier: Dossier) -> None:
    """The recorded policy was fixed before the run, and judges the records of the model.

    A record of a measurement the policy has a threshold on must be of the
    model itself (``dossier.model.name``, compared exactly): a record whose
    subject differs, even by one confusable character, would otherwise escape
    its threshold.
    """
    policy = dossier.policy
    if policy is None:
        return
    if policy.set_at >= dossier.created_at:
        raise _Failed(
            f"the policy was set at {policy.set_at.isoformat()}, not before the dossier was created "
            f"({dossier.created_at.isoformat()}): thresholds must be fixed before the run they judge"
        )
    gated = {t.measurement for t in policy.thresholds}
    model = dossier.model.name
    for record in dossier.records:
        if record.measurement.id in gated and record.subject != model:
            raise _Failed(
                f"record {record.record_id!r} is of subject {ascii(record.subject)}, not of the model "
                f"{ascii(model)}, yet the policy has a threshold on its measurement {record.measurement.id}: "
                "a judged record must name the model exactly"
            )


def _embedded_files(reader: Any, wanted: str) -> Iterator[bytes]:
    """The contents of every embedded file called ``wanted``, via /AF and /EmbeddedFiles."""
    root = reader.trailer["/Root"].get_object()
    filespecs: list[Any] = []
    af = root.get("/AF")
    if af is not None:
        filespecs.extend(af.get_object())
    names = root.get("/Names")
    if names is not None and "/EmbeddedFiles" in names.get_object():
        _walk_name_tree(names.get_object()["/EmbeddedFiles"].get_object(), filespecs, 0)
    for spec in filespecs:
        spec = spec.get_object()
        name = spec.get("/UF", spec.get("/F"))
        if name is None or str(name) != wanted:
            continue
        streams = spec.get("/EF")
        if streams is None:
            continue
        for key in ("/F", "/UF"):
            if key in streams.get_object():
                yield bytes(streams.get_object()[key].get_object().get_data())


def _walk_name_tree(node: Any, out: list[Any], depth: int) -> None:
    if depth > 32:
        raise _Failed("the PDF's embedded-file name tree is nested too deeply")
    entries = node.get("/Names")
    if entries is not None:
        entries = entries.get_object()
        out.extend(entries[i + 1] for i in range(0, len(entries) - 1, 2))
    for kid in node.get("/Kids", []) or []:
        _walk_name_tree(kid.get_object(), out, depth + 1)


# --- the procedure --------------------------------------------------------------------------


def verify_bundle(
    bundle_dir: Path,
    trust_anchors: Sequence[Path],
    *,
    signer_policy: SignerPolicy | None = None,
    at: dt.datetime | None = None,
    revocation: RevocationPolicy = "soft-fail",
    revocation_data: Sequence[Path] = (),
    in_sweep: bool = False,
) -> VerificationReport:
    """Check the bundle in ``bundle_dir`` against the auditor's trust anchors, step by step.

    ``signer_policy``: the signer the auditor expects (pinned fingerprint or subject);
    every signer must in any case be fit to sign documents (:mod:`signing.trust`).
    ``at``: the validation time (default now); a timestamped signature's certificates
    are judged as of its timestamp instead. ``revocation`` and ``revocation_data``:
    how missing revocation data is treated, and CRLs / OCSP responses the auditor
    obtained (see :mod:`signing.longterm`). ``in_sweep``: the bundle is verified as part of its sweep
    (:func:`signing.sweep.verify_sweep`), which verifies the checkpoints' own bundles too.
    """
    anchors = load_trust_anchors(trust_anchors)
    supplied = load_revocation_data(revocation_data)
    files, others = _read_bundle(bundle_dir)
    state = _State(files=files, anchors=[_asn1(a) for a in anchors], others=others, policy=signer_policy,
                   at=_validation_time(at), revocation=revocation, supplied=supplied,
                   trend=is_trend_document(files.get(DOSSIER_JSON)), bundle_dir=Path(bundle_dir))  # fmt: skip
    own = (Path(bundle_dir) / SIGNER_PEM).resolve()
    if any(Path(t).resolve() == own for t in trust_anchors):
        state.warnings.append(
            f"the trust anchor is the bundle's own {SIGNER_PEM}: this shows only that the files are unchanged "
            "since the key in that certificate signed them, not who holds the key; compare its sha256 "
            "fingerprint with one obtained from the signer through another channel, or pin it with "
            "--signer-fingerprint"
        )
    if state.trend and not in_sweep:
        state.warnings.append(
            "this is a sweep's trend, verified on its own: the checkpoints' dossiers it was computed from were "
            "checked against the digests it records, but their own bundles (signatures, PDFs, verdicts) were "
            "not verified; verify the sweep directory for that"
        )
    results: dict[int, StepResult] = {}

    def run(number: int, check: Callable[[_State], str]) -> None:
        results[number] = _run_step(number, check, state, results)

    with _quiet_pyhanko():
        # (1) envelope parses, one signature, signer chains to an anchor, signature over the PAE
        run(1, _step1_envelope_signature)
        # (2) payloadType in-toto, Statement v1, our predicateType
        run(2, _step2_statement_type)
        # (3) subject digests equal sha256 of dossier.json and dossier.pdf; nothing else in the bundle
        run(3, _step3_subject_digests)
        # (4) strict parse, canonical RFC 8785 bytes, supported schema_version, JSON Schema validation
        run(4, _step4_schema)
        # (5) one PDF signature: intact, valid, trusted, ENTIRE_FILE, same signer as (1)
        run(5, _step5_pdf_signature)
        # (6) embedded dossier.json byte-identical; its digest printed on page 1
        run(6, _step6_embedded_dossier)
        # (7) policy set before the run and judging the model's own records; verdicts, gate, clause index
        #     and calibration checks recompute from the records and the recorded policy
        run(7, _step7_recompute_judgement)
        # (8) only for a timestamped bundle: the DSSE signature's RFC 3161 timestamp
        if TIMESTAMP_FILE in files:
            run(8, _step8_envelope_timestamp)
    return _report(state, results)


def _report(state: _State, results: Mapping[int, StepResult]) -> VerificationReport:
    """The steps in numeric order, and who signed (as the verified certificate says)."""
    leaf = state.chain[0] if state.chain else None
    development = leaf is not None and is_development_certificate(leaf)
    return VerificationReport(
        steps=[results[n] for n in sorted(results)],
        development_key=development,
        signer_subject=leaf.subject.rfc4514_string() if leaf is not None else None,
        notice=DEVELOPMENT_KEY_NOTICE if development else None,
        warnings=state.warnings,
        validated_at=state.at,
        revocation_policy=state.revocation,
    )


#: A PDF verified alone: step -> the steps it relies on. There is no envelope (steps 1-3);
#: the embedded dossier.json is read only from a PDF whose signature step 5 established.
_PDF_ONLY_DEPENDS_ON: dict[int, tuple[int, ...]] = {5: (), 6: (5,), 4: (6,), 7: (4,)}


def verify_pdf(
    pdf_path: Path,
    trust_anchors: Sequence[Path],
    *,
    signer_policy: SignerPolicy | None = None,
    at: dt.datetime | None = None,
    revocation: RevocationPolicy = "soft-fail",
    revocation_data: Sequence[Path] = (),
) -> VerificationReport:
    """Check a dossier PDF on its own, as a regulator who was sent only the PDF would.

    Steps 5, 6, 4 and 7 run, in that order, on the PDF and the files it embeds:
    the PAdES signature (structure, integrity, trust, signer), the embedded
    dossier.json and the digest on the cover, the dossier's schema and its
    signer against the PDF's signing certificate, and the verdicts recomputed
    from the embedded dossier (and the embedded validation report, when cited).
    Steps 1-3 concern the DSSE envelope of a bundle and do not apply. ``at``,
    ``revocation`` and ``revocation_data`` as for :func:`verify_bundle`.
    """
    anchors = load_trust_anchors(trust_anchors)
    supplied = load_revocation_data(revocation_data)
    pdf = _read_pdf(Path(pdf_path))
    files: dict[str, bytes] = {DOSSIER_PDF: pdf}
    try:
        reader = pypdf.PdfReader(io.BytesIO(pdf))
        for name in (DOSSIER_JSON, VALIDATION_REPORT_FILE):
            copies = list(_embedded_files(reader, name))
            if copies:
                files[name] = copies[0]
    except Exception:  # an unreadable PDF fails step 5 with pyHanko's reading, in a sentence
        pass
    state = _State(files=files, anchors=[_asn1(a) for a in anchors], policy=signer_policy, pdf_only=True,
                   at=_validation_time(at), revocation=revocation, supplied=supplied,
                   trend=is_trend_document(files.get(DOSSIER_JSON)))  # fmt: skip
    results: dict[int, StepResult] = {}

    def run(number: int, check: Callable[[_State], str]) -> None:
        results[number] = _run_step(number, check, state, results, depends_on=_PDF_ONLY_DEPENDS_ON)

    with _quiet_pyhanko():
        run(5, _step5_pdf_signature)
        run(6, _step6_embedded_dossier)
        run(4, _step4_schema)
        run(7, _step7_recompute_judgement)
    return _report(state, results)


def _validation_time(at: dt.datetime | None) -> dt.datetime:
    """``at`` in UTC (a naive time is taken as UTC), or now."""
    if at is None:
        return dt.datetime.now(dt.UTC)
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def _read_pdf(path: Path) -> bytes:
    """The PDF's bytes, its size checked before it is read."""
    try:
        info = path.stat()
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}", hint="pass the dossier's PDF file") from None
    if not stat.S_ISREG(info.st_mode):
        raise BundleError(f"{path} is not a regular file", hint="pass the dossier's PDF file or a bundle directory")
    if info.st_size > MAX_FILE_BYTES:
        raise BundleError(
            f"{path} is {_mib(info.st_size)}, larger than the {_mib(MAX_FILE_BYTES)} a dossier PDF may have; "
            "it was not read"
        )
    try:
        with path.open("rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {exc.strerror or exc}", hint="check the file's permissions") from None


def _run_step(
    number: int,
    check: Callable[[_State], str],
    state: _State,
    results: dict[int, StepResult],
    *,
    depends_on: Mapping[int, tuple[int, ...]] | None = None,
) -> StepResult:
    title = (TREND_STEP_TITLES if state.trend else STEP_TITLES)[number]
    blocked = [d for d in (depends_on or _DEPENDS_ON)[number] if not results[d].passed]
    if blocked:
        # name the step that actually failed, not one that was itself not evaluated
        cause = results[blocked[0]].blocked_by or blocked[0]
        return StepResult(number, title, False, f"not evaluated (step {cause} failed)", blocked_by=cause)
    try:
        return StepResult(number, title, True, check(state))
    except _Failed as exc:
        return StepResult(number, title, False, str(exc))
    except Exception as exc:  # hostile input may break a parser: that is a failure, not a crash
        said = " ".join(str(exc).split())[:160]
        return StepResult(
            number,
            title,
            False,
            f"could not be evaluated: the file is malformed or of a kind this verifier cannot read "
            f"({type(exc).__name__}{': ' + said if said else ''})",
        )
