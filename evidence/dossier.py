"""Assemble a dossier from records, and turn it into (and back from) its canonical bytes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import jsonschema
from pydantic import ValidationError

from evidence import __version__
from evidence.canonical import canonical_bytes, parse_json, sha256_hex
from evidence.errors import RecordError, UnsupportedVersionError
from evidence.records import (
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    ChangeEntry,
    CrossReference,
    Dossier,
    Environment,
    EvidenceRecord,
    ExternalEval,
    Gate,
    ModelIdentity,
    Policy,
    Predecessor,
    Producer,
    SignerInfo,
    ValidationCitation,
    Verdict,
)
from evidence.records.core import Profile

__all__ = ["build_dossier", "dossier_bytes", "parse_dossier", "record_digest", "statement_predicate", "with_fields"]


def build_dossier(
    *,
    model: ModelIdentity,
    environment: Environment,
    records: Sequence[EvidenceRecord],
    policy: Policy | None = None,
    verdicts: Sequence[Verdict] = (),
    gate: Gate | None = None,
    external_evals: Sequence[ExternalEval] = (),
    cross_references: Sequence[CrossReference] = (),
    predecessor: Predecessor | None = None,
    changelog: Sequence[ChangeEntry] = (),
    signer: SignerInfo | None = None,
    created_at: datetime | None = None,
    dossier_id: str | None = None,
    validation: ValidationCitation | None = None,
    profile: Profile = "standard",
    prompt_limit: int | None = None,
) -> Dossier:
    """A new dossier with a fresh id and a timezone-aware creation time."""
    from evidence.clauses import build_clause_index, load_catalog

    catalog = load_catalog()
    try:
        return Dossier(
            schema_version=SCHEMA_VERSION,
            dossier_id=dossier_id or str(uuid.uuid4()),
            created_at=created_at or datetime.now(UTC),
            producer=Producer(version=__version__),
            model=model,
            environment=environment,
            signer=signer,
            records=list(records),
            policy=policy,
            verdicts=list(verdicts),
            gate=gate,
            external_evals=list(external_evals),
            cross_references=list(cross_references),
            predecessor=predecessor,
            changelog=list(changelog),
            clause_catalog_version=catalog.version,
            clause_index=build_clause_index(records, verdicts, catalog),
            validation=validation,
            profile=profile,
            prompt_limit=prompt_limit,
        )
    except ValidationError as exc:
        raise RecordError(f"the dossier would be invalid: {exc.errors()[0]['msg']}") from None


def dossier_bytes(dossier: Dossier) -> bytes:
    """The exact bytes of dossier.json: RFC 8785, checked against the committed schema."""
    from evidence.schema import load_schema

    data = canonical_bytes(dossier)
    try:
        jsonschema.Draft202012Validator(load_schema()).validate(json.loads(data))
    except jsonschema.ValidationError as exc:
        raise RecordError(
            f"dossier.json does not validate against the committed schema: {exc.message}",
            hint="regenerate schemas/ with `interp-dossier schema` if the models changed",
        ) from None
    return data


def parse_dossier(data: bytes) -> Dossier:
    """Parse dossier.json bytes; a schema version this release does not know is refused.

    Duplicate keys, non-finite numbers (``1e400``) and lone surrogates are
    refused at parse time, before the model sees them.
    """
    try:
        raw = parse_json(data, "dossier.json")
    except ValueError as exc:
        raise RecordError(str(exc)) from None
    if isinstance(raw, dict) and raw.get("document") == "trend":
        raise RecordError(
            "dossier.json is a sweep's trend dossier, not a model's dossier",
            hint="open the trend's dossier.pdf, or verify the whole sweep directory with `interp-dossier verify`",
        )
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise UnsupportedVersionError(
            f"dossier.json has schema_version {version!r}; this release supports "
            f"{', '.join(sorted(SUPPORTED_SCHEMA_VERSIONS))}",
            hint="upgrade interp-dossier to read newer dossiers",
        )
    try:
        return Dossier.model_validate(raw)
    except ValidationError as exc:
        raise RecordError(f"dossier.json is invalid: {exc.errors()[0]['msg']}") from None


def record_digest(record: EvidenceRecord) -> str:
    """sha256 of a record's canonical JSON: how verdicts point at evidence."""
    return sha256_hex(canonical_bytes(record))


def with_fields(dossier: Dossier, **changes: object) -> Dossier:
    """A copy of ``dossier`` with some top-level fields replaced, validated like a new one."""
    data = dossier.model_dump()
    data.update(changes)
    try:
        return Dossier.model_validate(data)
    except ValidationError as exc:
        raise RecordError(f"the dossier would be invalid: {exc.errors()[0]['msg']}") from None


def statement_predicate(dossier: Dossier) -> dict[str, object]:
    """The signed statement's predicate: what it says of the dossier, which must equal what dossier.json says.

    The verifier recomputes it from dossier.json (step 4), so a statement cannot
    claim another dossier id, model, date or key kind than the dossier it signs.
    """
    return {
        "dossier_id": dossier.dossier_id,
        "schema_version": dossier.schema_version,
        "created_at": dossier.created_at.isoformat(),
        "model": {"name": dossier.model.name, "weights_sha256": dossier.model.weights_sha256},
        "development_key": bool(dossier.signer and dossier.signer.development_key),
    }
