"""The trend over a sweep's checkpoints, computed from their dossiers alone.

:func:`build_trend` turns the checkpoints' dossiers (in sweep order) into a
:class:`~evidence.records.trend.TrendDossier`: every metric a policy threshold
gates and every measurement's headline metric, with its interval, on each
checkpoint; every threshold's verdict on each checkpoint and the first
checkpoint where it differs from the one before; the same for the gate.
:func:`check_trend` is what verification runs: the trend must be exactly what
:func:`build_trend` makes of the dossiers it names, byte for byte by sha256.

Pure standard library and pydantic: an auditor's install verifies a trend
without torch, TransformerLens or WeasyPrint.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from evidence import __version__
from evidence.canonical import sha256_hex
from evidence.errors import ConfigError, EvidenceError
from evidence.records import Dossier, EvidenceRecord, Producer, SignerInfo
from evidence.records.trend import (
    TREND_DOCUMENT,
    CheckpointGate,
    CheckpointRef,
    GateSeries,
    MetricPoint,
    MetricSeries,
    TrendDossier,
    VerdictChange,
    VerdictPoint,
    VerdictSeries,
)

__all__ = [
    "TREND_SCHEMA_VERSION",
    "Checkpoint",
    "build_trend",
    "check_trend",
    "is_trend_document",
    "checkpoint_ref",
    "natural_key",
    "parse_trend",
    "trend_predicate",
]

TREND_SCHEMA_VERSION: Literal["1.0"] = "1.0"


def natural_key(label: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that compares the numbers in a label as numbers: ``step-200`` before ``step-1000``."""
    parts = re.split(r"(\d+)", label)
    return tuple((0, int(p)) if p.isdigit() else (1, p.lower()) for p in parts if p)


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint's dossier as the trend reads it: its label, where its bundle is, and its bytes."""

    label: str
    #: the checkpoint's bundle directory, relative to the trend bundle (e.g. ``../checkpoints/step-100``)
    bundle: str
    data: bytes
    dossier: Dossier


def checkpoint_ref(checkpoint: Checkpoint) -> CheckpointRef:
    """What the trend records of one checkpoint's dossier."""
    dossier = checkpoint.dossier
    return CheckpointRef(
        label=checkpoint.label,
        bundle=checkpoint.bundle,
        model=dossier.model.name,
        weights_sha256=dossier.model.weights_sha256,
        dossier_id=dossier.dossier_id,
        dossier_sha256=sha256_hex(checkpoint.data),
        gate=dossier.gate.decision if dossier.gate is not None else None,
        failed_measurements=sorted({r.measurement.id for r in dossier.records if r.status == "error"}),
    )


def build_trend(
    checkpoints: Sequence[Checkpoint],
    *,
    title: str,
    order: Literal["natural", "given"],
    created_at: datetime | None = None,
    trend_id: str | None = None,
    signer: SignerInfo | None = None,
) -> TrendDossier:
    """The trend over ``checkpoints`` (in sweep order); :class:`ConfigError` if they cannot be compared.

    The checkpoints must have been gated with the same policy and measured under the same
    budget (profile and prompt limit): a trend across different rules would show the rules
    changing, not the model.
    """
    if not checkpoints:
        raise ConfigError("a trend needs at least one checkpoint")
    first = checkpoints[0].dossier
    for checkpoint in checkpoints[1:]:
        d = checkpoint.dossier
        if d.policy != first.policy:
            raise ConfigError(
                f"checkpoint {checkpoint.label!r} was gated with another policy than {checkpoints[0].label!r}",
                hint="measure every checkpoint of a sweep with the same run spec",
            )
        if (d.profile, d.prompt_limit) != (first.profile, first.prompt_limit):
            raise ConfigError(
                f"checkpoint {checkpoint.label!r} was measured under another budget (profile {d.profile}, "
                f"prompt limit {d.prompt_limit}) than {checkpoints[0].label!r} ({first.profile}, {first.prompt_limit})",
                hint="measure every checkpoint of a sweep with the same --profile and --limit",
            )
    labels = [c.label for c in checkpoints]
    policy = first.policy
    verdicts = [_verdict_series(threshold_id, checkpoints) for threshold_id in _threshold_ids(first)]
    gate = None
    if policy is not None:
        decisions = [c.dossier.gate.decision if c.dossier.gate is not None else None for c in checkpoints]
        gate = GateSeries(
            points=[CheckpointGate(checkpoint=label, decision=d) for label, d in zip(labels, decisions, strict=True)],
            first_change=_first_change(labels, decisions),
        )
    try:
        return TrendDossier(
            schema_version=TREND_SCHEMA_VERSION,
            document=TREND_DOCUMENT,
            trend_id=trend_id or str(uuid.uuid4()),
            created_at=created_at or datetime.now(UTC),
            producer=Producer(version=__version__),
            signer=signer,
            title=title,
            order=order,
            policy=policy,
            profile=first.profile,
            prompt_limit=first.prompt_limit,
            checkpoints=[checkpoint_ref(c) for c in checkpoints],
            metrics=[_metric_series(m, metric, checkpoints) for m, metric in _series_metrics(checkpoints)],
            verdicts=verdicts,
            gate=gate,
        )
    except ValueError as exc:
        raise ConfigError(f"the trend cannot be built: {exc}") from None


def _threshold_ids(dossier: Dossier) -> list[str]:
    return [t.id for t in dossier.policy.thresholds] if dossier.policy is not None else []


def _series_metrics(checkpoints: Sequence[Checkpoint]) -> list[tuple[str, str]]:
    """The metrics the trend follows: those the policy gates (in its order), then every record's headline."""
    seen: dict[tuple[str, str], None] = {}
    policy = checkpoints[0].dossier.policy
    if policy is not None:
        for threshold in policy.thresholds:
            seen.setdefault((threshold.measurement, threshold.metric), None)
    for checkpoint in checkpoints:
        for record in _own_records(checkpoint.dossier):
            if record.headline is not None:
                seen.setdefault((record.measurement.id, record.headline), None)
    return list(seen)


def _own_records(dossier: Dossier) -> list[EvidenceRecord]:
    """The records of the checkpoint itself (not of the organisms a calibration record measured)."""
    return [r for r in dossier.records if r.subject == dossier.model.name]


def _record(dossier: Dossier, measurement: str) -> EvidenceRecord | None:
    return next((r for r in _own_records(dossier) if r.measurement.id == measurement), None)


def _metric_series(measurement: str, metric: str, checkpoints: Sequence[Checkpoint]) -> MetricSeries:
    points = []
    unit = None
    headline = False
    for checkpoint in checkpoints:
        record = _record(checkpoint.dossier, measurement)
        if record is None:
            points.append(MetricPoint(checkpoint=checkpoint.label, status="absent"))
            continue
        headline = headline or record.headline == metric
        if record.status == "error":
            points.append(MetricPoint(checkpoint=checkpoint.label, status="error"))
            continue
        try:
            found = record.metric(metric)
        except KeyError:
            points.append(MetricPoint(checkpoint=checkpoint.label, status="absent"))
            continue
        unit = unit or found.unit
        points.append(MetricPoint(checkpoint=checkpoint.label, status="ok", value=found.value, ci=found.ci))
    policy = checkpoints[0].dossier.policy
    gated_by = [t.id for t in policy.thresholds if (t.measurement, t.metric) == (measurement, metric)] if policy else []
    return MetricSeries(measurement=measurement, metric=metric, unit=unit, headline=headline, gated_by=gated_by,
                        points=points)  # fmt: skip


def _verdict_series(threshold_id: str, checkpoints: Sequence[Checkpoint]) -> VerdictSeries:
    policy = checkpoints[0].dossier.policy
    assert policy is not None  # only called for the policy's thresholds
    threshold = next(t for t in policy.thresholds if t.id == threshold_id)
    points = []
    for checkpoint in checkpoints:
        verdict = next((v for v in checkpoint.dossier.verdicts if v.verdict_id == threshold_id), None)
        if verdict is None:
            points.append(VerdictPoint(checkpoint=checkpoint.label, verdict=None))
        else:
            points.append(VerdictPoint(checkpoint=checkpoint.label, verdict=verdict.verdict, observed=verdict.observed,
                                       ci=verdict.ci, reason=verdict.reason))  # fmt: skip
    return VerdictSeries(
        verdict_id=threshold.id,
        measurement=threshold.measurement,
        metric=threshold.metric,
        comparator=threshold.comparator,
        threshold=threshold.threshold,
        margin=threshold.margin,
        rule=threshold.rule,
        points=points,
        first_change=_first_change([c.label for c in checkpoints], [p.verdict for p in points]),
    )


def _first_change(labels: Sequence[str], decisions: Sequence[str | None]) -> VerdictChange | None:
    """The first checkpoint whose decision differs from the one before it; None if none does."""
    for i in range(1, len(labels)):
        if decisions[i] != decisions[i - 1]:
            return VerdictChange(checkpoint=labels[i], previous=labels[i - 1], before=decisions[i - 1],  # type: ignore[arg-type]
                                 after=decisions[i])  # type: ignore[arg-type]  # fmt: skip
    return None


def trend_predicate(trend: TrendDossier) -> dict[str, object]:
    """The signed statement's predicate for a trend: what it says of the trend, which must equal what the trend says.

    It names every checkpoint's dossier by sha256, so that the signature over the statement
    also binds the dossiers the trend was computed from.
    """
    return {
        "trend_id": trend.trend_id,
        "schema_version": trend.schema_version,
        "created_at": trend.created_at.isoformat(),
        "checkpoints": [{"label": c.label, "dossier_sha256": c.dossier_sha256} for c in trend.checkpoints],
        "development_key": bool(trend.signer and trend.signer.development_key),
    }


def is_trend_document(data: bytes | None) -> bool:
    """Whether ``data`` (a bundle's dossier.json, not yet verified) says it is a sweep's trend dossier.

    It only chooses which procedure runs: a bundle that claims the wrong kind fails step 2 (the
    signed statement's predicate type) or step 4 (the schema).
    """
    if data is None:
        return False
    try:
        doc = json.loads(data)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("document") == TREND_DOCUMENT


def parse_trend(data: bytes, *, source: str = "dossier.json") -> TrendDossier:
    """A trend dossier from its JSON bytes; :class:`EvidenceError` naming ``source`` if it is not one."""
    from pydantic import ValidationError

    from evidence.canonical import parse_json

    try:
        raw = parse_json(data, source)  # duplicate keys, non-finite numbers and lone surrogates are refused
    except ValueError as exc:
        raise EvidenceError(str(exc)) from None
    if isinstance(raw, dict) and raw.get("document") != TREND_DOCUMENT:
        raise EvidenceError(f"{source} is a model's dossier, not a sweep's trend dossier")
    try:
        return TrendDossier.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "/".join(map(str, first.get("loc", ()))) or "(root)"
        raise EvidenceError(f"{source} is not a valid trend dossier at {where}: {first.get('msg')}") from None


def check_trend(trend: TrendDossier, dossiers: Mapping[str, bytes]) -> str:
    """Check that ``trend`` is exactly what its checkpoints' dossiers (label -> dossier.json bytes) yield.

    Raises :class:`EvidenceError` with the first disagreement; returns a one-line summary.
    """
    from evidence.dossier import parse_dossier

    checkpoints = []
    for ref in trend.checkpoints:
        data = dossiers.get(ref.label)
        if data is None:
            raise EvidenceError(f"checkpoint {ref.label!r}: its dossier is missing (expected in {ref.bundle})")
        if sha256_hex(data) != ref.dossier_sha256:
            raise EvidenceError(
                f"checkpoint {ref.label!r}: its dossier.json has sha256 {sha256_hex(data)}, but the trend records "
                f"{ref.dossier_sha256}"
            )
        dossier = parse_dossier(data)
        if dossier.created_at > trend.created_at:
            raise EvidenceError(f"checkpoint {ref.label!r}: its dossier was created after the trend that reads it")
        checkpoints.append(Checkpoint(label=ref.label, bundle=ref.bundle, data=data, dossier=dossier))
    if trend.order == "natural":
        labels = [c.label for c in checkpoints]
        if labels != sorted(labels, key=natural_key):
            raise EvidenceError("the trend says its checkpoints are in natural order, but they are not")
    try:
        again = build_trend(checkpoints, title=trend.title, order=trend.order, created_at=trend.created_at,
                            trend_id=trend.trend_id, signer=trend.signer)  # fmt: skip
    except ConfigError as exc:
        raise EvidenceError(exc.message) from None
    again = again.model_copy(update={"producer": trend.producer})
    if again != trend:
        differ = [name for name in TrendDossier.model_fields if getattr(again, name) != getattr(trend, name)]
        raise EvidenceError(f"the trend's {', '.join(differ)} do(es) not follow from the checkpoints' dossiers")
    changes = [s.verdict_id for s in trend.verdicts if s.first_change is not None]
    return (
        f"{len(checkpoints)} checkpoint dossiers match by sha256; {len(trend.metrics)} metric series, "
        f"{len(trend.verdicts)} verdict series recomputed"
        + (f"; verdict changes: {', '.join(changes)}" if changes else "; no verdict changes")
    )
