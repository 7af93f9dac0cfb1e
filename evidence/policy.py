"""Thresholds and the deployment gate: judgement, kept apart from evidence.

A policy file (TOML) declares thresholds on metrics, each with a decision rule
that respects uncertainty. :func:`evaluate` turns records into verdicts and
:func:`roll_up` turns verdicts into one gate decision. Both are pure functions
of their inputs, so that a verifier can recompute every verdict from the
records and the policy recorded in the dossier (verification step 7).
"""

from __future__ import annotations

import hashlib
import tomllib
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from pydantic import ValidationError

from evidence.canonical import canonical_bytes, sha256_hex
from evidence.errors import ConfigError, config_error_from_validation
from evidence.records import (
    CalibrationCheck,
    Criterion,
    EvidenceRecord,
    Gate,
    Metric,
    Policy,
    Threshold,
    ValidationReport,
    Verdict,
)
from evidence.validation_report import validation_requirement_verdict

__all__ = [
    "check_passes",
    "describe",
    "describe_all",
    "evaluate",
    "judge",
    "load_policy",
    "roll_up",
    "satisfied",
]


def load_policy(path: Path, *, run_started: datetime | None = None) -> Policy:
    """Read a policy file; a policy dated after the run is refused."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"policy file {path} does not exist", hint="check [run].policy in the run spec") from None
    except OSError as exc:
        raise ConfigError(f"policy file {path} cannot be read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"policy file {path} is not valid TOML: {exc}") from None
    data["sha256"] = hashlib.sha256(raw).hexdigest()
    if "threshold" in data:
        data["thresholds"] = data.pop("threshold")
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        raise config_error_from_validation(exc, source=f"policy file {path}") from None
    if run_started is not None and policy.set_at >= run_started:
        raise ConfigError(
            f"policy file {path} was set at {policy.set_at.isoformat()}, not before this run",
            hint="thresholds must be declared before the measurements they judge",
        )
    return policy


def _budget_mismatch(policy: Policy, record: EvidenceRecord) -> str | None:
    """Why ``record`` was measured on another budget than the policy's thresholds were set for, if it was."""
    if record.profile != policy.profile:
        return (
            f"the policy's thresholds were set for the {policy.profile} profile, but {record.record_id} was "
            f"measured under the {record.profile} profile"
        )
    if record.prompt_limit is not None:
        return (
            f"{record.record_id} was measured on at most {record.prompt_limit} prompts per dataset (--limit), "
            "the policy's thresholds on every prompt"
        )
    return None


def _clears(value: float, threshold: float, comparator: str) -> bool:
    if comparator == ">=":
        return value >= threshold
    if comparator == ">":
        return value > threshold
    if comparator == "<=":
        return value <= threshold
    return value < threshold


def _shift(threshold: float, margin: float, comparator: str) -> float:
    """The threshold moved by the safety margin towards the safe side."""
    return threshold + margin if comparator in (">=", ">") else threshold - margin


def _reference(c: Criterion, metric: Metric) -> float | None:
    """What the threshold is counted from: 0, or the baseline's far bound (None: no baseline)."""
    if not c.above_baseline:
        return 0.0
    if metric.baseline is None:
        return None
    ci = metric.baseline.ci
    if ci is None:
        return metric.baseline.value
    return ci.upper if c.comparator in (">=", ">") else ci.lower


_BOUND_WORDS = {"point": "", "ci-lower": "CI lower bound ", "ci-upper": "CI upper bound "}


def describe(c: Criterion, metric_name: str) -> str:
    """The criterion in words and numbers, e.g. ``auroc: CI lower bound > 0.9``."""
    threshold = "its baseline" if c.above_baseline and c.threshold == 0 else f"{c.threshold:g}"
    if c.above_baseline and c.threshold != 0:
        threshold = f"its baseline {'+' if c.threshold > 0 else '-'} {abs(c.threshold):g}"
    if c.rule == "ci-bound":
        side = "lower" if c.comparator in (">=", ">") else "upper"
        text = f"{metric_name}: CI {side} bound {c.comparator} {threshold}"
    else:
        text = f"{metric_name}: {_BOUND_WORDS[c.rule]}{c.comparator} {threshold}".replace(":  ", ": ")
    if c.margin:
        text += f" with margin {c.margin:g}"
    return text


def describe_all(criteria: Sequence[Criterion], combine: str, metric_name: str) -> str:
    """Several criteria joined as the check combines them."""
    joiner = " and " if combine == "all" else " or "
    return joiner.join(describe(c, metric_name) for c in criteria)


def judge(t: Criterion, metric: Metric, *, name: str | None = None) -> tuple[str, str]:
    """The verdict on one metric and the reason, in one sentence."""
    label: str = name or str(getattr(t, "metric", metric.name))
    want = f"{label} {t.comparator} {t.threshold:g}"
    if t.above_baseline:
        want = describe(t, label)
    elif t.margin:
        want += f" with margin {t.margin:g}"
    reference = _reference(t, metric)
    if reference is None:
        return "inconclusive", f"{metric.name} = {metric.value:g} carries no baseline; required {want}"
    target = reference + _shift(t.threshold, t.margin, t.comparator)
    if t.rule == "point":
        ok = _clears(metric.value, target, t.comparator)
        return ("pass" if ok else "fail"), f"{metric.name} = {metric.value:g}; required {want}"
    if metric.ci is None:
        return "inconclusive", f"{metric.name} = {metric.value:g} carries no confidence interval; required {want}"
    lo, hi = metric.ci.lower, metric.ci.upper
    ci = f"{metric.name} = {metric.value:g}, {metric.ci.level:.0%} CI [{lo:g}, {hi:g}]"
    if t.rule in ("ci-lower", "ci-upper"):
        bound = lo if t.rule == "ci-lower" else hi
        ok = _clears(bound, target, t.comparator)
        return ("pass" if ok else "fail"), f"{ci}; required {want}"
    higher_is_safe = t.comparator in (">=", ">")
    safe_bound, unsafe_bound = (lo, hi) if higher_is_safe else (hi, lo)
    if _clears(safe_bound, target, t.comparator):
        return "pass", f"{ci}: the whole interval clears {want}"
    if not _clears(unsafe_bound, reference + t.threshold, t.comparator):
        return "fail", f"{ci}: the whole interval fails {label} {t.comparator} {t.threshold:g}"
    return "inconclusive", f"{ci}: the interval straddles {want}"


def satisfied(criteria: Sequence[Criterion], combine: str, metric: Metric) -> bool:
    """Whether ``metric`` meets the criteria (each judged PASS by :func:`judge`), all or any."""
    results = [judge(c, metric)[0] == "pass" for c in criteria]
    if not results:
        return False
    return all(results) if combine == "all" else any(results)


def check_passes(check: CalibrationCheck) -> bool:
    """Recompute a calibration check's outcome from what it records (verification step 7)."""
    if check.value is None or not check.criteria:
        return False
    metric = Metric(name=check.metric, value=check.value, unit="value", ci=check.ci, baseline=check.baseline)
    return satisfied(check.criteria, check.combine, metric) == (check.expected == "holds")


def evaluate(
    policy: Policy,
    records: Sequence[EvidenceRecord],
    *,
    subject: str,
    validation: tuple[ValidationReport, str] | None = None,
    dtype: str = "float32",
    batching: str | None = None,
) -> list[Verdict]:
    """One verdict per threshold, judged on the record of ``subject`` for its measurement.

    ``validation``: the validation report (and its sha256) that thresholds with a
    ``validation`` requirement consult; a requirement that the report does not
    meet, or no report at all, makes that verdict INCONCLUSIVE with the reason.

    ``dtype``: the dtype the records were measured in (the model identity's
    ``processing["dtype"]``). A policy that names another dtype, or a validation
    report measured in another, leaves the verdicts that rely on it INCONCLUSIVE:
    a threshold set in one dtype is never applied silently to another.

    Likewise a record measured under another budget profile than the policy's
    (``run --profile``), or on a limited number of prompts (``run --limit``), is
    judged INCONCLUSIVE: a threshold calibrated on one budget never passes another.
    ``batching``: how the records' prompts were batched (``processing["batching"]``); a
    validation report that records another batching mode leaves those verdicts INCONCLUSIVE too.
    """
    by_measurement = {r.measurement.id: r for r in records if r.subject == subject}
    verdicts = []
    for t in policy.thresholds:
        record = by_measurement.get(t.measurement)
        fields: dict[str, object] = {
            "verdict_id": t.id, "measurement": t.measurement, "metric": t.metric,
            "threshold": t.threshold, "comparator": t.comparator, "rule": t.rule, "margin": t.margin,
            "rationale": t.rationale, "set_by": policy.set_by, "set_at": policy.set_at, "clauses": t.clauses,
        }
        if record is None:
            # A gated measurement that did not run leaves the question open: never a silent n/a.
            reason = f"{t.measurement} was not run on {subject}, so {t.metric} could not be judged"
            verdicts.append(_verdict(fields, "inconclusive", reason))
            continue
        fields |= {"record_id": record.record_id, "record_digest": sha256_hex(canonical_bytes(record))}
        if record.status == "error":
            reason = f"{t.measurement} failed, so {t.metric} could not be judged"
            verdicts.append(_verdict(fields, "inconclusive", reason))
            continue
        try:
            metric = record.metric(t.metric)
        except KeyError:
            reason = f"{record.record_id} has no metric {t.metric!r}"
            verdicts.append(_verdict(fields, "inconclusive", reason))
            continue
        fields |= {"observed": metric.value, "ci": metric.ci}
        if policy.dtype is not None and policy.dtype != dtype:
            reason = (
                f"the policy's thresholds were set for {policy.dtype}, but {subject} was measured in {dtype}; "
                f"{t.metric} is not judged against a threshold set in another dtype"
            )
            verdicts.append(_verdict(fields, "inconclusive", reason))
            continue
        budget = _budget_mismatch(policy, record)
        if budget is not None:
            verdicts.append(_verdict(fields, "inconclusive", f"{budget}; {t.metric} is not judged against it"))
            continue
        if t.validation is not None:
            report, digest = validation if validation is not None else (None, None)
            found = report.find(t.measurement, t.metric) if report is not None else None
            fired = found is not None and satisfied(found.criteria, found.combine, metric)
            shortfall, account = validation_requirement_verdict(
                t, record, report, fired=fired, dtype=dtype, batching=batching
            )
            if shortfall is None and digest is not None:
                shortfall = _spot_check_shortfall(t, records, digest)
            fields |= {"validation": account, "validation_report": digest}
            if shortfall is not None:
                verdicts.append(_verdict(fields, "inconclusive", shortfall))
                continue
        verdict, reason = judge(t, metric)
        verdicts.append(_verdict(fields, verdict, reason))
    return verdicts


def _spot_check_shortfall(threshold: Threshold, records: Sequence[EvidenceRecord], digest: str) -> str | None:
    """Why this run's spot checks do not confirm the validation report for ``threshold``'s metric, if they do not."""
    checks = [
        c
        for r in records
        for c in r.checks
        if c.validation_report == digest and c.measurement == threshold.measurement and c.metric == threshold.metric
    ]
    where = f"{threshold.measurement} {threshold.metric}"
    if not checks:
        return f"no spot check in this run re-measured the validation of {where} (calibration.organisms)"
    disagree = [c.organism for c in checks if not c.passed]
    if disagree:
        return (
            f"this run's spot check of {where} disagrees with the validation report on "
            f"{', '.join(disagree)}: the report's rates may not hold in this environment"
        )
    return None


def _verdict(fields: dict[str, object], verdict: str, reason: str) -> Verdict:
    return Verdict.model_validate({**fields, "verdict": verdict, "reason": reason})


def roll_up(verdicts: Sequence[Verdict]) -> Gate:
    """FAIL if any verdict fails; else INCONCLUSIVE if any is (or nothing was judged); else PASS."""
    counts = Counter(v.verdict for v in verdicts)
    fails = [f"{v.verdict_id}: {v.reason}" for v in verdicts if v.verdict == "fail"]
    unsure = [f"{v.verdict_id}: {v.reason}" for v in verdicts if v.verdict == "inconclusive"]
    if fails:
        decision, reasons = "fail", fails
    elif unsure:
        decision, reasons = "inconclusive", unsure
    elif counts["pass"] == 0:
        decision, reasons = "inconclusive", ["no threshold applied to this dossier's measurements"]
    else:
        decision, reasons = "pass", [f"all {counts['pass']} applicable thresholds passed"]
    full = {k: counts.get(k, 0) for k in ("pass", "fail", "inconclusive", "n/a")}
    return Gate.model_validate({"decision": decision, "counts": full, "reasons": reasons})
