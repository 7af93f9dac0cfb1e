"""The validation report: how often each instrument is right, measured over a population of organisms.

``interp-dossier validate`` runs every declared detector (a measurement's metric
read with criteria that mean "the behaviour is there") on organisms whose
behaviour is known: planted organisms, which carry it, and controls, which do
not. Per detector the report gives the detection rate on planted organisms and
the false-alarm rate on controls, each with an exact (Clopper–Pearson)
interval, and every organism's raw result, so that a reader can recount both
rates and see what each organism contributed.

A measurement that errors on an organism counts against the instrument in the
rate it belongs to: a planted organism it could not read is not detected, and
the error is listed. A control it could not read raises no false alarm but is
listed among the errors as well, so both counts stay visible.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, JsonValue, StringConstraints, model_validator

from evidence.records.core import (
    Baseline,
    ConfidenceInterval,
    Criterion,
    Dtype,
    MeasurementId,
    Name,
    Number,
    Sha256Hex,
    _Frozen,
)

__all__ = [
    "BEHAVIOURS",
    "VALIDATION_FORMAT",
    "Behaviour",
    "DetectorValidation",
    "OrganismOutcome",
    "Rate",
    "ValidationEnvironment",
    "ValidationReport",
]

#: The format version of the validation report written by this release.
VALIDATION_FORMAT: Literal["1"] = "1"

#: Planted behaviours a detector can be validated on.
Behaviour = Literal["induction", "refusal", "deception", "proxy", "jailbreak"]
BEHAVIOURS: tuple[str, ...] = ("induction", "refusal", "deception", "proxy", "jailbreak")


class Rate(_Frozen):
    """``k`` of ``n`` organisms, with the exact interval of the underlying rate (none when ``n`` is 0)."""

    k: Annotated[int, Field(ge=0)]
    n: Annotated[int, Field(ge=0)]
    rate: Annotated[float, Field(ge=0.0, le=1.0)] | None
    ci: ConfidenceInterval | None

    @model_validator(mode="after")
    def _consistent(self) -> Rate:
        if self.k > self.n:
            raise ValueError(f"rate counts {self.k} of only {self.n}")
        if (self.n == 0) != (self.rate is None) or (self.n == 0) != (self.ci is None):
            raise ValueError("a rate has a value and an interval exactly when n > 0")
        if self.rate is not None and abs(self.rate - self.k / self.n) > 1e-12:
            raise ValueError(f"rate {self.rate} is not {self.k}/{self.n}")
        return self


class OrganismOutcome(_Frozen):
    """What one detector read on one organism of the population."""

    organism: Name
    role: Literal["planted", "control"]
    control_type: Name | None = Field(default=None, description="what the control breaks (controls only)")
    architecture: Name
    language: Name
    seed: int
    split: Name
    status: Literal["ok", "no-metric", "error"] = Field(
        description="ok: the detector read its metric; no-metric: the measurement ran and reported no such "
        "metric (nothing detected); error: the measurement failed"
    )
    value: Number | None = None
    ci: ConfidenceInterval | None = None
    baseline: Baseline | None = None
    fired: bool = Field(description="whether the detector's criteria held (the behaviour was reported present)")
    error: str | None = None
    record_digest: Sha256Hex | None = Field(default=None, description="sha256 of the canonical record read")

    @model_validator(mode="after")
    def _error_means_silent(self) -> OrganismOutcome:
        if self.status != "ok" and (self.fired or self.error is None):
            raise ValueError(f"{self.organism}: a run without the metric says why and never fires")
        return self


class DetectorValidation(_Frozen):
    """One detector (measurement, version, parameters, metric, criteria) over the population."""

    measurement: MeasurementId
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d+\.\d+$")]
    params: dict[str, JsonValue] = Field(description="the parameters every organism was measured with")
    metric: Name
    behaviour: Behaviour
    criteria: list[Criterion] = Field(min_length=1)
    combine: Literal["all", "any"]
    criterion: Name = Field(description="the criteria in words")
    control_types: list[Name] = Field(
        default_factory=list,
        description="the control types counted for false alarms (empty: every control of the behaviour)",
    )
    detection: Rate = Field(description="planted organisms on which the detector fired")
    false_alarms: Rate = Field(description="controls on which the detector fired")
    errors: Annotated[int, Field(ge=0)]
    organisms: list[OrganismOutcome]

    @model_validator(mode="after")
    def _counts_match(self) -> DetectorValidation:
        planted = [o for o in self.organisms if o.role == "planted"]
        controls = [o for o in self.organisms if o.role == "control"]
        counted = (
            (sum(o.fired for o in planted), len(planted)),
            (sum(o.fired for o in controls), len(controls)),
        )
        if counted != ((self.detection.k, self.detection.n), (self.false_alarms.k, self.false_alarms.n)):
            raise ValueError(f"{self.measurement}/{self.metric}: the rates do not recount from the organisms")
        if self.errors != sum(o.status == "error" for o in self.organisms):
            raise ValueError(f"{self.measurement}/{self.metric}: the error count does not match the organisms")
        if self.control_types and any(o.control_type not in self.control_types for o in controls):
            raise ValueError(f"{self.measurement}/{self.metric}: a control of a type it does not answer for")
        return self

    def summary(self) -> str:
        """One line, e.g. ``deception.probe 2.0.0 defection_state_evidence: detected 9/9 [66%, 100%], ...``."""
        return (
            f"{self.measurement} {self.version} {self.metric}: detected {_rate(self.detection)}, "
            f"false alarms {_rate(self.false_alarms)}" + (f", {self.errors} runs failed" if self.errors else "")
        )


def _rate(rate: Rate) -> str:
    if rate.ci is None:
        return "0/0"
    return f"{rate.k}/{rate.n} [{rate.ci.lower:.0%}, {rate.ci.upper:.0%}]"


class ValidationEnvironment(_Frozen):
    """Where the validation ran."""

    python: Name
    torch: Name | None
    transformer_lens: Name | None
    transformers: Name | None
    platform: Name
    cpu_capability: Name | None
    threads: Annotated[int, Field(ge=1)]
    dtype: Dtype = Field(
        default="float32",
        description="the dtype every organism was measured in (reports that do not say were measured in float32, "
        "the only dtype before this field)",
    )
    batching: Literal["left-padded", "by-length", "mixed"] | None = Field(
        default=None,
        description='how the organisms\' prompts were batched (ModelIdentity.processing["batching"]; "mixed" when '
        "members differed). Reports that do not say are not compared: before this field every prompt ran "
        "by length, which left-padded batching reproduces within float32 rounding wherever it is used",
    )


class ValidationReport(_Frozen):
    """Detection and false-alarm rates of every detector over one population split."""

    format: Literal["1"] = VALIDATION_FORMAT
    population: Name = Field(description='the population and split, e.g. "heldout"')
    population_digest: Sha256Hex = Field(description="sha256 of the population's manifest as read")
    tuned_on: list[Name] = Field(
        description="the populations whose results the instruments' design choices and defaults looked at; "
        "a report on one of them measures the instruments on data they were tuned on"
    )
    organisms: list[Name] = Field(description="every organism measured")
    created_at: AwareDatetime
    producer: Name = Field(description="the interp-dossier version that measured")
    seed: int
    level: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(description="coverage of every interval")
    environment: ValidationEnvironment
    detectors: list[DetectorValidation]

    def find(self, measurement: str, metric: str) -> DetectorValidation | None:
        """The detector of ``measurement``'s ``metric``, if the report validated it."""
        for d in self.detectors:
            if d.measurement == measurement and d.metric == metric:
                return d
        return None
