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
from evidence.errors import ConfigError
from evidence.records import EvidenceRecord, Gate, Metric, Policy, Threshold, Verdict

__all__ = ["evaluate", "judge", "load_policy", "roll_up"]


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
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"policy file {path}: {where}: {first['msg']}") from None
    if run_started is not None and policy.set_at >= run_started:
        raise ConfigError(
            f"policy file {path} was set at {policy.set_at.isoformat()}, not before this run",
            hint="thresholds must be declared before the measurements they judge",
        )
    return policy


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


def judge(t: Threshold, metric: Metric) -> tuple[str, str]:
    """The verdict on one metric and the reason, in one sentence."""
    want = f"{t.metric} {t.comparator} {t.threshold:g}"
    if t.margin:
        want += f" with margin {t.margin:g}"
    if t.rule == "point":
        ok = _clears(metric.value, _shift(t.threshold, t.margin, t.comparator), t.comparator)
        return ("pass" if ok else "fail"), f"{metric.name} = {metric.value:g}; required {want}"
    if metric.ci is None:
        return "inconclusive", f"{metric.name} = {metric.value:g} carries no confidence interval; required {want}"
    lo, hi = metric.ci.lower, metric.ci.upper
    higher_is_safe = t.comparator in (">=", ">")
    safe_bound, unsafe_bound = (lo, hi) if higher_is_safe else (hi, lo)
    ci = f"{metric.name} = {metric.value:g}, {metric.ci.level:.0%} CI [{lo:g}, {hi:g}]"
    if _clears(safe_bound, _shift(t.threshold, t.margin, t.comparator), t.comparator):
        return "pass", f"{ci}: the whole interval clears {want}"
    if not _clears(unsafe_bound, t.threshold, t.comparator):
        return "fail", f"{ci}: the whole interval fails {t.metric} {t.comparator} {t.threshold:g}"
    return "inconclusive", f"{ci}: the interval straddles {want}"


def evaluate(policy: Policy, records: Sequence[EvidenceRecord], *, subject: str) -> list[Verdict]:
    """One verdict per threshold, judged on the record of ``subject`` for its measurement."""
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
            verdicts.append(_verdict(fields, "n/a", f"{t.measurement} was not run on {subject}"))
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
        verdict, reason = judge(t, metric)
        verdicts.append(_verdict(fields | {"observed": metric.value, "ci": metric.ci}, verdict, reason))
    return verdicts


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
