"""Build small signed bundles for tests, without the measuring and rendering pipeline.

The dossier is a minimal schema-valid :class:`evidence.records.Dossier`; the
PDF is a one-page PDF/A-3a made by the renderer's PDF machinery, embedding
dossier.json (AFRelationship /Data) and printing its sha256 on page 1, as the
real renderer does. The hostile mutations are named after the attack.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.policy import evaluate, roll_up
from evidence.records import SCHEMA_VERSION, MeasurementSpec, SignerInfo
from signing import FileSigner, describe_signer, generate_development_identity, seal
from signing.bundle import DOSSIER_JSON, DOSSIER_PDF, DSSE_ENVELOPE
from signing.dsse import build_statement, sign_envelope
from tests.factories import make_dossier, make_policy, make_record


@functools.cache
def signer_for(name: str = "test signer") -> FileSigner:
    """A development signer, generated once per test session and name."""
    key, cert = generate_development_identity(f"interp-dossier {name}")
    return FileSigner(key, [cert])


def dossier_data(signer: FileSigner, *, n_records: int = 2) -> dict[str, Any]:
    """A small schema-valid dossier signed for ``signer``, as plain JSON data."""
    # every record is of the model ("toy"); the extra ones are of measurements no threshold judges
    records = [make_record("heads.inventory:toy")] + [
        make_record(f"heads.inventory_{i}:toy", measurement=MeasurementSpec(id=f"heads.inventory_{i}", version="1.0.0"))
        for i in range(1, n_records)
    ]
    policy = make_policy()
    verdicts = evaluate(policy, records, subject="toy")
    dossier = make_dossier(
        records=records,
        policy=policy,
        verdicts=verdicts,
        gate=roll_up(verdicts),
        signer=SignerInfo.model_validate(describe_signer(signer)),
        dossier_id="0f8fad5b-d9cb-469f-a165-70867728950e",
    )
    data: dict[str, Any] = dossier.model_dump(mode="json")
    return data


def dossier_with_calibration(signer: FileSigner) -> bytes:
    """The small dossier plus a calibration record whose one check honestly failed."""
    from evidence.records import CalibrationCheck, Criterion, Metric

    check = CalibrationCheck(
        measurement="heads.inventory", organism="induction#untrained", planted=False,
        metric="induction_score_max", value=0.4,
        criteria=[Criterion(comparator="<", threshold=0.2, rule="point")],
        criterion="induction_score_max: < 0.2", passed=False,
    )  # fmt: skip
    records = [
        make_record("heads.inventory:toy-0"),
        make_record(
            "calibration.organisms:toy",
            measurement=MeasurementSpec(id="calibration.organisms", version="1.0.0", params={}),
            metrics=[Metric(name="checks_passed", value=0, unit="checks")],
            checks=[check],
        ),
    ]
    policy = make_policy()
    verdicts = evaluate(policy, records, subject="toy")
    dossier = make_dossier(
        records=records, policy=policy, verdicts=verdicts, gate=roll_up(verdicts),
        signer=SignerInfo.model_validate(describe_signer(signer)),
        dossier_id="0f8fad5b-d9cb-469f-a165-70867728950e",
    )  # fmt: skip
    return dossier_bytes(dossier.model_dump(mode="json"))


def dossier_bytes(data: dict[str, Any]) -> bytes:
    """Canonical bytes of dossier JSON data (which need not be a valid model)."""
    return canonical_bytes(data)


def render_pdf(
    dossier_json: bytes,
    extra: dict[str, bytes] | None = None,
    *,
    printed_digest: str | None = None,
    embed_dossier: bool = True,
) -> bytes:
    """A one-page PDF/A-3a (PDF/UA-1) embedding ``dossier_json`` (and ``extra`` files) and printing its sha256.

    Written by the renderer's own PDF machinery (shipped fonts, tags, associated files), from a
    one-page document. ``printed_digest`` and ``embed_dossier=False`` make a dishonest PDF: another
    digest on the cover, or no dossier.json embedded.
    """
    from weasyprint import HTML, Attachment

    from evidence import render

    digest = printed_digest or sha256_hex(dossier_json)
    html = (
        '<html lang="en"><head><title>Test dossier</title></head><body>'
        "<h1>Interpretability evidence dossier</h1>"
        f"<p>dossier.json sha256</p><p style='font-family: monospace; font-size: 8pt'>{digest}</p>"
        "</body></html>"
    )
    # A list, not a mapping: a hostile PDF may embed two files of one name.
    files = [(DOSSIER_JSON, dossier_json)] if embed_dossier else []
    attachments = [Attachment(string=data, name=name, relationship="Data") for name, data in
                   [*files, *(extra or {}).items()]]  # fmt: skip
    with render._shipped_font_config() as fonts:
        pdf: bytes = HTML(string=html).write_pdf(pdf_variant=render.PDF_VARIANT, attachments=attachments,
                                                 finisher=render._finish, font_config=fonts)  # fmt: skip
    return pdf


def predicate_for(dossier_json: bytes) -> dict[str, Any]:
    """The predicate the run signs for this dossier (a placeholder when the bytes are not a valid dossier)."""
    from evidence.dossier import parse_dossier, statement_predicate
    from evidence.errors import EvidenceError

    try:
        return statement_predicate(parse_dossier(dossier_json))
    except EvidenceError:  # hostile bytes: a step before the predicate's check refuses them
        return {"dossier_sha256": sha256_hex(dossier_json), "schema_version": SCHEMA_VERSION}


def make_bundle(signer: FileSigner, dossier_json: bytes) -> dict[str, bytes]:
    """The four files of a bundle sealed by ``signer``."""
    return seal(dossier_json, render_pdf(dossier_json), signer, predicate_for(dossier_json))


def reseal_envelope(files: dict[str, bytes], signer: FileSigner) -> dict[str, bytes]:
    """``files`` with a fresh, correctly signed envelope over their current bytes."""
    statement = build_statement(
        {DOSSIER_JSON: files[DOSSIER_JSON], DOSSIER_PDF: files[DOSSIER_PDF]},
        predicate_for(files[DOSSIER_JSON]),
    )
    return {**files, DSSE_ENVELOPE: sign_envelope(statement, signer)}


def write_files(files: dict[str, bytes], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return directory


# --- hostile PDF mutations, named after the attack ------------------------------------------


def pdf_byte_flipped_in_signed_range(pdf: bytes) -> bytes:
    """One bit flipped inside the first content stream (covered by the signature)."""
    at = pdf.index(b"stream\n") + 30
    flipped = bytearray(pdf)
    flipped[at] ^= 0x01
    return bytes(flipped)


def pdf_incremental_update_title(pdf: bytes) -> bytes:
    """An incremental update after the signature that only changes the Info title."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    info = writer.trailer.raw_get("/Info").get_object()
    info["/Title"] = generic.TextStringObject("Amended dossier")
    writer.update_container(info)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_xmp_title_in_update(pdf: bytes, title: str = "Amended dossier") -> bytes:
    """An incremental update after the signature that rewrites the dc:title of the XMP metadata only."""
    import re as _re

    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    ref = writer.root.raw_get("/Metadata")
    stream = ref.get_object()
    xml = stream.data
    pattern = rb"(<dc:title[^>]*>.*?<rdf:li[^>]*>)(.*?)(</rdf:li>)"
    changed = _re.sub(pattern, rb"\g<1>" + title.encode() + rb"\g<3>", xml, count=1, flags=_re.S)
    assert changed != xml, "the XMP has no dc:title to rewrite"
    replacement = generic.StreamObject({generic.NameObject("/Type"): generic.NameObject("/Metadata"),
                                        generic.NameObject("/Subtype"): generic.NameObject("/XML")},
                                       stream_data=changed)  # fmt: skip
    writer.root["/Metadata"] = writer.add_object(replacement)
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_embedded_file_swapped_in_update(pdf: bytes, replacement: bytes) -> bytes:
    """An incremental update after the signature replacing the embedded dossier.json."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    names = writer.root["/Names"]["/EmbeddedFiles"]["/Names"]
    filespec = names[names.index(DOSSIER_JSON) + 1].get_object()
    ref = filespec["/EF"].raw_get("/F")
    stream = ref.get_object()
    stream.strip_filters()
    stream._data = replacement  # noqa: SLF001 - pyHanko has no public setter for stream data
    stream._encoded_data = None  # noqa: SLF001
    writer.mark_update(ref)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_appended_junk(pdf: bytes) -> bytes:
    """Bytes appended after the final %%EOF."""
    return pdf + b"\n% appended after signing\n"


def _literal_bytes(data: bytes) -> Any:
    """A PDF string written as a literal ``( ... )`` of raw bytes: fewer bytes on disk than hex."""
    from pyhanko.pdf_utils import generic

    class LiteralBytes(generic.ByteStringObject):
        def write_to_stream(self, stream: Any, handler: Any = None, container_ref: Any = None) -> None:
            raw = bytes(self)
            escaped = raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
            stream.write(b"(" + escaped.replace(b"\r", b"\\r") + b")")

    return LiteralBytes(data)


def pdf_coverage_spoof(pdf: bytes, replacement: bytes) -> bytes:
    """The embedded dossier.json swapped in an update, then the signature dictionary redefined so that
    pyHanko's size-only coverage test reads "entire file".

    A second update redefines the signature dictionary with the same ByteRange
    (the original signed bytes, so the digest still matches) and ``/Contents`` as
    a literal string: the original CMS padded with NUL bytes to the length L at
    which file size == len1 + len2 + 2L + 2. Written raw, a literal costs about
    one byte per byte, a hex string two, which is what lets the equation hold.
    """
    from asn1crypto import cms
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader

    swapped = pdf_embedded_file_swapped_in_update(pdf, replacement)
    embedded = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
    der = cms.ContentInfo.load(embedded.pkcs7_content).dump()
    _, len1, _start2, len2 = embedded.byte_range

    def written(length: int, filler: int) -> bytes:
        writer = IncrementalPdfFileWriter(io.BytesIO(swapped))
        ref = writer.root["/AcroForm"]["/Fields"][0].get_object().raw_get("/V")
        sig = ref.get_object()
        sig["/Contents"] = _literal_bytes(der + b"\0" * (length - len(der)))
        # an unknown key pyHanko ignores, to adjust the file's size without changing /Contents
        sig["/Ab"] = _literal_bytes(b"x" * filler)
        writer.mark_update(ref)
        out = io.BytesIO()
        writer.write(out)
        return out.getvalue()

    # Fix /Contents at a length L whose target size the update can reach, then search the filler
    # for the exact size (a compressed cross-reference stream makes the size not quite linear in it:
    # when its offsets gain a byte the size can jump over the target, and the next L is tried).
    base = len(written(len(der), 0))
    for extra in range(64, 80):
        length = base - len1 - len2 + extra
        target = len1 + len2 + 2 * length + 2
        guess = target - len(written(length, 0))
        for filler in sorted(range(max(0, guess - 64), guess + 65), key=lambda f: abs(f - guess)):
            data = written(length, filler)
            if len(data) == target:
                return data
    raise AssertionError("the coverage spoof found no filler length that makes the sizes match")


def pdf_gap_edited(pdf: bytes) -> bytes:
    """An extra key written into the unsigned gap, in place of the signature value's zero padding."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    _, len1, start2, _ = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0].byte_range
    gap = pdf[len1:start2]
    assert gap.endswith(b"0000000000>")
    edited = gap[:-11] + b"00>/Ab<000>"
    return pdf[:len1] + edited + pdf[start2:]


def pdf_second_signature_in_update(pdf: bytes, signer: FileSigner) -> bytes:
    """A second PAdES signature, in a new field, added by an incremental update after the first."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    meta = signers.PdfSignatureMetadata(
        field_name="SecondSignature", subfilter=fields.SigSeedSubFilter.PADES, md_algorithm="sha256"
    )
    out = signers.PdfSigner(meta, signer.pyhanko_signer()).sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)))
    return bytes(out.getvalue())


def pdf_overlay_in_update(pdf: bytes, text: str = "APPROVED FOR DEPLOYMENT") -> bytes:
    """An incremental update after the signature that draws ``text`` over page 1 (a new content stream)."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    font = generic.DictionaryObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/Font"),
            generic.NameObject("/Subtype"): generic.NameObject("/Type1"),
            generic.NameObject("/BaseFont"): generic.NameObject("/Helvetica"),
        }
    )
    resources = generic.DictionaryObject(
        {generic.NameObject("/Font"): generic.DictionaryObject({generic.NameObject("/FOverlay"): font})}
    )
    content = f"BT /FOverlay 36 Tf 60 400 Td ({text}) Tj ET".encode("ascii")
    stream_ref = writer.add_object(generic.StreamObject(stream_data=content))
    writer.add_stream_to_page(0, stream_ref, resources=resources)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_truncated(pdf: bytes, keep: int) -> bytes:
    """The first ``keep`` bytes of the PDF (a negative ``keep`` drops that many from the end)."""
    return pdf[:keep]
