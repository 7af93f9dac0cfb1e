"""The public surface of the `evidence` package."""

from __future__ import annotations

import evidence

EXPECTED = [
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


def test_public_api_is_pinned_and_sorted():
    assert evidence.__all__ == EXPECTED == sorted(EXPECTED)
    for name in EXPECTED:
        assert hasattr(evidence, name), name


def test_the_dossier_is_complete_without_a_rebuild():
    """The dossier model is whole at definition: no import-time rebuild is needed to validate or dump it."""
    assert evidence.Dossier.__pydantic_complete__
    assert "external_evals" in evidence.Dossier.model_json_schema()["properties"]
