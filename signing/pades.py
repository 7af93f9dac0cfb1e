"""PAdES signatures on the dossier PDF (baseline B-B, or B-T with a timestamp authority), through pyHanko.

The signature is added as an incremental update, so the rendered PDF/A-3b
bytes stay intact underneath it; with an RSA key the file keeps declaring
PDF 1.7.
"""

from __future__ import annotations

import io

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError

from signing._aio import run_sync
from signing.errors import SignatureError, SigningError
from signing.keys import Signer

__all__ = ["SIGNATURE_FIELD", "sign_pdf"]

#: Name of the (invisible) signature field the PDF carries.
SIGNATURE_FIELD = "InterpDossierSignature"


def _pdf_version(pdf: bytes) -> tuple[int, int]:
    version: tuple[int, int] = PdfFileReader(io.BytesIO(pdf)).input_version
    return version


def sign_pdf(pdf: bytes, signer: Signer, *, timestamper: TimeStamper | None = None) -> bytes:
    """``pdf`` with a PAdES signature by ``signer`` appended as an incremental update.

    Baseline B-B; with ``timestamper`` (a timestamp authority), B-T: the signature
    carries the authority's timestamp of its value.
    """
    meta = signers.PdfSignatureMetadata(
        field_name=SIGNATURE_FIELD,
        subfilter=fields.SigSeedSubFilter.PADES,
        md_algorithm="sha256",
    )
    try:
        before = _pdf_version(pdf)
        writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
        pdf_signer = signers.PdfSigner(meta, signer.pyhanko_signer(), timestamper=timestamper)

        async def _sign() -> bytes:
            out = await pdf_signer.async_sign_pdf(writer)
            return bytes(out.getvalue())

        signed = run_sync(_sign)
        after = _pdf_version(signed)
    except TimestampRequestError as exc:
        raise SigningError(
            f"the timestamp authority did not issue a timestamp: {exc}",
            hint="check the --tsa URL and that the authority is reachable",
        ) from None
    except Exception as exc:  # pyHanko raises many unrelated types; report them as one
        raise SignatureError(
            f"cannot sign the PDF: {exc}",
            hint="check that the PDF was rendered by interp-dossier and the key is an RSA key",
        ) from exc
    if after != before:
        raise SignatureError(
            f"signing changed the PDF version from {before[0]}.{before[1]} "
            f"to {after[0]}.{after[1]}, which breaks PDF/A-3",
            hint="sign with an RSA key",
        )
    return signed
