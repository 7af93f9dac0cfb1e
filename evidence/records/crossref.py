"""A cross-reference: one interpretability finding set against one behavioural evaluation result.

How the finding and the evaluation are compared (the judgement) is in
:mod:`evidence.crossref`; this is only the data the dossier records.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from evidence.records.core import ConfidenceInterval, MeasurementId, Name, Number
from evidence.records.external import Construct

__all__ = ["Agreement", "CrossReference"]

Agreement = Literal["agree", "disagree", "not comparable"]
Sentence = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class CrossReference(BaseModel):
    """One interpretability finding set against one behavioural evaluation result."""

    # "construct" would shadow BaseModel.construct: stored as construct_, written as "construct".
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=False,
    )

    finding: Sentence = Field(description="the interpretability finding, in words")
    record_id: str | None = None
    measurement: MeasurementId | None = None
    metric: Name | None = None
    interpretability_value: Number | None = None
    interpretability_ci: ConfidenceInterval | None = None
    external_eval_id: Name
    external_task: Name
    external_score: Name
    external_value: Number
    external_ci: ConfidenceInterval | None = None
    construct_: Construct = Field(alias="construct")
    construct_source: Literal["declared", "inferred from task name", "default"]
    relation: Sentence = Field(description="what was compared, one sentence")
    tolerance: float | None = Field(default=None, description="rate comparisons: largest agreeing difference")
    substantial_above: float | None = Field(default=None, description="presence comparisons")
    negligible_below: float | None = Field(default=None, description="presence comparisons")
    agreement: Agreement
    other_model: bool = Field(
        default=False,
        description="the evaluation names another model than the one measured (never compared; flagged)",
    )
    flagged: bool = Field(description="true for every disagreement and every evaluation of another model")
    explanation: Sentence = Field(description="why, one sentence")

    @model_validator(mode="after")
    def _consistent(self) -> CrossReference:
        if self.flagged != (self.agreement == "disagree" or self.other_model):
            raise ValueError("exactly the disagreements and the evaluations of other models are flagged")
        if self.other_model and self.agreement != "not comparable":
            raise ValueError("an evaluation of another model is not comparable")
        if self.agreement != "not comparable" and None in (
            self.record_id, self.measurement, self.metric, self.interpretability_value
        ):
            raise ValueError("an agreement or disagreement names the finding it is about")
        return self
