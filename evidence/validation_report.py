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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evidence.canonical import canonical_bytes
from evidence.errors import ConfigError
from evidence.records import EvidenceRecord, Threshold, ValidationReport

__all__ = [
    "EXECUTION_PARAMS",
    "read_report",
    "report_bytes",
    "shipped_report",
    "shipped_report_path",
    "validation_requirement_verdict",
]

#: Parameters that change how fast a measurement runs, not what it measures; ignored when a
#: run's parameters are compared with the validated ones.
EXECUTION_PARAMS = frozenset({"batch_size"})


def read_report(path: Path) -> ValidationReport:
    """A validation report from its JSON file; a clear error when it is missing or malformed."""
    from pydantic import ValidationError

    from evidence.errors import config_error_from_validation

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no validation report at {path}", hint="run `interp-dossier validate --out FILE`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read the validation report {path}: {exc}") from None
    try:
        return ValidationReport.model_validate(raw)
    except ValidationError as exc:
        raise config_error_from_validation(exc, source=f"validation report {path}") from None


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
        shortfalls.append(
            f"detection lower bound {found.detection.ci.lower:.2f} < {requirement.min_detection:.2f}"
        )
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
    path = shipped_report_path()
    if not path.is_file():
        return None
    return read_report(path), hashlib.sha256(path.read_bytes()).hexdigest()
