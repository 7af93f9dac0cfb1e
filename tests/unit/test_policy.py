from datetime import UTC, datetime

import pytest

from evidence.errors import ConfigError
from evidence.policy import evaluate, judge, load_policy, roll_up
from evidence.records import ConfidenceInterval, Metric, Threshold
from tests.factories import make_record

POLICY = """
name = "test policy"
version = "1"
set_by = "Risk board"
set_at = 2026-01-01T00:00:00Z

[[threshold]]
id = "induction-present"
measurement = "heads.inventory"
metric = "induction_score_max"
comparator = ">="
threshold = 0.5
margin = 0.1
rationale = "the planted induction head must be found"
"""


def metric(value, lo=None, hi=None):
    ci = None if lo is None else ConfidenceInterval(lower=lo, upper=hi, level=0.95, method="m", n=10)
    return Metric(name="x", value=value, unit="score", ci=ci)


def threshold(comparator=">=", value=0.5, margin=0.0, rule="ci-bound"):
    return Threshold(id="t", measurement="heads.inventory", metric="x", comparator=comparator,
                     threshold=value, margin=margin, rule=rule, rationale="r")


@pytest.mark.parametrize(
    ("comparator", "margin", "lo", "hi", "expected"),
    [
        (">=", 0.0, 0.6, 0.8, "pass"),          # whole interval above
        (">=", 0.0, 0.2, 0.4, "fail"),          # whole interval below
        (">=", 0.0, 0.4, 0.6, "inconclusive"),  # straddles
        (">=", 0.2, 0.6, 0.8, "inconclusive"),  # clears the threshold but not the margin
        (">=", 0.05, 0.6, 0.8, "pass"),
        ("<=", 0.0, 0.1, 0.3, "pass"),
        ("<=", 0.0, 0.6, 0.9, "fail"),
        ("<=", 0.0, 0.3, 0.7, "inconclusive"),
        ("<=", 0.25, 0.1, 0.3, "inconclusive"),
    ],
)
def test_ci_bound_rule(comparator, margin, lo, hi, expected):
    verdict, reason = judge(threshold(comparator, margin=margin), metric((lo + hi) / 2, lo, hi))
    assert verdict == expected, reason


def test_ci_bound_without_interval_is_inconclusive():
    verdict, reason = judge(threshold(), metric(0.9))
    assert verdict == "inconclusive" and "no confidence interval" in reason


def test_point_rule_compares_the_value():
    assert judge(threshold(rule="point"), metric(0.9))[0] == "pass"
    assert judge(threshold(rule="point", margin=0.5), metric(0.9))[0] == "fail"


def test_evaluate_points_at_records_by_digest(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    policy = load_policy(path)
    verdicts = evaluate(policy, [make_record()], subject="toy")
    (v,) = verdicts
    assert v.verdict == "pass" and v.record_id == "heads.inventory:toy" and len(v.record_digest) == 64
    assert v.set_by == "Risk board" and v.set_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert roll_up(verdicts).decision == "pass"


def test_missing_failed_and_absent_evidence(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    policy = load_policy(path)
    assert evaluate(policy, [], subject="toy")[0].verdict == "n/a"
    failed = make_record(status="error", metrics=[], error={"type": "MeasurementError", "message": "boom"})
    assert evaluate(policy, [failed], subject="toy")[0].verdict == "inconclusive"
    other = make_record(metrics=[])
    assert evaluate(policy, [other], subject="toy")[0].verdict == "inconclusive"


def test_roll_up():
    def v(verdict):
        return evaluate_stub(verdict)

    assert roll_up([v("pass"), v("fail"), v("inconclusive")]).decision == "fail"
    assert roll_up([v("pass"), v("inconclusive")]).decision == "inconclusive"
    assert roll_up([v("pass"), v("n/a")]).decision == "pass"
    assert roll_up([v("n/a")]).decision == "inconclusive"
    assert roll_up([]).decision == "inconclusive"


def evaluate_stub(verdict):
    from evidence.records import Verdict

    return Verdict(verdict_id="t", verdict=verdict, measurement="heads.inventory", metric="x", threshold=0.5,
                   comparator=">=", rule="ci-bound", margin=0.0, reason="because", set_by="b",
                   set_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_policy_dated_after_the_run_is_refused(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(POLICY)
    with pytest.raises(ConfigError, match="not before this run"):
        load_policy(path, run_started=datetime(2025, 6, 1, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (POLICY.replace('comparator = ">="', 'comparator = "=>"'), "comparator"),
        (POLICY.replace("set_at = 2026-01-01T00:00:00Z", "set_at = 2026-01-01T00:00:00"), "set_at"),
        (POLICY.replace("margin = 0.1", "margin = -0.1"), "margin"),
        (POLICY.replace('name = "test policy"', 'name = "test policy"\ncolour = 1'), "colour"),
        (POLICY + "[[threshold\n", "not valid TOML"),
    ],
)
def test_malformed_policy(tmp_path, text, message):
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_policy(path)
