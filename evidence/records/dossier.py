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
    Dtype,
    Environment,
    EvidenceRecord,
    Gate,
    MeasurementId,
    ModelIdentity,
    Name,
    Policy,
    Predecessor,
    Producer,
    Profile,
    Sha256Hex,
    SignerInfo,
    Verdict,
    _Frozen,
)
from evidence.records.crossref import CrossReference
from evidence.records.external import ExternalEval
from evidence.records.validation import Behaviour, Rate

__all__ = ["Dossier", "ValidatedDetector", "ValidationCitation"]

#: The file of a bundle that holds the validation report a dossier cites.
VALIDATION_REPORT_FILE: Literal["validation-report.json"] = "validation-report.json"

_UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


class ValidatedDetector(_Frozen):
    """One detector of the cited validation report, as the dossier summarises it."""

    measurement: MeasurementId
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
    metric: Name
    behaviour: Behaviour
    criterion: Name = Field(description="the detector's criteria in words")
    detection: Rate = Field(description="planted organisms on which the detector fired")
    false_alarms: Rate = Field(description="controls on which the detector fired")
    errors: Annotated[int, Field(ge=0)]
    architectures: list[Name] = Field(description="architectures of the organisms it was validated on")
    languages: list[Name] = Field(description="languages (and so tokenizers) of those organisms")
    target_shortfalls: list[Name] = Field(
        description="how far the point rates miss the targets (detection >= 90%, false alarms <= 10%); empty: met"
    )
    run: Literal["same", "other-version", "other-params", "not-run"] = Field(
        description="how this dossier's record of the measurement relates to the validated one: the same "
        "version and parameters, another version, other parameters, or the measurement was not run"
    )


class ValidationCitation(_Frozen):
    """The validation report of the instruments that this dossier rests on, cited by digest and summarised.

    The report itself travels in the bundle (``validation-report.json``), so that a
    verifier recomputes every verdict from the report the dossier cites, whatever
    release it runs.
    """

    report_sha256: Sha256Hex = Field(description="sha256 of the report file in the bundle")
    file: Literal["validation-report.json"] = VALIDATION_REPORT_FILE
    population: Name = Field(description='the population split it was measured on, e.g. "heldout"')
    population_digest: Sha256Hex
    tuned_on: list[Name] = Field(description="the populations the instruments were tuned on")
    created_at: AwareDatetime
    producer: Name = Field(description="the interp-dossier version that measured it")
    level: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(description="coverage of every interval")
    organisms: Annotated[int, Field(ge=0)] = Field(description="organisms in the population split")
    dtype: Dtype = Field(
        default="float32",
        description="the dtype the report's organisms were measured in; a verdict that rests on the report for a "
        "model measured in another dtype is INCONCLUSIVE",
    )
    detectors: list[ValidatedDetector]


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
    validation: ValidationCitation | None = Field(
        default=None,
        description="the validation report of the instruments (detection and false-alarm rates over a "
        "population of organisms), cited by digest; none when the release ships no report",
    )
    profile: Profile = Field(default="standard", description="the budget profile every record was measured under")
    prompt_limit: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="at most this many prompts of each dataset were used; null: every prompt"
    )

    @model_validator(mode="after")
    def _changelog_needs_predecessor(self) -> Dossier:
        if self.changelog and self.predecessor is None:
            raise ValueError("a changelog requires a predecessor")
        return self

    @model_validator(mode="after")
    def _records_share_the_run_budget(self) -> Dossier:
        for r in self.records:
            if (r.profile, r.prompt_limit) != (self.profile, self.prompt_limit):
                raise ValueError(
                    f"record {r.record_id!r} was measured under profile {r.profile!r} with prompt limit "
                    f"{r.prompt_limit}, the dossier says {self.profile!r} with {self.prompt_limit}"
                )
        return self

    @model_validator(mode="after")
    def _unique_record_ids(self) -> Dossier:
        ids = [r.record_id for r in self.records]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate record ids {dupes}")
        return self
