"""``calibration.organisms``: the suite checked against planted ground truth, in this run.

Every measurement of the suite is run again, in the same process and
environment as the dossier's own measurements, on reference organisms whose
behaviour was planted in training, and on controls that lack it (a twin trained
on the same data without the behaviour, or a randomly initialised twin). Each
check states the metric, the criterion and whether it held: a planted behaviour
must be detected and a control must not raise a false alarm. A measurement that
fails on an organism fails its checks; nothing is dropped.

Organism names may carry the suffix ``#untrained``: the organism's architecture,
randomly initialised with a seed derived from the task's.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field, JsonValue

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.measure import (
    Expectation,
    MeasureContext,
    MeasurementParams,
    MeasurementResult,
    SharedResults,
    Task,
    measurement,
    registered,
    require_known,
    run_task,
)
from evidence.model import LoadedModel, ModelSpec, load_model, random_twin
from evidence.policy import describe_all, satisfied
from evidence.records import CalibrationCheck, ClauseRef, EvidenceRecord, Metric, Table

__all__ = ["CalibrationParams", "calibrate", "expectations"]

UNTRAINED = "#untrained"


def expectations(wanted: Sequence[str] | None = None) -> list[tuple[str, Expectation]]:
    """``(measurement id, expectation)`` for every registered measurement in ``wanted`` (default: all)."""
    defs = registered()
    if wanted is not None:
        require_known(wanted, where="calibration.organisms: measurements")
    ids = list(wanted) if wanted is not None else sorted(defs)
    return [(mid, e) for mid in ids for e in defs[mid].calibration]


class CalibrationParams(MeasurementParams):
    """Which measurements to calibrate (default: every one that has checks and is registered)."""

    measurements: list[str] | None = Field(default=None, description="measurement ids to calibrate")
    params: dict[str, dict[str, JsonValue]] = Field(
        default_factory=dict, description="parameters per calibrated measurement (default: its defaults)"
    )


CLAUSES = (
    ClauseRef(id="NIST-AI-RMF/1.0/MEASURE/2.13", strength="direct",
              rationale="Checks that each evaluation method detects what is known to be there, and only that."),
    ClauseRef(id="EU-GPAI-CoP/SS/App3.1@2025-07-10", strength="direct",
              rationale="Internal validity of the evaluations, shown on planted ground truth in the same run."),
    ClauseRef(id="EU-AIA/AnnexIV/4@OJ-2024-07-12", strength="partial",
              rationale="Shows the chosen metrics respond to the property they are meant to measure."),
    ClauseRef(id="EU-AIA/AnnexXI/S2/1@OJ-2024-07-12", strength="supporting",
              rationale="Part of the evaluation strategy: the limits of each method, measured."),
)


def _check_row(
    measurement_id: str, check: Expectation, record: EvidenceRecord | None, error: str | None
) -> CalibrationCheck:
    metric = None
    if record is not None and record.status == "ok":
        try:
            metric = record.metric(check.metric)
        except KeyError:
            error = f"no metric {check.metric!r}"
    elif record is not None and record.error is not None:
        error = f"{record.error.type}: {record.error.message}"
    passed = metric is not None and satisfied(check.criteria, check.combine, metric)
    criterion = describe_all(check.criteria, check.combine, check.metric)
    if error is not None:
        criterion = f"{criterion} (not evaluated: {error})"
    return CalibrationCheck(
        measurement=measurement_id,
        organism=check.organism,
        planted=check.planted,
        metric=check.metric,
        value=metric.value if metric is not None else None,
        ci=metric.ci if metric is not None else None,
        baseline=metric.baseline if metric is not None else None,
        criteria=list(check.criteria),
        combine="all" if check.combine == "all" else "any",
        criterion=criterion[:1000],
        passed=passed,
        record_digest=sha256_hex(canonical_bytes(record)) if record is not None else None,
    )


@measurement("calibration.organisms", version="1.0.0", params=CalibrationParams, clauses=CLAUSES)
def calibrate(model: LoadedModel, params: CalibrationParams, ctx: MeasureContext) -> MeasurementResult:
    """Run each calibrated measurement on its organisms and controls and check the outcome."""
    checks = expectations(params.measurements)
    shared = SharedResults()
    models: dict[str, LoadedModel] = {}
    records: dict[tuple[str, str], EvidenceRecord] = {}
    rows: list[CalibrationCheck] = []
    for i, (measurement_id, check) in enumerate(checks):
        ctx.progress(i / max(len(checks), 1), f"calibrating {measurement_id} on {check.organism}")
        key = (measurement_id, check.organism)
        error = None
        if key not in records:
            try:
                subject = models.get(check.organism)
                if subject is None:
                    base, _, variant = check.organism.partition("#")
                    loaded = load_model(ModelSpec(organism=base))
                    subject = random_twin(loaded, ctx.derive_seed(check.organism)) if variant else loaded
                    models[check.organism] = subject
                task = Task(measurement_id=measurement_id, params=dict(params.params.get(measurement_id, {})),
                            seed=ctx.seed, subject=subject.spec,
                            datasets=ctx.datasets, markers=ctx.markers)
                records[key] = run_task(task, subject, shared=shared)
            except Exception as exc:  # a calibration that cannot run fails its checks, visibly
                error = f"{type(exc).__name__}: {exc}"
        rows.append(_check_row(measurement_id, check, records.get(key), error))
    ctx.progress(1.0, "calibration done")

    passed = sum(r.passed for r in rows)
    planted_ok = sum(r.passed for r in rows if r.planted)
    controls_ok = sum(r.passed for r in rows if not r.planted)
    n_planted = sum(r.planted for r in rows)
    table = Table(
        name="calibration checks",
        columns=["measurement", "organism", "planted", "metric", "value", "CI", "criterion", "passed"],
        rows=[
            [r.measurement, r.organism, "planted" if r.planted else "control", r.metric, r.value,
             f"[{r.ci.lower:.4g}, {r.ci.upper:.4g}]" if r.ci else None, r.criterion, "yes" if r.passed else "NO"]
            for r in rows
        ],
    )
    metrics = [
        Metric(name="checks_passed", value=passed, unit="checks", description=f"of {len(rows)}"),
        Metric(name="checks_total", value=len(rows), unit="checks"),
        Metric(name="planted_detected", value=planted_ok, unit="checks", description=f"of {n_planted}"),
        Metric(name="controls_clean", value=controls_ok, unit="checks", description=f"of {len(rows) - n_planted}"),
        Metric(name="all_checks_passed", value=int(passed == len(rows) and len(rows) > 0), unit="0/1"),
    ]
    failed = [f"{r.measurement} on {r.organism}" for r in rows if not r.passed]
    summary = (
        f"{passed} of {len(rows)} calibration checks passed in this run "
        f"({planted_ok} of {n_planted} planted behaviours detected, "
        f"{controls_ok} of {len(rows) - n_planted} controls without a false alarm)."
    )
    if failed:
        summary += " Failed: " + "; ".join(failed) + "."
    return MeasurementResult(metrics=metrics, tables=[table], checks=rows, summary=summary)
