"""Behavioural evaluation results from other tools, as the dossier records them.

The readers that build these from Inspect AI logs and lm-evaluation-harness
results are in :mod:`evidence.external`; these are only the data.
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from evidence.records.core import ConfidenceInterval, Name, Number, Sha256Hex

__all__ = [
    "CONSTRUCTS",
    "MAX_SAMPLES",
    "Construct",
    "ConstructDeclaration",
    "ExternalEval",
    "ExternalSample",
    "ExternalScore",
    "LogFormat",
    "Tool",
]

Construct = Literal[
    "refusal_rate",
    "jailbreak_success_rate",
    "defection_rate",
    "honesty_rate",
    "capability",
    "other",
]
#: Every construct an external score can be declared to measure.
CONSTRUCTS: tuple[str, ...] = get_args(Construct)

Tool = Literal["inspect_ai", "lm-evaluation-harness"]
LogFormat = Literal["inspect-json", "inspect-eval", "lm-eval-results"]

#: At most this many random samples are kept per evaluation (GPAI CoP 7.3(1)(f)).
MAX_SAMPLES = 5


class _Aliased(BaseModel):
    # Fields named "construct" would shadow BaseModel.construct: they are stored as
    # ``construct_`` and read and written as "construct".
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        allow_inf_nan=False,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=False,
    )


class ExternalScore(_Aliased):
    """One number an external evaluation reported, with the uncertainty it reported."""

    name: Name = Field(description='as the tool names it, e.g. "match/accuracy" or "acc,none"')
    value: Number
    stderr: Annotated[float, Field(ge=0.0, allow_inf_nan=False)] | None = Field(
        default=None, description="standard error as reported; null when the tool reported none"
    )
    ci: ConfidenceInterval | None = Field(
        default=None,
        description="value +/- 1.96 stderr; null without a stderr or a sample count",
    )

    @model_validator(mode="after")
    def _ci_from_stderr(self) -> ExternalScore:
        if self.ci is not None and self.stderr is None:
            raise ValueError(f"score {self.name!r}: an interval requires the reported stderr")
        return self


class ExternalSample(_Aliased):
    """One logged input/output pair of an evaluation, cut to a readable length."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    epoch: Annotated[int, Field(ge=0)] | None = None
    input: str
    output: str
    target: str | None = None
    scores: dict[str, str] = Field(default_factory=dict, description="scorer -> value, as text")
    truncated: bool = False


class ExternalEval(_Aliased):
    """One behavioural evaluation of one task, as another tool recorded it."""

    eval_id: Name
    tool: Tool
    tool_version: Name | None = None
    log_format: LogFormat
    task: Name
    model: Name = Field(description="the model as the tool recorded it")
    source_file: Name = Field(description="file name only")
    sha256: Sha256Hex = Field(description="sha256 of the file's bytes")
    created_at: AwareDatetime | None = None
    n_samples: Annotated[int, Field(ge=0)] | None = None
    construct_: Construct = Field(alias="construct", description="what the construct score measures")
    construct_source: Literal["declared", "inferred from task name", "default"]
    construct_score: Name | None = Field(
        default=None, description="the score that measures the construct; null when ambiguous"
    )
    construct_score_source: Literal["declared", "only score", "tool headline"] | None = None
    scores: list[ExternalScore] = Field(min_length=1)
    samples: list[ExternalSample] = Field(default_factory=list, max_length=MAX_SAMPLES)
    samples_logged: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="how many samples the log holds; null when it holds none"
    )
    samples_seed: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="seed of the random choice of samples (from the file's sha256)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ExternalEval:
        names = [s.name for s in self.scores]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"evaluation {self.eval_id!r}: duplicate score names {dupes}")
        if (self.construct_score is None) != (self.construct_score_source is None):
            raise ValueError("construct_score and construct_score_source are set together")
        if self.construct_score is not None and self.construct_score not in names:
            raise ValueError(f"construct_score {self.construct_score!r} is not one of the scores")
        return self

    def score(self, name: str) -> ExternalScore:
        """The score called ``name``; KeyError if there is none."""
        for s in self.scores:
            if s.name == name:
                return s
        raise KeyError(name)


class ConstructDeclaration(_Aliased):
    """What a task's score measures, as declared in the run spec."""

    construct_: Construct = Field(alias="construct")
    score: Name | None = Field(default=None, description="which score carries it; see ExternalEval")
