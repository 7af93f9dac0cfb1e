"""interp-dossier, producing side: model -> measurements -> records -> dossier -> PDF.

Importing this package loads no torch, TransformerLens or WeasyPrint; those are
imported by :mod:`evidence.model`, :mod:`evidence.measure` and
:mod:`evidence.render` only, when a dossier is produced.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.errors import (
    ConfigError,
    EvidenceError,
    MeasurementError,
    ModelLoadError,
    RecordError,
    RenderError,
    UnsupportedVersionError,
)
from evidence.records import SCHEMA_VERSION, Dossier, EvidenceRecord, Metric, Verdict

try:
    __version__ = version("interp-dossier")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0+unknown"

__all__ = [
    "ConfigError",
    "Dossier",
    "EvidenceError",
    "EvidenceRecord",
    "MeasurementError",
    "Metric",
    "ModelLoadError",
    "RecordError",
    "RenderError",
    "SCHEMA_VERSION",
    "UnsupportedVersionError",
    "Verdict",
    "__version__",
    "canonical_bytes",
    "sha256_hex",
]
