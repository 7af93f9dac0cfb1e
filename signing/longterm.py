"""Long-term validation: the time a signature is judged at, the revocation data it is judged with.

A filing must still verify years after it was signed, when the signer's
certificate has expired and its CA has stopped answering. Three things make
that possible, and this module holds the verifier's side of them:

* **The time of the signature.** A signature with a trusted RFC 3161 timestamp
  existed at the timestamp's time; its certificates are judged as of that time
  (point-in-time validation), not as of today. Without a timestamp, they are
  judged at the validation time: now, or the past time an auditor asks for
  with ``verify --at``.
* **Validation data.** CRLs and OCSP responses say whether a certificate was
  revoked and since when. A PAdES B-LT/B-LTA file carries them in its document
  security store (DSS); an auditor may supply more (``--revocation-data``), e.g.
  a CRL fetched from the CA today. Revocation data is signed by the CA or its
  OCSP responder, so where it comes from does not matter: it is validated
  like a certificate. A certificate revoked *before* the time of the signature
  fails; one revoked after it does not (the signature was made while it was good).
* **The revocation policy.** ``soft-fail`` (the default) judges revocation with
  the data at hand, whatever its age, and does not fail when there is none;
  ``hard-fail`` fails a certificate that names a CRL or OCSP responder when no
  data from it that is current at the time of judgement (between its
  thisUpdate and nextUpdate, or issued later) is at hand. Verification never
  fetches anything.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator import ValidationContext

from signing.errors import TrustError

__all__ = [
    "REVOCATION_POLICIES",
    "Revocation",
    "latest_revocation",
    "RevocationPolicy",
    "ValidationData",
    "context",
    "load_revocation_data",
    "long_term_diff_policy",
    "read_dss",
    "why_untrusted",
]

RevocationPolicy = Literal["soft-fail", "hard-fail"]
REVOCATION_POLICIES: tuple[RevocationPolicy, ...] = ("soft-fail", "hard-fail")

#: Largest revocation data file an auditor may pass (a CRL of a large CA is a few MB).
MAX_REVOCATION_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class ValidationData:
    """Certificates, CRLs and OCSP responses to judge certificates with, wherever they came from."""

    certs: list[asn1_x509.Certificate] = field(default_factory=list)
    crls: list[asn1_crl.CertificateList] = field(default_factory=list)
    ocsps: list[asn1_ocsp.OCSPResponse] = field(default_factory=list)

    def __add__(self, other: ValidationData) -> ValidationData:
        return ValidationData(self.certs + other.certs, self.crls + other.crls, self.ocsps + other.ocsps)

    def __bool__(self) -> bool:
        return bool(self.certs or self.crls or self.ocsps)

    def describe(self) -> str:
        """E.g. ``"3 certificates, 2 CRLs, 1 OCSP response"``."""
        parts = [
            _count(len(self.certs), "certificate"),
            _count(len(self.crls), "CRL"),
            _count(len(self.ocsps), "OCSP response"),
        ]
        return ", ".join(p for p in parts if p) or "none"


def _count(n: int, what: str) -> str:
    return "" if n == 0 else f"{n} {what}{'' if n == 1 else 's'}"


def read_dss(pdf: bytes) -> ValidationData:
    """The validation data in the PDF's document security store (none if it has no DSS or cannot be read).

    A DSS that cannot be read gives no data, never an error: the data only ever
    adds evidence, and the PDF's own checks report a malformed file.
    """
    from pyhanko.pdf_utils.decode_limits import DecodePurpose
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation.dss import DocumentSecurityStore

    try:
        reader = PdfFileReader(io.BytesIO(pdf), strict=False)
        if "/DSS" not in reader.root:
            return ValidationData()
        dss = DocumentSecurityStore.read_dss(handler=reader)
        certs = list(dss.load_certs())
        crls = [asn1_crl.CertificateList.load(r.get_object().read_data(DecodePurpose.CRL)) for r in dss.crls]
        ocsps = [asn1_ocsp.OCSPResponse.load(r.get_object().read_data(DecodePurpose.OCSP_RESPONSE)) for r in dss.ocsps]
    except Exception:  # a hostile DSS must not crash the verifier; it simply contributes nothing
        return ValidationData()
    return ValidationData(certs, crls, ocsps)


def load_revocation_data(paths: Sequence[Path]) -> ValidationData:
    """CRLs (DER or PEM) and OCSP responses (DER) from files an auditor obtained; :class:`TrustError` if unreadable."""
    data = ValidationData()
    for path in paths:
        path = Path(path)
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise TrustError(
                f"cannot read the revocation data file {path}: {exc.strerror or exc}",
                hint="pass a CRL (DER or PEM) or an OCSP response (DER)",
            ) from None
        if size > MAX_REVOCATION_FILE_BYTES:
            raise TrustError(f"the revocation data file {path} is larger than 64 MiB; it was not read")
        raw = path.read_bytes()
        blobs = [der for _, _, der in pem.unarmor(raw, multiple=True)] if pem.detect(raw) else [raw]
        for der in blobs:
            item = _parse_revocation(der)
            if item is None:
                raise TrustError(
                    f"{path} is neither a CRL nor an OCSP response",
                    hint="pass a CRL (DER or PEM) or an OCSP response (DER) from the signer's CA",
                )
            if isinstance(item, asn1_crl.CertificateList):
                data.crls.append(item)
            else:
                data.ocsps.append(item)
    return data


def _parse_revocation(der: bytes) -> asn1_crl.CertificateList | asn1_ocsp.OCSPResponse | None:
    for kind in (asn1_crl.CertificateList, asn1_ocsp.OCSPResponse):
        try:
            item = kind.load(der, strict=True)
            item.native  # noqa: B018 - parse it all now, so that a malformed file fails here
            return item
        except Exception:  # not this kind: try the next
            continue
    return None


def context(
    anchors: Sequence[asn1_x509.Certificate],
    data: ValidationData,
    *,
    moment: dt.datetime,
    policy: RevocationPolicy,
    other_certs: Sequence[asn1_x509.Certificate] = (),
) -> ValidationContext:
    """A validation context that judges certificates as of ``moment`` with ``data``, never fetching.

    Revocation data is taken as evidence about ``moment`` even when it was issued
    later (``retroactive_revinfo``): a CRL issued after the signature that does not
    list the certificate, or lists it revoked only after ``moment``, shows that it
    was good when the signature was made.
    """
    from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, FreshnessReqType, RevocationCheckingPolicy

    checking = RevocationCheckingPolicy.from_legacy(policy)
    if policy == "hard-fail":
        # data counts between its thisUpdate (ignored: retroactive) and nextUpdate: out-of-date data is no data
        trust = CertRevTrustPolicy(checking, retroactive_revinfo=True)
    else:
        # soft-fail: out-of-date data still counts as what it says (a revocation it lists always fails);
        # that nothing newer says otherwise is the risk soft-fail accepts
        trust = CertRevTrustPolicy(
            checking, freshness=_ANY_AGE, freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION
        )
    return ValidationContext(
        trust_roots=list(anchors),
        other_certs=[*other_certs, *data.certs],
        crls=list(data.crls),
        ocsps=list(data.ocsps),
        moment=moment,
        allow_fetching=False,
        revinfo_policy=trust,
    )


#: Under soft-fail, revocation data of any age is evidence (about a century).
_ANY_AGE = dt.timedelta(days=36525)


def long_term_diff_policy() -> Any:
    """The difference analysis (pyHanko) allowing after the signature only what B-LT and B-LTA add.

    That is validation data (the DSS), document timestamps and the file-structure
    updates they need. pyHanko's default policy also lets the document
    information dictionary and the XMP metadata change at that level (a title
    could be rewritten); this one lets them change only in what pyHanko itself
    rewrites on every incremental update: the modification dates and the producer.
    """
    from pyhanko.sign.diff_analysis import (
        CatalogModificationRule,
        DSSCompareRule,
        FormUpdatingRule,
        ObjectStreamRule,
        SigFieldCreationRule,
        SigFieldModificationRule,
        StandardDiffPolicy,
        XrefStreamRule,
    )
    from pyhanko.sign.diff_analysis.policy_api import ModificationLevel

    level = ModificationLevel.LTA_UPDATES
    return StandardDiffPolicy(
        global_rules=[
            CatalogModificationRule(),  # type: ignore[no-untyped-call]
            XrefStreamRule().as_qualified(level),
            ObjectStreamRule().as_qualified(level),
            DSSCompareRule().as_qualified(level),
            _dates_only_info_rule().as_qualified(level),
            _dates_only_xmp_rule().as_qualified(level),
        ],
        form_rule=FormUpdatingRule(field_rules=[SigFieldCreationRule(), SigFieldModificationRule()]),  # type: ignore[no-untyped-call]
    )


@dataclass(frozen=True)
class Revocation:
    """A certificate's revocation, as the latest valid CRL or OCSP response at hand states it."""

    date: dt.datetime
    reason: str
    source: str  # "CRL" or "OCSP response"


def latest_revocation(cert: Any, issuer: Any, data: ValidationData) -> Revocation | None:
    """What the newest CRL and OCSP response at hand that ``issuer`` signed say of ``cert``: its revocation, or None.

    pyHanko's path validation stops at the first source that answers, so an OCSP
    response that said "good" at signing hides a CRL issued later that revokes
    the certificate as of a date before the signature (a key compromise reported
    late). This check reads every source: for each kind, the newest one the
    issuer (or its delegated OCSP responder) signed wins, and a revocation
    either states is returned. ``cert`` and ``issuer`` are ``cryptography``
    certificates.
    """
    from cryptography import x509

    found: list[tuple[dt.datetime, Revocation | None]] = []
    newest_crl: tuple[dt.datetime, Revocation | None] | None = None
    for item in data.crls:
        try:
            crl = x509.load_der_x509_crl(item.dump())
            if crl.issuer != issuer.subject or not crl.is_signature_valid(issuer.public_key()):
                continue
        except Exception:  # a malformed or foreign CRL says nothing about this certificate
            continue
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        said = None
        if entry is not None:
            said = Revocation(entry.revocation_date_utc, _crl_reason(entry), "CRL")
        if newest_crl is None or crl.last_update_utc > newest_crl[0]:
            newest_crl = (crl.last_update_utc, said)
    if newest_crl is not None:
        found.append(newest_crl)
    newest_ocsp: tuple[dt.datetime, Revocation | None] | None = None
    for item in data.ocsps:
        answer = _ocsp_answer(item.dump(), cert, issuer)
        if answer is not None and (newest_ocsp is None or answer[0] > newest_ocsp[0]):
            newest_ocsp = answer
    if newest_ocsp is not None:
        found.append(newest_ocsp)
    revoked = [said for _, said in found if said is not None]
    return min(revoked, key=lambda r: r.date) if revoked else None


def _crl_reason(entry: Any) -> str:
    from cryptography import x509

    try:
        return str(entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.name).replace("_", " ")
    except x509.ExtensionNotFound:
        return "unspecified"


def _ocsp_answer(der: bytes, cert: Any, issuer: Any) -> tuple[dt.datetime, Revocation | None] | None:
    """(producedAt, revocation or None) of a successful OCSP response about ``cert`` signed for ``issuer``."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509 import ocsp

    try:
        response = ocsp.load_der_ocsp_response(der)
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return None
        if response.serial_number != cert.serial_number:
            return None
        responder = issuer
        if response.responder_name is not None and response.responder_name != issuer.subject:
            delegated = [c for c in response.certificates if c.subject == response.responder_name]
            if not delegated:
                return None
            responder = delegated[0]
            usage = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
            if x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING not in usage:
                return None
            responder.verify_directly_issued_by(issuer)
        key = responder.public_key()
        algorithm = response.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey) and algorithm is not None:
            key.verify(response.signature, response.tbs_response_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey) and algorithm is not None:
            key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(algorithm))
        else:
            return None
    except Exception:  # unreadable, unsigned or foreign: it says nothing about this certificate
        return None
    said = None
    if response.certificate_status == ocsp.OCSPCertStatus.REVOKED and response.revocation_time_utc is not None:
        reason = response.revocation_reason.name.replace("_", " ") if response.revocation_reason else "unspecified"
        said = Revocation(response.revocation_time_utc, reason, "OCSP response")
    return response.produced_at_utc, said


def why_untrusted(indication: Any, moment: dt.datetime) -> str:
    """Why a certificate chain was not trusted, from pyHanko's AdES sub-indication, as a phrase."""
    name = getattr(indication, "name", "")
    when = f"{moment:%Y-%m-%d %H:%M:%S} UTC"
    if name in ("EXPIRED", "NOT_YET_VALID", "OUT_OF_BOUNDS_NO_POE", "OUT_OF_BOUNDS_NOT_REVOKED"):
        return f"is not valid at {when} (expired, or not yet valid)"
    if name in ("TRY_LATER", "REVOCATION_OUT_OF_BOUNDS_NO_POE"):
        return (
            f"has no current revocation data at hand (missing, or out of date at {when}) and the revocation policy "
            "is hard-fail; pass the CA's current CRL or an OCSP response with --revocation-data"
        )
    if name in ("REVOKED_NO_POE", "REVOKED_CA_NO_POE"):
        return f"was revoked before {when}"
    return "does not chain to a supplied trust anchor (pass its root with --trust)"


#: What pyHanko rewrites in the document's metadata on every incremental update it writes.
_INFO_KEYS_UPDATED = frozenset({"/ModDate", "/Producer"})
_XMP_PROPERTIES_UPDATED = frozenset(
    {
        "{http://ns.adobe.com/xap/1.0/}ModifyDate",
        "{http://ns.adobe.com/xap/1.0/}MetadataDate",
        "{http://ns.adobe.com/pdf/1.3/}Producer",
    }
)


def _dates_only_info_rule() -> Any:
    """A difference rule: the /Info dictionary may change only in its modification date and producer."""
    from pyhanko.pdf_utils.reader import RawPdfPath
    from pyhanko.sign.diff_analysis.commons import safe_whitelist
    from pyhanko.sign.diff_analysis.policy_api import SuspiciousModification
    from pyhanko.sign.diff_analysis.rules_api import Context, ReferenceUpdate, WhitelistRule

    class DatesOnlyInfoRule(WhitelistRule):
        def apply(self, old: Any, new: Any) -> Any:
            new_info = new.trailer_view.get_value_as_reference("/Info", optional=True)
            if new_info is None:
                return
            old_info = old.trailer_view.get_value_as_reference("/Info", optional=True)
            if old_info is not None and old_info == new_info:
                before, after = old(old_info), new(new_info)
                changed = {
                    str(k)
                    for k in set(before) | set(after)
                    if k not in _INFO_KEYS_UPDATED and before.get(k) != after.get(k)
                }
                if changed:
                    raise SuspiciousModification(f"the document information changed in {sorted(changed)}")
            elif old_info is not None:
                raise SuspiciousModification("the document information dictionary was replaced")
            context = Context.from_absolute(old, RawPdfPath("/Info"))
            for ref in safe_whitelist(old, old_info, new_info):
                yield ReferenceUpdate(ref, context_checked=context)

    return DatesOnlyInfoRule()


def _dates_only_xmp_rule() -> Any:
    """A difference rule: the XMP metadata may change only in its dates and producer (and stay well-formed XMP)."""
    from pyhanko.pdf_utils.decode_limits import DecodePurpose
    from pyhanko.sign.diff_analysis import MetadataUpdateRule
    from pyhanko.sign.diff_analysis.policy_api import SuspiciousModification

    def properties(stream: Any) -> list[tuple[str, str]]:
        import xml.etree.ElementTree as ET

        data = stream.read_data(DecodePurpose.XMP_METADATA)
        if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
            raise SuspiciousModification("the XMP metadata declares a document type or entities")
        found = []
        for element in ET.fromstring(data).iter():
            for name, value in element.attrib.items():
                if name not in _XMP_PROPERTIES_UPDATED:
                    found.append((f"{element.tag}@{name}", value))
            if len(element) == 0 and element.tag not in _XMP_PROPERTIES_UPDATED:
                found.append((element.tag, (element.text or "").strip()))
        return sorted(found)

    class DatesOnlyXmpRule(MetadataUpdateRule):
        def apply(self, old: Any, new: Any) -> Any:
            updates = list(super().apply(old, new))
            old_ref = old.root.raw_get("/Metadata") if "/Metadata" in old.root else None
            new_ref = new.root.raw_get("/Metadata") if "/Metadata" in new.root else None
            if updates and old_ref is not None and new_ref is not None:
                if properties(old(old_ref.reference)) != properties(new(new_ref.reference)):
                    raise SuspiciousModification("the XMP metadata changed in more than its dates and producer")
            yield from updates

    return DatesOnlyXmpRule()  # type: ignore[no-untyped-call]
