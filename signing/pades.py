"""PAdES signatures on the dossier PDF, at the four baseline levels of ETSI EN 319 142-1, through pyHanko.

* **B-B**: the signature alone.
* **B-T**: with a timestamp authority's timestamp of the signature value, which
  proves the signature existed then.
* **B-LT**: B-T, and the validation data a verifier needs later (the signer's and
  the authority's certificate chains, and CRLs / OCSP responses fetched from the
  places the certificates name) embedded in the document security store (DSS).
* **B-LTA**: B-LT, and a document timestamp over the whole file, so the
  validation data is itself dated.

Every addition is an incremental update, so the rendered PDF/A-3a bytes stay
intact underneath it (the signature's field goes into the structure tree, as
PDF/UA-1 asks); with an RSA or an ECDSA key the file keeps declaring PDF 1.7 at every
level.
"""

from __future__ import annotations

import io
from typing import Any

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from signing._aio import run_sync
from signing.errors import SignatureError, SigningError
from signing.keys import Signer

__all__ = ["LEVELS", "SIGNATURE_FIELD", "TIMESTAMP_FIELD", "check_level", "sign_pdf"]

#: Name of the (invisible) signature field the PDF carries.
SIGNATURE_FIELD = "InterpDossierSignature"
#: Name of the document timestamp field a B-LTA file carries.
TIMESTAMP_FIELD = "InterpDossierArchiveTimestamp"
#: The PAdES baseline levels, weakest first.
LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")


def check_level(level: str | None, timestamped: bool) -> str:
    """The PAdES level to sign at: ``level`` if it is consistent with having a timestamp authority.

    Without ``level``, B-T with an authority and B-B without one.
    """
    if level is None:
        return "B-T" if timestamped else "B-B"
    if level not in LEVELS:
        raise SigningError(f"there is no PAdES level {level!r}", hint=f"choose one of {', '.join(LEVELS)}")
    if level != "B-B" and not timestamped:
        raise SigningError(
            f"PAdES {level} needs a timestamp authority", hint="pass its URL with --tsa, or sign at --level B-B"
        )
    if level == "B-B" and timestamped:
        raise SigningError(
            "PAdES B-B has no timestamp, but --tsa names an authority", hint="drop --tsa, or sign at --level B-T"
        )
    return level


class _Pdf17Signer(signers.PdfSigner):
    """pyHanko's PAdES signer, declaring only the ESIC extension (on PDF 1.7) whatever the key.

    pyHanko registers ISO 32002 for an ECDSA signature, which raises the file to
    PDF 2.0 and breaks PDF/A-3. ECDSA in a CAdES signature needs no PDF 2.0
    feature (ETSI EN 319 142-1 allows it in PAdES on PDF 1.7), so the file keeps
    the version it was rendered with.
    """

    def register_extensions(self, pdf_out: Any, *, md_algorithm: str) -> None:
        pdf_out.ensure_output_version(version=(1, 7))
        if pdf_out.output_version < (2, 0):
            from pyhanko.sign.signers import constants

            pdf_out.register_extension(constants.ESIC_EXTENSION_1)


def _revocation_context(signer: Signer, authority: list[Any]) -> Any:
    """Where a B-LT signer finds its validation data: the chain it carries, CRLs and OCSP fetched as they name.

    The chain's last certificate serves as the root of the paths to collect data
    for (it is no trust decision: the verifier makes that with its own anchors).
    Hard-fail: a certificate that names a CRL or OCSP responder which cannot be
    reached or does not answer makes signing fail, rather than give a B-LT file
    without that certificate's revocation data.
    """
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from pyhanko_certvalidator import ValidationContext

    chain = [asn1_x509.Certificate.load(c.public_bytes(Encoding.DER)) for c in signer.chain]
    roots = [chain[-1], *_tops(authority)]
    return ValidationContext(
        trust_roots=roots, other_certs=[*chain[:-1], *authority], allow_fetching=True, revocation_mode="hard-fail"
    )


def _tops(certs: list[Any]) -> list[Any]:
    """The certificates of a chain that nothing else in it issued (its root, or its highest certificate)."""
    subjects = {c.subject.dump() for c in certs}
    return [c for c in certs if c.issuer.dump() not in subjects or c.issuer == c.subject]


def _authority_certificates(timestamper: TimeStamper) -> list[Any]:
    """The certificates the timestamp authority sends with its tokens (its chain, if it sends it)."""

    async def _dummy() -> Any:
        return await timestamper.async_dummy_response("sha256")

    token = run_sync(_dummy)
    return [c.chosen for c in token["content"]["certificates"] or []]


#: How a reader of the tagged PDF hears each field (its ``/TU``, and its ``/Form`` element's ``/Alt``).
_FIELD_DESCRIPTIONS = {
    SIGNATURE_FIELD: "Digital signature (PAdES) of this dossier; verify it with interp-dossier verify",
    TIMESTAMP_FIELD: "Document timestamp (PAdES B-LTA) over this dossier and its validation data",
}


def _add_tagged_fields(writer: IncrementalPdfFileWriter, names: list[str]) -> None:
    """Create the (invisible) signature fields ``names`` on page 1, each inside the structure tree.

    PDF/UA-1 admits no annotation outside the structure tree: each field's widget gets a
    ``/StructParent`` and a ``/Form`` structure element that points back at it, under the document's
    top element, and the parent tree maps one to the other. The fields are made in the same
    incremental update as the signature, so the signature covers them; pyHanko then fills them.
    An untagged PDF gets the fields alone.
    """
    from pyhanko.pdf_utils import generic as pdf_generic

    generic: Any = pdf_generic  # pyHanko's object model is untyped
    out: Any = writer
    for name in names:
        fields.append_signature_field(writer, fields.SigFieldSpec(sig_field_name=name, on_page=0))
    struct_root_ref = writer.root.raw_get("/StructTreeRoot") if "/StructTreeRoot" in writer.root else None
    if struct_root_ref is None:
        return
    struct_root = struct_root_ref.get_object()
    top_ref = struct_root.raw_get("/K")
    if isinstance(top_ref, generic.ArrayObject):
        top_ref = top_ref[0]
    top = top_ref.get_object()
    kids = top.get("/K")
    if not isinstance(kids, generic.ArrayObject):
        kids = generic.ArrayObject([] if kids is None else [top.raw_get("/K")])
        top[generic.NameObject("/K")] = kids
    parent_tree = struct_root["/ParentTree"]
    if "/Nums" not in parent_tree:
        raise SignatureError(
            "the PDF's structure tree has a parent tree this signer cannot extend",
            hint="sign a PDF rendered by interp-dossier",
        )
    nums = parent_tree["/Nums"]
    used = [int(nums[i]) for i in range(0, len(nums), 2)]
    key = max([*used, int(struct_root.get("/ParentTreeNextKey", 0)) - 1]) + 1
    page_ref = out.find_page_for_modification(0)[0]
    by_name = {str(f.get_object().get("/T")): f for f in writer.root["/AcroForm"]["/Fields"]}
    for name in names:
        widget_ref = by_name[name]
        widget = widget_ref.get_object()
        description = _FIELD_DESCRIPTIONS[name]
        widget[generic.NameObject("/TU")] = generic.TextStringObject(description)
        widget[generic.NameObject("/StructParent")] = generic.NumberObject(key)
        form = generic.DictionaryObject({
            generic.NameObject("/Type"): generic.NameObject("/StructElem"),
            generic.NameObject("/S"): generic.NameObject("/Form"),
            generic.NameObject("/P"): top_ref,
            generic.NameObject("/Pg"): page_ref,
            generic.NameObject("/Alt"): generic.TextStringObject(description),
            generic.NameObject("/K"): generic.DictionaryObject({
                generic.NameObject("/Type"): generic.NameObject("/OBJR"),
                generic.NameObject("/Obj"): widget_ref,
                generic.NameObject("/Pg"): page_ref,
            }),
        })  # fmt: skip
        form_ref = writer.add_object(form)
        kids.append(form_ref)
        nums.extend([generic.NumberObject(key), form_ref])
        writer.update_container(widget)
        key += 1
    struct_root[generic.NameObject("/ParentTreeNextKey")] = generic.NumberObject(key)
    # Whichever of these is an indirect object of its own (or holds the others) goes into the update.
    for changed in (kids, top, nums, parent_tree, struct_root):
        writer.update_container(changed)


def _align_producer(writer: IncrementalPdfFileWriter) -> None:
    """Name pyHanko alone as the producer in the document information, as its XMP rewrite does.

    pyHanko rewrites the XMP's ``pdf:Producer`` as itself but appends itself to the information
    dictionary's ``/Producer``; PDF/A wants the two to say the same.
    """
    from pyhanko.pdf_utils import generic as pdf_generic
    from pyhanko.pdf_utils.metadata.model import VENDOR

    generic: Any = pdf_generic
    out: Any = writer
    info_ref = out.trailer.raw_get("/Info") if "/Info" in out.trailer else None
    if info_ref is None:
        return
    info = info_ref.get_object()
    info[generic.NameObject("/Producer")] = generic.TextStringObject(VENDOR)
    out.update_container(info)


def _pdf_version(pdf: bytes) -> tuple[int, int]:
    version: tuple[int, int] = PdfFileReader(io.BytesIO(pdf)).input_version
    return version


def sign_pdf(pdf: bytes, signer: Signer, *, timestamper: TimeStamper | None = None, level: str | None = None) -> bytes:
    """``pdf`` with a PAdES signature by ``signer`` appended as an incremental update.

    ``level`` is one of :data:`LEVELS` (see :func:`check_level` for the default); all
    but B-B need ``timestamper`` (a timestamp authority).
    """
    level = check_level(level, timestamper is not None)
    long_term = level in ("B-LT", "B-LTA")
    try:
        meta = signers.PdfSignatureMetadata(
            field_name=SIGNATURE_FIELD,
            subfilter=fields.SigSeedSubFilter.PADES,
            md_algorithm="sha256",
            embed_validation_info=long_term,
            validation_context=_revocation_context(signer, _authority_certificates(timestamper))
            if long_term and timestamper is not None
            else None,
            use_pades_lta=level == "B-LTA",
            timestamp_field_name=TIMESTAMP_FIELD if level == "B-LTA" else None,
        )
        before = _pdf_version(pdf)
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        _add_tagged_fields(writer, [SIGNATURE_FIELD, *([TIMESTAMP_FIELD] if level == "B-LTA" else [])])
        _align_producer(writer)
        pdf_signer = _Pdf17Signer(meta, signer.pyhanko_signer(), timestamper=timestamper)

        async def _sign() -> bytes:
            try:
                out = await pdf_signer.async_sign_pdf(writer)
                return bytes(out.getvalue())
            finally:
                if meta.validation_context is not None:  # its HTTP session for CRLs and OCSP
                    await meta.validation_context.aclose()  # type: ignore[no-untyped-call]

        signed = run_sync(_sign)
        after = _pdf_version(signed)
    except TimestampRequestError as exc:
        raise SigningError(
            f"the timestamp authority did not issue a timestamp: {exc}",
            hint="check the --tsa URL and that the authority is reachable",
        ) from None
    except Exception as exc:  # pyHanko raises many unrelated types; report them as one
        if long_term and _is_revocation_problem(exc):
            raise SigningError(
                f"cannot collect the validation data PAdES {level} embeds: {type(exc).__name__}: {exc}",
                hint="the CRL and OCSP places the signer's certificates name must be reachable when signing; "
                "check them, or sign at --level B-T",
            ) from None
        raise SignatureError(
            f"cannot sign the PDF: {exc}",
            hint="check that the PDF was rendered by interp-dossier and the key is an RSA or ECDSA (P-256, P-384) key",
        ) from exc
    if after != before:
        raise SignatureError(
            f"signing changed the PDF version from {before[0]}.{before[1]} "
            f"to {after[0]}.{after[1]}, which breaks PDF/A-3",
            hint="sign with an RSA key, or ECDSA on P-256 or P-384",
        )
    return signed


def _is_revocation_problem(exc: BaseException) -> bool:
    """Whether ``exc`` comes from collecting validation data (path building, CRL or OCSP fetching)."""
    from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError

    return isinstance(exc, (PathBuildingError, PathValidationError)) or "revocation" in str(exc).lower()
