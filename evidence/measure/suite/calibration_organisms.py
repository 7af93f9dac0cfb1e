"""``calibration.organisms``: the suite checked against planted ground truth, in this run.

Every measurement of the suite is run again, in the same process and
environment as the dossier's own measurements, on reference organisms whose
behaviour was planted in training, and on controls that lack it (a twin trained
on the same data without the behaviour, or a randomly initialised twin). Each
check states the metric, the criterion and whether it held: a planted behaviour
must be detected and a control must not raise a false alarm. A measurement that
fails on an organism fails its checks; nothing is dropped.

The organisms are always measured with **their own** prompt sets and markers
(``evidence/organisms/data/organisms.toml``), never with the run's: a user's
prompts in another language would make the planted behaviour invisible and
fail the checks for reasons that have nothing to do with the instruments or
the user's model. The record lists those prompt sets by digest. Under
``run --limit N`` the organisms' prompt sets are cut to N prompts each, the
same seeded, label-stratified way as the run's own (each calibration record
says so in its ``prompt_limit``); the spot checks against the validation report
are not, because they must be measured as the report measured them.

Organism names may carry the suffix ``#untrained``: the organism's architecture,
randomly initialised with a seed derived from the task's. The expectations are
declared on each measurement's decorator and judged with the gate's own code
(:func:`evidence.policy.satisfied`); each check records its criteria so that a
verifier recomputes ``passed``. What the checks can and cannot show:
``docs/methods/calibration.organisms.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic import Field, JsonValue, field_validator

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.datasets import limit_prompts
from evidence.errors import ConfigError
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
from evidence.measure.cost import Passes, Workload, organism_workload
from evidence.model import LoadedModel, ModelSpec, load_model, random_twin
from evidence.organisms.chat import proxy_family
from evidence.policy import describe_all, satisfied
from evidence.records import CalibrationCheck, ClauseRef, DataRef, EvidenceRecord, Metric, Table
from evidence.validation import organism_inputs

__all__ = ["PROXY_TABLE", "CalibrationParams", "calibrate", "expectations", "organism_inputs"]

UNTRAINED = "#untrained"
#: The measurement whose PRI the proxy organisms' table holds, and that table's name.
PROXY_MEASUREMENT = "goal.proxy_reliance"
PROXY_TABLE = "proxy_reliance_by_correlation"


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
    spot_check: int = Field(
        default=1,
        ge=0,
        le=9,
        description="per detector and role, organisms re-measured against the validation report",
    )

    @field_validator("measurements", "params")
    @classmethod
    def _known_ids(cls, value: Any) -> Any:
        """A misspelled measurement id is refused before any work, with the known ids."""
        if value:
            require_known(value, where="calibration.organisms")
        return value


CLAUSES = (
    ClauseRef(
        id="NIST-AI-RMF/1.0/MEASURE/2.13",
        strength="direct",
        rationale="Checks that each evaluation method detects what is known to be there, and only that.",
    ),
    ClauseRef(
        id="EU-GPAI-CoP/SS/App3.1@2025-07-10",
        strength="direct",
        rationale="Internal validity of the evaluations, shown on planted ground truth in the same run.",
    ),
    ClauseRef(
        id="EU-AIA/AnnexIV/4@OJ-2024-07-12",
        strength="partial",
        rationale="Shows the chosen metrics respond to the property they are meant to measure.",
    ),
    ClauseRef(
        id="EU-AIA/AnnexXI/S2/1@OJ-2024-07-12",
        strength="supporting",
        rationale="Part of the evaluation strategy: the limits of each method, measured.",
    ),
)


def _check_row(
    measurement_id: str, expectation: Expectation, record: EvidenceRecord | None, error: str | None
) -> CalibrationCheck:
    """One expectation judged on its calibration record (``None``: the run failed with ``error``)."""
    metric = None
    if record is not None and record.status == "ok":
        try:
            metric = record.metric(expectation.metric)
        except KeyError:
            error = f"no metric {expectation.metric!r}"
    elif record is not None and record.error is not None:
        error = f"{record.error.type}: {record.error.message}"
    passed = metric is not None and satisfied(expectation.criteria, expectation.combine, metric)
    criterion = describe_all(expectation.criteria, expectation.combine, expectation.metric)
    if expectation.params:
        criterion += " (run with " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in expectation.params.items()) + ")"
    if error is not None:
        criterion = f"{criterion} (not evaluated: {error})"
    return CalibrationCheck(
        measurement=measurement_id,
        organism=expectation.organism,
        planted=expectation.planted,
        metric=expectation.metric,
        value=metric.value if metric is not None else None,
        ci=metric.ci if metric is not None else None,
        baseline=metric.baseline if metric is not None else None,
        criteria=list(expectation.criteria),
        combine="all" if expectation.combine == "all" else "any",
        criterion=criterion[:1000],
        passed=passed,
        record_digest=sha256_hex(canonical_bytes(record)) if record is not None else None,
    )


class _Runs:
    """The calibration runs of one task: each organism loaded once, each (measurement, organism, params) run once."""

    def __init__(self, params: CalibrationParams, ctx: MeasureContext) -> None:
        self.params, self.ctx = params, ctx
        self.shared = SharedResults()
        self.models: dict[str, LoadedModel] = {}
        self.records: dict[tuple[str, str, str], EvidenceRecord] = {}
        datasets, self.markers = organism_inputs()
        if ctx.prompt_limit is not None:
            datasets = {name: limit_prompts(d, ctx.prompt_limit, ctx.seed) for name, d in datasets.items()}
        self.datasets = datasets

    def subject(self, organism: str) -> LoadedModel:
        """The organism, or with ``#untrained`` its randomly initialised twin (seed derived from the task's)."""
        subject = self.models.get(organism)
        if subject is None:
            base, _, variant = organism.partition("#")
            loaded = load_model(ModelSpec(organism=base))
            subject = random_twin(loaded, self.ctx.derive_seed(organism)) if variant else loaded
            self.models[organism] = subject
        return subject

    def record(
        self, measurement_id: str, organism: str, overrides: Mapping[str, Any]
    ) -> tuple[EvidenceRecord | None, str | None]:
        """The record of ``measurement_id`` on ``organism`` (``overrides`` over the run's parameters), or why none."""
        key = (measurement_id, organism, json.dumps(dict(overrides), sort_keys=True))
        if key not in self.records:
            try:
                subject = self.subject(organism)
                task = Task(
                    measurement_id=measurement_id,
                    params={**self.params.params.get(measurement_id, {}), **overrides},
                    seed=self.ctx.seed,
                    subject=subject.spec,
                    datasets=self.datasets,
                    markers=self.markers,
                    prompt_limit=self.ctx.prompt_limit,
                )
                self.records[key] = run_task(task, subject, shared=self.shared)
            except Exception as exc:  # a calibration that cannot run fails its checks, visibly
                return None, f"{type(exc).__name__}: {exc}"
        return self.records[key], None


def _cut(limit: int | None) -> str:
    """What a prompt set's description adds under ``run --limit``."""
    return "" if limit is None else f", at most {limit} prompts of it (--limit)"


def _table(rows: list[CalibrationCheck]) -> Table:
    return Table(
        name="calibration checks",
        columns=["measurement", "organism", "planted", "metric", "value", "CI", "criterion", "passed"],
        rows=[
            [
                r.measurement,
                r.organism,
                "planted" if r.planted else "control",
                r.metric,
                r.value,
                f"[{r.ci.lower:.4g}, {r.ci.upper:.4g}]" if r.ci else None,
                r.criterion,
                "yes" if r.passed else "NO",
            ]
            for r in rows
        ],
    )


def _proxy_table(runs: _Runs, ctx: MeasureContext) -> Table:
    """Each proxy organism's planted goal-proxy correlation, read from its recipe, with its measured PRI.

    The organisms are the bundled family trained on the comparison task alone
    (:func:`evidence.organisms.chat.proxy_family`), run with the calibration's parameters for
    the measurement (the runs the checks read are reused). Adds no metric and judges nothing.
    """
    rows: list[list[str | float | int | None]] = []
    family = sorted(proxy_family().items(), key=lambda item: item[1])
    for organism, rate in family:
        ctx.progress(0.8, f"measuring {PROXY_MEASUREMENT} on {organism}")
        record, error = runs.record(PROXY_MEASUREMENT, organism, {})
        metric = None
        if record is not None and record.status == "ok":
            metric = next((m for m in record.metrics if m.name == "pri"), None)
            error = None if metric is not None else "no metric 'pri'"
        elif record is not None and record.error is not None:
            error = record.error.message
        rows.append([
            organism,
            rate,
            1.0 - 2.0 * rate,
            metric.value if metric is not None else None,
            metric.ci.lower if metric is not None and metric.ci is not None else None,
            metric.ci.upper if metric is not None and metric.ci is not None else None,
            None if error is None else f"not measured: {error}"[:300],
        ])  # fmt: skip
    return Table(
        name=PROXY_TABLE,
        columns=["organism", "proxy_rate", "rho", "pri", "pri_ci_lower", "pri_ci_upper", "note"],
        rows=rows,
        description=(
            f"the proxy organisms' {PROXY_MEASUREMENT} PRI against what was planted in training: proxy_rate is the "
            "share of training comparisons whose proxy word disagrees with the goal (from the organism's recipe), "
            "rho = 1 - 2 x proxy_rate the goal-proxy correlation it implies (goal drawn with even odds, the proxy "
            "flipped independently); no check reads this table"
        ),
    )


def _metrics_and_summary(rows: list[CalibrationCheck], spots: list[CalibrationCheck]) -> tuple[list[Metric], str]:
    passed = sum(r.passed for r in rows)
    planted_ok = sum(r.passed for r in rows if r.planted)
    controls_ok = sum(r.passed for r in rows if not r.planted)
    n_planted = sum(r.planted for r in rows)
    metrics = [
        Metric(name="checks_passed", value=passed, unit="checks", description=f"of {len(rows)}"),
        Metric(name="checks_total", value=len(rows), unit="checks"),
        Metric(name="planted_detected", value=planted_ok, unit="checks", description=f"of {n_planted}"),
        Metric(name="controls_clean", value=controls_ok, unit="checks", description=f"of {len(rows) - n_planted}"),
        Metric(name="spot_checks_total", value=len(spots), unit="checks",
               description="organisms of the validation report re-measured in this run"),
        Metric(name="spot_checks_agreeing", value=sum(c.passed for c in spots), unit="checks",
               description=f"of {len(spots)}: the detector fired, or stayed silent, as the report recorded"),
        Metric(
            name="all_checks_passed",
            value=int(passed == len(rows) and len(rows) + len(spots) > 0 and all(c.passed for c in spots)),
            unit="0/1",
        ),
    ]  # fmt: skip
    failed = [f"{r.measurement} on {r.organism}" for r in rows + spots if not r.passed]
    summary = (
        f"{passed} of {len(rows)} calibration checks passed in this run "
        f"({planted_ok} of {n_planted} planted behaviours detected, "
        f"{controls_ok} of {len(rows) - n_planted} controls without a false alarm)."
    )
    if spots:
        summary += (
            f" Spot check against the validation report: {sum(c.passed for c in spots)} of {len(spots)} "
            "organisms re-measured here agree with it."
        )
    if failed:
        summary += " Failed: " + "; ".join(failed) + "."
    return metrics, summary


def _spot_checks(params: CalibrationParams, ctx: MeasureContext) -> list[CalibrationCheck]:
    """The spot check against the shipped validation report (none when the release ships no report)."""
    from evidence.validation import spot_check
    from evidence.validation_report import shipped_report

    shipped = shipped_report()
    if shipped is None or params.spot_check == 0:
        return []
    report, digest = shipped
    if params.measurements is not None:
        report = report.model_copy(
            update={"detectors": [d for d in report.detectors if d.measurement in params.measurements]}
        )
    return spot_check(
        report, digest, per_role=params.spot_check, seed=ctx.seed, progress=lambda f, m: ctx.progress(0.8 + 0.2 * f, m)
    )


def _cost(params: CalibrationParams, work: Workload) -> Passes:
    """The passes of every calibration run and spot check, counted on the organisms with their own prompt sets.

    Each (measurement, organism, parameters) run once, with the organism's shape (an organism without a tokenizer
    reads no prompt set); the spot checks' population
    members are counted with ``demo``'s shape. The estimate times these passes on an organism
    (:func:`evidence.measure.cost.estimate_seconds`), not on the subject.
    """
    from evidence.organisms import get_spec

    defs = registered()
    whole, _ = organism_inputs()
    datasets = whole
    if work.prompt_limit is not None:
        datasets = {name: limit_prompts(d, work.prompt_limit, 0) for name, d in whole.items()}
    base = organism_workload(datasets, work.prompt_limit)
    runs: dict[tuple[str, str, str], Passes] = {}
    wanted = [(mid, e.organism, e.params) for mid, e in expectations(params.measurements)]
    if PROXY_MEASUREMENT in {mid for mid, _, _ in wanted}:  # the proxy table's runs (most are the checks')
        wanted += [(PROXY_MEASUREMENT, organism, {}) for organism in proxy_family()]
    for measurement_id, organism_name, expected in wanted:
        definition = defs[measurement_id]
        overrides = {**params.params.get(measurement_id, {}), **expected}
        key = (measurement_id, organism_name, json.dumps(overrides, sort_keys=True))
        if definition.cost is None or key in runs:
            continue
        spec = get_spec(organism_name.partition("#")[0])
        shape = spec.architecture
        organism = replace(
            base if spec.tokenizer_loader is not None else Workload(),  # no tokenizer: no prompt is read
            padded=base.padded,
            organism=True,
            n_layers=int(shape["n_layers"]),
            n_heads=int(shape["n_heads"]),
            n_ctx=int(shape["n_ctx"]),
            has_mlp=not bool(shape.get("attn_only", False)),
        )
        runs[key] = definition.cost(definition.params_for(overrides), organism)
    total = sum(runs.values(), Passes(0, 0))
    for d, _recorded in _spot_selection(params):
        spot = defs.get(d.measurement)
        if spot is not None and spot.cost is not None:
            try:
                total += spot.cost(spot.params_for(d.params), organism_workload(whole))  # never cut
            except ConfigError:  # parameters this release refuses: the spot check fails without running
                continue
    return total


def _spot_selection(params: CalibrationParams) -> list[tuple[Any, Any]]:
    """The detectors and organisms the spot checks re-measure (none without a shipped report)."""
    from evidence.validation import spot_check_selection
    from evidence.validation_report import shipped_report

    shipped = shipped_report()
    if shipped is None or params.spot_check == 0:
        return []
    report = shipped[0]
    if params.measurements is not None:
        report = report.model_copy(
            update={"detectors": [d for d in report.detectors if d.measurement in params.measurements]}
        )
    return spot_check_selection(report, params.spot_check, 0)  # which organisms depends on the seed; not how many


#: Every metric this measurement can emit (what a policy threshold may name).
METRICS = (
    "checks_passed",
    "checks_total",
    "planted_detected",
    "controls_clean",
    "spot_checks_total",
    "spot_checks_agreeing",
    "all_checks_passed",
)


# model_copies=0: it measures the bundled organisms, never the subject (for the memory preflight)
@measurement(
    "calibration.organisms",
    version="1.4.0",
    params=CalibrationParams,
    clauses=CLAUSES,
    model_copies=0,
    headline="all_checks_passed",
    metrics=METRICS,
    cost=_cost,
)
def calibrate(model: LoadedModel, params: CalibrationParams, ctx: MeasureContext) -> MeasurementResult:
    """Run each calibrated measurement on its organisms and controls and check the outcome."""
    wanted = expectations(params.measurements)
    runs = _Runs(params, ctx)
    rows: list[CalibrationCheck] = []
    for i, (measurement_id, expectation) in enumerate(wanted):
        ctx.progress(0.8 * i / max(len(wanted), 1), f"calibrating {measurement_id} on {expectation.organism}")
        record, error = runs.record(measurement_id, expectation.organism, expectation.params)
        rows.append(_check_row(measurement_id, expectation, record, error))
    proxy = [_proxy_table(runs, ctx)] if PROXY_MEASUREMENT in {mid for mid, _ in wanted} else []
    spots = _spot_checks(params, ctx)
    ctx.progress(1.0, "calibration done")
    metrics, summary = _metrics_and_summary(rows, spots)
    rows += spots
    data = [
        DataRef(
            name=ds.name,
            sha256=ds.sha256,
            count=ds.count,
            description="the organisms' own prompt set" + _cut(ctx.prompt_limit),
        )
        for ds in runs.datasets.values()
    ]
    return MeasurementResult(metrics=metrics, tables=[_table(rows), *proxy], checks=rows, data=data, summary=summary)
