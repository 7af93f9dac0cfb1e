"""Exceptions raised by interp-dossier, written for a person.

``str(err)`` is one sentence saying what went wrong, and ``err.hint`` says what
to do about it. The CLI turns any :class:`UserFacingError` into one line and an
exit code; nothing else in the code base prints errors.

Tree::

    UserFacingError
    ├── EvidenceError                producing a dossier
    │   ├── ConfigError              bad run spec, option, dataset or path
    │   ├── ModelLoadError           model directory or weights cannot be loaded / do not match
    │   ├── MeasurementError         a measurement cannot produce a valid result (recorded by the runner)
    │   ├── RecordError              a record or dossier would be invalid
    │   ├── UnsupportedVersionError  a format version this release does not know
    │   └── RenderError              the PDF cannot be rendered
    └── signing.errors.SigningError  signing and verification (see that module)
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "EvidenceError",
    "MeasurementError",
    "ModelLoadError",
    "RecordError",
    "RenderError",
    "UnsupportedVersionError",
    "UserFacingError",
]


class UserFacingError(Exception):
    """An error written for a person: a one-sentence message, a remedy, an exit code."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """The message and its remedy as one line, for the CLI."""
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class EvidenceError(UserFacingError):
    """Root of all errors raised while producing a dossier."""


class ConfigError(EvidenceError):
    """A run spec, option, dataset or path is invalid."""


class ModelLoadError(EvidenceError):
    """A model cannot be loaded, or its weights do not match what was expected."""


class MeasurementError(EvidenceError):
    """A measurement cannot produce a valid result."""

    exit_code = 1


class RecordError(EvidenceError):
    """A record or dossier would not be valid."""

    exit_code = 1


class UnsupportedVersionError(EvidenceError):
    """A format version that this release does not support."""


class RenderError(EvidenceError):
    """The PDF cannot be rendered."""

    exit_code = 1
