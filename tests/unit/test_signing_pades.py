"""PAdES signing of the dossier PDF."""

from __future__ import annotations

import asyncio
import io

import pikepdf
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.reader import PdfFileReader

from signing import SignatureError, sign_pdf
from signing.pades import SIGNATURE_FIELD
from tests.helpers_bundle import dossier_bytes, dossier_data, render_pdf, signer_for


@pytest.fixture(scope="module")
def unsigned() -> bytes:
    return render_pdf(dossier_bytes(dossier_data(signer_for())))


@pytest.fixture(scope="module")
def signed(unsigned) -> bytes:
    return sign_pdf(unsigned, signer_for())


def test_signed_pdf_stays_version_1_7(signed):
    assert signed.startswith(b"%PDF-1.7")
    with pikepdf.open(io.BytesIO(signed)) as pdf:
        assert pdf.pdf_version == "1.7"
        assert str(pdf.Root.get("/Version", "/1.7")) == "/1.7"
        # pyHanko declares the ESIC (PAdES) extension on top of 1.7, never a 2.0 base.
        extensions = pdf.Root.get("/Extensions", {})
        assert all(str(ext.BaseVersion) == "/1.7" for ext in extensions.values())


def test_signature_is_an_incremental_update(unsigned, signed):
    assert signed.startswith(unsigned)


def test_one_pades_signature_in_the_named_field(signed):
    signatures = PdfFileReader(io.BytesIO(signed)).embedded_signatures
    assert len(signatures) == 1
    assert signatures[0].field_name == SIGNATURE_FIELD
    assert signatures[0].sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    expected = signer_for().certificate.public_bytes(Encoding.DER)
    assert signatures[0].signer_cert.dump() == expected


def test_signing_inside_a_running_event_loop(unsigned):
    async def inside() -> bytes:
        return sign_pdf(unsigned, signer_for())

    assert asyncio.run(inside()).startswith(unsigned)


def test_signing_garbage_is_a_signature_error():
    with pytest.raises(SignatureError, match="cannot sign the PDF") as info:
        sign_pdf(b"this is not a PDF", signer_for())
    assert info.value.exit_code == 1
