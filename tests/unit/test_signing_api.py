"""The public surface of the `signing` package and its error tree."""

from __future__ import annotations

import pytest

import signing
from signing import errors

EXPECTED = [
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


def test_public_api_is_pinned_and_sorted():
    assert signing.__all__ == EXPECTED == sorted(EXPECTED)
    for name in EXPECTED:
        assert hasattr(signing, name), name


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.SigningError, 2),
        (errors.KeyLoadError, 2),
        (errors.SignatureError, 1),
        (errors.BundleError, 2),
        (errors.TrustError, 2),
        (errors.VerificationError, 1),
    ],
)
def test_error_tree_and_exit_codes(cls, code):
    assert issubclass(cls, errors.SigningError)
    err = cls("something failed", hint="do this")
    assert err.exit_code == code
    assert str(err) == "something failed"
    assert err.one_line() == "something failed (do this)"
    assert cls("no hint").one_line() == "no hint"
