"""Seal and check dossier bundles: keys, PAdES, DSSE and the auditor's verification.

This package never imports torch, TransformerLens, WeasyPrint or Jinja2: an
auditor verifies a bundle on a machine that has none of them.
"""

from __future__ import annotations

from signing.bundle import (
    BUNDLE_FILES,
    DOSSIER_JSON,
    DOSSIER_PDF,
    DSSE_ENVELOPE,
    SIGNER_PEM,
    seal,
    write_bundle_atomically,
)
from signing.dsse import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    build_statement,
    pae,
    sign_envelope,
)
from signing.errors import (
    BundleError,
    KeyLoadError,
    SignatureError,
    SigningError,
    TrustError,
    VerificationError,
)
from signing.keys import (
    DEVELOPMENT_ORGANIZATION,
    PASSPHRASE_ENV,
    FileSigner,
    Signer,
    certificate_chain_pem,
    describe_signer,
    development_key_path,
    ensure_development_signer,
    generate_development_identity,
    is_development_certificate,
    keygen,
    load_signer,
    passphrase_from_env_or_prompt,
    write_pkcs12,
)
from signing.pades import sign_pdf
from signing.verify import StepResult, VerificationReport, verify_bundle, verify_pdf

__all__ = [
    "BUNDLE_FILES",
    "BundleError",
    "DEVELOPMENT_ORGANIZATION",
    "DOSSIER_JSON",
    "DOSSIER_PDF",
    "DSSE_ENVELOPE",
    "FileSigner",
    "KeyLoadError",
    "PASSPHRASE_ENV",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "SIGNER_PEM",
    "STATEMENT_TYPE",
    "SignatureError",
    "Signer",
    "SigningError",
    "StepResult",
    "TrustError",
    "VerificationError",
    "VerificationReport",
    "build_statement",
    "certificate_chain_pem",
    "describe_signer",
    "development_key_path",
    "ensure_development_signer",
    "generate_development_identity",
    "is_development_certificate",
    "keygen",
    "load_signer",
    "pae",
    "passphrase_from_env_or_prompt",
    "seal",
    "sign_envelope",
    "sign_pdf",
    "verify_bundle",
    "verify_pdf",
    "write_bundle_atomically",
    "write_pkcs12",
]
