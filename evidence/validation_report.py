"""The validation report as the gate and the verifier read it (no torch, no measurement code).

:func:`validation_requirement_verdict` is what the gate asks of a report when a
threshold requires its instrument's validation; :func:`shipped_report` is the
report of the instrument versions this release ships, if it ships one. The
report is produced by :func:`evidence.validation.validate`
(``interp-dossier validate``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from evidence.canonical import canonical_bytes
from evidence.errors import ConfigError
from evidence.records import (
    DetectorValidation,
    EvidenceRecord,
    Threshold,
    ValidatedDetector,
    ValidationCitation,
    ValidationReport,
)

__all__ = [
    "EXECUTION_PARAMS",
    "TARGET_DETECTION",
    "TARGET_FALSE_ALARMS",
    "benchmark_table",
    "cite",
    "merge_reports",
    "target_shortfalls",
    "parse_report",
    "read_report",
    "report_bytes",
    "shipped_report",
    "shipped_report_file",
    "shipped_report_path",
    "validation_requirement_verdict",
]

#: Parameters that change how fast a measurement runs, not what it measures; ignored when a
#: run's parameters are compared with the validated ones.
EXECUTION_PARAMS = frozenset({"batch_size"})


#: What the instruments are built to reach on the held-out population (point rates): detect at
#: least 90% of planted organisms and false-alarm on at most 10% of controls. A report states
#: by how much a detector misses them (:func:`target_shortfalls`); a policy decides what a
#: miss means for a verdict (a threshold's ``validation`` requirement, on the intervals).
TARGET_DETECTION = 0.9
TARGET_FALSE_ALARMS = 0.1


def target_shortfalls(detector: DetectorValidation | ValidatedDetector) -> list[str]:
    """How far ``detector``'s point rates miss the targets, in words (empty when both are met)."""
    missed = []
    detection, false_alarms = detector.detection, detector.false_alarms
    if detection.rate is None:
        missed.append("no planted organism measured")
    elif detection.rate < TARGET_DETECTION:
        missed.append(
            f"detection {detection.rate:.0%} is {100 * (TARGET_DETECTION - detection.rate):.0f} points "
            f"below the {TARGET_DETECTION:.0%} target"
        )
    if false_alarms.rate is None:
        missed.append("no control measured")
    elif false_alarms.rate > TARGET_FALSE_ALARMS:
        missed.append(
            f"false alarms {false_alarms.rate:.0%} are {100 * (false_alarms.rate - TARGET_FALSE_ALARMS):.0f} points "
            f"above the {TARGET_FALSE_ALARMS:.0%} target"
        )
    return missed


def merge_reports(parts: Sequence[ValidationReport]) -> ValidationReport:
    """One report from reports of the same population measured in parts (e.g. one measurement per process).

    The parts must agree on everything but their detectors: the population and its digest, the
    organisms, the producer, the seed, the interval level, the populations tuned on and the
    environment. No detector may appear in two parts. The merged report is dated by its latest part.
    """
    if len(parts) < 2:
        raise ConfigError("merging needs at least two validation reports")
    first = parts[0]
    same = ("population", "population_digest", "organisms", "producer", "seed", "level", "tuned_on", "environment")
    for i, part in enumerate(parts[1:], start=2):
        for field in same:
            if getattr(part, field) != getattr(first, field):
                raise ConfigError(
                    f"report {i} differs from report 1 in {field}: "
                    f"{_shown(getattr(part, field))} vs {_shown(getattr(first, field))}",
                    hint="merge only parts of one validation: same population, release, seed and environment",
                )
    seen: dict[tuple[str, str], int] = {}
    for i, part in enumerate(parts, start=1):
        for d in part.detectors:
            key = (d.measurement, d.metric)
            if key in seen:
                raise ConfigError(
                    f"{d.measurement} {d.metric} is in report {seen[key]} and report {i}",
                    hint="each detector must be measured in exactly one part",
                )
            seen[key] = i
    detectors = sorted((d for part in parts for d in part.detectors), key=lambda d: (d.measurement, d.metric))
    merged = first.model_dump()
    merged["detectors"] = [d.model_dump() for d in detectors]
    merged["created_at"] = max(part.created_at for part in parts)
    return ValidationReport.model_validate(merged)


def _shown(value: Any) -> str:
    text = value.model_dump_json() if hasattr(value, "model_dump_json") else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def read_report(path: Path) -> ValidationReport:
    """A validation report from its JSON file; a clear error when it is missing or malformed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"no validation report at {path}", hint="run `interp-dossier validate --out FILE`") from None
    except OSError as exc:
        raise ConfigError(f"cannot read the validation report {path}: {exc}") from None
    return parse_report(data, source=str(path))


def parse_report(data: bytes, *, source: str) -> ValidationReport:
    """A validation report from the bytes of its file; a clear error when they are not one."""
    from pydantic import ValidationError

    from evidence.errors import config_error_from_validation

    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the validation report {source}: {exc}") from None
    try:
        return ValidationReport.model_validate(raw)
    except ValidationError as exc:
        raise config_error_from_validation(exc, source=f"validation report {source}") from None


def cite(report: ValidationReport, digest: str, records: Sequence[EvidenceRecord]) -> ValidationCitation:
    """How a dossier cites and summarises ``report``: every detector, and how this run's records relate to it."""
    by_measurement = {r.measurement.id: r for r in records}
    detectors = []
    for d in report.detectors:
        record = by_measurement.get(d.measurement)
        run: Literal["same", "other-version", "other-params", "not-run"]
        if record is None:
            run = "not-run"
        elif record.measurement.version != d.version:
            run = "other-version"
        elif _comparable(record.measurement.params) != _comparable(d.params):
            run = "other-params"
        else:
            run = "same"
        detectors.append(
            ValidatedDetector(
                measurement=d.measurement,
                version=d.version,
                metric=d.metric,
                behaviour=d.behaviour,
                criterion=d.criterion,
                detection=d.detection,
                false_alarms=d.false_alarms,
                errors=d.errors,
                architectures=sorted({o.architecture for o in d.organisms}),
                languages=sorted({o.language for o in d.organisms}),
                target_shortfalls=target_shortfalls(d),
                run=run,
            )
        )
    return ValidationCitation(
        report_sha256=digest,
        population=report.population,
        population_digest=report.population_digest,
        tuned_on=report.tuned_on,
        created_at=report.created_at,
        producer=report.producer,
        level=report.level,
        organisms=len(report.organisms),
        dtype=report.environment.dtype,
        detectors=detectors,
    )


def report_bytes(report: ValidationReport) -> bytes:
    """The report as written: canonical JSON (its sha256 is the digest dossiers cite)."""
    return canonical_bytes(report)


def _comparable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in EXECUTION_PARAMS}


def validation_requirement_verdict(
    threshold: Threshold,
    record: EvidenceRecord,
    report: ValidationReport | None,
    *,
    fired: bool,
    dtype: str = "float32",
    batching: str | None = None,
) -> tuple[str | None, str]:
    """``(reason it falls short or None, one-line account of the validation)`` for a threshold that needs one.

    ``fired``: whether this run's reading meets the validated detector's criteria, i.e. the
    instrument reports the behaviour present. A reading that says "present" is as credible as
    the instrument's false alarms are rare, so it must meet ``max_false_alarms``; one that says
    "absent" is as credible as its detections are sure, so it must meet ``min_detection``.
    ``dtype``: the dtype the record was measured in; a report measured in another does not vouch for it.
    ``batching``: how the run batched prompts (``processing["batching"]``); a report that records
    another mode does not vouch for it either (a report or a run that does not say is not compared).
    """
    requirement = threshold.validation
    assert requirement is not None
    where = f"{threshold.measurement} {record.measurement.version} {threshold.metric}"
    if report is None:
        return f"no validation report is available for {where}", "no validation report"
    found = report.find(threshold.measurement, threshold.metric)
    if found is None:
        return f"the validation report does not cover {where}", "not validated"
    reading = "reports the behaviour present" if fired else "reports the behaviour absent"
    summary = f"{found.summary()}; population {report.population}; this run's reading {reading}"
    if found.version != record.measurement.version:
        return f"{where} was validated as version {found.version}, not the version run", summary
    if _comparable(found.params) != _comparable(record.measurement.params):
        changed = sorted(
            k
            for k in set(found.params) | set(record.measurement.params)
            if k not in EXECUTION_PARAMS and found.params.get(k) != record.measurement.params.get(k)
        )
        return f"{where} ran with parameters other than the validated ones ({', '.join(changed)})", summary
    if report.environment.dtype != dtype:
        return (
            f"{where} was validated in {report.environment.dtype}, but this run measured in {dtype}; "
            "the validation does not carry over to another dtype",
            summary,
        )
    recorded = report.environment.batching
    if recorded is not None and batching is not None and recorded != batching:
        return (
            f"{where} was validated with prompts batched {recorded}, but this run batched them {batching}; "
            "the validation does not carry over to another batching mode",
            summary,
        )
    if fired:
        if found.false_alarms.ci is None:
            return f"{where} {reading}, and was validated on no control", summary
        upper = found.false_alarms.ci.upper
        if upper > requirement.max_false_alarms:
            return (
                f"{where} {reading}, but its false-alarm rate is not validated low enough to trust that: "
                f"upper bound {upper:.2f} > {requirement.max_false_alarms:.2f} "
                f"({found.false_alarms.k}/{found.false_alarms.n} controls)",
                summary,
            )
    else:
        if found.detection.ci is None:
            return f"{where} {reading}, and was validated on no planted organism", summary
        lower = found.detection.ci.lower
        if lower < requirement.min_detection:
            return (
                f"{where} {reading}, but its detection rate is not validated high enough to trust that: "
                f"lower bound {lower:.2f} < {requirement.min_detection:.2f} "
                f"({found.detection.k}/{found.detection.n} planted organisms detected)",
                summary,
            )
    return None, summary


def shipped_report_path() -> Path:
    """Where the validation report of the shipped instrument versions lives (it may not exist yet)."""
    from importlib import resources

    return Path(str(resources.files("evidence") / "specs" / "validation-report.json"))


def shipped_report() -> tuple[ValidationReport, str] | None:
    """The shipped validation report and its sha256, or None when this release ships none."""
    shipped = shipped_report_file()
    if shipped is None:
        return None
    return parse_report(shipped, source=str(shipped_report_path())), hashlib.sha256(shipped).hexdigest()


def shipped_report_file() -> bytes | None:
    """The bytes of the shipped validation report, or None when this release ships none."""
    path = shipped_report_path()
    if not path.is_file():
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the shipped validation report {path}: {exc}") from None


#: Marks the README's table of the shipped report (kept in step by a test).
TABLE_BEGIN = "<!-- validation-table: begin -->"
TABLE_END = "<!-- validation-table: end -->"


def benchmark_table(report: ValidationReport | None) -> str:
    """The README's benchmark table of a report: instrument x (detection, false alarms), in Markdown."""
    if report is None:
        return "This release ships no validation report."

    def cell(rate: Any) -> str:
        if rate.ci is None:
            return "—"
        return f"{rate.k}/{rate.n} [{rate.ci.lower:.0%}, {rate.ci.upper:.0%}]"

    tuned = ", ".join(report.tuned_on) or "not stated"
    lines = [
        f"Population `{report.population}` ({len(report.organisms)} "
        f"organism{'' if len(report.organisms) == 1 else 's'}; "
        f"{report.level:.0%} Clopper–Pearson intervals; measured {report.created_at:%Y-%m-%d} "
        f"by {report.producer}; instruments tuned on: {tuned}). "
        f"Targets: detection ≥ {TARGET_DETECTION:.0%}, false alarms ≤ {TARGET_FALSE_ALARMS:.0%}.",
        "",
        "| instrument | metric | behaviour | detected (planted) | false alarms (controls) | failed runs "
        "| against the targets |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in report.detectors:
        missed = target_shortfalls(d)
        lines.append(
            f"| `{d.measurement}` {d.version} | `{d.metric}` | {d.behaviour} | {cell(d.detection)} "
            f"| {cell(d.false_alarms)} | {d.errors} | {'; '.join(missed) if missed else 'met'} |"
        )
    return "\n".join(lines)
