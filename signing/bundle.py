"""Seal a dossier into the four-file bundle, and write a bundle without leaving half of one.

::

    OUT/dossier.json        canonical JSON (the caller's bytes, unchanged)
    OUT/dossier.pdf         the rendered PDF with a PAdES signature
    OUT/dossier.dsse.json   DSSE envelope over an in-toto statement naming every other data file
    OUT/signer.pem          the signer's certificate chain (public material only)
    OUT/dossier.dsse.tst    with --tsa: an RFC 3161 timestamp token over the DSSE signature
    OUT/<export>            optional extra data files (e.g. dossier.cdx.json), also statement subjects
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pyhanko.sign.timestamps.api import TimeStamper

from evidence.files import BUNDLE_MARKER, check_output_dir, write_directory_atomically
from signing.dsse import PREDICATE_TYPE, build_statement, parse_envelope, sign_envelope
from signing.errors import BundleError
from signing.keys import Signer, certificate_chain_pem
from signing.pades import sign_pdf
from signing.timestamps import TIMESTAMP_FILE, timestamp_signature

__all__ = [
    "BUNDLE_FILES",
    "DOSSIER_JSON",
    "DOSSIER_PDF",
    "DSSE_ENVELOPE",
    "MAX_FILE_BYTES",
    "OWN_FILES",
    "SIGNER_PEM",
    "TIMESTAMP_FILE",
    "UNSIGNED_FILES",
    "seal",
    "write_bundle_atomically",
]

DOSSIER_JSON = BUNDLE_MARKER
DOSSIER_PDF = "dossier.pdf"
DSSE_ENVELOPE = "dossier.dsse.json"
SIGNER_PEM = "signer.pem"
#: The files every signed bundle has, in the order they are written.
BUNDLE_FILES = (DOSSIER_JSON, DOSSIER_PDF, DSSE_ENVELOPE, SIGNER_PEM)
#: Files of a bundle that are not statement subjects (the signature, the public chain and,
#: when the bundle was timestamped, the signature's timestamp token).
UNSIGNED_FILES = (DSSE_ENVELOPE, SIGNER_PEM, TIMESTAMP_FILE)
#: Every file a bundle of this release may hold (the optional exports included): a previous bundle holding
#: only these holds nothing of the user's, and may be replaced.
OWN_FILES = frozenset(
    {*BUNDLE_FILES, TIMESTAMP_FILE, "dossier.cdx.json", "model-index.yaml", "validation-report.json"}
)
#: The largest bundle file verification reads (64 MiB, far above any real dossier, PDF or export);
#: a larger file is refused from its size, without being read.
MAX_FILE_BYTES = 64 * 1024 * 1024


def seal(
    dossier_json: bytes,
    pdf: bytes,
    signer: Signer,
    predicate: Mapping[str, Any],
    extra: Mapping[str, bytes] | None = None,
    *,
    timestamper: TimeStamper | None = None,
    level: str | None = None,
    predicate_type: str = PREDICATE_TYPE,
) -> dict[str, bytes]:
    """The bundle's files (name -> bytes): the PDF PAdES-signed, every data file attested by DSSE.

    ``extra`` files (exports such as ``dossier.cdx.json``) join the bundle and the statement's
    subjects; they cannot take the name of a core file. With ``timestamper`` (a timestamp
    authority) the PDF signature is PAdES B-T and the DSSE signature gets a timestamp token,
    written as ``dossier.dsse.tst`` (checked by verification step 8). ``level``: the PAdES
    level (:data:`signing.pades.LEVELS`; B-LT and B-LTA embed validation data). ``predicate_type``:
    the statement's (a sweep's trend dossier has its own, :data:`signing.dsse.TREND_PREDICATE_TYPE`).
    """
    extra = dict(extra or {})
    clash = sorted(set(extra) & set(BUNDLE_FILES))
    if clash:
        raise BundleError(f"extra bundle files may not be named {', '.join(clash)}")
    signed_pdf = sign_pdf(pdf, signer, timestamper=timestamper, level=level)
    subjects = {DOSSIER_JSON: dossier_json, DOSSIER_PDF: signed_pdf, **extra}
    statement = build_statement(subjects, predicate, predicate_type)
    envelope = sign_envelope(statement, signer)
    files = {**subjects, DSSE_ENVELOPE: envelope, SIGNER_PEM: certificate_chain_pem(signer)}
    if timestamper is not None:
        files[TIMESTAMP_FILE] = timestamp_signature(parse_envelope(envelope).signature, timestamper)
    return files


def write_bundle_atomically(files: Mapping[str, bytes], out_dir: Path, *, replace: bool = False) -> Path | None:
    """Write ``files`` into ``out_dir`` all at once, or not at all.

    The files go into a temporary directory next to ``out_dir`` which is then
    renamed into place. An existing ``out_dir`` is replaced only if it is empty
    or, with ``replace``, holds a previous bundle (a ``dossier.json``). On any
    failure nothing is left behind and a previous bundle is kept. A previous
    bundle that held other files than a bundle's is kept aside; its new path is
    returned (see :func:`evidence.files.write_directory_atomically`).
    """
    out_dir = Path(out_dir)
    for name in files:
        if not name or name in (".", "..") or "/" in name or os.sep in name:
            raise BundleError(f"invalid bundle file name {name!r}")
    check_output_dir(out_dir, error=BundleError, replace=replace)
    own = {*files, *OWN_FILES}
    try:
        return write_directory_atomically(files, out_dir, replaceable=own)
    except OSError as exc:
        raise BundleError(
            f"cannot write the bundle to {out_dir}: {exc.strerror or exc}",
            hint="check the directory's permissions and free space",
        ) from exc
