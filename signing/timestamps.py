"""RFC 3161 timestamps: when a signature existed, attested by a timestamp authority (TSA).

A bundle signed with ``--tsa URL`` carries two timestamps from that authority:
the PAdES signature's own (a signature-time-stamp attribute: PAdES baseline
B-T) and one over the DSSE signature, kept beside the envelope as
``dossier.dsse.tst`` (the DER TimeStampToken; its message imprint is the
sha256 of the envelope's signature bytes). Verification step 8 checks the
latter: the token is a valid signature by a TSA that chains to a trust anchor
the auditor supplied, it names the envelope's signature, and it was made while
the signer's certificate was valid.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from asn1crypto import cms, tsp
from asn1crypto import x509 as asn1_x509
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko_certvalidator import ValidationContext

from signing._aio import run_sync
from signing.errors import SigningError

__all__ = ["TIMESTAMP_FILE", "TimestampCheck", "check_signature_timestamp", "http_timestamper", "timestamp_signature"]

#: The DSSE signature's RFC 3161 timestamp token (DER), beside the envelope in a bundle.
TIMESTAMP_FILE = "dossier.dsse.tst"


def http_timestamper(url: str) -> TimeStamper:
    """A client of the timestamp authority at ``url`` (RFC 3161 over HTTP)."""
    from pyhanko.sign.timestamps import HTTPTimeStamper

    if not url.startswith(("http://", "https://")):
        raise SigningError(f"--tsa {url!r} is not an http(s) URL", hint="pass the timestamp authority's URL")
    return HTTPTimeStamper(url, timeout=30)


def timestamp_signature(signature: bytes, timestamper: TimeStamper) -> bytes:
    """The DER TimeStampToken a TSA issues over sha256(``signature``)."""

    async def _stamp() -> Any:
        return await timestamper.async_timestamp(hashlib.sha256(signature).digest(), "sha256")

    try:
        token = run_sync(_stamp)
    except Exception as exc:  # network, HTTP and TSA errors all mean: no timestamp
        raise SigningError(
            f"the timestamp authority did not issue a timestamp: {type(exc).__name__}: {exc}",
            hint="check the --tsa URL and that the authority is reachable",
        ) from None
    data: bytes = token.dump()
    return data


class TimestampCheck:
    """What a valid timestamp token says: when, and by whom."""

    def __init__(self, time: dt.datetime, authority: str) -> None:
        self.time = time
        self.authority = authority


def check_signature_timestamp(token: bytes, signature: bytes, context: ValidationContext) -> TimestampCheck:
    """Check that ``token`` timestamps ``signature`` and comes from a TSA trusted in ``context``.

    ``context`` holds the auditor's anchors, the validation data at hand and the
    time the authority's certificate is judged at (see :mod:`signing.longterm`).
    :class:`ValueError` if the token does not hold.
    """
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data

    try:
        info = cms.ContentInfo.load(token)
        if info["content_type"].native != "signed_data":
            raise ValueError("not a CMS SignedData")
        signed_data = info["content"]
        tst_info = signed_data["encap_content_info"]["content"].parsed
        if not isinstance(tst_info, tsp.TSTInfo):
            raise ValueError("its content is not a TSTInfo")
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"the timestamp token cannot be read ({exc})") from None

    async def _validate() -> dict[str, Any]:
        try:
            result: dict[str, Any] = await validate_tst_signed_data(
                signed_data, context, lambda algorithm: hashlib.new(algorithm, signature).digest()
            )
            return result
        finally:
            await context.aclose()  # type: ignore[no-untyped-call]

    try:
        status = run_sync(_validate)
    except Exception as exc:  # a hostile token may break the CMS code: a failure, not a crash
        raise ValueError(f"the timestamp token's signature cannot be validated ({type(exc).__name__})") from None
    if not status.get("intact"):
        raise ValueError("the timestamp token does not name this signature (its message imprint differs)")
    if not status.get("valid"):
        raise ValueError("the timestamp token's signature is not valid")
    signer = status.get("signing_cert")
    if signer is not None and not _is_timestamp_authority(signer):
        raise ValueError(
            f"the timestamp token is signed by {signer.subject.human_friendly}, whose certificate lacks the "
            "timeStamping extended key usage: it is not a timestamp authority"
        )
    if status.get("revocation_details") is not None:
        revoked = status["revocation_details"].revocation_date
        raise ValueError(f"the timestamp authority's certificate chain was revoked on {revoked:%Y-%m-%d %H:%M:%S} UTC")
    if status.get("trust_problem_indic") is not None or status.get("validation_path") is None:
        from signing.longterm import why_untrusted

        raise ValueError(
            "the timestamp authority's certificate " + why_untrusted(status.get("trust_problem_indic"), context.moment)
        )
    authority = signer.subject.human_friendly if signer is not None else "an unnamed authority"
    return TimestampCheck(status["timestamp"], authority)


def _is_timestamp_authority(cert: asn1_x509.Certificate) -> bool:
    """True if ``cert`` has the timeStamping extended key usage (RFC 3161 requires it of a TSA)."""
    usage = cert.extended_key_usage_value
    return usage is not None and "time_stamping" in usage.native
