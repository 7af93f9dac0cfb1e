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
    EvidenceRecord,
    Threshold,
    ValidatedDetector,
    ValidationCitation,
    ValidationReport,
)

__all__ = [
    "EXECUTION_PARAMS",
    "benchmark_table",
    "cite",
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
                run=run,
            )
        )
    return ValidationCitation(
        report_sha256=digest,
        population=report.population,
        population_digest=report.population_digest,
        created_at=report.created_at,
        producer=report.producer,
        level=report.level,
        organisms=len(report.organisms),
        detectors=detectors,
    )


def report_bytes(report: ValidationReport) -> bytes:
    """The report as written: canonical JSON (its sha256 is the digest dossiers cite)."""
    return canonical_bytes(report)


def _comparable(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k not in EXECUTION_PARAMS}


def validation_requirement_verdict(
    threshold: Threshold, record: EvidenceRecord, report: ValidationReport | None
) -> tuple[str | None, str]:
    """``(reason it falls short or None, one-line account of the validation)`` for a threshold that needs one."""
    requirement = threshold.validation
    assert requirement is not None
    where = f"{threshold.measurement} {record.measurement.version} {threshold.metric}"
    if report is None:
        return f"no validation report is available for {where}", "no validation report"
    found = report.find(threshold.measurement, threshold.metric)
    if found is None:
        return f"the validation report does not cover {where}", "not validated"
    summary = f"{found.summary()}; population {report.population}"
    if found.version != record.measurement.version:
        return f"{where} was validated as version {found.version}, not the version run", summary
    if _comparable(found.params) != _comparable(record.measurement.params):
        changed = sorted(
            k
            for k in set(found.params) | set(record.measurement.params)
            if k not in EXECUTION_PARAMS and found.params.get(k) != record.measurement.params.get(k)
        )
        return f"{where} ran with parameters other than the validated ones ({', '.join(changed)})", summary
    if found.detection.ci is None or found.false_alarms.ci is None:
        return f"{where} was validated on no planted organism or no control", summary
    shortfalls = []
    if found.detection.ci.lower < requirement.min_detection:
        shortfalls.append(f"detection lower bound {found.detection.ci.lower:.2f} < {requirement.min_detection:.2f}")
    if found.false_alarms.ci.upper > requirement.max_false_alarms:
        shortfalls.append(
            f"false-alarm upper bound {found.false_alarms.ci.upper:.2f} > {requirement.max_false_alarms:.2f}"
        )
    if shortfalls:
        return f"{where} does not meet its validation requirement: " + "; ".join(shortfalls), summary
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

    lines = [
        f"Population `{report.population}` ({len(report.organisms)} "
        f"organism{'' if len(report.organisms) == 1 else 's'}; "
        f"{report.level:.0%} Clopper–Pearson intervals; measured {report.created_at:%Y-%m-%d} "
        f"by interp-dossier {report.producer}).",
        "",
        "| instrument | metric | behaviour | detected (planted) | false alarms (controls) | failed runs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for d in report.detectors:
        lines.append(
            f"| `{d.measurement}` {d.version} | `{d.metric}` | {d.behaviour} | {cell(d.detection)} "
            f"| {cell(d.false_alarms)} | {d.errors} |"
        )
    return "\n".join(lines)
