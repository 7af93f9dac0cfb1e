"""The trend dossier of a sweep: how each gated metric and verdict moves across a model's checkpoints.

``interp-dossier sweep`` writes one signed dossier per checkpoint and one signed trend dossier
over them (:mod:`evidence.trend`). The trend holds no measurement of its own: every number in
it is read from a checkpoint's dossier, which it names by sha256, so that a verifier recomputes
the whole trend from the checkpoint dossiers beside it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from evidence.records.core import (
    Comparator,
    ConfidenceInterval,
    DecisionRule,
    MeasurementId,
    Name,
    Number,
    Policy,
    Producer,
    Profile,
    Sha256Hex,
    SignerInfo,
    _Frozen,
)

__all__ = [
    "TREND_DOCUMENT",
    "CheckpointRef",
    "GateSeries",
    "MetricPoint",
    "MetricSeries",
    "TrendDossier",
    "VerdictChange",
    "VerdictPoint",
    "VerdictSeries",
]

#: The value of a trend dossier's ``document`` field, which tells it apart from a checkpoint's dossier.
TREND_DOCUMENT: Literal["trend"] = "trend"

_UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
#: A checkpoint's label: its directory name, usable as a directory name of the sweep.
Label = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")]
Decision = Literal["pass", "fail", "inconclusive", "n/a"]


class CheckpointRef(_Frozen):
    """One checkpoint of the sweep and the signed dossier measured on it."""

    label: Label = Field(description="the checkpoint's name in the sweep (its directory name)")
    bundle: str = Field(description="the checkpoint's bundle, relative to the trend bundle")
    model: Name = Field(description="the model identity's name in the checkpoint's dossier")
    weights_sha256: Sha256Hex
    dossier_id: Annotated[str, StringConstraints(pattern=_UUID_PATTERN)]
    dossier_sha256: Sha256Hex = Field(description="sha256 of the checkpoint's dossier.json")
    gate: Literal["pass", "fail", "inconclusive"] | None = Field(
        description="the checkpoint's gate decision; null when no policy was applied"
    )
    failed_measurements: list[MeasurementId] = Field(
        default_factory=list, description="measurements whose record is an error on this checkpoint"
    )


class MetricPoint(_Frozen):
    """A metric's reading on one checkpoint."""

    checkpoint: Label
    status: Literal["ok", "error", "absent"] = Field(
        description="ok: the record carries the metric; error: the measurement failed; absent: no such metric"
    )
    value: Number | None = None
    ci: ConfidenceInterval | None = None

    @model_validator(mode="after")
    def _value_when_ok(self) -> MetricPoint:
        if (self.status == "ok") != (self.value is not None):
            raise ValueError(f"checkpoint {self.checkpoint!r}: a value is given exactly when the status is ok")
        if self.ci is not None and self.value is None:
            raise ValueError(f"checkpoint {self.checkpoint!r}: an interval without a value")
        return self


class MetricSeries(_Frozen):
    """One metric across the checkpoints: a metric a threshold gates, or a measurement's headline."""

    measurement: MeasurementId
    metric: Name
    unit: Name | None = Field(description="the metric's unit, as the records give it (null: no record carries it)")
    headline: bool = Field(description="the measurement declares it as its headline")
    gated_by: list[Name] = Field(description="the policy's thresholds on this metric, by id")
    points: list[MetricPoint]


class VerdictChange(_Frozen):
    """Where a verdict first differs from the one on the checkpoint before it."""

    checkpoint: Label
    previous: Label
    before: Decision | None
    after: Decision | None


class VerdictPoint(_Frozen):
    """A threshold's verdict on one checkpoint."""

    checkpoint: Label
    verdict: Decision | None = Field(description="null: the checkpoint's dossier has no verdict of this threshold")
    observed: Number | None = None
    ci: ConfidenceInterval | None = None
    reason: str = ""


class VerdictSeries(_Frozen):
    """One threshold of the policy across the checkpoints, and the first checkpoint where its verdict changes."""

    verdict_id: Name
    measurement: MeasurementId
    metric: Name
    comparator: Comparator
    threshold: Number
    margin: Annotated[float, Field(ge=0.0, allow_inf_nan=False)]
    rule: DecisionRule
    points: list[VerdictPoint]
    first_change: VerdictChange | None = Field(description="null: the verdict is the same on every checkpoint")


class GateSeries(_Frozen):
    """The gate decision across the checkpoints."""

    points: list[CheckpointGate]
    first_change: VerdictChange | None


class CheckpointGate(_Frozen):
    """The gate decision on one checkpoint."""

    checkpoint: Label
    decision: Literal["pass", "fail", "inconclusive"] | None


class TrendDossier(_Frozen):
    """A sweep's trend: every gated metric and verdict against the checkpoints, read from their signed dossiers."""

    schema_version: Literal["1.0"]
    document: Literal["trend"] = Field(description="tells a trend dossier apart from a checkpoint's dossier")
    trend_id: Annotated[str, StringConstraints(pattern=_UUID_PATTERN)]
    created_at: AwareDatetime
    producer: Producer
    signer: SignerInfo | None = None
    title: Name = Field(description="what was swept, e.g. the directory the checkpoints are in")
    order: Literal["natural", "given"] = Field(
        description="how the checkpoints were ordered: by their labels with numbers compared as numbers, or as given"
    )
    policy: Policy | None = Field(description="the policy every checkpoint was gated with; null: none")
    profile: Profile
    prompt_limit: Annotated[int, Field(ge=1)] | None = None
    checkpoints: Annotated[list[CheckpointRef], Field(min_length=1)]
    metrics: list[MetricSeries]
    verdicts: list[VerdictSeries]
    gate: GateSeries | None = Field(description="null when no policy was applied")

    @model_validator(mode="after")
    def _labels_unique_and_complete(self) -> TrendDossier:
        labels = [c.label for c in self.checkpoints]
        if len(set(labels)) != len(labels):
            raise ValueError(f"checkpoint labels repeat: {sorted({x for x in labels if labels.count(x) > 1})}")
        named: list[tuple[str, list[MetricPoint] | list[VerdictPoint]]] = [
            *((f"{m.measurement}/{m.metric}", m.points) for m in self.metrics),
            *((v.verdict_id, v.points) for v in self.verdicts),
        ]
        for name, points in named:
            if [p.checkpoint for p in points] != labels:
                raise ValueError(f"series {name!r} does not give one point per checkpoint in the checkpoints' order")
        if self.gate is not None and [p.checkpoint for p in self.gate.points] != labels:
            raise ValueError("the gate series does not give one point per checkpoint in the checkpoints' order")
        return self


GateSeries.model_rebuild()
