"""Generate the committed JSON Schemas from the pydantic models, and check for drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from evidence.files import write_file_atomically
from evidence.records import SCHEMA_VERSION, Dossier, EvidenceRecord, ValidationReport, Verdict
from evidence.records.trend import TrendDossier

__all__ = ["SCHEMA_FILES", "check_schemas", "generate_schemas", "load_schema", "write_schemas"]

_DRAFT = "https://json-schema.org/draft/2020-12/schema"
_ID_BASE = "https://interp-dossier.dev/schemas"

#: file name -> model; the files under schemas/ are exactly these.
SCHEMA_FILES: dict[str, type[BaseModel]] = {
    "dossier.schema.json": Dossier,
    "record.schema.json": EvidenceRecord,
    "verdict.schema.json": Verdict,
    "validation-report.schema.json": ValidationReport,
    "trend.schema.json": TrendDossier,
}


def _schema_for(filename: str, model: type[BaseModel]) -> dict[str, Any]:
    body = model.model_json_schema(mode="validation")
    return {
        "$schema": _DRAFT,
        "$id": f"{_ID_BASE}/{SCHEMA_VERSION}/{filename}",
        **body,
    }


def generate_schemas() -> dict[str, str]:
    """File name -> schema text, exactly as committed (sorted keys, 2-space indent)."""
    return {
        name: json.dumps(_schema_for(name, model), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        for name, model in SCHEMA_FILES.items()
    }


def write_schemas(directory: Path) -> list[Path]:
    """Regenerate every schema file under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate_schemas().items():
        path = directory / name
        write_file_atomically(path, text.encode("utf-8"))
        written.append(path)
    return written


def check_schemas(directory: Path) -> list[str]:
    """Names of the schema files under ``directory`` that differ from the models (empty: no drift)."""
    drift = []
    for name, text in generate_schemas().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            drift.append(name)
    return drift


def load_schema(name: str = "dossier.schema.json") -> dict[str, Any]:
    """A committed schema, read from the installed package."""
    from evidence.resources import resource_dir

    text = (resource_dir("schemas") / name).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
