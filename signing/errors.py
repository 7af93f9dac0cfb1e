"""Exceptions raised while sealing a bundle or checking one.

Every error is written for a person: ``str(err)`` is one sentence saying what
went wrong, and ``err.hint`` says what to do about it. The CLI turns any
:class:`SigningError` into one line and an exit code.

A verification that runs to the end and finds a problem does *not* raise: it
returns a :class:`signing.verify.VerificationReport` whose bottom line is
false. These exceptions are for material that cannot be evaluated at all, and
for failures on the signing side.

Tree::

    SigningError              (exit 2)  root; also: refusing to overwrite, unusable output path
    ├── KeyLoadError          (exit 2)  key file missing, unreadable, not PKCS#12, wrong passphrase
    ├── SignatureError        (exit 1)  producing a signature failed
    ├── BundleError           (exit 2)  a bundle is unreadable or incomplete, or cannot be written
    ├── TrustError            (exit 2)  no trust anchor given, or an anchor file is unreadable
    └── VerificationError     (exit 1)  raised by VerificationReport.raise_for_failure()
"""

from __future__ import annotations

from evidence.errors import UserFacingError

__all__ = [
    "BundleError",
    "KeyLoadError",
    "SignatureError",
    "SigningError",
    "TrustError",
    "VerificationError",
]


class SigningError(UserFacingError):
    """Root of all errors raised while signing or verifying."""


class KeyLoadError(SigningError):
    """A key file is missing, unreadable, not PKCS#12, or the passphrase is wrong."""


class SignatureError(SigningError):
    """Producing a signature failed."""

    exit_code = 1


class BundleError(SigningError):
    """A bundle is unreadable or incomplete, or cannot be written."""


class TrustError(SigningError):
    """No trust anchor was given, or an anchor file cannot be read."""


class VerificationError(SigningError):
    """A bundle was evaluated and at least one verification step failed."""

    exit_code = 1
