"""Exceptions raised by interp-dossier, written for a person.

``str(err)`` is one sentence saying what went wrong, and ``err.hint`` says what
to do about it. The CLI turns any :class:`UserFacingError` into one line and an
exit code; nothing else in the code base prints errors.

Tree::

    UserFacingError
    ├── EvidenceError                producing a dossier
    │   ├── ConfigError              bad run spec, option, dataset or path
    │   │   └── PreflightError       several of them, found together before a run
    │   ├── ModelLoadError           model directory or weights cannot be loaded / do not match
    │   ├── MeasurementError         a measurement cannot produce a valid result (recorded by the runner)
    │   ├── RecordError              a record or dossier would be invalid
    │   ├── UnsupportedVersionError  a format version this release does not know
    │   ├── RenderError              the PDF cannot be rendered
    │   └── MissingExtraError        an optional part of the install ([measure], [render], ...) is absent
    └── signing.errors.SigningError  signing and verification (see that module)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import ValidationError

__all__ = [
    "ConfigError",
    "EvidenceError",
    "MissingExtraError",
    "MeasurementError",
    "ModelLoadError",
    "PreflightError",
    "RecordError",
    "RenderError",
    "UnsupportedVersionError",
    "UserFacingError",
    "config_error_from_validation",
    "missing_extra",
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


class PreflightError(ConfigError):
    """Several problems found together before a run; ``details`` holds one line for each."""

    def __init__(self, message: str, *, hint: str | None = None, details: tuple[str, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.details = details


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


class MissingExtraError(EvidenceError):
    """A part of the install that this command needs is absent (an optional extra)."""


#: What each extra brings, for the message.
_EXTRA_PURPOSE = {
    "measure": "measuring models (torch, TransformerLens)",
    "render": "rendering the PDF (WeasyPrint)",
    "export": "the standard exports (CycloneDX)",
    "ray": "running on a Ray cluster (--executor ray)",
}


def missing_extra(extra: str, exc: BaseException | None = None) -> MissingExtraError:
    """The one error for a missing optional extra: names the extra and the install command."""
    missing = getattr(exc, "name", None)
    what = _EXTRA_PURPOSE.get(extra, extra)
    detail = f" (the module {missing!r} is not installed)" if missing else ""
    return MissingExtraError(
        f"this command needs the [{extra}] extra for {what}{detail}",
        hint=f"pip install 'interp-dossier[{extra}]'",
    )


def _location(loc: Any) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def config_error_from_validation(
    exc: ValidationError,
    *,
    source: str,
    hint: str | None = None,
    rename: Mapping[str, str] | None = None,
) -> ConfigError:
    """A pydantic validation error as a ConfigError naming the file (``source``) and the key.

    Only the first problem is reported, as one sentence; ``rename`` maps pydantic's
    messages for common cases (e.g. ``extra_forbidden``) to words a person uses.
    """
    first = exc.errors()[0]
    where = _location(first.get("loc", ()))
    kind = str(first.get("type", ""))
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if rename and kind in rename:
        message = rename[kind]
    return ConfigError(f"{source}: {where}: {message}", hint=hint)
