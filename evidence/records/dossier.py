"""The machine-readable dossier, assembled from every other model of :mod:`evidence.records`.

It lives in its own module so that it is complete when it is defined: the
records, the external evaluations and the cross-references it holds are all
defined before it, and nothing needs to be rebuilt at import time.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from evidence.records.core import (
    ChangeEntry,
    ClauseIndexEntry,
    Environment,
    EvidenceRecord,
    Gate,
    ModelIdentity,
    Name,
    Policy,
    Predecessor,
    Producer,
    SignerInfo,
    Verdict,
    _Frozen,
)
from evidence.records.crossref import CrossReference
from evidence.records.external import ExternalEval

__all__ = ["Dossier"]

_UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class Dossier(_Frozen):
    """The machine-readable dossier: everything the PDF says, as data."""

    schema_version: Literal["1.0"]
    dossier_id: Annotated[str, StringConstraints(pattern=_UUID_PATTERN)]
    created_at: AwareDatetime
    producer: Producer
    model: ModelIdentity
    environment: Environment
    signer: SignerInfo | None = None
    records: list[EvidenceRecord]
    policy: Policy | None = None
    verdicts: list[Verdict] = Field(default_factory=list)
    gate: Gate | None = None
    external_evals: list[ExternalEval] = Field(
        default_factory=list, description="behavioural evaluation results ingested for cross-reference"
    )
    cross_references: list[CrossReference] = Field(
        default_factory=list, description="interpretability findings set against the external evaluations"
    )
    predecessor: Predecessor | None = None
    changelog: list[ChangeEntry] = Field(default_factory=list)
    clause_catalog_version: Name | None = None
    clause_index: list[ClauseIndexEntry] = Field(default_factory=list)

    @model_validator(mode="after")
    def _changelog_needs_predecessor(self) -> Dossier:
        if self.changelog and self.predecessor is None:
            raise ValueError("a changelog requires a predecessor")
        return self

    @model_validator(mode="after")
    def _unique_record_ids(self) -> Dossier:
        ids = [r.record_id for r in self.records]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate record ids {dupes}")
        return self
